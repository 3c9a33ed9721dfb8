"""Backend ``flow_vi``: normalizing-flow variational inference, checked by importance sampling.

Rezende & Mohamed, "Variational Inference with Normalizing Flows" (ICML 2015): a flow q(v) is
fitted to the posterior by maximising the ELBO E_q[log p(y, v) - log q(v)] with NumPyro's ``SVI``
(``Trace_ELBO``, reparametrised gradients, an optax optimiser). It works on the model's
unconstrained parameter vector (centred on the prior median), so every model with continuous
latent variables can be fitted. Families (``flow=``): the paper's ``planar`` and ``radial``
flows, NumPyro's ``iaf`` and ``bnaf`` autoguides, flowjax's ``maf`` and ``nsf``, and the
``diagonal`` / ``full_rank`` Gaussian baselines (see :mod:`bayesplug.inference.flows`). A
one-dimensional target gets an independent N(0, 1) padding coordinate for the families that need
two dimensions (the padding changes neither the posterior nor the evidence).

After training, ``num_draws`` draws from the flow are weighted by ``w = p(y, v) / q(v)``:

* Pareto-smoothed importance sampling (Vehtari et al. 2024, ArviZ ``psislw``) gives k̂, reported
  by ``fit.diagnostics()``: above 0.7 the approximation is not to be trusted;
* the *importance shift*, the largest change the weights make to a coordinate's mean (in sds)
  or std (relative), also reported: above 0.2 the flow differs from the posterior even where
  k̂ looks fine (k̂ is estimated from the flow's own draws and cannot see regions it never
  visits);
* ``importance=True`` resamples the draws by the smoothed weights;
* ln Z = ln mean(w) with its delta-method standard error is ``fit.log_evidence``, so
  ``bp.compare`` can rank variational fits by evidence; the ELBO (a lower bound on ln Z) is in
  ``attrs``, the ELBO trace in ``sample_stats["elbo"]`` (dimension ``step``).

By default (``warm_start=True``) a diagonal Gaussian is fitted first and the flow is trained on
the coordinates it standardises (``u = m + s ⊙ w``, the Jacobian included), so the flow's layers
see a posterior of about unit scale whatever the model's units.

Training: Adam, ``num_particles`` draws per ELBO estimate (32: on small models more particles
cost almost nothing and cut the gradient noise), a cosine learning-rate schedule that decays to
1/100 of its peak over ``num_steps`` (the final, small steps are what make the tails right: on
Neal's funnel they take k̂ from ~0.8 to ~0.55). Early stopping is optional: with ``tol`` set,
plateaus lower the learning rate (optax's ``reduce_on_plateau``: the ELBO averaged over windows
of 100 steps has not gained ``tol`` nats for ``patience`` windows, and the rate is cut by 0.3)
and training stops once they have cut it below 1/100 — quicker, and good for the mean and
spread, but it ends before the schedule's last steps, and k̂ is worse for it (funnel: median
0.79 against 0.54 over six seeds), hence off by default.
A step with a NaN ELBO is skipped; ten in a row stop the run at the last good state, with a
warning that says what to change.

Budget: a step of the default 4-layer MAF costs ~0.16 ms on 2 CPU cores, nearly whatever the
particles. With ``importance=True`` a short run is often enough for means and spreads, and k̂
says when it is not: Neal's funnel needs 500 steps at ``learning_rate=0.03`` in 2-D and 1,500
at 0.02 in 10-D for stds within 5% (about a third of NUTS's time), while a strongly curved
posterior such as Haario's banana needs 15,000-20,000 steps (``benchmarks/flow_vi.py``).
For such long runs ``tails=True`` gives ``maf`` / ``nsf`` a learned tail layer
(:mod:`bayesplug.inference._tails`): at 20,000 steps x 64 particles, banana stds within 2.4%
instead of 6.2% over four seeds.

Examples
--------
>>> import bayesplug as bp, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0, 10))
...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
>>> fit = bp.fit(model, {"y": [1.0, 2.0, 3.0]}, method="flow_vi", flow="diagonal",
...              num_steps=1000, progress=False)
>>> mu = fit.idata.posterior["mu"]  # exact N(1.99, 0.58^2); 1,000 Adam steps land within ~0.1
>>> bool(abs(float(mu.mean()) - 1.99) < 0.25)
True
>>> fit.diagnostics()["pareto_k"] < 0.5
True
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..bridge import Bridge, program_key
from ..diagnostics import PARETO_K_MAX
from ..errors import BayesplugError, ConvergenceWarning, InputError, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, one_of, positive, positive_int
from . import svi as svi_kernel
from ._optim import LEARNING_RATE, OPTIMIZER, SCHEDULE, adam_with_schedule
from .driver import (
    data_signature,
    devices_in_use,
    keep_program,
    map_over_devices,
    nothing_to_keep,
    run_in_chunks,
)
from .flows import FLOWS, NEEDS_TWO_DIMS, SITE, TAILED, make_guide
from .resampling import systematic_resample

__all__ = ["FlowVIBackend"]

WINDOW = 100  # steps per chunk, and per window of the plateau rule
PLATEAU_FACTOR = 0.3  # learning-rate cut on a plateau
STOP_SCALE = 0.01  # stop once plateaus have cut the learning rate below 1/100 of its start
MAX_SKIPS = 10  # consecutive non-finite steps that count as divergence
IMPORTANCE_SHIFT_MAX = 0.2  # weights moving a mean (in sds) or a std by more than 20%
WARM_START_STEPS = 2000
DIVERGED_MESSAGE = (
    "The optimisation diverged (NaN ELBO) and was stopped at its last good state; "
    "lower learning_rate or init_scale and fit again."
)  # at most, for the diagonal Gaussian of the warm start
DEFAULT_NUM_FLOWS = {"planar": 16, "radial": 16, "iaf": 3, "bnaf": 1, "maf": 4, "nsf": 4}
# Families whose compiled programs are reused by later fits in the process: their guides close
# over nothing that depends on the seed (NumPyro's iaf / bnaf autoguides keep state of their own).
REUSABLE = frozenset({"diagonal", "full_rank", "planar", "radial", "maf", "nsf"})
_PROGRAMS: dict[tuple, _Programs] = {}  # most recent stages' programs, oldest first


class FlowVIBackend:
    """Normalizing-flow VI with a Pareto-smoothed importance-sampling check (module docstring)."""

    name: ClassVar[str] = "flow_vi"
    requires: ClassVar[frozenset[str]] = frozenset({"continuous"})
    options: ClassVar[Mapping[str, Option]] = {
        "flow": Option("maf", (str,), "variational family: " + ", ".join(FLOWS), one_of(FLOWS)),
        "num_flows": Option(
            None,
            (int, type(None)),
            "flow layers (default: planar/radial 16, iaf 3, bnaf 1, maf 4, nsf 4)",
            positive_int,
        ),
        "num_steps": Option(10_000, (int,), "optimisation steps (at most)", positive_int),
        "learning_rate": LEARNING_RATE,
        "schedule": SCHEDULE,
        "optimizer": OPTIMIZER,
        "num_particles": Option(32, (int,), "draws per ELBO estimate", positive_int),
        "init_scale": Option(0.1, (float,), "initial std of the flow's base Gaussian", positive),
        "tol": Option(
            None,
            (float, type(None)),
            "early stopping: least gain (nats) of the ELBO averaged over 100 steps that is not a "
            "plateau; None (default): run the whole schedule",
            positive,
        ),
        "patience": Option(
            10, (int,), "windows of 100 steps without gain that make a plateau", positive_int
        ),
        "num_draws": Option(10_000, (int,), "draws from the fitted flow", positive_int),
        "importance": Option(
            False, (bool,), "resample the draws by their Pareto-smoothed importance weights"
        ),
        "warm_start": Option(
            True, (bool,), "fit a diagonal Gaussian first and standardise the flow's coordinates"
        ),
        "tails": Option(
            False,
            (bool,),
            "maf / nsf only: a learned sinh-arcsinh tail layer before the final affine map "
            "(better on curved or heavy-tailed posteriors with long budgets)",
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
        flow: str,
        num_flows: int | None,
        num_steps: int,
        learning_rate: float,
        schedule: str,
        optimizer: Any,
        num_particles: int,
        init_scale: float,
        tol: float | None,
        patience: int,
        num_draws: int,
        importance: bool,
        warm_start: bool,
        tails: bool,
        max_time: float | None,
    ) -> RawResult:
        """Fit the flow, draw from it and weigh the draws against the posterior."""
        if tails and flow not in TAILED:
            raise InputError(
                "tails",
                f"adds a layer to the flowjax flows ({', '.join(sorted(TAILED))}), not to "
                f"flow={flow!r}.",
                "Choose flow='maf' or 'nsf', or leave tails=False.",
            )
        data = dict(data)
        bridge = Bridge.from_model(model.model, data)
        dim = bridge.dim
        pad = int(dim == 1 and flow in NEEDS_TWO_DIMS)
        num_flows = num_flows or DEFAULT_NUM_FLOWS.get(flow, 1)
        init_key, warm_key, main_key, draw_key = jax.random.split(rng_key, 4)
        u0 = bridge.initial_point(init_key, data)
        settings = {
            "learning_rate": learning_rate,
            "schedule": schedule,
            "optimizer": optimizer,
            "num_particles": num_particles,
            "tol": tol,
            "patience": patience,
            "max_time": max_time,
            "progress": progress,
            "model_key": program_key(model.model),
        }
        shift, scale = u0, jnp.ones(dim)
        train = functools.partial(_train, bridge, settings, data)  # one stage of training
        attrs: dict[str, Any] = {"flow": flow, "num_flows": num_flows, "warm_start_steps": 0}
        warm_compile = warm_seconds = 0.0
        if warm_start and flow != "diagonal":
            first = _warm_start(train, shift, scale, init_scale, warm_key, num_steps)
            attrs["warm_start_steps"] = first.steps
            warm_compile, warm_seconds = first.compile_time, first.run.seconds
            params = first.svi.get_params(first.state)
            shift, scale = shift + params["loc"], params["scale"]
        # after a warm start the flow starts at the fitted Gaussian (unit scale in its
        # coordinates); messages still quote the user's init_scale, the setting they can change
        start_scale = 1.0 if warm_start and flow != "diagonal" else init_scale
        stage = train(flow, num_flows, shift, scale, pad, start_scale, main_key, num_steps, tails)
        run, elbo_trace, bad = stage.run, stage.elbo, stage.diverged
        attrs.update(
            compile_time=stage.compile_time + warm_compile,
            training_time=warm_seconds + run.seconds,  # the warm start's steps included
            num_steps_run=stage.steps,
            skipped_steps=int(np.sum(~np.isfinite(elbo_trace))) - (MAX_SKIPS if bad else 0),
            stopped_on_plateau=int(
                not bad and bool(run.outputs) and float(run.outputs[-1][1]) < STOP_SCALE
            ),
            diverged=int(bad),
        )
        _warn_if_stopped(stage, flow, init_scale, learning_rate, num_steps)
        return _weighted_draws(stage, bridge, draw_key, num_draws, importance, attrs)


def _weighted_draws(stage, bridge, draw_key, num_draws, importance, attrs):
    """Draws from the trained flow mapped back to the model's sites, their importance weights
    against the posterior (PSIS, k-hat, the evidence estimate) and the result."""
    import arviz  # noqa: F401  (imported before the clock starts: PSIS below uses it)

    dim = bridge.dim
    run, state, elbo_trace = stage.run, stage.state, stage.elbo
    draw_start = time.perf_counter()

    def constrain(v, inputs):
        data, shift, scale = inputs[:3]
        u = shift + scale * v[:dim]
        return u, bridge.constrain_with_deterministic(u, data)

    log_q, log_p, us, samples, draw_compile = _draw(stage, constrain, state, draw_key, num_draws)
    attrs["compile_time"] += draw_compile
    weights = _Weights(log_p, log_q)
    attrs.update(weights.attrs)
    attrs["importance_shift"] = _importance_shift(us, weights.smoothed)
    messages = _approximation_messages(attrs["pareto_k"], attrs["importance_shift"])
    if stage.diverged:
        messages.insert(0, DIVERGED_MESSAGE)
    order = np.arange(num_draws)
    if importance:
        rng = np.random.default_rng(np.asarray(jax.random.key_data(draw_key)).ravel())
        order = np.sort(systematic_resample(weights.smoothed, num_draws, rng))
    attrs["draws_are"] = "resampled" if importance else "independent"
    attrs["drawing_time"] = time.perf_counter() - draw_start - draw_compile
    import xarray as xr

    return RawResult(
        samples={k: np.asarray(a)[order][None] for k, a in samples.items()},
        sample_stats={
            "lp": log_p[order][None],
            "log_q": log_q[order][None],
            "log_weight": weights.log_w[order][None],
            # every draw from the flow, before any resampling: what k-hat was computed from
            "flow_log_weight": xr.DataArray(weights.log_w, dims=["flow_draw"]),
            "elbo": xr.DataArray(elbo_trace, dims=["step"]),
        },
        log_evidence=weights.log_evidence,
        attrs=attrs,
        state=state,
        interrupted=run.interrupted,
        messages=messages,
    )


def _warm_start(train, shift, scale, init_scale, key, num_steps):
    """A diagonal Gaussian fitted first, to standardise the coordinates: the flow then works
    where the posterior is about N(0, I), whatever the model's scales."""
    warm_steps = min(num_steps, WARM_START_STEPS)
    first = train("diagonal", 1, shift, scale, 0, init_scale, key, warm_steps)
    if first.run.interrupted:
        reason = first.run.reason
        raise nothing_to_keep(
            first.run, f"flow_vi stopped during its warm start ({reason}): nothing to keep."
        )
    return first


