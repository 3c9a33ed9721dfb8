"""Backend ``nested``: nested sampling for the evidence and the posterior (blackjax ``nss``).

Nested sampling (Skilling 2006) with blackjax's nested *slice* sampler (hit-and-run slice moves
along directions drawn from the live points' covariance; Yallup, Kroupa & Handley 2025) on the
model's unconstrained, flattened parameter vector, with the log-prior (Jacobian included) and the
log-likelihood split out of the NumPyro program by the bridge. It needs a proper prior. The
``num_delete`` slice chains of a step run in one loop, one batched likelihood evaluation per
iteration, each chain advancing through its own slice steps (``inference._slice``: the same
kernel as blackjax's, about half the batched evaluations of vmapping its per-step loops); the
evaluations counted are every chain's, bracket ends included. With ``sampler="ellipsoid"`` the
new points come instead from the live points' enlarged bounding ellipsoid in the coordinates
sigmoid(u) (``inference._ellipsoid``: batched proposals; rejection sampling where every prior is
uniform, an independence Metropolis-Hastings correction where not) — for a model with discrete
choices, from one bound per category (``inference._bounds``) — each step handing over to the
slice chains when the bound covers the contour poorly. The ellipsoid is the default for models
with discrete choices and for models whose priors are all uniform on at most 10 parameters;
the slice chains for the rest.

The run is a jitted ``lax.while_loop`` over NS steps in chunks of at most one e-fold of prior
volume (``num_live / num_delete`` steps), writing the dead points into a fixed-size buffer, so one
compilation serves the whole run whatever its length. A chunk's length is an argument, not a
constant: the first chunk is one step, later ones as many steps as fill about ``CHUNK_SECONDS``
at the measured time per step, so between chunks — within a second or two however costly a
step is — the Python loop updates the progress bar (ln Z, the live points' remaining evidence,
likelihood evaluations), honours Ctrl-C and ``max_time``, and stops at convergence:
``ln(Z + Z_live) - ln Z < dlogz``.

Post-processing is numpy (no compilation): the prior volumes of the dead points are simulated
``num_simulations`` times (t ~ Beta(n, 1) per death with the effective live counts of batch
deletion, Fowlie, Handley & Su 2021), giving ln Z and its standard error as the mean and spread of
the simulated evidences, the information H, per-point weights, an equal-weight resample of the
dead + final live points for ``posterior`` (as many draws as the Kish effective sample size), and,
for models with discrete choices, the per-category evidences and posterior probabilities.

Examples
--------
>>> import bayesplug as bp, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Uniform(-5.0, 5.0))
...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
>>> fit = bp.fit(model, {"y": 0.3}, method="nested", num_live=200, progress=False)
>>> ln_z, err = fit.log_evidence   # exact: ln(1/10) = -2.303
>>> abs(ln_z + 2.303) < 4 * err
True
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._linalg import one_at_a_time, uses_lapack
from ..bridge import Bridge, program_key
from ..errors import BayesplugError, ConvergenceWarning, InputError, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, positive, positive_int
from ._ellipsoid import ellipsoid_update
from ._slice import fused_slice_update
from .driver import (
    active_checkpoint,
    data_signature,
    devices_in_use,
    keep_program,
    run_in_chunks,
    split_over_devices,
)
from .resampling import systematic_resample

__all__ = ["NestedBackend", "NestedRun", "build_chunk", "converged", "simulate_log_weights"]


class DeadBuffer(NamedTuple):
    """Dead points of one chunk: leading axes (steps, num_delete), ``count`` steps filled."""

    position: jax.Array
    loglikelihood: jax.Array
    loglikelihood_birth: jax.Array
    evaluations: jax.Array
    count: jax.Array


class _Compiled(NamedTuple):
    start: Any  # (key, data) -> (the prior draws' raw log-likelihoods, initial state)
    advance: Any
    advance_lean: Any = None  # sampler="ellipsoid": the chunk without the slice fallback


USER_STOP_SECONDS = 1e-3  # after Ctrl-C, each category left runs its first chunk only
CHUNK_SECONDS = 0.5  # target wall time of one chunk (Ctrl-C and max_time act between chunks)
# The default num_delete is at most this (a user's value is kept). It was a hard cap on CPU: the
# "hang" of issue 16 (num_live=1000 on the cosmic chronometers, num_delete 100) was jaxlib 0.10's
# batched LAPACK kernels deadlocking XLA's CPU thread pool, now avoided by evaluating LAPACK
# likelihoods one point at a time (``_lapack_on_cpu``). Kept as the default for speed: that run
# takes 17.4 s at num_delete 64 and 23.2 s at 100 (2 cores, 2026-12-02).
CPU_MAX_DELETE = 64
SAMPLERS = ("slice", "ellipsoid")
_COMPILED: dict[tuple, _Compiled] = {}  # most recent runs' compiled functions, oldest first


class NestedRun(NamedTuple):
    """Every point of a finished run, in order of death (the final live points last)."""

    position: np.ndarray  # (N, dim) unconstrained
    loglikelihood: np.ndarray  # (N,)
    loglikelihood_birth: np.ndarray  # (N,)
    num_live: np.ndarray  # (N,) effective number of live points at each death


def simulate_log_weights(run: NestedRun, num_simulations: int, rng: np.random.Generator):
    """``(N, S)`` log importance weights log(dX_i L_i) over S simulated volume sequences.

    X shrinks by t_i ~ Beta(n_i, 1) at each death (ln t = ln(u) / n_i); dX_i is the trapezoid
    (X_{i-1} - X_{i+1}) / 2 with X_0 = 1 and X_{N+1} = 0 (Skilling 2006).
    """
    n = run.loglikelihood.shape[0]
    log_t = np.log(rng.uniform(size=(n, num_simulations))) / run.num_live[:, None]
    log_x = np.cumsum(log_t, axis=0)
    log_x_prev = np.vstack([np.zeros((1, num_simulations)), log_x[:-1]])
    log_x_next = np.vstack([log_x[1:], np.full((1, num_simulations), -np.inf)])
    with np.errstate(divide="ignore"):
        log_dx = log_x_prev + np.log1p(-np.exp(log_x_next - log_x_prev)) - np.log(2.0)
    return log_dx + run.loglikelihood[:, None]


def _logsumexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(peak, axis=axis) + np.log(np.sum(np.exp(a - peak), axis=axis))


def _at_least_two(value) -> str | None:
    """Option check: nested sampling replaces points among at least two live ones."""
    return None if value is None or value >= 2 else "must be at least 2"


def _cluster_check(value) -> str | None:
    """Option check for ``cluster``: what :func:`bayesplug.fit_many` accepts."""
    if value == "local" or (isinstance(value, str) and "://" in value):
        return None
    if type(value).__name__ == "Client":
        return None
    return "must be None, 'local', a distributed.Client or a scheduler address 'tcp://host:port'"


def _require_likelihood(bridge: Bridge) -> None:
    """Nested sampling integrates the likelihood over the prior: a program without one (no
    ``obs=`` and no ``numpyro.factor``, e.g. NumPyro's funnel) has nothing to integrate."""
    if not bridge.info.observed_sites and not bridge.info.factor_sites:
        raise InputError(
            "method",
            "nested sampling needs a likelihood (it integrates the likelihood over the prior), "
            "but no sample site of this program receives observed data (obs=...) and it has no "
            "numpyro.factor: its density is a prior only.",
            "Sample it with method='nuts', 'flow_vi' or 'svi' (they need only the joint "
            "density), or pass the observations under the argument used as obs=.",
        )


class NestedBackend:
    """Nested slice (or bounding-ellipsoid) sampling on the unconstrained space (see the module
    docstring)."""

    name: ClassVar[str] = "nested"
    requires: ClassVar[frozenset[str]] = frozenset({"continuous", "proper_prior"})
    options: ClassVar[Mapping[str, Option]] = {
        "num_live": Option(
            None,
            (int, type(None)),
            "live points, at least 2 (default max(100, 25 x dim))",
            _at_least_two,
        ),
        "num_delete": Option(
            None,
            (int, type(None)),
            "points replaced per step (default num_live // 10, at most 64 on CPU)",
            positive_int,
        ),
        "num_inner_steps": Option(
            None,
            (int, type(None)),
            "slice steps per new point (default max(5, 2 x dim)); sampler='ellipsoid': "
            "expected accepted moves per new point (default 5)",
            positive_int,
        ),
        "sampler": Option(
            None,
            (str, type(None)),
            "'slice' (hit-and-run slice chains) or 'ellipsoid' (proposals uniform in the live "
            "points' enlarged bounding ellipsoid, or one bound per category of a discrete "
            "choice, batched); default 'ellipsoid' for a model with discrete choices "
            "(strategy='embed') or with uniform priors on at most 10 parameters, else 'slice'",
            lambda v: (
                None
                if v is None or v in SAMPLERS
                else f"must be one of {', '.join(map(repr, SAMPLERS))}"
            ),
        ),
        "dlogz": Option(0.01, (float,), "stop when ln(Z + Z_live) - ln Z < dlogz", positive),
        "max_steps": Option(
            100_000,
            (int,),
            "stop (unconverged, with a warning) after this many steps",
            positive_int,
        ),
        "max_time": MAX_TIME,
        "num_simulations": Option(
            200, (int,), "simulated volume sequences for the ln Z error", positive_int
        ),
        "strategy": Option(
            "embed",
            (str,),
            "discrete choices: 'embed' (one run, transdimensional) or 'enumerate' (one run each)",
            lambda v: None if v in ("embed", "enumerate") else "must be 'embed' or 'enumerate'",
        ),
        "cluster": Option(
            None,
            (object,),
            "strategy='enumerate': run the categories as Dask tasks (bp.fit_many's cluster: "
            "'local', a distributed.Client or a scheduler address; None: here, in turn)",
            _cluster_check,
        ),
    }

    def run(
        self,
        model: Model,
        data: Mapping[str, Any],
        rng_key,
        *,
        progress: bool = False,
        num_live: int | None,
        num_delete: int | None,
        num_inner_steps: int | None,
        sampler: str | None,
        dlogz: float,
        max_steps: int,
        max_time: float | None,
        num_simulations: int,
        strategy: str,
        cluster: Any,
    ) -> RawResult:
        """Run nested sampling; returns the resampled posterior, ln Z and the weighted points.

        With ``strategy="enumerate"`` a model's (single) discrete choice is fixed in turn to each
        category (its coordinate ``<choice>_u`` conditioned on the middle of the category's
        interval), one run per category; the runs' weighted points are pooled with weight 1/K, so
        Z = (1/K) sum_k Z_k and everything downstream is as for ``"embed"``. In this process the
        runs share ``max_time`` (each gets its part of what is left); with ``cluster`` they run
        as Dask tasks (:func:`bayesplug.many.map_tasks`), each with the whole ``max_time``, and
        give the same draws as here. Ctrl-C during one category's run here stops the fit: each
        category after it runs its first chunk only (every category stays in the pooled result,
        marked unconverged).
        """
        if cluster is not None and strategy != "enumerate":
            raise InputError(
                "cluster",
                "runs the per-category runs of strategy='enumerate' as Dask tasks; with "
                f"strategy={strategy!r} there is one run.",
                "Pass strategy='enumerate', or leave cluster=None.",
            )
        data = dict(data)
        runs = [(model.model, 0.0, {})]
        choices = getattr(model, "discrete_choices", {})
        sampler = _sampler_for(sampler, strategy == "embed" and bool(choices))
        if strategy == "enumerate":
            from numpyro import handlers

            if len(choices) != 1:
                raise InputError(
                    "strategy",
                    f"'enumerate' needs exactly one discrete choice; {model.name!r} has "
                    f"{len(choices)} ({', '.join(choices) or 'none'}).",
                    "Use strategy='embed'.",
                )
            site, labels = next(iter(choices.items()))
            k = len(labels)
            fixed = [{f"{site}_u": (i + 0.5) / k} for i in range(k)]
            runs = [(handlers.condition(model.model, f), -np.log(k), f) for f in fixed]
        options = {
            "num_live": num_live,
            "num_delete": num_delete,
            "num_inner_steps": num_inner_steps,
            "sampler": sampler,
            "dlogz": dlogz,
            "max_steps": max_steps,
            "max_time": max_time,
            # the choices' coordinates: one bound per category for sampler="ellipsoid"
            "choices": {f"{site}_u": len(labels) for site, labels in choices.items()},
        }
        keys = [jax.random.fold_in(rng_key, i) for i in range(len(runs))]
        if cluster is None:
            pieces = self._in_turn([fn for fn, _, _ in runs], data, keys, progress, options)
        else:
            pieces = _on_cluster([fn for fn, _, _ in runs], data, keys, options, cluster, progress)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)).ravel()[-1] + 1)
        attrs = {
            key: sum(p[2][key] for p in pieces)
            for key in ("num_steps", "likelihood_evaluations", "sampling_time", "compile_time")
        }
        attrs.update(
            {k: pieces[0][2][k] for k in ("num_live", "num_delete", "num_inner_steps", "sampler")},
            converged=int(all(p[2]["converged"] for p in pieces)),
            draws_are="resampled",
            strategy=strategy,
        )
        return _summarise(
            model,
            data,
            [(p[0], p[1], r[1], r[2]) for p, r in zip(pieces, runs, strict=True)],
            rng,
            num_simulations,
            attrs=attrs,
            state=[p[3] for p in pieces],
            interrupted=any(p[4] for p in pieces),
        )

    def _in_turn(self, functions, data, keys, progress, options) -> list:
        """One run per function, in this process; a ``max_time`` is shared out as it goes."""
        max_time = options["max_time"]
        deadline = None if max_time is None or len(functions) == 1 else time.monotonic() + max_time
        pieces, stopped = [], False
        for i, (fn, key) in enumerate(zip(functions, keys, strict=True)):
            if deadline is not None:  # this run's share of the time left (at least one chunk)
                left = max(deadline - time.monotonic(), 1e-3)
                options = {**options, "max_time": left / (len(functions) - i)}
            if not stopped and pieces and pieces[-1][2]["stopped_by_user"]:
                stopped = True
                warnings.warn(
                    f"Ctrl-C during category {i} of {len(functions)}: the remaining "
                    f"{len(functions) - i} run one chunk each so that every category is in "
                    "the result, which is unconverged. Fit again to finish.",
                    InterruptedRunWarning,
                    stacklevel=4,
                )
            if stopped:  # Ctrl-C stops the whole fit; every later category runs one chunk only,
                # so that each is in the pooled result (leaving one out would bias Z silently)
                options = {**options, "max_time": USER_STOP_SECONDS}
            pieces.append(self._sample(fn, data, key, progress, **options))
        return pieces

    def _sample(
        self,
        model_fn,
        data,
        rng_key,
        progress,
        *,
        num_live,
        num_delete,
        num_inner_steps,
        sampler,
        dlogz,
        max_steps,
        max_time,
        choices=None,
    ):
        """One nested-sampling run of ``model_fn``: (points, bridge, attrs, state, interrupted)."""
        bridge = Bridge.from_model(model_fn, data)
        _require_likelihood(bridge)
        sampler = sampler or _default_sampler(bridge, data)
        num_live, num_delete, num_inner_steps = _settings(
            bridge.dim, num_live, num_delete, num_inner_steps, sampler
        )
        steps_per_chunk = max(1, num_live // num_delete)
        init_key, run_key = jax.random.split(rng_key)
        coordinates = _choice_coordinates(bridge, choices or {}) if sampler == "ellipsoid" else ()
        algorithm = _algorithm(bridge, num_inner_steps, num_delete, sampler, coordinates)
        # the ellipsoid's chunks run without its slice fallback until a step needs it
        lean = sampler == "ellipsoid"
        if lean:
            algorithm_lean = _algorithm(
                bridge, num_inner_steps, num_delete, sampler, coordinates, with_fallback=False
            )
        # Compiled functions are reused by later runs of the same program, settings and data
        # shapes (seeds, repeated fits); data are arguments, never constants.
        cache_key = (
            program_key(model_fn),
            data_signature(data),
            num_live,
            num_delete,
            num_inner_steps,
            sampler,
            coordinates,
            float(dlogz),
            bool(jax.config.jax_enable_x64),
            devices_in_use(),  # the compiled chunk's layout
        )
        cached, cache_key = _cached(cache_key, bridge, algorithm, num_live)
        log_likelihood, state = cached.start(init_key, data)
        _check_initial_points(np.asarray(log_likelihood), num_live)
        state = split_over_devices(state, num_live)
        chunk_options = {
            "steps_per_chunk": steps_per_chunk,
            "num_delete": num_delete,
            "dim": bridge.dim,
            "dtype": state.particles.position.dtype,
            "dlogz": dlogz,
        }
        example = ((state, run_key), data, jnp.int32(steps_per_chunk))
        compiling = [0.0]  # seconds spent compiling chunk programs in this run

        def program(field: str, algorithm: Callable):
            """The cached chunk ``field`` (``advance``: with the slice fallback, or
            ``advance_lean``: without), compiled on first use."""
            nonlocal cached
            if getattr(cached, field) is None:
                start = time.perf_counter()
                lowered = jax.jit(build_chunk(algorithm, **chunk_options)).lower(*example)
                cached = cached._replace(**{field: lowered.compile()})
                compiling[0] += time.perf_counter() - start
                if cache_key is not None:
                    keep_program(_COMPILED, cache_key, cached)
            return getattr(cached, field)

        first = program("advance_lean", algorithm_lean) if lean else program("advance", algorithm)
        before_run = compiling[0]
        run = _drive(
            first, (state, run_key), data, num_live, num_delete, steps_per_chunk, dlogz,
            max_steps, progress, max_time, full=lambda: program("advance", algorithm),
        )  # fmt: skip
        late = compiling[0] - before_run  # the fallback's program, if a step needed it
        final_state = run.state[0]
        is_converged = bool(converged(final_state, dlogz))
        num_steps = sum(int(b.count) for b in run.outputs)
        _warn_if_stopped(run, num_steps, is_converged, max_steps, dlogz)
        nested = _collect(run.outputs, final_state, num_live, num_delete)
        attrs = {
            "num_live": num_live,
            "num_delete": num_delete,
            "num_inner_steps": num_inner_steps,
            "sampler": sampler,
            "num_steps": num_steps,
            "likelihood_evaluations": num_live + sum(_evaluations(b) for b in run.outputs),
            "converged": int(is_converged),
            "stopped_by_user": int(run.by_user),
            "sampling_time": run.seconds - late,
            "compile_time": compiling[0],
        }
        return nested, bridge, attrs, run.state, run.interrupted or not is_converged


def _category_run(item):
    """A Dask task: one category's run; returns its points, attrs, state and warnings."""
    fn, data, key, options = item
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nested, _, attrs, state, interrupted = NestedBackend()._sample(
            fn, data, key, False, **options
        )
    said = [(w.category, str(w.message)) for w in caught]
    return nested, attrs, jax.device_get(state), interrupted, said


def _on_cluster(functions, data, keys, options, cluster, progress) -> list:
    """The runs as Dask tasks (:func:`bayesplug.many.map_tasks`); their warnings re-raised here."""
    from ..many import map_tasks

    if active_checkpoint() is not None:
        raise InputError(
            "cluster",
            "cannot be combined with checkpoint= or resume=: the runs on the cluster's workers "
            "do not write to this process's checkpoint file.",
            "Leave cluster=None to checkpoint (the categories then run in turn here).",
        )
    items = [(fn, data, key, options) for fn, key in zip(functions, keys, strict=True)]
    results = map_tasks(
        _category_run, items, cluster=cluster, progress=progress, description="categories"
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    if any(isinstance(r, InterruptedError) for r in failed):
        raise BayesplugError(
            f"nested sampling with strategy='enumerate' was interrupted before all "
            f"{len(items)} categories' runs finished ({len(items) - len(failed)} did): their "
            "evidences cannot be pooled into one without the others.",
        )
    if failed:
        raise failed[0]
    pieces = []
    for fn, (nested, attrs, state, interrupted, said) in zip(functions, results, strict=True):
        for category, message in said:
            warnings.warn(message, category, stacklevel=4)
        pieces.append((nested, Bridge.from_model(fn, data), attrs, state, interrupted))
    return pieces


def _cached(cache_key, bridge: Bridge, algorithm: Callable, num_live: int):
    """The compiled functions of an earlier run with the same key, else fresh jitted ones (the
    chunk is compiled on first use); an unhashable program gets no key and no reuse."""
    try:
        cached = _COMPILED.get(cache_key)
    except TypeError:
        cached, cache_key = None, None
    if cached is None:
        cached = _Compiled(_start(bridge, algorithm, num_live), None)
    return cached, cache_key


def _start(bridge: Bridge, algorithm: Callable, num_live: int) -> Callable:
    """``(key, data) -> (raw log-likelihoods, state)``: the prior draws' likelihoods (NaN kept,
    for :func:`_check_initial_points`) and blackjax's initial state at those draws, in
    one compiled program (three cost 0.8 s of compilation on the 4-parameter GP, this 0.6 s).
    A model whose Python needs concrete data cannot be compiled: ``bp.fit`` says so
    (:class:`~bayesplug.errors.ModelTracingError`)."""
    draw = bridge.prior_draws(num_live)
    log_likelihood = jax.vmap(bridge.log_likelihood, in_axes=(0, None))

    def start(key, data):
        positions = draw(key, data)
        return log_likelihood(positions, data), algorithm(data).init(positions, key)

    jitted = jax.jit(start)
    return lambda key, data: jitted(key, dict(data))


def _settings(
    dim: int, num_live, num_delete, num_inner_steps, sampler: str = "slice"
) -> tuple[int, int, int]:
    """The defaults: num_live max(100, 25 D), num_delete a tenth of it (at most
    ``CPU_MAX_DELETE``), num_inner_steps max(5, 2 D) slice steps or 5 ellipsoid moves."""
    num_live = num_live or max(100, 25 * dim)
    num_delete = num_delete or min(max(1, num_live // 10), CPU_MAX_DELETE)
    num_delete = min(num_delete, num_live - 1)
    default_steps = 5 if sampler == "ellipsoid" else _slice_steps(dim)
    return num_live, num_delete, num_inner_steps or default_steps


def _min_rate(uniform_prior: bool, slice_steps: int) -> float:
    """The ellipsoid's acceptance rate under which a step is the slice chains'. Metropolis
    chains (any prior) need ``num_moves`` / rate iterations: 0.1, measured as the break-even
    (session 18). Rejection sampling (uniform priors) needs ~1 / rate evaluations a chain,
    against ~5 for each of ``slice_steps`` slice steps (stepping out and shrinking): the
    break-even is ~1 / (5 x slice_steps), 0.0077 at D = 13. With 0.1 there, a tenth of the 13-D
    marginalised GP's steps went to the slice chains and cost two thirds of its evaluations."""
    return 1.0 / (5.0 * slice_steps) if uniform_prior else 0.1


def _slice_steps(dim: int) -> int:
    """The default slice steps per new point: max(5, 2 D)."""
    return max(5, 2 * dim)


def _lapack_on_cpu(bridge: Bridge, data) -> bool:
    """Whether the likelihood calls LAPACK on CPU: then the slice samplers evaluate it one point
    at a time. Batched, jaxlib 0.10's LAPACK kernels deadlock XLA's CPU runtime (every thread
    idle, Ctrl-C and ``max_time`` ignored; see ``bayesplug._linalg``) — the "hang" of a GP with
    num_live=1000 in issue 16, and of any user likelihood with a Cholesky factorisation."""
    if jax.default_backend() != "cpu":
        return False
    return uses_lapack(lambda u: bridge.log_likelihood(u, data), jnp.zeros(bridge.dim))


ELLIPSOID_MAX_DIM = 10  # the default sampler is the ellipsoid up to here, for uniform priors


def _sampler_for(sampler: str | None, embedded_choices: bool) -> str | None:
    """The sampler to run: the user's, else ``"ellipsoid"`` for a model whose discrete choices
    are embedded in one run, else None (:func:`_default_sampler` decides from the program).
    The slice chains seldom move between categories, so each category's share of new points
    follows the survivors' (a Pólya urn), not the contour: on a two-category test problem
    (``tests/test_nested.py::two_slabs``, 30 seeds, 2026-12-05) the spread of ln Z was 2.5× its
    reported error and that of a category's probability 3.7×; the per-category bounds draw each
    category in proportion to its volume (200 seeds: 1.04× and 0.90×). Asked for explicitly
    there, the slice sampler warns."""
    if sampler is None:
        return "ellipsoid" if embedded_choices else None
    if sampler == "slice" and embedded_choices:
        warnings.warn(
            "sampler='slice' on a model with discrete choices: the slice chains seldom move "
            "between categories, so the errors reported for ln Z and for each category's "
            "probability are too small (2.5x and 3.7x on a test problem). Leave sampler unset "
            "(per-category bounds, sampler='ellipsoid') or use strategy='enumerate'.",
            ConvergenceWarning,
            stacklevel=6,  # the caller of bp.fit
        )
    return sampler


def _default_sampler(bridge: Bridge, data) -> str:
    """``"ellipsoid"`` where every prior is uniform and there are at most
    :data:`ELLIPSOID_MAX_DIM` parameters, else ``"slice"``.

    There the ellipsoid's rejection sampling draws each new point exactly from the prior inside
    the contour (where its bound covers the contour), with 2-30× fewer likelihood evaluations
    than the slice chains and, for several modes, each mode's share drawn by volume rather than
    inherited from the survivors (docs/benchmarks.md, 2026-12-05: ln Z calibrated over 30-60
    seeds on Gaussians, rounded boxes, shells and two modes; a mode's share spread 0.03 against
    the slice chains' 0.09). Where it covers the contour poorly a step falls back to the slice
    chains. Other priors use a Metropolis–Hastings correction, measured only on a few problems,
    so they keep the slice chains by default."""
    if bridge.dim <= ELLIPSOID_MAX_DIM and _uniform_in_the_cube(bridge, data):
        return "ellipsoid"
    return "slice"


def _choice_coordinates(bridge: Bridge, choices: Mapping[str, int]) -> tuple:
    """``((index, K), ...)``: where each discrete choice's coordinate ``<choice>_u`` (``K``
    categories) lies in the bridge's parameter vector; choices fixed by a condition
    (``strategy="enumerate"``) are not parameters and are left out. The bounds split w =
    sigmoid(z) of that coordinate into the cells [k/K, (k+1)/K): for the model's U(0, 1)
    coordinate mapped by floor(K u) exactly its categories (for any other prior or map the
    cells are still a partition of the cube, each bounding its own live points: correct, not
    aligned with the likelihood's slabs, so slower)."""
    sites = bridge.unravel(jnp.arange(bridge.dim, dtype=jnp.float32))
    return tuple(
        (int(sites[site]), int(k))
        for site, k in choices.items()
        if site in sites and jnp.size(sites[site]) == 1 and k > 1
    )


def _uniform_in_the_cube(bridge: Bridge, data) -> bool:
    """Whether every latent site's prior is a ``Uniform``: then w = sigmoid(z) is uniform in the
    unit cube (NumPyro maps ``Uniform(a, b)`` to z = logit((x - a) / (b - a))), and the
    ellipsoid sampler draws by plain rejection (``inference._ellipsoid``). Found from the
    distributions' types, while tracing the program once (nothing is computed)."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro import handlers

    def base(fn):
        while isinstance(fn, dist.Independent | dist.ExpandedDistribution):
            fn = fn.base_dist
        return fn

    found: list[bool] = []

    def probe(data):
        with numpyro.validation_enabled(False), handlers.block():
            trace = handlers.trace(handlers.seed(bridge.model_fn, 0)).get_trace(**data)
        found.append(
            all(type(base(trace[s]["fn"])) is dist.Uniform for s in bridge.info.latent_sites)
        )
        return jnp.zeros(())

    jax.make_jaxpr(lambda _: probe(data))(0.0)
    return found[0]


def _algorithm(
    bridge: Bridge,
    num_inner_steps: int,
    num_delete: int,
    sampler: str = "slice",
    choices: tuple = (),
    with_fallback: bool = True,
) -> Callable:
    """``data -> blackjax.nss(...)`` on the bridge's prior and likelihood (a NaN likelihood is
    −∞: outside every contour), its inner update :func:`fused_slice_update` or, for
    ``sampler="ellipsoid"``, :func:`ellipsoid_update` (one bound per category where the model
    has discrete ``choices``, ``((index, K), ...)``; without its slice fallback unless
    ``with_fallback``: see :func:`build_chunk`)."""
    import blackjax
    from blackjax.ns import adaptive
    from blackjax.ns.base import StateWithLogLikelihood
    from blackjax.ns.nss import live_covariance_factor

    def checked(u, data):
        """(log prior, log-likelihood) from one run of the program (tracing it once)."""
        log_prior, value = bridge.split_log_density(u, data)
        return log_prior, jnp.where(jnp.isnan(value), -jnp.inf, value)

    lapack: list[bool] = []  # found once: it depends on the program and the data's shapes
    uniform: list[bool] = []

    def algorithm(data):
        if not lapack:
            lapack.append(_lapack_on_cpu(bridge, data))
            uniform.append(sampler == "ellipsoid" and _uniform_in_the_cube(bridge, data))
        per_point = one_at_a_time(checked) if lapack[0] else checked
        # custom_vmap traces the program twice: only where there are devices to split over
        split = _split_when_batched(per_point) if len(devices_in_use()) > 1 else per_point

        def init_state(u, loglikelihood_birth=jnp.nan):
            log_prior, log_likelihood = split(u, data)
            birth = loglikelihood_birth * jnp.ones_like(log_likelihood)
            return StateWithLogLikelihood(u, log_prior, log_likelihood, birth)

        def chains_in_one_loop(constrained_step, num_steps, num_chains):
            del constrained_step  # blackjax's per-chain step: replaced, same kernel
            if sampler == "ellipsoid":  # poorly bounded steps: slice chains at their defaults
                slice_steps = _slice_steps(bridge.dim)
                slices = fused_slice_update(init_state, slice_steps, num_chains)
                return ellipsoid_update(  # fallback None: a step that needs it stalls the chunk
                    init_state,
                    num_steps,
                    num_chains,
                    fallback=slices if with_fallback else None,
                    min_rate=_min_rate(uniform[0], slice_steps),
                    choices=choices,
                    uniform_prior=uniform[0],
                )
            return fused_slice_update(init_state, num_steps, num_chains)

        def unused(u):  # blackjax's own per-density calls are all replaced by init_state's
            raise AssertionError("nested: a density evaluated outside init_state")

        algo = blackjax.nss(
            unused,
            unused,
            num_inner_steps=num_inner_steps,
            num_delete=num_delete,
            update_strategy=chains_in_one_loop,
        )

        def init(positions, rng_key=None):
            """blackjax's ``nss`` init with :func:`init_state` (one trace of the program)."""
            return adaptive.init(
                positions,
                init_state_fn=jax.vmap(init_state),
                update_inner_kernel_params_fn=live_covariance_factor,
                rng_key=rng_key,
            )

        return algo._replace(init=init)

    return algorithm


def _split_when_batched(densities: Callable) -> Callable:
    """``densities(u, data)`` (log prior and log-likelihood) whose ``vmap`` over ``u`` (the
    parallel chains, the live points) splits the batch over the devices in use
    (:func:`~bayesplug.inference.driver.split_over_devices`): the evaluations, a nested run's
    cost, run on every device. ``data`` is an argument (it may be traced), never batched."""

    @jax.custom_batching.custom_vmap
    def wrapped(u, data):
        return densities(u, data)

    @wrapped.def_vmap
    def _split(axis_size, in_batched, u, data):
        u_batched, data_batched = in_batched
        data_axes = jax.tree.map(lambda b: 0 if b else None, data_batched)
        if u_batched and not any(jax.tree.leaves(data_batched)):  # blackjax's chains
            u = split_over_devices(u, axis_size)
        in_axes = (0 if u_batched else None, data_axes)
        out = jax.vmap(densities, in_axes=in_axes)(u, data)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


def _check_initial_points(log_likelihood, num_live: int) -> None:
    """Warn when prior draws have a NaN likelihood; refuse when none is finite."""
    num_nan = int(np.sum(np.isnan(log_likelihood)))
    if num_nan:
        warnings.warn(
            f"{num_nan} of {num_live} initial live points (prior draws) have a NaN "
            "log-likelihood; they are treated as -inf (outside every likelihood contour). "
            "If this is many, check the model for invalid parameter regions.",
            ConvergenceWarning,
            stacklevel=4,
        )
    if not np.isfinite(log_likelihood).any():
        from ..errors import BayesplugError

        raise BayesplugError(
            f"every one of the {num_live} prior draws gives a log-likelihood of -inf or NaN: "
            "nested sampling cannot start. Check that the priors cover parameter values "
            "under which the data are possible."
        )


def converged(state, dlogz: float) -> jax.Array:
    """True once the live points could add less than ``dlogz`` to ln Z:
    ln(Z + Z_live) − ln Z < dlogz."""
    remaining = jnp.logaddexp(state.integrator.logZ, state.integrator.logZ_live)
    return remaining - state.integrator.logZ < dlogz


def build_chunk(
    algorithm: Callable, *, steps_per_chunk: int, num_delete: int, dim: int, dtype, dlogz: float
) -> Callable:
    """``advance((state, key), data, limit) -> ((state, key), DeadBuffer, stalled)``: at most
    ``limit`` (≤ ``steps_per_chunk``, traced) steps of ``algorithm(data)`` (blackjax's nested
    slice sampler), or until :func:`converged`; each step's deleted points, their birth contours
    and likelihood evaluations land in a fixed-size buffer. Pure: jit it.

    An ellipsoid update built without its slice fallback (``_algorithm(...,
    with_fallback=False)``: a smaller program, compiled ~40% faster) marks a step that needs it;
    that step is undone (state and key as before it) and the chunk stops with ``stalled`` true,
    for the driver to redo the step with the full program, compiled only then."""

    def advance(carry, data, limit):
        state, key = carry
        algo = algorithm(data)
        empty = DeadBuffer(
            jnp.zeros((steps_per_chunk, num_delete, dim), dtype),
            jnp.zeros((steps_per_chunk, num_delete), dtype),
            jnp.zeros((steps_per_chunk, num_delete), dtype),
            jnp.zeros((steps_per_chunk,), jnp.int32),
            jnp.zeros((), jnp.int32),
        )

        def cond(c):
            state, _, buffer, stalled = c
            return (buffer.count < limit) & ~converged(state, dlogz) & ~stalled

        def body(c):
            before, key_before, buffer, _ = c
            key, step_key = jax.random.split(key_before)
            state, info = algo.step(step_key, before)
            dead = info.particles
            slices = info.update_info
            needs = getattr(slices, "needs_fallback", None)
            stalled = jnp.asarray(False) if needs is None else jnp.any(needs)
            state = jax.tree.map(lambda old, new: jnp.where(stalled, old, new), before, state)
            key = jnp.where(stalled, key_before, key)
            evaluations = jnp.sum(slices.num_expansions) + jnp.sum(slices.num_shrink)
            i = buffer.count  # a stalled step's row is written, not counted, and overwritten
            buffer = DeadBuffer(
                buffer.position.at[i].set(dead.position),
                buffer.loglikelihood.at[i].set(dead.loglikelihood),
                buffer.loglikelihood_birth.at[i].set(dead.loglikelihood_birth),
                buffer.evaluations.at[i].set(evaluations.astype(jnp.int32)),
                i + jnp.where(stalled, 0, 1),
            )
            return state, key, buffer, stalled

        carry = (state, key, empty, jnp.asarray(False))
        state, key, buffer, stalled = jax.lax.while_loop(cond, body, carry)
        # the live points stay split over the devices in use, chunk after chunk
        state = split_over_devices(state, state.particles.loglikelihood.shape[0])
        return (state, key), buffer, stalled

    return advance


def _evaluations(buffer) -> int:
    return int(np.sum(np.asarray(buffer.evaluations)[: int(buffer.count)]))


def _drive(
    compiled, carry, data, num_live, num_delete, steps_per_chunk, dlogz, max_steps, progress,
    max_time, full=None,
):  # fmt: skip
    """Chunks of adaptive length under the driver: one step first, then as many as fill
    CHUNK_SECONDS at the measured time per step (at most one e-fold, the buffer's size, and never
    past ``max_steps``), so the progress bar, Ctrl-C and max_time act within about CHUNK_SECONDS
    whatever a step costs. Steps are counted from the state (:func:`steps_taken`), so a resumed
    run stops at the same ``max_steps`` as an uninterrupted one. After a chunk of ``compiled``
    stalls (a step needing the slice fallback it was built without), the next chunk is one step
    of ``full()`` (the program with the fallback, compiled on first use)."""
    shown = [num_live]  # running total for the progress bar only

    def postfix(carry, buffer):
        state = carry[0]
        shown[0] += _evaluations(buffer)
        log_z = float(state.integrator.logZ)
        remaining = float(state.integrator.logZ_live) - log_z
        return {"ln Z": f"{log_z:.3f}", "ln Z_live - ln Z": f"{remaining:.2f}", "evals": shown[0]}

    limit = [1]
    redo = [False]  # the last chunk stalled: its next step needs the full program

    def adaptive(carry):
        if redo[0]:
            carry, buffer, _ = full()(carry, data, jnp.int32(1))
            redo[0] = False
            return carry, buffer
        start = time.perf_counter()
        left = max_steps - steps_taken(carry[0], num_live, num_delete)
        carry, buffer, stalled = compiled(carry, data, jnp.int32(max(1, min(limit[0], left))))
        count = int(jax.block_until_ready(buffer).count)
        redo[0] = bool(stalled)
        if count:
            per_step = (time.perf_counter() - start) / count
            limit[0] = int(np.clip(CHUNK_SECONDS / per_step, 1, steps_per_chunk))
        return carry, buffer

    def done(carry, _):
        state = carry[0]
        return (
            bool(converged(state, dlogz)) or steps_taken(state, num_live, num_delete) >= max_steps
        )

    return run_in_chunks(
        adaptive,
        carry,
        num_chunks=max_steps,
        steps_per_chunk=1,
        progress=progress,
        description="nested sampling",
        postfix=postfix,
        max_time=max_time,
        done=done,
        total_steps=None,
        steps_done=lambda buffer: int(buffer.count),
    )


def steps_taken(state, num_live: int, num_delete: int) -> int:
    """Nested-sampling steps behind ``state``, from its prior volume: each step deletes
    ``num_delete`` of ``num_live`` points and shrinks ln X by sum_k 1 / (num_live - k)
    (blackjax's integrator), so the count needs no counter of its own and survives a resume
    (ln X is a floating-point sum: the count is exact while its rounding stays below half a
    step, and a safety limit otherwise)."""
    per_step = float(np.sum(1.0 / (num_live - np.arange(num_delete))))
    return int(round(-float(state.integrator.logX) / per_step))


def _warn_if_stopped(run, num_steps: int, is_converged: bool, max_steps: int, dlogz) -> None:
    if run.interrupted:
        warnings.warn(
            f"nested sampling stopped early: {run.reason}, after {num_steps} steps. ln Z "
            "and the posterior come from the points so far and are provisional.",
            InterruptedRunWarning,
            stacklevel=4,
        )
    elif not is_converged:
        warnings.warn(
            f"nested sampling reached max_steps={max_steps} before converging (dlogz={dlogz}): "
            "ln Z is underestimated and the posterior incomplete. Raise max_steps, or "
            "num_live / num_delete to move faster.",
            ConvergenceWarning,
            stacklevel=4,
        )


def _collect(outputs, final_state, num_live: int, num_delete: int) -> NestedRun:
    """Dead points in order of death, then the final live points (ascending likelihood)."""
    parts = []
    for buffer in outputs:
        count = int(buffer.count)
        parts.append(
            DeadBuffer(
                np.asarray(buffer.position)[:count],
                np.asarray(buffer.loglikelihood)[:count],
                np.asarray(buffer.loglikelihood_birth)[:count],
                np.asarray(buffer.evaluations)[:count],
                count,
            )
        )
    dim = final_state.particles.position.shape[-1]
    if parts:
        position = np.concatenate([p.position.reshape(-1, dim) for p in parts])
        loglik = np.concatenate([p.loglikelihood.ravel() for p in parts])
        birth = np.concatenate([p.loglikelihood_birth.ravel() for p in parts])
        steps = position.shape[0] // num_delete
    else:
        position = np.zeros((0, dim))
        loglik = birth = np.zeros(0)
        steps = 0
    live = final_state.particles
    order = np.argsort(np.asarray(live.loglikelihood))
    # Batch deletion of k points from n live: effective live counts n, n-1, ..., n-k+1 within
    # each step (Fowlie, Handley & Su 2021); the final live points are removed one by one.
    num_live_dead = np.tile(np.arange(num_live, num_live - num_delete, -1), steps)
    return NestedRun(
        np.concatenate([position, np.asarray(live.position)[order]]),
        np.concatenate([loglik, np.asarray(live.loglikelihood)[order]]),
        np.concatenate([birth, np.asarray(live.loglikelihood_birth)[order]]),
        np.concatenate([num_live_dead, np.arange(num_live, 0, -1)]).astype(float),
    )


def _summarise(model, data, runs, rng, num_simulations, attrs, state, interrupted):
    """Evidence, weights, resampled posterior and tables from ``[(points, bridge, offset,
    fixed)]``: ``fixed`` holds the values of sites conditioned in that run (enumeration)."""
    import xarray as xr

    nested = NestedRun(
        *(np.concatenate(parts) for parts in zip(*(r[0] for r in runs), strict=True))
    )
    log_w = np.vstack(  # (N, S); run k's weights scaled by its prior mass exp(offset)
        [simulate_log_weights(p, num_simulations, rng) + offset for p, _, offset, _ in runs]
    )
    log_z_sims = _logsumexp(log_w, axis=0)
    log_z, log_z_err = float(np.mean(log_z_sims)), float(np.std(log_z_sims, ddof=1))
    # Per-point weights: the average over simulations of the normalised weights.
    weights = np.mean(np.exp(log_w - log_z_sims[None, :]), axis=1)
    weights /= weights.sum()
    finite = np.isfinite(nested.loglikelihood) & (weights > 0)
    information = float(np.sum(weights[finite] * nested.loglikelihood[finite]) - log_z)
    kish = 1.0 / np.sum(weights**2)
    num_draws = max(1, int(kish))
    index = np.sort(systematic_resample(weights, num_draws, rng))

    per_run = [
        {
            **bridge.constrain_many(points.position, data),
            **{k: np.full(points.position.shape[0], v) for k, v in fixed.items()},
        }
        for points, bridge, _, fixed in runs
    ]
    all_sites = {k: np.concatenate([sites[k] for sites in per_run]) for k in per_run[0]}
    samples = {k: v[index][None] for k, v in all_sites.items()}  # one "chain" of resampled draws
    points = {f"{k}": v for k, v in all_sites.items()}
    points.update(
        log_weight=np.log(np.maximum(weights, 1e-300)),
        log_likelihood=nested.loglikelihood,
        log_likelihood_birth=nested.loglikelihood_birth,
    )
    extra = {"nested_samples": points}
    for site, labels in getattr(model, "discrete_choices", {}).items():
        extra[f"discrete_{site}"] = _discrete_table(
            all_sites[site], labels, log_w, log_z_sims, xr, kish
        )
    attrs = {
        **attrs,
        "information": information,
        "kish_ess": float(kish),
        "num_points": int(nested.loglikelihood.shape[0]),
    }
    return RawResult(
        samples=samples,
        sample_stats={},
        log_evidence=(log_z, log_z_err),
        extra_groups=extra,
        attrs=attrs,
        state=state,
        interrupted=interrupted,
    )


def _discrete_table(choice, labels, log_w, log_z_sims, xr, ess):
    """Per-category posterior probability and evidence from the simulated weights.

    With a uniform prior over K categories, Z = (1/K) sum_k Z_k and the dead points of category k
    carry the mass (1/K) Z_k: ln Z_k = ln(sum of their weights) + ln K, p_k = Z_k / (K Z).
    Errors combine the spread over simulated volumes with the sampling error of which points
    fell in category k: var(p_k) += p_k (1 - p_k) / ESS, var(ln Z_k) += (1 - p_k) / (p_k ESS).
    """
    choice = np.asarray(choice).astype(int)
    k = len(labels)
    log_zk = np.stack([_logsumexp(log_w[choice == c], axis=0) for c in range(k)]) + np.log(k)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = np.exp(log_zk - np.log(k) - log_z_sims[None, :])
        p = prob.mean(axis=1)
        p_err = np.sqrt(prob.var(axis=1, ddof=1) + p * (1 - p) / ess)
        log_zk_err = np.sqrt(np.var(log_zk, axis=1, ddof=1) + (1 - p) / (p * ess))
        return xr.Dataset(
            {
                "probability": ("category", p),
                "probability_err": ("category", p_err),
                "log_evidence": ("category", np.mean(log_zk, axis=1)),
                "log_evidence_err": ("category", log_zk_err),
                "num_points": ("category", np.array([(choice == c).sum() for c in range(k)])),
            },
            coords={"category": list(labels)},
        )
