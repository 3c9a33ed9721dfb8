"""Matérn Gaussian processes on a line as linear SDEs, discretised on sorted inputs.

A stationary Matérn GP with smoothness ν = p + 1/2 is the first coordinate of a p + 1 dimensional
linear SDE ``ds = F s dt + L dβ`` (Hartikainen & Särkkä 2010, "Kalman filtering and smoothing
solutions to temporal Gaussian process regression models"; Solin 2016, thesis §4.2). With
λ = √(2ν) / ℓ and the state ``s = (f, f', …)``:

- ν = 1/2: F = [−λ], P∞ = [σ²]
- ν = 3/2: F = [[0, 1], [−λ², −2λ]], P∞ = diag(σ², λ²σ²)
- ν = 5/2: F = [[0, 1, 0], [0, 0, 1], [−λ³, −3λ², −3λ]],
  P∞ = [[σ², 0, −λ²σ²/3], [0, λ²σ²/3, 0], [−λ²σ²/3, 0, λ⁴σ²]]

where P∞ is the stationary covariance (F P∞ + P∞ Fᵀ + L q Lᵀ = 0). Between consecutive inputs
t_{j-1} < t_j the chain is exact: s_j | s_{j-1} ~ N(A_j s_{j-1}, Q_j) with A_j = expm(F Δ_j) and
Q_j = P∞ − A_j P∞ A_jᵀ, and Cov(f(t + Δ), f(t)) = H expm(F Δ) P∞ Hᵀ is the Matérn covariance
k(Δ) itself. The functional Tucker model (Fang et al., ICLR 2024) puts this prior on each latent
factor function, so that inference over U unique inputs costs O(U) rather than O(U³).

Examples
--------
>>> import jax, numpy as np
>>> from bayesplug.models.matern_sde import matern_sde, discretise
>>> with jax.enable_x64(True):
...     sde = matern_sde("matern32", lengthscale=0.5, variance=2.0)
...     A, Q = discretise(sde, np.array([0.3]))
...     k = float((sde.H @ A[0] @ sde.P_inf @ sde.H.T)[0, 0])
>>> lam = np.sqrt(3) * 0.3 / 0.5  # Matérn-3/2: σ² (1 + √3 Δ/ℓ) exp(−√3 Δ/ℓ)
>>> bool(abs(k - 2.0 * (1 + lam) * np.exp(-lam)) < 1e-12)
True
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["MATERN_SDE_KERNELS", "MaternSDE", "discretise", "matern_sde", "stationary_bridge"]

MATERN_SDE_KERNELS = ("matern12", "matern32", "matern52")


class MaternSDE(NamedTuple):
    """A Matérn GP as a linear SDE: drift ``F`` (d, d), stationary covariance ``P_inf`` (d, d),
    and ``H`` (1, d) reading the function value off the state."""

    F: jax.Array
    P_inf: jax.Array
    H: jax.Array


def matern_sde(kernel: str, lengthscale, variance) -> MaternSDE:
    """The SDE of a Matérn-1/2, -3/2 or -5/2 kernel with the given lengthscale and variance.

    ``lengthscale`` and ``variance`` may be traced values (sampled inside a NumPyro program).
    """
    if kernel not in MATERN_SDE_KERNELS:
        from ..errors import InputError, did_you_mean

        hint = did_you_mean(kernel, MATERN_SDE_KERNELS)
        raise InputError("kernel", f"{kernel!r} has no state-space form here.", hint)
    ell = jnp.asarray(lengthscale)
    s2 = jnp.asarray(variance)
    zero = jnp.zeros_like(ell * s2)
    if kernel == "matern12":
        lam = 1.0 / ell
        F = jnp.array([[-lam]])
        P = jnp.array([[s2]])
    elif kernel == "matern32":
        lam = jnp.sqrt(3.0) / ell
        F = jnp.array([[zero, 1.0 + zero], [-(lam**2), -2.0 * lam]])
        P = jnp.array([[s2, zero], [zero, lam**2 * s2]])
    else:
        lam = jnp.sqrt(5.0) / ell
        c = lam**2 * s2 / 3.0
        F = jnp.array(
            [[zero, 1.0 + zero, zero], [zero, zero, 1.0 + zero], [-(lam**3), -3 * lam**2, -3 * lam]]
        )
        P = jnp.array([[s2, zero, -c], [zero, c, zero], [-c, zero, lam**4 * s2]])
    H = jnp.zeros((1, F.shape[0]), F.dtype).at[0, 0].set(1.0)
    return MaternSDE(F, P, H)


def discretise(sde: MaternSDE, deltas) -> tuple[jax.Array, jax.Array]:
    """Exact transitions over the gaps ``deltas`` (n,) >= 0: ``A`` (n, d, d) and ``Q`` (n, d, d).

    A = expm(F Δ), Q = P∞ − A P∞ Aᵀ (symmetrised; a zero gap gives A = I, Q = 0).
    """
    deltas = jnp.asarray(deltas)
    # sequential batches: thousands of batched expm calls at once stalled XLA on CPU here
    A = jax.lax.map(lambda d: jax.scipy.linalg.expm(sde.F * d), deltas, batch_size=256)
    Q = sde.P_inf - A @ sde.P_inf @ jnp.swapaxes(A, -1, -2)
    return A, 0.5 * (Q + jnp.swapaxes(Q, -1, -2))


def stationary_bridge(sde: MaternSDE, left_gap, right_gap):
    """Conditional of the state at a point given the states at gaps ``left_gap`` before it and
    ``right_gap`` after it (``jnp.inf`` for no neighbour on that side).

    Returns ``(W_left, W_right, cov)`` with s | s_left, s_right ~ N(W_left s_left + W_right s_right,
    cov). Built from the stationary joint law, so it is symmetric positive semi-definite on both
    sides, also before the first input (where the authors' code used A⁻¹, which is not).
    """
    P = sde.P_inf
    d = P.shape[0]
    # Cov(s(t), s(t - a)) = expm(F a) P;  Cov(s(t), s(t + b)) = P expm(F b)^T
    has_left, has_right = jnp.isfinite(left_gap), jnp.isfinite(right_gap)
    A_l = jax.scipy.linalg.expm(sde.F * jnp.where(has_left, left_gap, 0.0))
    A_r = jax.scipy.linalg.expm(sde.F * jnp.where(has_right, right_gap, 0.0))
    cross_l = jnp.where(has_left, A_l @ P, jnp.zeros_like(P))  # Cov(s, s_left)
    cross_r = jnp.where(has_right, P @ A_r.T, jnp.zeros_like(P))  # Cov(s, s_right)
    # Cov(s_right, s_left) = expm(F (a + b)) P
    A_lr = jax.scipy.linalg.expm(sde.F * jnp.where(has_left & has_right, left_gap + right_gap, 0.0))
    cross_lr = jnp.where(has_left & has_right, A_lr @ P, jnp.zeros_like(P))
    eye = jnp.eye(d, dtype=P.dtype)
    # neighbours that are absent get an identity block with no correlation (weight 0)
    P_l = jnp.where(has_left, P, eye)
    P_r = jnp.where(has_right, P, eye)
    joint = jnp.block([[P_l, cross_lr.T], [cross_lr, P_r]])
    cross = jnp.concatenate([cross_l, cross_r], axis=1)
    weights = jnp.linalg.solve(joint, cross.T).T
    cov = P - weights @ cross.T
    return weights[:, :d], weights[:, d:], 0.5 * (cov + cov.T)
