"""Bring your own model: any NumPyro function fits, predicts, saves and reports.

Run: python examples/custom_numpyro_model.py
"""

import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesplug as bp


def robust_line(x, y=None):
    """A straight line with Student-t noise."""
    slope = numpyro.sample("slope", dist.Normal(0.0, 10.0))
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 10.0))
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    with numpyro.plate("points", x.shape[0]):
        numpyro.sample("y", dist.StudentT(4.0, intercept + slope * x, scale), obs=y)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 50)
    y = 1.0 + 2.0 * x + 0.1 * rng.standard_t(4, size=50)
    fit = bp.fit(robust_line, {"x": x, "y": y}, seed=0)
    print(fit.summary())
    prediction = fit.predict({"x": np.array([0.0, 0.5, 1.0])})
    print("predictive mean:", prediction.mean.round(3), "std:", prediction.std.round(3))
    fit.save("robust_line.nc")
    bp.report(fit, "robust_line.html")
