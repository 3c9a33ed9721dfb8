"""Burn-in adaptation of the SG-MCMC backends: a Laplace preconditioner at the mode and a step size
set by the mini-batch gradient noise.

SG-MCMC has no accept/reject step to adapt against, so the adaptation is worked out from the model
before the chains start (on by default: ``adapt=True``):

1. **Mode** m: L-BFGS (optax's ``lbfgs`` with its zoom line search) on the log density of a
   subsample of n = min(N, 4096) data whose log-likelihood is scaled by N / n (all the data when
   N ≤ 4096), at most 500 iterations. Quasi-Newton steps do not care how the covariates are
   scaled, which is the point: Adam moves every coordinate by ~ its learning rate per step.
2. **Scale** S with S Sᵀ = P⁻¹, P = −∇² log p̂(m) made positive definite (|eigenvalues|, floored
   at 10⁻¹⁰ of the largest): dense up to 500 parameters (``preconditioner="auto"``), else the
   diagonal 1/√P_jj. For structured SG-MCMC, the inverse of P's diagonal blocks (one per group):
   the covariance of the structured target's own Laplace approximation. The chains run in
   standardised coordinates z = S⁻¹(u − m), where the posterior is close to N(0, I): a constant
   preconditioner, which leaves the Langevin and SGHMC targets unchanged (Girolami & Calderhead
   2011; Ma, Chen & Fox 2015), as NUTS's mass matrix does for HMC.
3. **Gradient noise** V = max_j Var(ĝ_j), ĝ the mini-batch gradient in z (control variates and
   the structured scheme's buffer draws included), from 32 pairs of independent estimates at 32
   draws z ~ N(0, I): Var ≈ E[(ĝ₁ − ĝ₂)²] / 2.
4. **Step size**, δ = ``variance_tolerance`` (0.1), λ the largest eigenvalue of Sᵀ P S (1 when
   dense):

   * SGLD: ε = 2δ / (λ + V). On N(0, 1/λ) with gradient noise of variance V, the chain
     z ← z + ε ĝ + √(2ε) ξ has stationary variance (1 + εV/2) / (λ (1 − ελ/2)) = (1 + δ + O(δ²))/λ
     (Vollmer, Zygalakis & Teh 2016 give the general bias expansion).
   * SGHMC (blackjax's integrator, a fresh mini-batch every integration step): friction α = 2,
     critical damping of unit curvature, and ε = 2αδ / (V + 3λ). The noise adds εV/(2α) to the
     temperature (Chen, Fox & Guestrin 2014, sec. 3.2) and the Euler discretisation ~ελ/(2α);
     solving the discrete Lyapunov equation of the linear chain gives a variance within 1 + δ
     for every V ≥ 0 (8-10% at δ = 0.1).
   * pSGLD: ε √(λ + V), ε the SGLD step, since RMSprop divides by √E[ĝ²] ≈ √(λ + V).

The functions are pure and work on any ``log_density(u, data)``, so they can be used without the
backends.

Examples
--------
>>> import jax.numpy as jnp
>>> precision = jnp.array([[4.0, 1.0], [1.0, 2.0]])
>>> def log_density(u, data):
...     return -0.5 * u @ precision @ u
>>> mode, steps = find_mode(log_density, jnp.ones(2), {})
>>> scale, curvature = laplace_scale(log_density, mode, {}, "dense")
>>> bool(jnp.allclose(scale @ scale.T, jnp.linalg.inv(precision), atol=1e-5)), curvature
(True, 1.0)
>>> round(sgld_step_size(curvature, gradient_noise=0.0, tolerance=0.1), 3)
0.2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Adaptation",
    "find_mode",
    "gradient_noise",
    "laplace_scale",
    "psgld_step_size",
    "sghmc_step_size",
    "sgld_step_size",
    "standardised_gradient",
]

ADAPT_DATA = 4096  # the mode and the Hessian use at most this many data
MODE_ITERATIONS = 500
DENSE_MAX_DIM = 500  # 'auto' preconditioner: dense up to this many parameters
NOISE_PAIRS = 32
EIGEN_FLOOR = 1e-10
SGHMC_FRICTION = 2.0  # critical damping of unit curvature (in standardised coordinates)


class Adaptation(NamedTuple):
    """The outcome of the burn-in adaptation.

    Attributes
    ----------
    mode
        The mode m found (flat, unconstrained).
    scale
        S with S Sᵀ the preconditioner: (d, d), or (d,) for a diagonal one.
    curvature
        λ, the largest eigenvalue of the preconditioned precision Sᵀ P S.
    gradient_noise
        V, the largest variance of one coordinate of the mini-batch gradient in z.
    mode_iterations
        L-BFGS iterations used.
    """

    mode: np.ndarray
    scale: np.ndarray
    curvature: float
    gradient_noise: float
    mode_iterations: int

    def to_unconstrained(self, z: np.ndarray) -> np.ndarray:
        """u = m + S z for each row of ``z``."""
        z = np.asarray(z, dtype=float)
        if self.scale.ndim == 1:
            return self.mode + z * self.scale
        return self.mode + z @ self.scale.T


def find_mode(
    log_density: Callable, u0, data: Any, max_iterations: int = MODE_ITERATIONS
) -> tuple[jax.Array, int]:
    """A mode of ``log_density(u, data)`` by L-BFGS from ``u0``; returns ``(mode, iterations)``.

    Stops when the gradient norm falls below 10⁻⁶ (1 + |log density|), when a step leaves the
    log density non-finite (the last finite iterate is kept), or after ``max_iterations``.
    """
    import optax

    def loss(u):
        return -log_density(u, data)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def body(carry):
        u, state, i, _ = carry
        value, grad = value_and_grad(u, state=state)
        updates, new_state = solver.update(grad, state, u, value=value, grad=grad, value_fn=loss)
        new_u = optax.apply_updates(u, updates)
        finite = jnp.isfinite(loss(new_u)) & jnp.all(jnp.isfinite(new_u))
        converged = jnp.linalg.norm(grad) <= 1e-6 * (1.0 + jnp.abs(value))
        stop = converged | ~finite
        return jnp.where(finite, new_u, u), new_state, i + 1, stop

    def keep_going(carry):
        return (carry[2] < max_iterations) & ~carry[3]

    @jax.jit
    def solve(u0):
        carry = (u0, solver.init(u0), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
        u, _, i, _ = jax.lax.while_loop(keep_going, body, carry)
        return u, i

    mode, iterations = solve(jnp.asarray(u0))
    return mode, int(iterations)


def laplace_scale(
    log_density: Callable,
    mode,
    data: Any,
    kind: str = "auto",
    group_of: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """``(S, λ)``: S Sᵀ = P⁻¹ for P = −∇² log p at ``mode``, and λ_max(Sᵀ P S).

    ``kind`` is "dense", "diagonal" or "auto" (dense up to 500 parameters). ``group_of`` (the group
    of each coordinate, structured SG-MCMC) keeps only P's diagonal blocks. Negative or zero
    eigenvalues (a saddle, a flat direction) are replaced by their absolute values, floored at
    10⁻¹⁰ of the largest; a non-finite Hessian raises ``FloatingPointError``.
    """
    dim = int(np.size(mode))
    if kind == "auto":
        kind = "dense" if dim <= DENSE_MAX_DIM else "diagonal"

    def loss(u):
        return -log_density(u, data)

    if kind == "dense":
        precision = np.asarray(jax.jit(jax.hessian(loss))(mode), dtype=float)
        _check_finite(precision)
        precision = 0.5 * (precision + precision.T)
        groups = np.zeros(dim, int) if group_of is None else np.asarray(group_of)
        blocks = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        parts = [(i, *np.linalg.eigh(precision[np.ix_(i, i)])) for i in blocks]
        top = max(float(np.max(np.abs(values))) for _, values, _ in parts)
        scale = np.zeros((dim, dim))
        for index, values, vectors in parts:  # one eigh per block keeps S block-diagonal
            scale[np.ix_(index, index)] = vectors / np.sqrt(_floor(np.abs(values), top))
        return scale, 1.0

    def hvp(v):
        return jax.jvp(jax.grad(loss), (mode,), (v,))[1]

    diagonal = jax.jit(
        lambda: jax.lax.map(
            lambda j: hvp(jax.nn.one_hot(j, dim, dtype=mode.dtype))[j],
            jnp.arange(dim),
            batch_size=64,
        )
    )()
    diagonal = np.asarray(diagonal, dtype=float)
    _check_finite(diagonal)
    scale = 1.0 / np.sqrt(_floor(np.abs(diagonal), float(np.max(np.abs(diagonal), initial=0.0))))
    return scale, _largest_eigenvalue(hvp, jnp.asarray(scale, mode.dtype))


def _floor(values: np.ndarray, top: float) -> np.ndarray:
    if not top > 0:
        raise FloatingPointError("the log density has no curvature at the mode")
    return np.maximum(values, EIGEN_FLOOR * top)


def _check_finite(values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise FloatingPointError("the Hessian of the log density at the mode is not finite")


def _largest_eigenvalue(hvp: Callable, scale, iterations: int = 30) -> float:
    """λ_max of diag(s) P diag(s) by power iteration on Hessian-vector products."""

    @jax.jit
    def power(v):
        def body(v, _):
            w = scale * hvp(scale * v)
            return w / jnp.linalg.norm(w), None

        v, _ = jax.lax.scan(body, v / jnp.linalg.norm(v), None, length=iterations)
        return jnp.abs(v @ (scale * hvp(scale * v)))

    value = float(power(jnp.ones_like(scale)))
    return value if np.isfinite(value) and value > 0 else 1.0


def standardised_gradient(grad: Callable, mode, scale) -> Callable:
    """``grad_z(z, batch) = Sᵀ grad(m + S z, batch)``: the gradient in z = S⁻¹(u − m)."""
    mode = jnp.asarray(mode)
    scale = jnp.asarray(scale, mode.dtype)
    if scale.ndim == 1:
        return lambda z, batch: scale * grad(mode + scale * z, batch)
    return lambda z, batch: scale.T @ grad(mode + scale @ z, batch)


def gradient_noise(noisy_grad: Callable, dim: int, rng_key, data: Any) -> float:
    """V = max_j Var(ĝ_j) of ``noisy_grad(key, z, data)`` at draws z ~ N(0, I), from pairs of
    independent estimates at the same point (Var ≈ E[(ĝ₁ − ĝ₂)²] / 2)."""

    @jax.jit
    def estimate(rng_key, data):
        def pair(key):
            point_key, key1, key2 = jax.random.split(key, 3)
            z = jax.random.normal(point_key, (dim,))
            return 0.5 * (noisy_grad(key1, z, data) - noisy_grad(key2, z, data)) ** 2

        squares = jax.lax.map(pair, jax.random.split(rng_key, NOISE_PAIRS))
        return jnp.max(jnp.mean(squares, axis=0))

    value = float(estimate(rng_key, data))
    if not np.isfinite(value):
        raise FloatingPointError("the mini-batch gradients near the mode are not finite")
    return value


def sgld_step_size(curvature: float, gradient_noise: float, tolerance: float) -> float:
    """ε = 2δ / (λ + V): the SGLD variance inflated by about δ (see the module docstring)."""
    return 2.0 * tolerance / (curvature + gradient_noise)


def psgld_step_size(curvature: float, gradient_noise: float, tolerance: float) -> float:
    """The SGLD step times √(λ + V), the RMS of the gradient that pSGLD divides by."""
    return sgld_step_size(curvature, gradient_noise, tolerance) * float(
        np.sqrt(curvature + gradient_noise)
    )


def sghmc_step_size(
    curvature: float, gradient_noise: float, tolerance: float, friction: float
) -> float:
    """ε = 2αδ / (V + 3λ) for blackjax's SGHMC integrator (see the module docstring)."""
    return 2.0 * friction * tolerance / (gradient_noise + 3.0 * curvature)
