"""A tiny third-party plug-in used by the registry tests (found through its entry points)."""

import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesplug.models.base import ModelBase

IMPORTED = True


class NormalMean(ModelBase):
    """y_i ~ N(mu, 1), mu ~ N(0, 10^2): a conjugate model with a known posterior."""

    name = "normal_mean"

    def validate(self, data):
        return {"y": np.asarray(data["y"], dtype=float)}

    def model(self, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("obs", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    def predict(self, samples, data, inputs, rng_key):
        return {"y": np.asarray(samples["mu"])[:, None] + 0.0 * np.asarray(inputs["n"])}