def _warn_if_stopped(stage, flow, init_scale, learning_rate, num_steps) -> None:
    """Refuse a flow whose ELBO was never finite; warn on divergence or an early stop."""
    if stage.diverged:
        finite_steps = np.flatnonzero(np.isfinite(stage.elbo))
        last_good = int(finite_steps[-1]) + 1 if finite_steps.size else 0
        if last_good == 0:
            raise BayesplugError(
                f"flow_vi could not start: the ELBO of the initial {flow!r} flow is NaN or "
                "infinite. Lower init_scale (now "
                f"{init_scale:g}) so the first draws stay near the prior median, or check the "
                "model's log density at its prior median."
            )
        warnings.warn(
            f"The ELBO became NaN from step {last_good + 1} on: the optimisation diverged. "
            f"Keeping the last good state (step {last_good}). Lower learning_rate (now "
            f"{learning_rate:g}, try {learning_rate / 3:.2g}) or init_scale (now "
            f"{init_scale:g}).",
            ConvergenceWarning,
            stacklevel=3,
        )
    if stage.run.interrupted:
        warnings.warn(
            f"flow_vi stopped early: {stage.run.reason}. Drawing from the flow as trained so "
            f"far ({stage.steps} of {num_steps} steps).",
            InterruptedRunWarning,
            stacklevel=3,
        )


