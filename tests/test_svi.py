"""The ``svi`` backend's pure kernel (``init`` / ``build_kernel``): one step by hand, refusal of
non-finite steps, jit and vmap. The backend's statistical checks: test_api (funnel),
test_sparse_within_sparse_gp, test_checkpoint (resume), test_reliability."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import optax_to_numpyro

from bayesplug.inference import svi as svi_kernel


def _point_model(y):
    # no latent site: the ELBO is log N(y | mu, 1) exactly, its gradient in mu is y - mu
    mu = numpyro.param("mu", 0.0)
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _empty_guide(y):
    pass


def _svi(rate=0.1):
    return SVI(_point_model, _empty_guide, optax_to_numpyro(optax.sgd(rate)), Trace_ELBO())


def test_one_step_is_the_hand_computed_gradient_step():
    svi = _svi()
    state = svi_kernel.init(svi, jax.random.key(0), y=2.0)
    step = jax.jit(svi_kernel.build_kernel(svi))
    state, info = step(state, y=2.0)
    # ELBO at mu = 0: log N(2 | 0, 1); then mu <- 0 + 0.1 * (2 - 0)
    assert float(info.elbo) == pytest.approx(-2.0 - 0.5 * math.log(2 * math.pi), rel=1e-6)
    assert float(svi.get_params(state.svi_state)["mu"]) == pytest.approx(0.2, rel=1e-6)
    assert int(state.streak) == 0
    state, info = step(state, y=2.0)
    assert float(svi.get_params(state.svi_state)["mu"]) == pytest.approx(0.2 + 0.1 * 1.8)


def test_a_non_finite_step_is_refused_and_counted_until_the_streak_limit():
    svi = _svi()
    state = svi_kernel.init(svi, jax.random.key(0), y=2.0)
    step = jax.jit(svi_kernel.build_kernel(svi, max_skips=3))
    state, _ = step(state, y=2.0)
    for expected in (1, 2, 3, 3):
        state, info = step(state, y=jnp.nan)
        assert np.isnan(float(info.elbo))
        assert int(state.streak) == expected
        assert float(svi.get_params(state.svi_state)["mu"]) == pytest.approx(0.2)
        # the state before the last accepted update: mu = 0
        assert float(svi.get_params(state.previous)["mu"]) == 0.0
    # at the limit every step is refused, finite or not: the driver stops the run there
    state, info = step(state, y=2.0)
    assert np.isnan(float(info.elbo)) and int(state.streak) == 3


def test_the_kernel_vmaps_over_independent_problems():
    svi = _svi()
    ys = jnp.array([1.0, -2.0, 3.0])
    states = jax.vmap(lambda y: svi_kernel.init(svi, jax.random.key(0), y=y))(ys)
    step = svi_kernel.build_kernel(svi)
    states, info = jax.jit(jax.vmap(lambda s, y: step(s, y=y)))(states, ys)
    np.testing.assert_allclose(svi.get_params(states.svi_state)["mu"], 0.1 * ys, rtol=1e-6)
    np.testing.assert_allclose(info.elbo, -0.5 * ys**2 - 0.5 * math.log(2 * math.pi), rtol=1e-6)
