"""The plug-in backend of docs/plugins.md (examples/rwm_backend.py): kernel and end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp
from bayesplug import registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from rwm_backend import RandomWalkMetropolis, RWMState, build_kernel, init  # noqa: E402

Y = np.array([0.9, 1.1, 1.3])
POST_MEAN, POST_SD = 3.3 / 3.01, 1.0 / np.sqrt(3.01)  # N(0, 10^2) prior, unit noise


def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture
def rwm():
    bp.register_backend("rwm", RandomWalkMetropolis)
    yield "rwm"
    registry._REGISTERED[registry.BACKEND_GROUP].pop("rwm")


def test_one_kernel_step_against_a_hand_computed_value():
    def log_density(x):
        return -0.5 * jnp.sum(x**2)

    step = jax.jit(build_kernel(log_density, 0.5))
    key = jax.random.PRNGKey(1)
    state = init(jnp.array([1.0, -1.0]), log_density)
    new, info = step(key, state)
    move_key, accept_key = jax.random.split(key)
    proposal = state.position + 0.5 * jax.random.normal(move_key, (2,))
    ratio = np.exp(float(log_density(proposal) - state.log_density))
    accept = float(jax.random.uniform(accept_key)) < ratio
    expected = proposal if accept else state.position
    np.testing.assert_allclose(new.position, expected, rtol=1e-6)
    np.testing.assert_allclose(info.acceptance_rate, min(1.0, ratio), rtol=1e-5)
    # vmap over chains: each row is the single-chain step with its own key
    keys = jax.random.split(key, 3)
    states = RWMState(jnp.ones((3, 2)), jnp.full(3, log_density(jnp.ones(2))))
    batched, _ = jax.vmap(step)(keys, states)
    single = step(keys[2], RWMState(jnp.ones(2), log_density(jnp.ones(2))))[0]
    np.testing.assert_allclose(batched.position[2], single.position, rtol=1e-6)


def test_the_plugin_backend_recovers_a_conjugate_posterior(rwm):
    fit = bp.fit(model, {"y": Y}, method=rwm, scale=1.0, seed=0, progress=False)
    mu = fit.idata.posterior["mu"].values
    assert mu.shape == (4, 2000)
    # ESS ~ 1,500 of 8,000 draws at acceptance ~0.5: MC sd of the mean ~0.015, of the sd ~2%
    ess = float(fit.summary().loc["mu", "ess_bulk"])
    assert ess > 800
    assert abs(mu.mean() - POST_MEAN) < 4 * POST_SD / np.sqrt(ess)
    assert abs(mu.std() / POST_SD - 1.0) < 4 / np.sqrt(2 * ess)


def test_the_plugin_backend_is_resumable_with_no_code_of_its_own(rwm, tmp_path):
    path = str(tmp_path / "rwm.ckpt")
    options = {"num_warmup": 10, "seed": 2}  # the first chunk (150 steps) holds draws
    straight = bp.fit(model, {"y": Y}, method=rwm, **options)
    with pytest.warns(bp.errors.InterruptedRunWarning):
        bp.fit(model, {"y": Y}, method=rwm, checkpoint=path, max_time=1e-9, **options)
    resumed = bp.fit(model, {"y": Y}, method=rwm, resume=path, **options)
    np.testing.assert_array_equal(resumed.samples["mu"], straight.samples["mu"])
