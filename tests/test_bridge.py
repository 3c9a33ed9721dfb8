"""The NumPyro bridge against hand-computed densities."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from bayesplug.bridge import Bridge, pointwise_log_likelihood, trace_model


def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(1.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(3.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


DATA = {"y": jnp.array([0.3, -1.2, 2.5])}


@pytest.fixture(scope="module")
def bridge():
    return Bridge.from_model(model, DATA)


def test_model_info():
    info = trace_model(model, DATA)
    assert info.latent_sites == ("mu", "sigma")
    assert info.observed_sites == ("y",)
    assert info.discrete_sites == () and info.improper_sites == ()


def test_flat_vector_layout(bridge):
    assert bridge.dim == 2
    params = bridge.unravel(jnp.array([0.5, np.log(2.0)]))
    assert set(params) == {"mu", "sigma"}


def test_split_log_density_matches_hand_computation(bridge):
    mu, log_sigma = 0.5, np.log(2.0)
    u = bridge.unconstrain({"mu": jnp.asarray(mu), "sigma": jnp.asarray(2.0)}, DATA)
    np.testing.assert_allclose(np.sort(np.asarray(u)), np.sort([mu, log_sigma]), rtol=1e-6)
    log_prior, log_lik = bridge.split_log_density(u, DATA)
    sigma = np.exp(log_sigma)
    # prior of mu, prior of sigma, and the Jacobian d sigma / d log sigma = sigma
    expected_prior = (
        stats.norm(1.0, 2.0).logpdf(mu) + stats.halfnorm(scale=3.0).logpdf(sigma) + log_sigma
    )
    expected_lik = stats.norm(mu, sigma).logpdf(np.asarray(DATA["y"])).sum()
    np.testing.assert_allclose(float(log_prior), expected_prior, rtol=1e-5)
    np.testing.assert_allclose(float(log_lik), expected_lik, rtol=1e-5)
    np.testing.assert_allclose(
        float(bridge.log_density(u, DATA)), expected_prior + expected_lik, rtol=1e-5
    )


def test_log_density_is_minus_numpyro_potential(bridge):
    from numpyro.infer.util import potential_energy

    u = jnp.array([0.2, -0.4])
    pe = potential_energy(model, (), DATA, bridge.unravel(u))
    np.testing.assert_allclose(float(bridge.log_density(u, DATA)), -float(pe), rtol=1e-5)


def test_constrain_unconstrain_round_trip(bridge):
    u = jnp.array([0.7, -1.3])
    params = bridge.constrain(u, DATA)
    assert float(params["sigma"]) > 0
    np.testing.assert_allclose(
        np.asarray(bridge.unconstrain(params, DATA)), np.asarray(u), rtol=1e-5
    )


def test_data_is_an_argument_not_a_constant(bridge):
    f = jax.jit(bridge.log_likelihood)
    u = jnp.zeros(2)
    other = {"y": jnp.array([5.0, 6.0, 7.0])}
    assert float(f(u, DATA)) != float(f(u, other))
    assert f._cache_size() == 1  # one compilation serves both data sets


def test_prior_draws_follow_the_prior(bridge):
    u = bridge.sample_prior(jax.random.PRNGKey(0), 4000, DATA)
    assert u.shape == (4000, 2)
    params = jax.vmap(lambda v: bridge.constrain(v, DATA))(u)
    # 4000 iid draws: the sample mean is within 4 standard errors of the prior mean
    assert abs(float(params["mu"].mean()) - 1.0) < 4 * 2.0 / np.sqrt(4000)
    halfnormal_mean = 3.0 * np.sqrt(2 / np.pi)
    halfnormal_sd = 3.0 * np.sqrt(1 - 2 / np.pi)
    assert abs(float(params["sigma"].mean()) - halfnormal_mean) < 4 * halfnormal_sd / np.sqrt(4000)


def test_pointwise_log_likelihood_matches_scipy():
    samples = {"mu": jnp.array([[0.0, 1.0]]), "sigma": jnp.array([[1.0, 2.0]])}
    out = pointwise_log_likelihood(model, samples, DATA)
    assert out["y"].shape == (1, 2, 3)
    y = np.asarray(DATA["y"])
    np.testing.assert_allclose(
        np.asarray(out["y"][0, 1]), stats.norm(1.0, 2.0).logpdf(y), rtol=1e-5
    )


def test_factor_sites_count_in_the_likelihood():
    def with_factor(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.factor("custom", -0.5 * jnp.sum((y - mu) ** 2))

    bridge = Bridge.from_model(with_factor, DATA)
    assert bridge.info.factor_sites == ("custom",)
    _, log_lik = bridge.split_log_density(jnp.array([0.0]), DATA)
    np.testing.assert_allclose(float(log_lik), -0.5 * float(jnp.sum(DATA["y"] ** 2)), rtol=1e-6)
