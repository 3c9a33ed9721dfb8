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
