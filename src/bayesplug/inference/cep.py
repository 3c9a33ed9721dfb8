"""Backend ``cep``: conditional expectation propagation for the functional Tucker model.

Fang, Yu, Wang, Li, Kirby & Zhe, "Functional Bayesian Tucker Decomposition for Continuous-indexed
Tensor Data" (ICLR 2024), §4. The posterior is approximated by independent Gaussians over each
mode's latent functions (a Gauss–Markov chain over the mode's unique coordinates), a Gaussian over
the core and a Gamma over the noise precision τ. One epoch updates, in turn:

1. each mode k: every entry n sends its coordinate's factor u = u^k(i^k_n) the Gaussian message
   exp(−½ uᵀ Λ_n u + uᵀ η_n) with Λ_n = E[τ] E[B_n B_nᵀ], η_n = E[τ] y_n E[B_n], where
   B_n = W_(k) z_n and z_n is the Kronecker product of the other modes' factors (CP: their
   Hadamard product with the core's diagonal). E[B Bᵀ] uses the core's second moment
   E[w wᵀ] = m mᵀ + S, its covariance included. The messages of the entries sharing a coordinate
   are summed, damped linearly (Λ ← ρ Λ_old + (1 − ρ) Λ_new), and an information-form Kalman
   filter and RTS smoother over the sorted coordinates give q(u^k)
   (:func:`bayesplug.models.kalman.information_filter`);
2. the core: precision I / core_scale² + E[τ] Σ_n E[z_n z_nᵀ], shift E[τ] Σ_n y_n E[z_n] (the
   message damped), z_n over all modes;
3. τ: Gamma(a0 + N/2, b0 + ½ Σ_n E[(y_n − f_n)²]), b damped.

Where this differs from the authors' code (see ``shared/reference/funbat_gphm.md``): the core is
unfolded consistently with the Kronecker order of the other modes for every K (theirs permutes
the core's axes for K ≥ 3); the GP prior enters once, through the chain (theirs adds an extra
I / v to every pseudo-observation); the core has a Gaussian prior and its covariance enters the
factor and τ updates; messages are kept as per-coordinate sums (memory O(Σ_k U_k R_k² + P²) with
P = Π_k R_k, the data streamed in chunks), not per entry (O(N P²)).

y is standardised inside (ȳ, s_y of the training data), as in the NumPyro program of
:class:`~bayesplug.models.FunctionalTucker`, and the result is returned as independent draws of
that program's latent sites (the chains' innovations, the core, τ), so ``fit.predict``,
``fit.summary()`` and the ArviZ groups are those of any other backend.

Examples
--------
>>> import bayesplug as bp
>>> data = bp.datasets.load("functional_tensor_synthetic")
>>> train, test = bp.datasets.train_test_split(data)
>>> model = bp.models.FunctionalTucker(ranks=1, cp=True, kernel="matern32", lengthscale=0.1)
>>> fit = bp.fit(model, train, method="cep", seed=0, progress=False)
>>> pred = fit.predict({"index": test["index"]})
>>> rmse = float(((pred.mean - test["y"]) ** 2).mean() ** 0.5)
>>> rmse < 0.01   # the authors' notebook reached 0.004 on this split
True
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConvergenceWarning, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, positive, positive_int, probability
from .driver import run_in_chunks

__all__ = ["CEPBackend", "CEPInfo", "CEPProblem", "CEPState", "init", "step"]

BLOCK_NUMBERS = 2**23  # per-entry second moments held at once while streaming (64 MB)
# E[τ] at the start, on standardised y (noise sd 0.32 of y's): a start that trusts the data lets
# the factors take up structure before τ is learned from the residuals. Single starts that did
# not collapse to zero, 12 seeds each: CP rank 1 on 80 synthetic entries 2 / 10 / 11 of 12 for
# E[τ] = 1 / 10 / 100; a 12^3 Tucker (R = 2) 6 / 12 / 12 of 12.
TAU_START = 10.0


class CEPProblem(NamedTuple):
    """The static pieces of one fit: standardised y, each entry's coordinate per mode, each
    mode's chain (``A``, ``Q`` over its R_k functions, block-diagonal), the core's prior."""

    y: jax.Array  # (N,)
    where: tuple  # K x (N,) int
    A: tuple  # K x (U_k, D_k, D_k), D_k = R_k d
    Q: tuple
    P0: tuple  # K x (D_k, D_k)
    H: tuple  # K x (R_k, D_k)
    ranks: tuple  # K ints
    cp: bool
    core_prior_precision: float
    noise_prior: tuple  # (a0, b0)


class CEPState(NamedTuple):
    """Moments of q and the damped messages (per unique coordinate)."""

    factor_mean: tuple  # K x (U_k, R_k)
    factor_second: tuple  # K x (U_k, R_k, R_k): E[u uᵀ]
    message_precision: tuple  # K x (U_k, R_k, R_k)
    message_shift: tuple  # K x (U_k, R_k)
    core_mean: jax.Array  # (P,) — CP: (R,)
    core_cov: jax.Array  # (P, P)
    core_message_precision: jax.Array
    core_message_shift: jax.Array
    tau_shape: jax.Array
    tau_rate: jax.Array


class CEPInfo(NamedTuple):
    """Per-epoch figures on the original scale of y."""

    train_rmse: jax.Array
    tau_mean: jax.Array


def _block_chain(sde, A, Q, rank):
    eye = jnp.eye(rank, dtype=A.dtype)
    kron = jax.vmap(lambda m: jnp.kron(eye, m))
    H = jnp.kron(eye, sde.H)
    return kron(A), kron(Q), jnp.kron(eye, sde.P_inf), H


def prepare(model, data: Mapping[str, Any]) -> tuple[CEPProblem, float, float]:
    """The problem in standardised units, and (ȳ, s_y) to undo the standardisation."""
    y = jnp.asarray(data["y"])
    offset, scale = jnp.mean(y), jnp.std(y)
    num_modes = model.num_modes(data)
    ranks = tuple(model.mode_ranks(num_modes))
    chains = []
    for k in range(num_modes):
        chain = model.chain(k, data)
        chains.append(_block_chain(chain.sde, chain.A, chain.Q, ranks[k]))
    A, Q, P0, H = (tuple(c[i] for c in chains) for i in range(4))
    problem = CEPProblem(
        (y - offset) / scale,
        tuple(jnp.asarray(data[f"where_{k}"]) for k in range(num_modes)),
        A,
        Q,
        P0,
        H,
        ranks,
        bool(model.cp),
        1.0 / model.core_scale**2,
        tuple(model.noise_prior),
    )
    return problem, float(offset), float(scale)


def init(rng_key, problem: CEPProblem) -> CEPState:
    """Factor means N(0, 1) (zero is a fixed point of the updates, so the start is random), no
    messages, the core's mean U(0, 1) with zero covariance, E[τ] = ``TAU_START``.

    The authors start the factors at U(0, 1); on a 12 x 12 x 12 Tucker test (R = 2 per mode)
    N(0, 1) starts reached the good optimum at 4 of 6 seeds against 1 of 6 (the rest collapse to
    zero or stop in a poorer optimum), hence the restarts of :class:`CEPBackend`.
    """
    keys = jax.random.split(rng_key, len(problem.ranks) + 1)
    means, seconds, precisions, shifts = [], [], [], []
    for k, rank in enumerate(problem.ranks):
        U = problem.A[k].shape[0]
        mean = jax.random.normal(keys[k], (U, rank), dtype=problem.y.dtype)
        means.append(mean)
        seconds.append(mean[:, :, None] * mean[:, None, :])
        precisions.append(jnp.zeros((U, rank, rank), problem.y.dtype))
        shifts.append(jnp.zeros((U, rank), problem.y.dtype))
    size = problem.ranks[0] if problem.cp else int(np.prod(problem.ranks))
    core = jax.random.uniform(keys[-1], (size,), dtype=problem.y.dtype)
    zeros = jnp.zeros((size, size), problem.y.dtype)
    a0, b0 = problem.noise_prior
    one = jnp.ones((), problem.y.dtype)
    return CEPState(
        tuple(means),
        tuple(seconds),
        tuple(precisions),
        tuple(shifts),
        core,
        zeros,
        zeros,
        jnp.zeros(size, problem.y.dtype),
        a0 * one,
        a0 * one / TAU_START,
    )


def _product_moments(means, seconds, cp: bool):
    """E[z], E[z zᵀ] per entry for z = ⊗ (Tucker, modes in increasing order) or ⊙ (CP) of the
    given per-entry factor moments (c, R_j), (c, R_j, R_j)."""
    z1, z2 = means[0], seconds[0]
    for m, s in zip(means[1:], seconds[1:], strict=True):
        if cp:
            z1, z2 = z1 * m, z2 * s
        else:
            c = m.shape[0]
            z1 = jnp.einsum("na,nb->nab", z1, m).reshape(c, -1)
            z2 = jnp.einsum("nac,nbd->nabcd", z2, s).reshape(c, z1.shape[1], z1.shape[1])
    return z1, z2


def _stream(problem: CEPProblem, per_block, init_sums, width: int):
    """Σ over entries of ``per_block(rows, mask)``, streamed in blocks whose per-entry second
    moments (``width``² numbers an entry) fill at most ``BLOCK_NUMBERS``: memory O(P²), not
    O(N P²)."""
    n = problem.y.shape[0]
    size = max(1, min(n, BLOCK_NUMBERS // width**2))
    num_blocks = -(-n // size)

    def body(sums, b):
        rows = b * size + jnp.arange(size)
        mask = (rows < n).astype(problem.y.dtype)
        rows = jnp.minimum(rows, n - 1)
        return jax.tree.map(jnp.add, sums, per_block(rows, mask)), None

    sums, _ = jax.lax.scan(body, init_sums, jnp.arange(num_blocks))
    return sums


def _core_second(state: CEPState):
    return state.core_cov + jnp.outer(state.core_mean, state.core_mean)


def _mode_messages(state: CEPState, problem: CEPProblem, k: int):
    """New (undamped) per-coordinate messages to mode k's factors."""
    others = [j for j in range(len(problem.ranks)) if j != k]
    U, rank = state.factor_mean[k].shape
    tau = state.tau_shape / state.tau_rate

    def per_block(rows, mask):
        means = [state.factor_mean[j][problem.where[j][rows]] for j in others]
        seconds = [state.factor_second[j][problem.where[j][rows]] for j in others]
        z1, z2 = _product_moments(means, seconds, problem.cp)
        seg = problem.where[k][rows]
        s2 = jax.ops.segment_sum(mask[:, None, None] * z2, seg, U)
        s1 = jax.ops.segment_sum((mask * problem.y[rows])[:, None] * z1, seg, U)
        return s2, s1

    pz = rank if problem.cp else int(np.prod([problem.ranks[j] for j in others]))
    zeros = (jnp.zeros((U, pz, pz), problem.y.dtype), jnp.zeros((U, pz), problem.y.dtype))
    s2, s1 = _stream(problem, per_block, zeros, pz)
    w2 = _core_second(state)
    if problem.cp:
        return tau * w2[None] * s2, tau * state.core_mean[None] * s1
    K = len(problem.ranks)
    shape = problem.ranks + problem.ranks
    order = [k, *others, K + k, *[K + j for j in others]]
    w2k = w2.reshape(shape).transpose(order).reshape(rank, pz, rank, pz)
    mk = jnp.moveaxis(state.core_mean.reshape(problem.ranks), k, 0).reshape(rank, pz)
    return tau * jnp.einsum("acbd,icd->iab", w2k, s2), tau * s1 @ mk.T


