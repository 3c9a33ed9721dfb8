"""Resampling: one implementation (blackjax's), for the particle filters and for weighted draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesplug.inference import _particles
from bayesplug.inference.resampling import systematic_resample

WEIGHTS = np.array([0.1, 0.0, 0.45, 0.2, 0.25])


def test_systematic_keeps_each_draw_floor_or_ceil_of_its_share():
    for seed in range(20):
        counts = np.bincount(
            systematic_resample(WEIGHTS, 40, np.random.default_rng(seed)), minlength=5
        )
        expected = 40 * WEIGHTS
        assert np.all(counts >= np.floor(expected)) and np.all(counts <= np.ceil(expected))
        assert counts[1] == 0  # a zero weight is never drawn


def test_systematic_is_reproducible_and_normalises():
    a = systematic_resample(3 * WEIGHTS, 100, np.random.default_rng(1))
    b = systematic_resample(WEIGHTS, 100, np.random.default_rng(1))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", [np.array([]), np.array([0.5, np.nan]), np.array([-1.0, 2.0]),
                                 np.zeros(3)])  # fmt: skip
def test_systematic_refuses_weights_it_cannot_resample(bad):
    with pytest.raises(ValueError, match="systematic_resample needs"):
        systematic_resample(bad, 4, np.random.default_rng(0))


def test_particle_resamplers_take_log_weights_and_jit():
    log_w = jnp.log(jnp.asarray(WEIGHTS) + 1e-30) + 123.0  # unnormalised, shifted
    idx = jax.jit(_particles.systematic, static_argnums=2)(jax.random.key(0), log_w, 40)
    counts = np.bincount(np.asarray(idx), minlength=5)
    assert idx.dtype == jnp.int32 and np.all(np.abs(counts - 40 * WEIGHTS) < 1)
    # multinomial: independent draws; counts over 20,000 within 5 binomial sds of n w
    idx = _particles.multinomial(jax.random.key(1), log_w, 20_000)
    counts = np.bincount(np.asarray(idx), minlength=5)
    sd = np.sqrt(20_000 * WEIGHTS * (1 - WEIGHTS))
    assert np.all(np.abs(counts - 20_000 * WEIGHTS) <= 5 * sd + 1e-9), counts
