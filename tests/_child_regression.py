"""The regression that the multi-device and multi-process tests run in child processes."""

SETUP = r"""
import jax, numpy as np, numpyro, numpyro.distributions as dist
import bayesplug as bp

def model(x, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(b[0] + b[1] * x, s), obs=y)

rng = np.random.default_rng(0)
x = np.linspace(-1, 1, 40)
data = {"x": x, "y": 0.5 + 2 * x + rng.normal(0, 0.3, 40)}
"""