def _smooth_mode(problem: CEPProblem, k: int, precision, shift):
    from ..models.kalman import information_filter, rts_smoother

    A, Q, H = problem.A[k], problem.Q[k], problem.H[k]
    filtered = information_filter(
        jnp.zeros(A.shape[1], A.dtype), problem.P0[k], A, Q, H, precision, shift
    )
    return filtered, rts_smoother(filtered, A, Q)


def _update_mode(state: CEPState, problem: CEPProblem, k: int, damping: float) -> CEPState:
    precision_new, shift_new = _mode_messages(state, problem, k)
    precision = damping * state.message_precision[k] + (1 - damping) * precision_new
    shift = damping * state.message_shift[k] + (1 - damping) * shift_new
    _, smoothed = _smooth_mode(problem, k, precision, shift)
    H = problem.H[k]
    mean = smoothed.mean @ H.T
    second = H @ smoothed.cov @ H.T + mean[:, :, None] * mean[:, None, :]

    def put(items, value):
        return tuple(value if j == k else v for j, v in enumerate(items))

    return state._replace(
        factor_mean=put(state.factor_mean, mean),
        factor_second=put(state.factor_second, second),
        message_precision=put(state.message_precision, precision),
        message_shift=put(state.message_shift, shift),
    )


def _full_sums(state: CEPState, problem: CEPProblem):
    """Σ E[z zᵀ], Σ y E[z], Σ y², and Σ (y − E[f])² over all entries, z over every mode."""
    size = state.core_mean.shape[0]

    def per_block(rows, mask):
        means = [m[w[rows]] for m, w in zip(state.factor_mean, problem.where, strict=True)]
        seconds = [s[w[rows]] for s, w in zip(state.factor_second, problem.where, strict=True)]
        z1, z2 = _product_moments(means, seconds, problem.cp)
        y = problem.y[rows]
        resid = y - z1 @ state.core_mean
        return (
            jnp.einsum("n,nab->ab", mask, z2),
            (mask * y) @ z1,
            jnp.sum(mask * resid**2),
        )

    dtype = problem.y.dtype
    zero = (jnp.zeros((size, size), dtype), jnp.zeros(size, dtype), jnp.zeros((), dtype))
    return _stream(problem, per_block, zero, size)


