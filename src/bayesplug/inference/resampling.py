"""Turning weighted draws into equal-weight ones (nested sampling, importance-weighted VI).

One implementation of each scheme: blackjax's (``blackjax.smc.resampling``), which the particle
filters use too (:mod:`bayesplug.inference._particles`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["systematic_resample"]


def systematic_resample(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``size`` draws by systematic resampling of ``weights`` (normalised here).

    One uniform offset, ``size`` evenly spaced points through the weights' CDF: each draw ``i`` is
    kept ``floor(size w_i)`` or ``ceil(size w_i)`` times (Kitagawa 1996), the least noisy of the
    standard schemes. blackjax's ``systematic``, in float64 (tens of thousands of nested-sampling
    weights summed in float32 would shift the CDF), keyed from ``rng``.

    Examples
    --------
    >>> import numpy as np
    >>> idx = systematic_resample(np.array([0.5, 0.25, 0.25]), 4, np.random.default_rng(0))
    >>> np.bincount(idx, minlength=3).tolist()   # exactly size * w of each
    [2, 1, 1]
    """
    import jax
    import jax.numpy as jnp
    from blackjax.smc import resampling

    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0 or not np.all(np.isfinite(weights)):
        raise ValueError("systematic_resample needs a 1-D array of finite weights.")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("systematic_resample needs non-negative weights with a positive sum.")
    key = jax.random.key(int(rng.integers(2**62)))
    with jax.enable_x64(True):
        index = resampling.systematic(key, jnp.asarray(weights / weights.sum()), size)
        return np.asarray(index, dtype=np.int64)
