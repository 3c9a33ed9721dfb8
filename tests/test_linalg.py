"""The plain-JAX factorisations of ``bayesplug._linalg`` against LAPACK (float64, no scan)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bayesplug._linalg import cholesky, cholesky_inverse, solve_lower, solve_upper


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def spd(seed: int, n: int = 6, batch: tuple[int, ...] = ()):
    a = np.random.default_rng(seed).normal(size=(*batch, n, n))
    return jnp.asarray(a @ np.swapaxes(a, -1, -2) / n + 0.3 * np.eye(n))


def test_loops_equal_lapack():
    a, b = spd(0), jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)))
    factor = cholesky(a)
    np.testing.assert_allclose(factor, np.linalg.cholesky(a), atol=1e-12)
    np.testing.assert_allclose(solve_lower(factor, b), np.linalg.solve(factor, b), atol=1e-10)
    np.testing.assert_allclose(solve_upper(factor, b), np.linalg.solve(factor.T, b), atol=1e-10)


def test_cholesky_inverse_values_batched_and_jitted():
    a = spd(2, batch=(4, 3))
    inverse, log_det = jax.jit(cholesky_inverse)(a)
    assert inverse.shape == a.shape and log_det.shape == (4, 3)
    np.testing.assert_allclose(inverse, np.linalg.inv(np.linalg.cholesky(a)), atol=1e-10)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(a)[1], atol=1e-10)
    np.testing.assert_allclose(inverse[1], jax.vmap(cholesky_inverse)(a)[0][1], atol=1e-12)


def test_cholesky_inverse_derivatives_are_exact():
    """The closed-form derivative against LAPACK's autodiff and finite differences, for
    symmetric directions (a covariance's tangents), to second order."""
    a, d = spd(3, n=5), np.random.default_rng(4).normal(size=(5, 5))
    d = jnp.asarray(d + d.T)
    weights = jnp.asarray(np.random.default_rng(5).normal(size=(5, 5)))

    def ours(t):
        inverse, log_det = cholesky_inverse(a + t * d)
        return jnp.sum(weights * inverse**2) + 3.0 * log_det

    def lapack(t):
        inverse = jnp.linalg.inv(jnp.linalg.cholesky(a + t * d))
        return jnp.sum(weights * inverse**2) + 3.0 * jnp.linalg.slogdet(a + t * d)[1]

    for order in range(3):
        f, g = ours, lapack
        for _ in range(order):
            f, g = jax.grad(f), jax.grad(g)
        np.testing.assert_allclose(f(0.1), g(0.1), rtol=1e-9)
    check_grads(ours, (0.1,), order=2, modes=["fwd", "rev"], rtol=1e-4)  # finite differences


def test_gaussian_log_density_and_its_derivatives_equal_numpyro_mvn():
    """``CovarianceNormal`` (no LAPACK) against NumPyro's MultivariateNormal (LAPACK): value,
    gradient and Hessian in the location and in a covariance's parameters, batched under vmap."""
    import numpyro.distributions as dist

    from bayesplug.models import CovarianceNormal

    a, y = spd(6, n=7), jnp.asarray(np.random.default_rng(7).normal(size=7))

    def ours(p):
        return CovarianceNormal(p[0] * jnp.ones(7), p[1] * a + p[2] * jnp.eye(7)).log_prob(y)

    def numpyro_mvn(p):
        cov = p[1] * a + p[2] * jnp.eye(7)
        return dist.MultivariateNormal(p[0] * jnp.ones(7), covariance_matrix=cov).log_prob(y)

    p = jnp.array([0.3, 1.4, 0.2])
    for f, g in ((ours, numpyro_mvn), (jax.grad(ours), jax.grad(numpyro_mvn))):
        np.testing.assert_allclose(jax.jit(f)(p), jax.jit(g)(p), rtol=1e-10)
    hessians = [jax.jit(jax.hessian(f))(p) for f in (ours, numpyro_mvn)]
    np.testing.assert_allclose(*hessians, rtol=1e-8)
    ps = p * jnp.linspace(0.8, 1.2, 5)[:, None]
    batched = [jax.jit(jax.vmap(f))(ps) for f in (ours, numpyro_mvn)]
    np.testing.assert_allclose(*batched, rtol=1e-10)
    check_grads(jax.jit(ours), (p,), order=1, modes=["rev"], rtol=1e-4)  # finite differences


def test_covariance_normal_refuses_nothing_silently_and_draws_the_right_moments():
    """Not positive definite: NaN (nested sampling reads it as outside the contour), never a
    finite number. Draws: mean and covariance within 5 Monte Carlo standard errors."""
    from bayesplug.models import CovarianceNormal

    bad = CovarianceNormal(jnp.zeros(2), jnp.array([[1.0, 2.0], [2.0, 1.0]]))
    assert np.isnan(bad.log_prob(jnp.zeros(2)))
    from bayesplug.errors import InputError

    with pytest.raises(InputError, match="loc"):  # a shape the user did not mean
        CovarianceNormal(jnp.zeros((4, 3)), jnp.eye(3))
    with pytest.raises(InputError, match="square"):
        CovarianceNormal(jnp.zeros(3), jnp.ones((3, 2)))
    with pytest.raises(InputError, match="last axis"):
        CovarianceNormal(0.0, jnp.eye(3)).log_prob(jnp.zeros(2))
    values = jnp.asarray(np.random.default_rng(9).normal(size=(4, 5, 2)))  # batched values
    one = CovarianceNormal(1.0, 2.0 * jnp.eye(2))
    expected = -0.5 * np.sum((values - 1.0) ** 2, -1) / 2.0 - np.log(2.0) - np.log(2 * np.pi)
    np.testing.assert_allclose(one.log_prob(values), expected, rtol=1e-10)
    cov, loc = spd(8, n=3), jnp.array([1.0, -2.0, 0.5])
    d = CovarianceNormal(loc, cov)
    assert d.event_shape == (3,) and d.batch_shape == ()
    n = 200_000
    draws = np.asarray(d.sample(jax.random.key(0), (n,)))
    assert draws.shape == (n, 3)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(draws.mean(0) - loc) < 5 * se_mean)
    sd = np.sqrt(np.diag(cov))
    se_cov = np.sqrt((np.outer(sd, sd) ** 2 + np.asarray(cov) ** 2) / n)  # Var of a product
    assert np.all(np.abs(np.cov(draws.T) - cov) < 5 * se_cov)