def step(state: CEPState, problem: CEPProblem, damping: tuple) -> tuple[CEPState, CEPInfo]:
    """One epoch: every mode, then the core, then τ (see the module docstring)."""
    rho_factor, rho_core, rho_tau = damping
    for k in range(len(problem.ranks)):
        state = _update_mode(state, problem, k, rho_factor)
    tau = state.tau_shape / state.tau_rate
    z2, yz, mean_sq = _full_sums(state, problem)  # mean_sq: residuals of the previous core
    precision_msg = rho_core * state.core_message_precision + (1 - rho_core) * tau * z2
    shift_msg = rho_core * state.core_message_shift + (1 - rho_core) * tau * yz
    size = state.core_mean.shape[0]
    eye = jnp.eye(size, dtype=z2.dtype)
    core_cov = jnp.linalg.inv(problem.core_prior_precision * eye + precision_msg)
    core_cov = 0.5 * (core_cov + core_cov.T)
    state = state._replace(
        core_mean=core_cov @ shift_msg,
        core_cov=core_cov,
        core_message_precision=precision_msg,
        core_message_shift=shift_msg,
    )
    # E Σ (y - f)^2 = Σ y² - 2 mᵀ Σ y E[z] + tr(E[w wᵀ] Σ E[z zᵀ]), with the updated core
    expected_sq = (
        jnp.sum(problem.y**2) - 2 * state.core_mean @ yz + jnp.sum(_core_second(state) * z2)
    )
    a0, b0 = problem.noise_prior
    n = problem.y.shape[0]
    rate = rho_tau * state.tau_rate + (1 - rho_tau) * (b0 + 0.5 * expected_sq)
    state = state._replace(tau_shape=jnp.asarray(a0 + 0.5 * n, rate.dtype), tau_rate=rate)
    info = CEPInfo(jnp.sqrt(mean_sq / n), state.tau_shape / state.tau_rate)
    return state, info


