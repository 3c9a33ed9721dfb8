"""Kalman filter and Rauch–Tung–Striebel smoother for a time-varying linear-Gaussian chain.

The chain (Särkkä 2013, "Bayesian Filtering and Smoothing", §4.3 and §8.2):

    s_0 ~ N(m0, P0),   s_j | s_{j-1} ~ N(A_j s_{j-1}, Q_j),   y_j | s_j ~ N(H s_j, R_j),

with a transition per step (``A``, ``Q`` shaped (T, d, d); step 0's is not used) and an
observation covariance per step (``R`` (T, p, p)), as the Matérn chains of
:mod:`bayesplug.models.matern_sde` on irregular inputs need. Filter, for each j:

    predict  m⁻ = A_j m,  P⁻ = A_j P A_jᵀ + Q_j
    update   S = H P⁻ Hᵀ + R_j,  K = P⁻ Hᵀ S⁻¹,  m = m⁻ + K (y_j − H m⁻),  P = P⁻ − K S Kᵀ

and the smoother runs backwards with G = P_j A_{j+1}ᵀ (P⁻_{j+1})⁻¹. Pure functions over
NamedTuples, one ``lax.scan`` each; run them in float64 (``jax.enable_x64``).

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from bayesplug.models.kalman import kalman_filter, rts_smoother
>>> with jax.enable_x64(True):
...     eye = jnp.ones((3, 1, 1))
...     filtered = kalman_filter(jnp.zeros(1), jnp.eye(1), eye, 0 * eye, jnp.eye(1),
...                              jnp.array([[1.0], [1.0], [1.0]]), eye)
...     smoothed = rts_smoother(filtered, eye, 0 * eye)
>>> round(float(smoothed.mean[0, 0]), 6)  # a constant seen three times with unit noise: 3 / 4
0.75
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "FilterResult",
    "SmootherResult",
    "backward_sample",
    "information_filter",
    "kalman_filter",
    "rts_smoother",
    "sqrt_psd",
]


class FilterResult(NamedTuple):
    """Filtered means (T, d) and covariances (T, d, d), one-step predictions, log p(y)."""

    mean: jax.Array
    cov: jax.Array
    predicted_mean: jax.Array
    predicted_cov: jax.Array
    log_likelihood: jax.Array


class SmootherResult(NamedTuple):
    """Smoothed means (T, d), covariances (T, d, d) and lag-one cross-covariances
    Cov(s_{j+1}, s_j | y) (T - 1, d, d)."""

    mean: jax.Array
    cov: jax.Array
    cross_cov: jax.Array


def _symmetric(m):
    return 0.5 * (m + jnp.swapaxes(m, -1, -2))


def kalman_filter(m0, P0, A, Q, H, y, R) -> FilterResult:
    """Filter ``y`` (T, p) through the chain; see the module docstring for the recursions."""

    def step(carry, inputs):
        m, P, first = carry
        A_j, Q_j, y_j, R_j = inputs
        m_pred = jnp.where(first, m, A_j @ m)
        P_pred = jnp.where(first, P, _symmetric(A_j @ P @ A_j.T + Q_j))
        S = _symmetric(H @ P_pred @ H.T + R_j)
        chol = jnp.linalg.cholesky(S)
        residual = y_j - H @ m_pred
        gain = jax.scipy.linalg.cho_solve((chol, True), H @ P_pred).T
        m_new = m_pred + gain @ residual
        P_new = _symmetric(P_pred - gain @ S @ gain.T)
        white = jax.scipy.linalg.solve_triangular(chol, residual, lower=True)
        log_lik = -0.5 * (
            white @ white
            + 2 * jnp.sum(jnp.log(jnp.diag(chol)))
            + residual.shape[0] * jnp.log(2 * jnp.pi)
        )
        return (m_new, P_new, False), (m_new, P_new, m_pred, P_pred, log_lik)

    carry = (jnp.asarray(m0), jnp.asarray(P0), True)
    _, (m, P, m_pred, P_pred, log_lik) = jax.lax.scan(step, carry, (A, Q, y, R))
    return FilterResult(m, P, m_pred, P_pred, jnp.sum(log_lik))


def _backward_inputs(filtered: FilterResult, A) -> tuple:
    """Per step j < T: (m_j, P_j, m⁻_{j+1}, P⁻_{j+1}, A_{j+1}), what a backward pass reads."""
    return (
        filtered.mean[:-1],
        filtered.cov[:-1],
        filtered.predicted_mean[1:],
        filtered.predicted_cov[1:],
        A[1:],
    )


def rts_smoother(filtered: FilterResult, A, Q) -> SmootherResult:
    """Smooth a :func:`kalman_filter` result backwards (``A``, ``Q`` as given to the filter)."""
    del Q  # the one-step predictions already hold it

    def step(carry, inputs):
        m_next, P_next = carry
        m, P, m_pred_next, P_pred_next, A_next = inputs
        gain = jnp.linalg.solve(P_pred_next, A_next @ P).T  # P A^T (P^-)^-1, P^- symmetric
        m_s = m + gain @ (m_next - m_pred_next)
        P_s = _symmetric(P + gain @ (P_next - P_pred_next) @ gain.T)
        return (m_s, P_s), (m_s, P_s, P_next @ gain.T)

    last = (filtered.mean[-1], filtered.cov[-1])
    _, (m, P, cross) = jax.lax.scan(step, last, _backward_inputs(filtered, A), reverse=True)
    mean = jnp.concatenate([m, last[0][None]], axis=0)
    cov = jnp.concatenate([P, last[1][None]], axis=0)
    return SmootherResult(mean, cov, cross)


def information_filter(m0, P0, A, Q, H, precision, shift) -> FilterResult:
    """:func:`kalman_filter` for observations given as Gaussian factors in natural parameters.

    Step j multiplies the predicted state density by exp(−½ uᵀ Λ_j u + uᵀ η_j) with u = H s_j
    (``precision`` Λ (T, p, p), ``shift`` η (T, p)): a likelihood message, as expectation
    propagation sends, that may be singular (Λ = 0 is no observation). With B = H P⁻ Hᵀ:
    m = m⁻ + P⁻ Hᵀ (I + Λ B)⁻¹ (η − Λ H m⁻) and P = P⁻ − P⁻ Hᵀ (I + Λ B)⁻¹ Λ H P⁻, which needs
    no inverse of Λ. ``log_likelihood`` is not computed (NaN).
    """
    eye = jnp.eye(H.shape[0], dtype=jnp.result_type(P0, precision))

    def step(carry, inputs):
        m, P, first = carry
        A_j, Q_j, lam, eta = inputs
        m_pred = jnp.where(first, m, A_j @ m)
        P_pred = jnp.where(first, P, _symmetric(A_j @ P @ A_j.T + Q_j))
        PHt = P_pred @ H.T
        solve = jnp.linalg.solve(
            eye + lam @ H @ PHt,
            jnp.concatenate([(eta - lam @ H @ m_pred)[:, None], lam @ H @ P_pred], axis=1),
        )
        m_new = m_pred + PHt @ solve[:, 0]
        P_new = _symmetric(P_pred - PHt @ solve[:, 1:])
        return (m_new, P_new, False), (m_new, P_new, m_pred, P_pred)

    carry = (jnp.asarray(m0), jnp.asarray(P0), True)
    _, (m, P, m_pred, P_pred) = jax.lax.scan(step, carry, (A, Q, precision, shift))
    return FilterResult(m, P, m_pred, P_pred, jnp.asarray(jnp.nan))


def sqrt_psd(cov):
    """A square root L (L Lᵀ = cov) of symmetric positive semi-definite matrices (..., d, d),
    by eigendecomposition with round-off negatives clipped: defined where Cholesky is not."""
    eigval, eigvec = jnp.linalg.eigh(cov)
    return eigvec * jnp.sqrt(jnp.clip(eigval, 0.0))[..., None, :]


def backward_sample(rng_key, filtered: FilterResult, A, num_draws: int) -> jax.Array:
    """Joint draws (num_draws, T, d) of the whole chain given the observations (forward filtering,
    backward sampling: s_T from its filtered law, then s_j | s_{j+1} with gain
    G_j = P_j A_{j+1}ᵀ (P⁻_{j+1})⁻¹, mean m_j + G_j (s_{j+1} − m⁻_{j+1}), covariance
    P_j − G_j P⁻_{j+1} G_jᵀ)."""
    T, d = filtered.mean.shape
    noise = jax.random.normal(rng_key, (T, num_draws, d), dtype=filtered.mean.dtype)
    last = filtered.mean[-1] + noise[-1] @ sqrt_psd(filtered.cov[-1]).T

    def step(s_next, inputs):
        m, P, m_pred_next, P_pred_next, A_next, z = inputs
        gain = jnp.linalg.solve(P_pred_next, A_next @ P).T
        cov = _symmetric(P - gain @ P_pred_next @ gain.T)
        s = m + (s_next - m_pred_next) @ gain.T + z @ sqrt_psd(cov).T
        return s, s

    inputs = (*_backward_inputs(filtered, A), noise[:-1])
    _, rest = jax.lax.scan(step, last, inputs, reverse=True)
    return jnp.swapaxes(jnp.concatenate([rest, last[None]], axis=0), 0, 1)
