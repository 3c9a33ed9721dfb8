"""Turning weighted draws into equal-weight ones (nested sampling, importance-weighted VI).

One scheme, blackjax's systematic resampling (``blackjax.smc.resampling.systematic``, which the
particle filters use inside their compiled programs, :mod:`bayesplug.inference._particles`),
mirrored here in NumPy for post-processing outside them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["systematic_resample"]


def systematic_resample(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``size`` draws by systematic resampling of ``weights`` (normalised here).

    One uniform offset, ``size`` evenly spaced points through the weights' CDF: each draw ``i`` is
    kept ``floor(size w_i)`` or ``ceil(size w_i)`` times (Kitagawa 1996), the least noisy of the
    standard schemes. blackjax's ``systematic`` (same offset from the same key, same CDF search
    and clipping) in float64 NumPy: tens of thousands of nested-sampling weights summed in float32
    would shift the CDF, and JAX run eagerly compiled each operation anew for every length of
    ``weights`` — 0.4 s of every nested fit (2026-12-04), against well under 1 ms here.

    Examples
    --------
    >>> import numpy as np
    >>> idx = systematic_resample(np.array([0.5, 0.25, 0.25]), 4, np.random.default_rng(0))
    >>> np.bincount(idx, minlength=3).tolist()   # exactly size * w of each
    [2, 1, 1]
    """
    import jax
    import jax.numpy as jnp

    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0 or not np.all(np.isfinite(weights)):
        raise ValueError("systematic_resample needs a 1-D array of finite weights.")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("systematic_resample needs non-negative weights with a positive sum.")
    key = jax.random.key(int(rng.integers(2**62)))
    with jax.enable_x64(True):  # blackjax's offset: one scalar draw (one compilation a process)
        offset = float(jax.random.uniform(key, (), jnp.float64))
    cdf = np.cumsum(weights / weights.sum())
    index = np.searchsorted(cdf, (np.arange(size, dtype=np.float64) + offset) / size)
    return np.clip(index, 0, weights.size - 1).astype(np.int64)