def draws(rng_key, state: CEPState, problem: CEPProblem, model, data, num_draws: int) -> dict:
    """Independent draws of the program's latent sites from the fitted approximation."""
    from ..models.kalman import backward_sample

    keys = jax.random.split(rng_key, len(problem.ranks) + 2)
    out = {}
    for k, rank in enumerate(problem.ranks):
        filtered, _ = _smooth_mode(problem, k, state.message_precision[k], state.message_shift[k])
        joint = backward_sample(keys[k], filtered, problem.A[k], num_draws)  # (S, U, R d)
        states = joint.reshape(num_draws, joint.shape[1], rank, -1)
        invert = functools.partial(model.innovations, model.chain(k, data))
        out[f"innovations_{k}"] = jax.lax.map(invert, states, batch_size=64)
        out[f"factor_{k}"] = states[..., 0]  # the program's deterministic site
    chol = jnp.linalg.cholesky(state.core_cov + 1e-12 * jnp.eye(state.core_cov.shape[0]))
    core = state.core_mean + jax.random.normal(keys[-2], (num_draws, chol.shape[0])) @ chol.T
    out["core"] = core if problem.cp else core.reshape((num_draws, *problem.ranks))
    out["tau"] = jax.random.gamma(keys[-1], state.tau_shape, (num_draws,)) / state.tau_rate
    return out