def _approximation_messages(k_hat: float, shift: float) -> list[str]:
    """The verdict on the flow as an approximation of the posterior, in words."""
    messages = []
    if k_hat > PARETO_K_MAX:
        messages.append(
            f"Do not trust this approximation: the importance weights of its draws against "
            f"the posterior have Pareto k-hat = {k_hat:.2f} (above {PARETO_K_MAX}), so "
            "the flow misses part of the posterior and its means, spreads and evidence "
            "can be badly off, even with importance=True. Use a more flexible flow "
            "(flow='nsf' or 'maf', more num_flows), train longer, or fit with "
            "method='nuts'."
        )
    if shift > IMPORTANCE_SHIFT_MAX:
        messages.append(
            f"The variational draws are off: weighting them against the posterior moves "
            f"a mean or a spread by {shift:.0%} (more than "
            f"{IMPORTANCE_SHIFT_MAX:.0%}), so the flow differs from the posterior. "
            "importance=True corrects this only where the flow has draws; prefer a more "
            "flexible flow, longer training, or method='nuts'."
        )
    return messages


@dataclass
class _Stage:
    """One SVI training run (the warm start or the flow itself)."""

    svi: Any
    guide: Any
    log_joint: Any
    inputs: Any  # (data, shift, scale, guide constants): the arguments of the programs
    programs: _Programs
    state: Any
    run: Any
    elbo: np.ndarray
    compile_time: float
    steps: int
    diverged: bool


