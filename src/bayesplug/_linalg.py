"""Small dense factorisations written in plain JAX (``lax.fori_loop``), no LAPACK calls.

Why not ``jnp.linalg.cholesky``: on CPU (jax 0.10), vmapped LAPACK custom calls inside a
``lax.scan`` (a training step, a particle filter's time loop) stalled XLA for good once the
matrices reached 16 x 16 in float64. These loops are O(n³) like LAPACK, fine for the small
matrices (inducing subsets, state covariances) they are used on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cholesky", "solve_lower", "solve_upper"]


def cholesky(a):
    """Lower Cholesky factor of a symmetric positive-definite ``a`` (NaN where it is not)."""
    n = a.shape[-1]
    index = jnp.arange(n)

    def column(j, factor):
        s = a[:, j] - factor @ factor[j]  # columns >= j of factor are still zero
        d = jnp.sqrt(s[j])
        return factor.at[:, j].set(jnp.where(index > j, s / d, jnp.where(index == j, d, 0.0)))

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def solve_lower(factor, b):
    """``factor⁻¹ b`` for lower-triangular ``factor`` (forward substitution; b vector or matrix)."""
    n = factor.shape[-1]

    def row(i, x):
        return x.at[i].set((b[i] - factor[i] @ x) / factor[i, i])

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))


def solve_upper(factor, b):
    """``factor⁻ᵀ b`` for lower-triangular ``factor`` (back substitution with its transpose)."""
    n = factor.shape[-1]

    def row(k, x):
        i = n - 1 - k
        return x.at[i].set((b[i] - factor[:, i] @ x) / factor[i, i])

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))