class CEPBackend:
    """Conditional expectation propagation with Kalman/RTS per mode (Fang et al., ICLR 2024)."""

    name: ClassVar[str] = "cep"
    requires: ClassVar[frozenset[str]] = frozenset({"tucker"})
    options: ClassVar[Mapping[str, Option]] = {
        "max_epochs": Option(200, (int,), "epochs at most", positive_int),
        "tol": Option(
            1e-4,
            (float, int),
            "stop when the training RMSE changes less than this (relative)",
            positive,
        ),
        "damping": Option(0.5, (float,), "old factor messages' weight, in (0, 1)", probability),
        "core_damping": Option(0.5, (float,), "old core message's weight, in (0, 1)", probability),
        "tau_damping": Option(0.5, (float,), "old noise rate's weight, in (0, 1)", probability),
        "num_draws": Option(1000, (int,), "draws from the fitted approximation", positive_int),
        "num_restarts": Option(
            4,
            (int,),
            "random starts run side by side; the best by training RMSE is kept",
            positive_int,
        ),
        "max_time": MAX_TIME,
    }

    def run(
        self,
        model: Model,
        data: Mapping[str, Any],
        rng_key,
        *,
        progress: bool = False,
        max_epochs: int,
        tol: float,
        damping: float,
        core_damping: float,
        tau_damping: float,
        num_draws: int,
        num_restarts: int,
        max_time: float | None,
    ) -> RawResult:
        """Run epochs from ``num_restarts`` random starts (vectorised) until every start's
        training RMSE settles, keep the best start by training RMSE, then draw from it."""
        problem, offset, scale = prepare(model, data)
        init_key, draw_key = jax.random.split(rng_key)
        states = jax.vmap(lambda key: init(key, problem))(jax.random.split(init_key, num_restarts))
        rho = (float(damping), float(core_damping), float(tau_damping))

        def advance(states):
            return jax.vmap(lambda s: step(s, problem, rho))(states)

        start = time.perf_counter()
        compiled = jax.jit(advance).lower(states).compile()
        compile_time = time.perf_counter() - start
        run = _run_epochs(compiled, states, max_epochs, tol, scale, progress, max_time)
        if not run.outputs:
            from ..errors import BayesplugError

            raise BayesplugError(f"cep stopped before its first epoch finished: {run.reason}.")
        rmse_all = np.stack([np.asarray(o.train_rmse, dtype=float) for o in run.outputs]) * scale
        final = np.where(np.isfinite(rmse_all[-1]), rmse_all[-1], np.inf)
        best = int(np.argmin(final))
        state = jax.tree.map(lambda leaf: leaf[best], run.state)
        rmse = rmse_all[:, best]
        converged = len(rmse) < max_epochs and not run.interrupted
        if not np.isfinite(final[best]):
            from ..errors import BayesplugError

            raise BayesplugError(
                "cep diverged at every start: the training error became NaN. Raise damping "
                "(e.g. 0.8), lower the ranks, or check the data's scale."
            )
        _warn_if_unsettled(run, rmse, converged, max_epochs, scale, num_restarts)
        start = time.perf_counter()
        samples = jax.jit(lambda key, s: draws(key, s, problem, model, data, num_draws))(
            draw_key, state
        )
        import xarray as xr

        return RawResult(
            samples={k: np.asarray(v)[None] for k, v in samples.items()},
            sample_stats={
                "train_rmse": xr.DataArray(rmse, dims=["epoch"]),
                "train_rmse_by_start": xr.DataArray(rmse_all, dims=["epoch", "start"]),
            },
            attrs={
                "draws_are": "independent",
                "compile_time": compile_time,
                "training_time": run.seconds,
                "drawing_time": time.perf_counter() - start,
                "num_epochs_run": len(rmse),
                "converged": int(converged),
                "train_rmse": float(rmse[-1]),
                "best_start": best,
            },
            state=state,
            interrupted=run.interrupted,
        )


