"""Nested sampling's inner update from a bounding ellipsoid (an ``update_strategy`` for
``blackjax.nss``, option ``sampler="ellipsoid"`` of the ``nested`` backend).

The surviving live points are bounded by one ellipsoid E = {w : (w - m)ᵀ C⁻¹ (w - m) ≤ r² f}:
m and C their mean and covariance, r² the largest Mahalanobis distance among them and
f = enlarge^(2/D) (``enlarge`` the volume factor; Mukherjee, Parkinson & Liddle 2006, dynesty's
``bound="single"``, Speagle 2020). New points are proposed uniformly in E, all chains' proposals
evaluated in one batch per iteration, so a rejection costs a share of a vectorised evaluation
instead of a sequential slice step.

Coordinates. The backend's parameters z are unconstrained; the ellipsoid lives in
w = sigmoid(z) ∈ (0, 1)^D. For a ``Uniform(a, b)`` prior NumPyro's map to z is the logit of
(x - a) / (b - a), so w is exactly dynesty's unit cube, where the prior is uniform and the
contours of a peaked likelihood are compact; in z they stretch to infinity towards the prior's
edges and no ellipsoid bounds them (measured: under 1% acceptance for most of a D = 10 run).
Proposals outside the cube are redrawn before any likelihood is evaluated.

Correction. Where the prior density of w, π_w(w) = π(z) / (w (1 - w)), is not uniform (any
other prior), the proposal drives an independence Metropolis–Hastings chain (Tierney 1994) with
target π_w restricted to {L > L₀} ∩ E: a proposal inside the contour is accepted with
probability min(1, π_w(w') / π_w(w)) — for uniform priors, always. Every chain starts at a
surviving live point (a draw from that target when E bounds the contour) and makes a number of
iterations T fixed before it starts, so it stays a draw from the target (a stopping rule that
looked at the chains would not). T = ``num_moves`` / p̂, with p̂ the acceptance rate of one
pilot batch of proposals against fresh survivors, independent of the chains: each chain then
makes ``num_moves`` accepted moves on average and stays at its start with probability about
e^(−num_moves).

Fallback. A step whose pilot acceptance is under ``min_rate`` (a curved, multi-modal or
discrete-choice contour: the 13-D marginalised GP never exceeds 2%), or whose live points lie
where sigmoid(z) has lost the digits to map back (z > 12 in float32), is run by ``fallback``,
the slice chains. As in every bounding-region sampler, where E does not cover the contour the
new points miss the uncovered part (ln Z biased low): the enlargement is the margin.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._linalg import cholesky, solve_lower
from ._slice import SliceChainsInfo, alive_mask, draw_survivors

__all__ = ["ellipsoid_update"]

_MAX_ITERATIONS = 2_000  # bound on T (an acceptance rate under num_moves / 2,000 is capped)
# Live points beyond these hand the step to the slice sampler: at z = 12, 1 - sigmoid(z) = 6e-6
# is held to ~1% in float32 (spacing 6e-8 below 1), so w maps back to z within 0.01; further
# out those digits are gone. Near 0, sigmoid(z) keeps its relative precision (to z ~ -87).
_MAX_Z, _MIN_Z = 12.0, -30.0
_CANDIDATES = 8  # draws from the ellipsoid per proposal, to find one inside the cube


def _log_density_squashed(particle):
    """log prior density of w = sigmoid(z): log π(z) + Σ log |dz/dw|, dz/dw = 1 / (w (1 - w))."""
    z = particle.position
    jacobian = jnp.sum(jax.nn.softplus(z) + jax.nn.softplus(-z), axis=-1)
    return particle.logdensity + jacobian


def _bounding_ellipsoid(position, alive, enlarge: float):
    """Mean, Cholesky factor of the covariance and squared radius of the enlarged ellipsoid
    bounding the ``alive`` points of ``position`` (N, D)."""
    dim = position.shape[-1]
    weight = alive / alive.sum()
    mean = weight @ position
    centred = position - mean
    covariance = (centred * weight[:, None]).T @ centred
    # jitter: a collapsed direction (all live points equal in it) stays factorisable
    covariance = covariance + jnp.diag(1e-6 * jnp.diag(covariance) + 1e-12)
    factor = cholesky(covariance)  # plain JAX: no LAPACK call inside the run (``_linalg``)
    whitened = solve_lower(factor, centred.T)
    distance2 = jnp.where(alive > 0, jnp.sum(whitened**2, axis=0), 0.0)
    return mean, factor, jnp.max(distance2) * enlarge ** (2.0 / dim)


def _uniform_in_ellipsoid(key, mean, factor, radius2, num: int):
    """``num`` points uniform in E ∩ (0, 1)^D, E = {w : (w - m)ᵀ (L Lᵀ)⁻¹ (w - m) ≤ radius2},
    and whether each was found: rejection from E (no likelihood evaluated), redrawing the rows
    still outside the cube, at most ``_CANDIDATES`` rounds. A point not found is a rejected
    proposal (a move made with a probability that does not depend on the chain: still an
    invariant kernel)."""
    dim = mean.shape[0]

    def draw(key):
        k_dir, k_rad = jax.random.split(key)
        z = jax.random.normal(k_dir, (num, dim), mean.dtype)
        r = jax.random.uniform(k_rad, (num, 1), mean.dtype) ** (1.0 / dim)
        w = (
            mean
            + jnp.sqrt(radius2) * (r * z / jnp.linalg.norm(z, axis=-1, keepdims=True)) @ factor.T
        )
        return w, jnp.all((w > 0.0) & (w < 1.0), axis=-1)

    def redraw(carry):
        w, found, key, rounds = carry
        key, sub = jax.random.split(key)
        new, inside = draw(sub)
        take = ~found & inside
        return jnp.where(take[:, None], new, w), found | inside, key, rounds + 1

    def some_outside(carry):
        return ~jnp.all(carry[1]) & (carry[3] < _CANDIDATES)

    key, sub = jax.random.split(key)
    w, found = draw(sub)
    w, found, _, _ = jax.lax.while_loop(some_outside, redraw, (w, found, key, 1))
    return w, found


def ellipsoid_update(
    init_state_fn: Callable,
    num_moves: int,
    num_delete: int,
    fallback: Callable,
    enlarge: float = 1.5,
    min_rate: float = 0.1,
) -> Callable:
    """``update_fn(rng_key, state, loglikelihood_0, covariance_factor)`` for
    ``blackjax.nss(..., update_strategy=...)``: ``num_delete`` independence Metropolis–Hastings
    chains with proposals uniform in the enlarged bounding ellipsoid of the surviving live
    points, ``num_moves`` expected accepted moves each (see the module docstring). Returns the
    new particles (birth contour ``loglikelihood_0``) and a
    :class:`~bayesplug.inference._slice.SliceChainsInfo` (every evaluation counted as
    ``num_shrink``, the pilot's included; ``num_accepted`` the chain's accepted moves).
    """

    def evaluate(proposal, loglikelihood_0):
        """Particles at the squashed points ``w`` (N, D); those not found: rejected."""
        w, in_cube = proposal
        w = jnp.where(in_cube[:, None], w, 0.5)  # evaluated, then rejected
        z = jnp.log(w) - jnp.log1p(-w)
        new = jax.vmap(lambda p: init_state_fn(p, loglikelihood_birth=loglikelihood_0))(z)
        return new._replace(loglikelihood=jnp.where(in_cube, new.loglikelihood, -jnp.inf))

    def accepts(key, candidate, current, loglikelihood_0):
        log_u = jnp.log(jax.random.uniform(key, current.logdensity.shape, current.logdensity.dtype))
        inside = candidate.loglikelihood > loglikelihood_0
        log_ratio = _log_density_squashed(candidate) - _log_density_squashed(current)
        return inside & (log_u < log_ratio)

    def update_fn(rng_key, state, loglikelihood_0, covariance_factor):
        k_start, k_pilot_start, k_loop, k_fallback = jax.random.split(rng_key, 4)
        particles = state.particles
        dtype = particles.position.dtype
        alive = alive_mask(particles, loglikelihood_0, dtype)
        squashed = jax.nn.sigmoid(particles.position)
        mean, factor, radius2 = _bounding_ellipsoid(squashed, alive, enlarge)
        live_z = jnp.where(alive[:, None] > 0, particles.position, 0.0)
        in_range = (jnp.max(live_z) < _MAX_Z) & (jnp.min(live_z) > _MIN_Z)

        def survivor(key):
            return draw_survivors(key, particles, alive, num_delete)

        def pick(flag, new, old):
            return jax.tree.map(
                lambda n, o: jnp.where(flag.reshape(flag.shape + (1,) * (n.ndim - 1)), n, o),
                new,
                old,
            )

        def body(carry):
            """Iteration 0, the pilot: the acceptance rate of fresh proposals against fresh
            survivors fixes the number of MH iterations T (0: the slice sampler's step).
            Iterations 1..T: one MH step of every chain, all proposals evaluated in one batch."""
            current, accepted, key, i, num_iterations = carry
            key, k_x, k_u = jax.random.split(key, 3)
            proposal = _uniform_in_ellipsoid(k_x, mean, factor, radius2, num_delete)
            candidate = evaluate(proposal, loglikelihood_0)
            is_pilot = i == 0
            against = pick(jnp.broadcast_to(is_pilot, (num_delete,)), pilot_start, current)
            move = accepts(k_u, candidate, against, loglikelihood_0)
            pilot_rate = jnp.maximum(jnp.mean(move), 0.5 / num_delete)
            planned = jnp.ceil(num_moves / pilot_rate).clip(1, _MAX_ITERATIONS).astype(jnp.int32)
            planned = jnp.where((pilot_rate >= min_rate) & in_range, planned, 0)
            num_iterations = jnp.where(is_pilot, planned, num_iterations)
            move = move & ~is_pilot
            return pick(move, candidate, current), accepted + move, key, i + 1, num_iterations

        def more(carry):
            i, num_iterations = carry[3], carry[4]
            return (i == 0) | (i <= num_iterations)

        start, pilot_start = survivor(k_start), survivor(k_pilot_start)
        zeros = jnp.zeros(num_delete, jnp.int32)
        carry = (start, zeros, k_loop, jnp.int32(0), jnp.int32(0))
        current, accepted, _, _, num_iterations = jax.lax.while_loop(more, body, carry)

        def from_the_ellipsoid(_):
            new = current._replace(
                loglikelihood_birth=jnp.full_like(current.loglikelihood_birth, loglikelihood_0)
            )
            evaluations = jnp.full(num_delete, num_iterations + 1, jnp.int32)
            return new, SliceChainsInfo(zeros, evaluations, accepted)

        def by_the_fallback(_):
            new, info = fallback(k_fallback, state, loglikelihood_0, covariance_factor)
            return new, info._replace(num_shrink=info.num_shrink + 1)  # the pilot's evaluation

        return jax.lax.cond(num_iterations > 0, from_the_ellipsoid, by_the_fallback, None)

    return update_fn