class _Programs(NamedTuple):
    """What a stage compiled, for later fits with the same key: the target (log joint and
    NumPyro program), the SVI object and guide the programs were traced with (the programs take
    the guide's constants as arguments), the training chunk, the drawing programs by size (the
    last ``PROGRAMS_KEPT`` sizes)."""

    target_pair: tuple
    svi: Any
    guide: Any
    advance: Any
    draws: dict


def _program_key(settings, data, flow, num_flows, pad, init_scale, num_steps, tails):
    """What the compiled programs of a stage depend on, or None (no reuse): the model, the data's
    shapes and types (data are arguments, never constants), the flow, every setting traced
    into the step, the precision and the devices."""
    if flow not in REUSABLE:
        return None
    key = (
        settings["model_key"],
        data_signature(data),
        flow,
        num_flows,
        pad,
        float(init_scale),
        bool(tails),
        int(num_steps),
        *(settings[k] for k in ("learning_rate", "schedule", "optimizer", "num_particles")),
        settings["tol"],
        settings["patience"],
        bool(jax.config.jax_enable_x64),
        devices_in_use(),
    )
    try:
        hash(key)
    except TypeError:  # an unhashable model or optimizer: no reuse
        return None
    return key


def _optimizer(settings, num_steps: int):
    """The user's optax transform, else Adam with the schedule; with ``tol``, chained with
    optax's reduce-on-plateau (the learning rate falls by PLATEAU_FACTOR when the loss stops
    improving by ``tol`` for ``patience`` windows; the run stops below STOP_SCALE)."""
    import optax

    tx = settings["optimizer"] or adam_with_schedule(
        settings["learning_rate"], settings["schedule"], num_steps
    )
    if settings["tol"] is None:
        return tx
    plateau = optax.contrib.reduce_on_plateau(
        factor=PLATEAU_FACTOR,
        patience=settings["patience"],
        atol=settings["tol"],
        rtol=0.0,
        accumulation_size=WINDOW,
        min_scale=STOP_SCALE * PLATEAU_FACTOR,
    )
    return optax.chain(tx, plateau)