def _run_epochs(compiled, states, max_epochs: int, tol: float, scale, progress, max_time):
    """Epochs under the driver until every start's training RMSE changes by less than ``tol``
    (relative) twice running, or ``max_epochs``."""
    history = []

    def done(_, info):
        history.append(np.asarray(info.train_rmse, dtype=float))
        if len(history) < 3:
            return False
        change = np.abs(history[-1] - history[-2])
        return bool(np.all(change <= tol * np.maximum(history[-1], 1e-12)))

    return run_in_chunks(
        compiled,
        states,
        num_chunks=max_epochs,
        steps_per_chunk=1,
        progress=progress,
        description="cep epochs",
        postfix=lambda s, info: {
            "rmse": f"{float(np.min(info.train_rmse)) * scale:.4g}",
            "E[tau]": f"{float(info.tau_mean[np.argmin(info.train_rmse)]):.3g}",
        },
        max_time=max_time,
        done=done,
    )


def _warn_if_unsettled(run, rmse, converged: bool, max_epochs: int, scale, num_restarts) -> None:
    """Warn on an early stop, on epochs run out before the training RMSE settled, and when no
    start found any structure (the RMSE is the spread of y itself)."""
    if run.interrupted:
        warnings.warn(
            f"cep stopped early: {run.reason}. Drawing from the approximation reached after "
            f"{len(rmse)} of {max_epochs} epochs.",
            InterruptedRunWarning,
            stacklevel=3,
        )
    elif not converged:
        warnings.warn(
            f"cep ran all {max_epochs} epochs without the training RMSE settling (last "
            f"changes {np.abs(np.diff(rmse[-3:])).tolist()}). Raise max_epochs, or raise "
            "damping (e.g. 0.8) if it oscillates.",
            ConvergenceWarning,
            stacklevel=3,
        )
    if rmse[-1] > 0.99 * scale:
        warnings.warn(
            f"cep found no structure: the training RMSE ({rmse[-1]:.4g}) is the spread of y "
            f"itself at every one of {num_restarts} starts (the factors collapsed to zero). "
            "Raise num_restarts, lower the ranks, or check that y varies with the index.",
            ConvergenceWarning,
            stacklevel=3,
        )
