"""One kernel catalogue: the closed-form formulas (``covariance_1d``, used by the marginalised GP)
and the gpjax kernels (used by ``gp`` and the sparse GP) compute the same covariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesplug.errors import InputError
from bayesplug.models.kernels import KERNELS, build_kernel, covariance_1d

PARAMS = {"amplitude": 1.7, "lengthscale": 0.6, "alpha": 1.3, "period": 0.9, "constant": 0.4}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_the_formula_and_the_gpjax_kernel_agree(name):
    x = np.linspace(-1.3, 2.1, 9)
    z = np.linspace(-0.7, 1.9, 5)
    p = {h: PARAMS[h] for h in KERNELS[name].hyperparameters}
    with jax.enable_x64(True):
        kernel = build_kernel([name], [p])
        expected = kernel.cross_covariance(jnp.asarray(x)[:, None], jnp.asarray(z)[:, None])
        got = covariance_1d(name, p, jnp.asarray(x), jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-10, atol=1e-12)


def test_hand_computed_values():
    """One value per formula, by hand (d = 0.5, lengthscale 0.5: r = 1)."""
    x1, x2 = jnp.array([0.0]), jnp.array([0.5])
    p = {"amplitude": 2.0, "lengthscale": 0.5, "period": 2.0}
    value = {n: float(covariance_1d(n, p, x1, x2)[0, 0]) for n in ("rbf", "matern72", "periodic")}
    assert value["rbf"] == pytest.approx(4 * np.exp(-0.5))
    r7 = np.sqrt(7.0)
    assert value["matern72"] == pytest.approx(4 * (1 + r7 + 14 / 5 + 7 * r7 / 15) * np.exp(-r7))
    # MacKay: exp(-2 sin^2(pi d / period) / l^2) = exp(-2 * 0.5 / 0.25)
    assert value["periodic"] == pytest.approx(4 * np.exp(-4.0), rel=1e-6)


def test_an_unknown_kernel_is_named():
    with pytest.raises(InputError, match="matern32"):
        covariance_1d("matern23", PARAMS, jnp.zeros(2), jnp.zeros(2))
