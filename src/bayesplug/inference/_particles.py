"""The particle system shared by ``paris`` and ``ppg``: one (conditional) PaRIS pass.

Implements the PaRIS smoother of Olsson & Westerborn, "Efficient particle-based online smoothing
in general hidden Markov models: the PaRIS algorithm" (Bernoulli 23(3), 2017), and its
conditional version driven by a frozen reference path, the building block of Parisian particle
Gibbs (Cardoso, Janati El Idrissi, Le Corff, Moulines & Olsson, ICML 2023). No JAX library has
either; this is written from the papers.

One pass over t = 0 … T-1 (``lax.scan`` over time, ``vmap`` over particles):

1. bootstrap filter: resample (systematic; multinomial for the free particles of a conditional
   pass), propagate through the transition, weight by the emission density; in a conditional
   pass slot 0 holds the reference path's state;
2. for each particle i, Ñ backward indices J ~ Λ_t(i, ℓ) ∝ ω_t^ℓ q(ξ_{t+1}^i | ξ_t^ℓ), drawn
   exactly (O(N²)) or by rejection with a bounded number of trials from Cat(ω_t) accepted with
   probability q / sup q, the rows that found none falling back to the exact draw (Dau & Chopin
   2022's hybrid), so the draw is exact either way;
3. statistics τ_{t+1}^i = (1/Ñ) Σ_j [τ_t^{J_ij} + h̃_t(ξ_t^{J_ij}, ξ_{t+1}^i)] for each additive
   functional; the estimate at T-1 is Σ_i ω^i τ^i / Σ_i ω^i.

Inside :func:`~bayesplug.inference.driver.using_devices` the particles are split over the
devices (:func:`~bayesplug.inference.driver.split_over_devices`): the same draws as on one.
Memory is O(N) per step unless paths are kept (``keep_paths``: the particles and backward
indices of every step, from which smoothing trajectories are traced — the new reference of PPG).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc import resampling
from jax.scipy.special import logsumexp

from .driver import split_over_devices

__all__ = [
    "FilterState",
    "Functional",
    "finish",
    "make_pass",
    "PassResult",
    "builtin_functional",
    "particle_pass",
    "trace_paths",
]


class Functional(NamedTuple):
    """An additive functional h(x_{0:T-1}) = h_0(x_0) + Σ_{t≥1} h̃_t(x_{t-1}, x_t).

    ``init(x0) -> pytree`` and ``step(x_prev, x, t) -> pytree`` (same structure).
    """

    init: Callable
    step: Callable


class PassResult(NamedTuple):
    """Outcome of one (conditional) PaRIS pass."""

    estimate: Any  # Σ_i W_i τ_i at the last step, per functional
    log_likelihood: jax.Array  # the filter's estimate of log p(y_{0:T-1})
    log_increments: jax.Array  # (T,) log p̂(y_t | y_{0:t-1})
    log_weights: jax.Array  # (N,) at the last step
    particles: jax.Array | None  # (T, N, dx) when paths are kept
    backward: jax.Array | None  # (T-1, N, Ñ) backward indices into step t, for step t+1
    acceptance: jax.Array  # mean acceptance of the rejection sampler (1.0 when exact)


def _normalised_cdf(log_weights):
    w = jnp.exp(log_weights - jnp.max(log_weights))
    cdf = jnp.cumsum(w)
    return cdf / cdf[-1]


def _draw_from(cdf, uniforms):
    """Inverse-CDF draws (any shape of uniforms): the rejection sampler's candidates.

    The search runs over the uniforms flattened: on CPU a PaRIS step at N = 500 whose search
    ran over a (500, 2, 2) array took 2.6× as long as with the same 2,000 uniforms in one axis,
    and with a (1,000, 12) array 3.8× as long.
    """
    found = jnp.searchsorted(cdf, uniforms.ravel()).reshape(uniforms.shape)
    return jnp.minimum(found, cdf.shape[0] - 1).astype(jnp.int32)


def _normalised(log_weights):
    w = jnp.exp(log_weights - jnp.max(log_weights))
    return w / jnp.sum(w)


def systematic(key, log_weights, num: int):
    """Systematic resampling: ``num`` ancestor indices (blackjax's, from log-weights)."""
    return resampling.systematic(key, _normalised(log_weights), num).astype(jnp.int32)


def multinomial(key, log_weights, num: int):
    """Multinomial resampling (blackjax's: independent draws, returned in sorted order)."""
    return resampling.multinomial(key, _normalised(log_weights), num).astype(jnp.int32)


def categorical_rows(key, logits, num: int):
    """``num`` draws per row of unnormalised ``logits`` (rows, N), by inverse CDF in two levels.

    One uniform per draw (Gumbel-max would need N per draw: the cost of the exact backward
    sampler on CPU is mostly random numbers otherwise). A row's N weights are cut into blocks of
    b = ⌈√N⌉: the uniform, on (0, total], picks a block from the running sums of the block
    totals, then an index from the running sums of that block's b weights, both by binary
    search. The running sums are products with a triangular matrix of ones: a zero weight adds
    the same zero products to its running sum as to the one before, so the two are equal and
    the search (first running sum ≥ a positive number) never lands on it. Measured on CPU over
    (1,000, 1,000) logits, 2 draws a row: one level (``jnp.cumsum`` along each row, XLA's
    reduce-window) 5.0 ms, these two levels 1.3-1.5 ms (2.1 ms with ``cumsum`` for the two
    levels' running sums). The rejection sampler's fallback rows are the same computation.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> logits = jnp.log(jnp.asarray([[0.0, 1.0, 3.0], [1.0, 0.0, 0.0]]))
    >>> draws = categorical_rows(jax.random.key(0), logits, 4)
    >>> draws.shape, bool(jnp.all(draws[0] > 0)), bool(jnp.all(draws[1] == 0))
    ((2, 4), True, True)
    """
    w = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    rows, n = w.shape
    width = math.isqrt(n - 1) + 1  # b = ⌈√N⌉
    blocks = -(-n // width)
    w = jnp.pad(w, ((0, 0), (0, blocks * width - n))).reshape(rows, blocks, width)
    block_cdf = jnp.sum(w, axis=-1) @ jnp.triu(jnp.ones((blocks, blocks), w.dtype))  # (rows, B)
    u = (1.0 - jax.random.uniform(key, (rows, num), w.dtype)) * block_cdf[:, -1:]  # (0, total]
    block = jnp.minimum(jax.vmap(jnp.searchsorted)(block_cdf, u), blocks - 1)
    below = jnp.take_along_axis(block_cdf, jnp.maximum(block - 1, 0), axis=1)
    inner = jnp.take_along_axis(w, block[..., None], axis=1)  # (rows, num, b)
    inner_cdf = inner @ jnp.triu(jnp.ones((width, width), w.dtype))
    # where u falls within its block (> 0), at most the block's own running total
    rest = jnp.minimum(u - jnp.where(block > 0, below, 0.0), inner_cdf[..., -1])
    within = jnp.minimum(jax.vmap(jax.vmap(jnp.searchsorted))(inner_cdf, rest), width - 1)
    return jnp.minimum(block * width + within, n - 1).astype(jnp.int32)


def _backward_logits(log_q, x_prev, log_w, x_rows):
    """Backward-kernel logits per particle ξ^i of ``x_rows``: log ω_t^ℓ + log q(ξ^i | ξ_t^ℓ)."""
    return log_w[None, :] + jax.vmap(lambda xi: jax.vmap(lambda xl: log_q(xl, xi))(x_prev))(x_rows)


def _exact_backward(key, log_q, x_prev, log_w, x_new, num_backward: int):
    """Exact draws from the (N, N) backward kernel; Ñ per row."""
    logits = _backward_logits(log_q, x_prev, log_w, x_new)
    return categorical_rows(key, logits, num_backward), jnp.asarray(1.0)


_FIRST_ROUND = 4  # candidates per index in the first rejection round (all indices)
_RETRY_ROUND = 28  # candidates per still-pending index in each later round


def _rejection_backward(
    key, log_q, x_prev, log_w, x_new, num_backward: int, log_bound, max_trials: int
):
    """Bounded-trials rejection sampler with exact fallback (an exact draw overall).

    Candidates from Cat(ω_t) are accepted with probability q / sup q (PaRIS's sampler). A first
    round tries 4 candidates for every index; the indices still pending are gathered (a static
    block of at most N Ñ / 8) and given up to 28 more at once, until each has found one or tried
    ``max_trials`` (Dau & Chopin 2022's hybrid); the rest are drawn exactly, 16 at a time. With
    the default 32 trials that is one retry round: on CPU a round's fixed cost (compaction,
    scatters, the loop) outweighs the candidates it would save by retrying 8 at a time.
    In float64 one uniform per candidate serves twice: it picks the candidate by inverse CDF,
    and its place within that candidate's CDF bin is the acceptance uniform (independent of the
    candidate). The random numbers come from XLA's counter-based generator (an ``rbg`` key
    seeded from ``key``): on CPU, JAX's default threefry is a rolled loop that cost about a fifth
    of this sampler's time (a PaRIS step at N = 500: 0.49 ms with threefry, 0.39 ms with rbg).
    Returns the indices and the fraction found by rejection.
    """
    n = x_new.shape[0]
    size = n * num_backward
    key = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")
    k_first, k_rounds, k_exact = jax.random.split(key, 3)
    cdf = _normalised_cdf(log_w)
    rows = jnp.repeat(jnp.arange(n), num_backward)  # the particle i of each flat index
    first_round = min(_FIRST_ROUND, max_trials)
    retry_round = min(_RETRY_ROUND, max_trials - first_round)
    whole_rounds = retry_round == 0 or (max_trials - first_round) % retry_round == 0

    def attempt(k, which, num, budget=None):
        """``num`` candidates for each flat index in ``which`` (only the first ``budget`` count,
        when given): (found, first accepted)."""
        k_cand, k_acc = jax.random.split(k)
        u = jax.random.uniform(k_cand, (which.shape[0], num), cdf.dtype)
        cand = _draw_from(cdf, u)
        xi = x_new[rows[which]]
        log_accept = (
            jax.vmap(lambda x, c: jax.vmap(lambda l: log_q(x_prev[l], x))(c))(xi, cand) - log_bound
        )
        if cdf.dtype == jnp.float64:
            # Given its candidate ℓ, u is uniform on (cdf[ℓ-1], cdf[ℓ]]: where it falls there is
            # the acceptance uniform, independent of ℓ (2^52 levels across a bin of width 1/N
            # and more), so one random number serves both
            low = jnp.where(cand > 0, cdf[jnp.maximum(cand - 1, 0)], 0.0)
            v = jnp.clip((u - low) / (cdf[cand] - low), 0.0, 1.0)
        else:  # float32 would leave too few levels in a narrow bin: a second uniform
            v = jax.random.uniform(k_acc, cand.shape)
        accepted = jnp.log(v) < log_accept
        if budget is not None:  # a last round longer than the trials left
            accepted = accepted & (jnp.arange(num) < budget[:, None])
        first = jnp.take_along_axis(cand, jnp.argmax(accepted, -1)[:, None], -1)[:, 0]
        return jnp.any(accepted, axis=-1), first

    found, flat = attempt(k_first, jnp.arange(size), first_round)
    failed = ~found
    trials = jnp.full(size, first_round)
    block = max(1, min(size, max(32, size // 8)))

    def retry_pending(state):
        _, failed, trials, _ = state
        return jnp.any(failed & (trials < max_trials))

    def retry(state):
        indices, failed, trials, key = state
        key, sub = jax.random.split(key)
        (picked,) = jnp.nonzero(failed & (trials < max_trials), size=block, fill_value=size)
        safe = jnp.minimum(picked, size - 1)
        budget = None if whole_rounds else max_trials - trials[safe]
        ok, first = attempt(sub, safe, retry_round, budget)
        valid = picked < size
        indices = indices.at[picked].set(jnp.where(ok, first, indices[safe]), mode="drop")
        failed = failed.at[picked].set(failed[safe] & ~ok, mode="drop")
        trials = trials.at[picked].add(jnp.where(valid, retry_round, 0), mode="drop")
        return indices, failed, trials, key

    if retry_round > 0:
        state = (flat, failed, trials, k_rounds)
        flat, failed, _, _ = jax.lax.while_loop(retry_pending, retry, state)
    by_rejection = 1.0 - jnp.mean(failed)
    exact_block = min(size, 16)

    def pending(state):
        return jnp.any(state[1])

    def fill(state):
        indices, failed, key = state
        key, sub = jax.random.split(key)
        (picked,) = jnp.nonzero(failed, size=exact_block, fill_value=size)
        i = rows[jnp.minimum(picked, size - 1)]
        logits = _backward_logits(log_q, x_prev, log_w, x_new[i])
        draws = categorical_rows(sub, logits, 1)[:, 0]
        indices = indices.at[picked].set(draws, mode="drop")
        failed = failed.at[picked].set(False, mode="drop")
        return indices, failed, key

    flat, _, _ = jax.lax.while_loop(pending, fill, (flat, failed, k_exact))
    return flat.reshape(n, num_backward), by_rejection


class FilterState(NamedTuple):
    """The particle system at one time step (what the scan carries): O(N) memory."""

    x: jax.Array  # (N, dx)
    log_w: jax.Array  # (N,)
    tau: Any  # per functional, (N, ...)
    log_likelihood: jax.Array  # running estimate of log p(y_{0:t})


def make_pass(
    model,
    theta: Mapping[str, Any],
    y,
    *,
    num_particles: int,
    num_backward: int = 2,
    functional: Functional | None = None,
    conditional: bool = False,
    backward: str = "exact",
    max_trials: int = 32,
    keep_paths: bool = False,
):
    """``(init, step)`` of a (conditional) PaRIS pass, blackjax-style pure functions.

    ``init(key, reference_0) -> FilterState`` at t = 0; ``step(state, (key, t, reference_t))
    -> (state, out)`` for t ≥ 1, with ``out = (log increment, acceptance[, x_t, J_t])``.
    ``reference_*`` are ignored unless ``conditional`` (then slot 0 holds the reference).
    """
    n = num_particles
    theta = jax.tree.map(jnp.asarray, dict(theta))
    y = jnp.asarray(y)
    functional = functional or Functional(lambda x0: (), lambda xp, x, t: ())
    log_q = lambda xp, x: model.transition_dist(theta, xp).log_prob(x)  # noqa: E731
    log_g = lambda x, y_t: model.emission_dist(theta, x).log_prob(y_t)  # noqa: E731
    propagate = jax.vmap(lambda k, xp: model.transition_dist(theta, xp).sample(k))
    if backward == "rejection":
        log_bound = model.transition_log_bound(theta)

        def draw_backward(k, x_prev, log_w, x_new):
            return _rejection_backward(
                k, log_q, x_prev, log_w, x_new, num_backward, log_bound, max_trials
            )
    else:

        def draw_backward(k, x_prev, log_w, x_new):
            return _exact_backward(k, log_q, x_prev, log_w, x_new, num_backward)

    def init(key, reference_0=None):
        x0 = model.initial_dist(theta).sample(key, (n,))
        if conditional:
            x0 = x0.at[0].set(reference_0)
        log_w0 = jax.vmap(log_g, (0, None))(x0, y[0])
        tau0 = jax.vmap(functional.init)(x0)
        state = FilterState(x0, log_w0, tau0, logsumexp(log_w0) - jnp.log(n))
        return split_over_devices(state, n)

    def step(state, inputs):
        x, log_w, tau, log_lik = state
        k, t, reference_t = inputs
        k_res, k_prop, k_back = jax.random.split(k, 3)
        if conditional:
            ancestors = multinomial(k_res, log_w, n)
        else:
            ancestors = systematic(k_res, log_w, n)
        x_new = propagate(jax.random.split(k_prop, n), x[ancestors])
        if conditional:
            x_new = x_new.at[0].set(reference_t)
        log_w_new = jax.vmap(log_g, (0, None))(x_new, y[t])
        j, acceptance = draw_backward(k_back, x, log_w, x_new)

        def stat(i_row, xi):
            terms = jax.vmap(
                lambda jj: jax.tree.map(
                    lambda a, b: a + b,
                    jax.tree.map(lambda s: s[jj], tau),
                    functional.step(x[jj], xi, t),
                )
            )(i_row)
            return jax.tree.map(lambda s: jnp.mean(s, axis=0), terms)

        tau_new = jax.vmap(stat)(j, x_new)
        inc = logsumexp(log_w_new) - jnp.log(n)
        out = (inc, acceptance) + ((x_new, j) if keep_paths else ())
        state = FilterState(x_new, log_w_new, tau_new, log_lik + inc)
        return split_over_devices(state, n), out

    return init, step


def finish(state: FilterState, head: FilterState, outs, keep_paths: bool) -> PassResult:
    """Collect a pass: ``head`` is the state at t = 0, ``outs`` the stacked step outputs."""
    incs = jnp.concatenate([head.log_likelihood[None], outs[0]])
    weights = jax.nn.softmax(state.log_w)
    estimate = jax.tree.map(lambda s: jnp.tensordot(weights, s, axes=1), state.tau)
    return PassResult(
        estimate=estimate,
        log_likelihood=state.log_likelihood,
        log_increments=incs,
        log_weights=state.log_w,
        particles=jnp.concatenate([head.x[None], outs[2]]) if keep_paths else None,
        backward=outs[3] if keep_paths else None,
        acceptance=jnp.mean(outs[1]) if outs[1].shape[0] else jnp.asarray(1.0),
    )


def particle_pass(key, model, theta, y, *, reference=None, keep_paths=False, **kw) -> PassResult:
    """One PaRIS pass over all of ``y`` (conditional on ``reference`` (T, dx) when given).

    Pure and jittable; keywords as :func:`make_pass`.
    """
    conditional = reference is not None
    init, step = make_pass(model, theta, y, conditional=conditional, keep_paths=keep_paths, **kw)
    num_steps = y.shape[0]
    ref = reference if conditional else jnp.zeros((num_steps, 1))
    k0, key = jax.random.split(key)
    head = init(k0, ref[0])
    keys = jax.random.split(key, num_steps - 1)
    state, outs = jax.lax.scan(step, head, (keys, jnp.arange(1, num_steps), ref[1:]))
    return finish(state, head, outs, keep_paths)


def trace_paths(key, result: PassResult, num_paths: int):
    """Trajectories (num_paths, T, dx) traced back through the backward indices.

    The last state is drawn from Cat(ω_{T-1}); at each earlier step one of the current
    particle's Ñ backward indices is chosen uniformly (the PPG reference update).
    """
    k_last, k_back = jax.random.split(key)
    last = multinomial(k_last, result.log_weights, num_paths)
    num_backward = result.backward.shape[-1]
    choices = jax.random.randint(k_back, (result.backward.shape[0], num_paths), 0, num_backward)

    def back(index, inputs):
        j, c = inputs  # j: (N, Ñ) indices into step t for particles of step t+1
        prev = j[index, c]
        return prev, prev

    _, earlier = jax.lax.scan(back, last, (result.backward, choices), reverse=True)
    indices = jnp.concatenate([earlier, last[None]])  # (T, num_paths)
    paths = jax.vmap(lambda xs, idx: xs[idx])(result.particles, indices)  # (T, P, dx)
    return jnp.swapaxes(paths, 0, 1)


def builtin_functional(name: str, model, theta, y) -> Functional:
    """The built-in additive functionals.

    ``state_sum``: Σ_t x_t; ``state_square_sum``: Σ_t x_t x_tᵀ; ``score``: ∇θ log p_θ(y) by
    Fisher's identity, Σ_t ∇θ [log q_θ(x_t | x_{t-1}) + log g_θ(y_t | x_t)] (+ the t = 0 terms),
    with respect to every parameter in its natural parametrisation (a dict like θ).
    """
    if name == "state_sum":
        return Functional(lambda x0: x0, lambda xp, x, t: x)
    if name == "state_square_sum":
        return Functional(lambda x0: jnp.outer(x0, x0), lambda xp, x, t: jnp.outer(x, x))
    if name == "score":
        return score_functional(model, lambda eta: eta, dict(theta), y)
    raise KeyError(name)


def score_functional(model, to_theta: Callable, eta, y) -> Functional:
    """∇η of the complete-data log density terms, θ = ``to_theta(η)`` (Fisher's identity)."""

    def head(e, x0):
        th = to_theta(e)
        return model.initial_dist(th).log_prob(x0) + model.emission_dist(th, x0).log_prob(y[0])

    def term(e, xp, x, t):
        th = to_theta(e)
        return model.transition_dist(th, xp).log_prob(x) + model.emission_dist(th, x).log_prob(y[t])

    return Functional(
        lambda x0: jax.grad(head)(eta, x0),
        lambda xp, x, t: jax.grad(term)(eta, xp, x, t),
    )