def _standardised_target(bridge, pad: int):
    """The log joint of w, u = shift + scale * w (a padding coordinate is N(0, 1)), and the
    NumPyro program of one site ``w`` that carries it. Both take ``inputs = (data, shift,
    scale)``: shift and scale are arguments, not constants, so the compiled programs do not
    depend on them and repeated fits of one model (SBC, ``fit_many``, a second process) reuse
    them from JAX's caches."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    dim = bridge.dim

    @jax.jit  # compiled once: SVI.init and the autoguides' set-up call it eagerly
    def log_joint(w, inputs):
        data, shift, scale = inputs[:3]
        value = bridge.log_density(shift + scale * w[:dim], data) + jnp.sum(jnp.log(scale))
        if pad:
            value = value - 0.5 * w[dim] ** 2 - 0.5 * math.log(2 * math.pi)
        return value

    def target(inputs):
        shape = (dim + pad,)
        w = numpyro.sample(SITE, dist.ImproperUniform(constraints.real_vector, (), shape))
        numpyro.factor("log_joint", log_joint(w, inputs))

    return log_joint, target


def _train(
    bridge,
    settings,
    data,
    flow,
    num_flows,
    shift,
    scale,
    pad,
    init_scale,
    key,
    num_steps,
    tails=False,
) -> _Stage:
    """Fit ``flow`` to the posterior of ``w``, where ``u = shift + scale * w`` (plus padding).

    The compiled training chunk (and the drawing program) of an earlier fit with the same model,
    data shapes, flow and settings is reused (:func:`_program_key`): a repeated fit (SBC,
    ``fit_many``, another seed) then traces and compiles nothing. Its own start comes from its
    own key, so the result is the same as in a fresh process.
    """
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import optax_to_numpyro

    dim = bridge.dim
    guide_key, svi_key = jax.random.split(key)
    cache_key = _program_key(settings, data, flow, num_flows, pad, init_scale, num_steps, tails)
    programs = _PROGRAMS.get(cache_key) if cache_key is not None else None
    log_joint, target = (
        _standardised_target(bridge, pad) if programs is None else programs.target_pair
    )
    guide = make_guide(flow, target, dim + pad, num_flows, init_scale, guide_key, tails)
    inputs = (data, jnp.asarray(shift), jnp.asarray(scale), guide.constants)
    tol = settings["tol"]
    tx = _optimizer(settings, num_steps)
    num_particles = settings["num_particles"]
    svi = SVI(target, guide, optax_to_numpyro(tx), Trace_ELBO(num_particles=num_particles))
    carry = svi_kernel.init(svi, svi_key, inputs)
    steps_per_chunk = min(WINDOW, num_steps)
    num_chunks = math.ceil(num_steps / steps_per_chunk)

    compile_start = time.perf_counter()
    if programs is None:
        kernel = svi_kernel.build_kernel(svi, max_skips=MAX_SKIPS)

        def advance(carry, inputs):
            # a step whose ELBO or new parameters are not finite is refused (a rare draw in a
            # tail can do that); MAX_SKIPS in a row means the optimisation has diverged
            carry, info = jax.lax.scan(lambda c, _: kernel(c, inputs), carry, None, steps_per_chunk)
            return carry, (info.elbo, _plateau_scale(carry.svi_state, tol))

        compiled = jax.jit(advance).lower(carry, inputs).compile()
        programs = _Programs((log_joint, target), svi, guide, compiled, {})
        if cache_key is not None:
            keep_program(_PROGRAMS, cache_key, programs)
    compiled = programs.advance
    compile_time = time.perf_counter() - compile_start

    learning_rate = settings["learning_rate"]
    run = run_in_chunks(
        lambda c: compiled(c, inputs),
        carry,
        num_chunks=num_chunks,
        steps_per_chunk=steps_per_chunk,
        progress=settings["progress"],
        description=f"flow_vi ({flow})",
        postfix=lambda c, out: {
            "elbo": f"{np.nanmean(np.asarray(out[0])):.3f}",
            "lr": f"{learning_rate * float(out[1]):.2g}",
        },
        max_time=settings["max_time"],
        done=lambda c, out: int(c.streak) >= MAX_SKIPS or float(out[1]) < STOP_SCALE,
        total_steps=num_steps,
    )
    diverged = int(run.state.streak) >= MAX_SKIPS
    state = run.state.previous if diverged else run.state.svi_state
    elbo = np.concatenate([np.asarray(o[0]) for o in run.outputs]) if run.outputs else []
    elbo = np.asarray(elbo, dtype=float)
    return _Stage(
        svi=svi,
        guide=guide,
        log_joint=log_joint,
        inputs=inputs,
        programs=programs,
        state=state,
        run=run,
        elbo=elbo,
        compile_time=compile_time,
        steps=int(np.sum(np.isfinite(elbo))),
        diverged=diverged,
    )


def _importance_shift(us: np.ndarray, weights: np.ndarray) -> float:
    """How far the importance weights move the draws: the largest, over coordinates, of
    |weighted mean - mean| / std and |weighted std / std - 1|. Near 0 for a good approximation;
    a check that, unlike k-hat, also sees a q that never visits part of the posterior."""
    mean, sd = us.mean(0), us.std(0) + 1e-300
    w_mean = weights @ us
    w_sd = np.sqrt(np.maximum(weights @ (us - w_mean) ** 2, 0.0))
    return float(max(np.max(np.abs(w_mean - mean) / sd), np.max(np.abs(w_sd / sd - 1))))


def _plateau_scale(state, tol):
    """The factor by which plateaus have cut the learning rate so far (1 without the rule)."""
    if tol is None:
        return jnp.ones(())
    chain_state = state.optim_state[1][1]  # numpyro: (step, (params, optax state))
    return jnp.asarray(chain_state[-1].scale)


def _draw(stage, constrain, state, key, num_draws):
    """``num_draws`` draws v ~ q, in batches: log q(v), log p(y, v), the model's unconstrained
    vector u and its constrained sites. One compiled function, from the SVI state on (eager
    operations would each compile on first use, inside the timed drawing); the draws are split
    over the devices in use (:func:`~bayesplug.inference.driver.map_over_devices`)."""
    from numpyro import handlers
    from numpyro.infer.util import log_density

    def some(keys, params, inputs):  # the draws of one device
        def one(key):
            log_q, trace = log_density(handlers.seed(stage.guide, key), (inputs,), {}, params)
            v = trace[SITE]["value"]
            u, sites = constrain(v, inputs)
            return log_q, stage.log_joint(v, inputs), u, sites

        return jax.lax.map(one, keys, batch_size=512)

    def draws(state, key, inputs):
        params = stage.svi.get_params(state)
        return map_over_devices(some, jax.random.split(key, num_draws), params, inputs)

    start = time.perf_counter()
    compiled = stage.programs.draws.get(num_draws)
    if compiled is None:
        compiled = jax.jit(draws).lower(state, key, stage.inputs).compile()
        keep_program(stage.programs.draws, num_draws, compiled)  # the last 8 sizes
    compile_time = time.perf_counter() - start
    log_q, log_p, us, sites = compiled(state, key, stage.inputs)
    samples = {k: np.asarray(a) for k, a in sites.items()}
    return np.asarray(log_q, float), np.asarray(log_p, float), np.asarray(us), samples, compile_time


class _Weights:
    """Importance weights p/q: PSIS k̂, ESS, the ln Z estimate and the ELBO."""

    def __init__(self, log_p: np.ndarray, log_q: np.ndarray):
        import arviz as az

        log_w = np.where(np.isfinite(log_p) & np.isfinite(log_q), log_p - log_q, -np.inf)
        finite = np.isfinite(log_w)
        if not finite.any():
            raise BayesplugError(
                "Every draw from the fitted flow has a NaN or infinite log density: the "
                "approximation missed the posterior entirely. Train longer or lower learning_rate."
            )
        self.log_w = log_w
        n = log_w.size
        peak = np.max(log_w[finite])
        w = np.exp(log_w - peak)
        mean_w = np.mean(w)
        log_z = float(peak + np.log(mean_w))
        log_z_err = float(np.std(w) / (mean_w * np.sqrt(n)))
        self.log_evidence = (log_z, log_z_err)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ArviZ warns about k > 0.7: we report it in words
            smoothed, k_hat = az.psislw(np.where(finite, log_w, -1e300), reff=1.0)
        weights = np.exp(smoothed - np.max(smoothed))
        self.smoothed = weights / np.sum(weights)
        elbo = log_w[finite]
        self.attrs = {
            "pareto_k": float(k_hat),
            "importance_ess": float(1.0 / np.sum(self.smoothed**2)),
            "elbo": float(np.mean(elbo)) if finite.all() else -np.inf,
            "elbo_err": float(np.std(elbo) / np.sqrt(elbo.size)),
            "num_nonfinite_draws": int(n - finite.sum()),
        }
