"""Backend ``map``: modes against closed forms, the Laplace approximation, limits."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import bayesplug as bp
from bayesplug.errors import InterruptedRunWarning

Y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
A, B = 2.0, 0.5  # Gamma(shape, rate) prior on a Poisson rate: the posterior is Gamma(A + Σy, B + n)


def poisson(y=None):
    rate = numpyro.sample("rate", dist.Gamma(A, B))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Poisson(rate), obs=y)


def normal_mean(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def test_map_is_the_posterior_mode_of_the_model_parameters():
    fit = bp.fit(poisson, {"y": Y}, method="map", progress=False)
    shape, rate = A + Y.sum(), B + Y.size
    # the mode of Gamma(shape, rate) in the rate itself, not in log(rate)
    assert float(fit.point_estimate["rate"]) == pytest.approx((shape - 1) / rate, rel=1e-4)
    y = np.array([[1.0, -2.0], [2.0, -1.0], [3.0, -3.0]])
    fit = bp.fit(normal_mean, {"y": y}, method="map", progress=False)
    exact = y.sum(0) / (y.shape[0] + 1e-2)
    np.testing.assert_allclose(fit.point_estimate["mu"], exact, atol=1e-3)  # sd 0.58; float32
    assert fit.idata.posterior["mu"].shape == (1, 1, 2)  # the point as one draw: predict works
    assert fit.predict({"y": np.zeros((1, 2))}).draws.shape == (1, 2)  # 1 draw of y (2,)
    assert fit.idata.attrs["best_loss"] <= fit.idata.attrs["final_loss"] + 1e-9
    assert "final_iterate" in fit.idata.groups()


def test_laplace_draws_a_gaussian_in_the_unconstrained_space():
    fit = bp.fit(poisson, {"y": Y}, method="map", laplace=True, num_draws=20_000, progress=False)
    shape, rate = A + Y.sum(), B + Y.size
    # p(log rate | y) has its mode at log(shape / rate) and curvature shape there
    log_rate = np.log(fit.idata.posterior["rate"].values.ravel())
    sd = shape**-0.5
    assert abs(log_rate.mean() - np.log(shape / rate)) < 5 * sd / np.sqrt(20_000)
    assert abs(log_rate.std() / sd - 1) < 5 / np.sqrt(2 * 20_000)
    assert fit.idata.attrs["draws_are"] == "independent"


def test_any_optax_transform_plateau_stop_and_limits(interrupt_at_chunk):
    fit = bp.fit(
        poisson,
        {"y": Y},
        method="map",
        optimizer=optax.sgd(1e-3),
        num_steps=20_000,
        tol=1e-9,
        progress=False,
    )
    assert fit.idata.attrs["stopped_on_plateau"] == 1
    assert fit.idata.attrs["num_steps_run"] < 20_000
    interrupt_at_chunk(3)
    with pytest.warns(InterruptedRunWarning, match="Ctrl-C"):
        fit = bp.fit(poisson, {"y": Y}, method="map", progress=False)
    assert fit.idata.attrs["num_steps_run"] == 200
    with pytest.raises(bp.InputError, match="optimizer"):
        bp.fit(poisson, {"y": Y}, method="map", optimizer="adam")
    with pytest.raises(bp.InputError, match="schedule"):
        bp.fit(poisson, {"y": Y}, method="map", schedule="linear")


class FlatMean(bp.models.ModelBase):
    """mu with a flat (improper) prior: no prior median, so the model says where to start."""

    name = "flat_mean"
    capabilities = frozenset({"continuous"})

    def model(self, y=None):
        mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
        numpyro.sample("y", dist.Normal(mu, 1.0).expand([y.shape[0]]).to_event(1), obs=y)

    def initial_values(self, data):
        return {"mu": 40.0}

    def predict(self, samples, data, inputs, rng_key):
        return {"mu": samples["mu"]}


def test_a_models_initial_values_are_where_map_starts():
    model = FlatMean()
    fit = bp.fit(
        model, {"y": Y}, method="map", optimizer=optax.sgd(0.0), num_steps=10, progress=False
    )
    assert float(fit.point_estimate["mu"]) == pytest.approx(40.0)  # a zero step stays put
    fit = bp.fit(model, {"y": Y}, method="map", num_steps=3000, learning_rate=0.5, progress=False)
    assert float(fit.point_estimate["mu"]) == pytest.approx(
        Y.mean(), abs=1e-3
    )  # the flat-prior mode
