"""Backends ``sgld``, ``sghmc`` and ``structured_sgmcmc``: stochastic-gradient MCMC on mini-batches.

* ``sgld``: Langevin dynamics with mini-batch gradients (Welling & Teh 2011), blackjax's kernel;
  ``preconditioning=True`` gives pSGLD's RMSprop preconditioner (Li et al. 2016, written here:
  blackjax has none).
* ``sghmc``: stochastic-gradient Hamiltonian Monte Carlo with friction (Chen, Fox & Guestrin
  2014), blackjax's kernel.
* ``structured_sgmcmc``: structured SG-MCMC (Alexos, Boyd & Mandt, ICML 2022): the parameters are
  split into groups, and each group's gradient is taken with the *other* groups' values drawn from
  buffers of their past samples, so the chain targets the structured mean-field fixed point
  q(θ) = Π_m q_m(θ_m) with q_m ∝ exp E_{q_-m}[log p(θ, y)]; the dropout variant (each group
  current with probability ``dropout_p``, ``vi_batch`` Monte Carlo rows) keeps the cost
  independent of the number of groups.

Mini-batches (capability ``minibatch``): when the likelihood is a ``numpyro.plate`` over the
leading axis of N data, every step draws ``batch_size`` indices (with replacement) and subsamples
each data array whose leading axis has length N; the log-likelihood of the batch is scaled by
N / batch_size, which keeps the gradient unbiased. The parameters live on the unconstrained space
(the bridge's flat vector); the draws are mapped back to the constrained sites.

By default (``adapt=True``) the burn-in adaptation of :mod:`~bayesplug.inference.sg_adaptation`
runs first: L-BFGS to the mode, a Laplace preconditioner there (the chains run in standardised
coordinates), control variates centred on the mode, and a step size chosen from the measured
mini-batch gradient noise so that the posterior variance is inflated by about
``variance_tolerance`` (10%): no step size to set by hand, on unscaled data too. A chain that goes
``runaway_scales`` Laplace scales from the mode, or non-finite, stops the run with a
``ConvergenceWarning`` and the draws before it are kept. ``adapt=False`` gives the plain samplers
(step size 1e-4 unless set, in the unconstrained space).

Steps use blackjax's convention θ ← θ + ε ∇log p̂(θ) + sqrt(2ε) ξ (Welling & Teh write ε/2).
``schedule="polynomial"`` decays the step size as ε_t = ε (1 + t/100)^(-decay).
``control_variates=True`` (the default when adapting) centres the mini-batch gradient on a
posterior mode: the adaptation's L-BFGS mode, or with ``adapt=False`` one found by Adam on the full
data (Baker et al. 2019; blackjax's ``control_variates``). A chain whose position
becomes NaN or infinite stops the run: the draws before it are kept, and the warning names the
step size to lower.

Examples
--------
>>> import bayesplug as bp, numpy as np, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0, 10))
...     with numpyro.plate("data", y.shape[0]):
...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
>>> y = np.random.default_rng(0).normal(1.0, 1.0, 1000)
>>> fit = bp.fit(model, {"y": y}, method="sgld", num_warmup=500, num_samples=1000,
...              progress=False)  # step size, preconditioner and batch of 100 chosen
>>> # posterior sd 0.03; the mean's MC error is ~0.003 (bulk ESS ~220): 0.015 is 5 of them
>>> bool(abs(fit.idata.posterior["mu"].mean() - y.mean()) < 0.015)
True
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..bridge import Bridge
from ..errors import BayesplugError, InputError, InterruptedRunWarning
from ..protocols import (
    MAX_TIME,
    Model,
    Option,
    RawResult,
    non_negative,
    one_of,
    positive,
    positive_int,
    probability,
)
from . import sg_adaptation as adaptation
from ._minibatch import MiniBatches
from .driver import nothing_to_keep, place_chains, run_in_chunks

__all__ = [
    "SGHMCBackend",
    "SGInfo",
    "SGLDBackend",
    "SGState",
    "StructuredSGMCMCBackend",
    "build_kernel",
    "init",
]

DECAY_T0 = 100.0  # polynomial schedule: eps_t = eps (1 + t / DECAY_T0)^(-decay)
UNADAPTED_STEP = 1e-4  # the step size when adapt=False and none is given
UNADAPTED_INIT_SCALE = 0.1
OK, NON_FINITE, RAN_AWAY = 0, 1, 2  # a chain's status

_COMMON: dict[str, Option] = {
    "step_size": Option(
        None,
        (float, type(None)),
        "step size epsilon; None: chosen by the adaptation (1e-4 with adapt=False); with adapt "
        "on, a value is taken in the standardised coordinates",
        positive,
    ),
    "adapt": Option(
        True,
        (bool,),
        "burn-in adaptation: mode, Laplace preconditioner, step size from the gradient noise",
    ),
    "preconditioner": Option(
        "auto",
        (str,),
        "adaptation: 'auto' (dense up to 500 parameters), 'dense' or 'diagonal'",
        one_of(("auto", "dense", "diagonal")),
    ),
    "variance_tolerance": Option(
        0.1,
        (float,),
        "adaptation: relative inflation of the posterior variance the step size may cause",
        probability,
    ),
    "runaway_scales": Option(
        1000.0,
        (float, type(None)),
        "adaptation: stop a chain this many Laplace scales from the mode (None: never)",
        positive,
    ),
    "schedule": Option(
        "constant",
        (str,),
        "'constant' or 'polynomial' (eps (1 + t/100)^-decay)",
        one_of(("constant", "polynomial")),
    ),
    "decay": Option(0.55, (float,), "exponent of the polynomial schedule", positive),
    "batch_size": Option(
        None,
        (int, type(None)),
        "data per mini-batch (default min(N, 100); None if no plate)",
        positive_int,
    ),
    "num_warmup": Option(1000, (int,), "burn-in steps, discarded", non_negative),
    "num_samples": Option(1000, (int,), "kept draws per chain", positive_int),
    "num_chains": Option(4, (int,), "independent chains (vectorised)", positive_int),
    "thinning": Option(1, (int,), "steps per kept draw", positive_int),
    "control_variates": Option(
        None,
        (bool, type(None)),
        "centre mini-batch gradients on the mode (full-data gradient there); None: on when adapted",
    ),
    "temperature": Option(1.0, (float,), "posterior temperature (1: the posterior)", positive),
    "init_scale": Option(
        None,
        (float, type(None)),
        "spread of the starting points (None: Laplace draws when adapted, else 0.1)",
        non_negative,
    ),
    "max_time": MAX_TIME,
}


def _log_density_estimate(bridge: Bridge, batches: MiniBatches):
    """log p(u) + (N / n) log p(batch | u), n the batch's size (read from its shape, so the
    same function gives the full-data density on the full data and a subsample's estimate)."""

    def log_density(u, batch):
        log_prior, log_lik = bridge.split_log_density(u, batch)
        size = np.shape(batch[batches.keys[0]])[0] if batches.keys else None
        return log_prior + (batches.num_data / size if size else 1.0) * log_lik

    return log_density


class SGState(NamedTuple):
    """One chain: the position (unconstrained, or standardised when adapted), the sampler's own
    state (momentum, preconditioner, buffers), the step count, the chain's key and its status
    (OK, NON_FINITE, RAN_AWAY: a stopped chain stays where it was)."""

    position: jax.Array
    extra: Any
    t: jax.Array
    rng_key: jax.Array
    status: jax.Array


class SGInfo(NamedTuple):
    """The step size used."""

    step_size: jax.Array


def init(position, extra, rng_key) -> SGState:
    """A chain at ``position`` with the sampler's ``extra`` state and its own key."""
    return SGState(position, extra, jnp.zeros(()), rng_key, jnp.asarray(OK, jnp.int32))


def build_kernel(
    sg_step: Callable,
    step_size: float,
    *,
    schedule: str = "constant",
    decay: float = 0.55,
    temperature: float = 1.0,
    runaway: float | None = None,
) -> Callable:
    """``step(state, data) -> (SGState, SGInfo)``: one move of an SG-MCMC sampler ``sg_step(key,
    batch_key, position, extra, data, eps, temperature) -> (position, extra)`` (a mini-batch
    drawn from ``batch_key``), with the step size ``step_size`` constant or decayed as
    ε (1 + t/100)^(−decay), and the chain stopped (its state frozen, its status set) once its
    position is not finite or is more than ``runaway`` from the origin. The key travels in the
    state, as in NumPyro's samplers, so the stream of a chain does not depend on chunking.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from bayesplug.inference import sgmcmc
    >>> def drift(key, batch_key, x, extra, data, eps, temperature):  # a deterministic move
    ...     return x - eps * x, extra
    >>> step = sgmcmc.build_kernel(drift, 0.1)
    >>> state, info = step(sgmcmc.init(jnp.ones(2), (), jax.random.key(0)), {})
    >>> [round(v, 6) for v in state.position.tolist()], round(float(info.step_size), 6)
    ([0.9, 0.9], 0.1)
    """

    def step(state: SGState, data) -> tuple[SGState, SGInfo]:
        key, batch_key, step_key = jax.random.split(state.rng_key, 3)
        t = state.t
        eps = step_size if schedule == "constant" else step_size * (1.0 + t / DECAY_T0) ** (-decay)
        new_position, new_extra = sg_step(
            step_key, batch_key, state.position, state.extra, data, eps, temperature
        )
        finite = jnp.all(jnp.isfinite(new_position))
        inside = True if runaway is None else jnp.max(jnp.abs(new_position)) <= runaway
        fresh = jnp.where(finite, jnp.where(inside, OK, RAN_AWAY), NON_FINITE)
        status = jnp.where(state.status != OK, state.status, fresh)
        keep = status == OK
        position = jnp.where(keep, new_position, state.position)
        extra = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_extra, state.extra)
        return SGState(position, extra, t + 1, key, status), SGInfo(jnp.asarray(eps))

    return step


class _SGMCMC:
    """The loop shared by the SG-MCMC backends.

    Subclasses define ``_setup(batches, grad, options, group_of, adapted)`` returning
    ``(init, step)``: ``init(position) -> extra`` (per-chain sampler state) and
    ``step(key, batch_key, position, extra, data, eps, temperature) -> (position, extra)``, and
    ``_adapted_step_size(adapted, options)``. ``adapted`` is the
    :class:`~bayesplug.inference.sg_adaptation.Adaptation` (None with ``adapt=False``); the
    positions are then standardised coordinates.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset({"continuous"})
    options: ClassVar[Mapping[str, Option]] = _COMMON

    # --- hooks -------------------------------------------------------------------------------
    def _groups(self, bridge: Bridge, options) -> np.ndarray | None:
        return None

    def _noisy_gradient(self, batches, grad, options, group_of, dim):
        return lambda key, z, data: grad(z, batches.draw(key, data))

    def _adapted_step_size(self, adapted, options) -> float:
        return adaptation.sgld_step_size(
            adapted.curvature, adapted.gradient_noise, options["variance_tolerance"]
        )

    # --- the run ---------------------------------------------------------------------------
    def run(
        self, model: Model, data: Mapping[str, Any], rng_key, *, progress: bool = False, **options
    ) -> RawResult:
        """Adapt, run the chains; returns constrained draws (chain, draw, ...)."""

        options = {**{k: o.default for k, o in self.options.items()}, **options}
        if options["control_variates"] is None:
            options["control_variates"] = options["adapt"]
        data = dict(data)
        bridge = Bridge.from_model(model.model, data)
        batches = MiniBatches(bridge.info.data_plate_size, data, options["batch_size"])
        log_density = _log_density_estimate(bridge, batches)
        grad = jax.grad(log_density)
        init_key, adapt_key, chain_key = jax.random.split(rng_key, 3)  # three keys: streams kept
        u0 = bridge.initial_point(init_key, data)
        group_of = self._groups(bridge, options)
        adapted, attrs = None, {}
        if options["adapt"]:
            adapted, grad, attrs = self._adapt(
                bridge, batches, log_density, grad, u0, data, adapt_key, options, group_of
            )
            u0 = jnp.zeros(bridge.dim, u0.dtype)
        elif options["control_variates"]:
            from blackjax.sgmcmc.gradients import control_variates

            u0 = _find_mode(log_density, u0, data)
            grad = control_variates(grad, u0, data)
        eps0 = options["step_size"]
        if eps0 is None:
            eps0 = UNADAPTED_STEP if adapted is None else self._adapted_step_size(adapted, options)
        init_extra, sg_step = self._setup(batches, grad, options, group_of, adapted)

        num_chains = options["num_chains"]
        keys = jax.random.split(chain_key, num_chains + 1)
        spread = options["init_scale"]
        if spread is None:
            spread = UNADAPTED_INIT_SCALE if adapted is None else 1.0
        positions = u0 + spread * jax.random.normal(keys[0], (num_chains, bridge.dim), u0.dtype)
        state = jax.vmap(init)(positions, jax.vmap(init_extra)(positions), keys[1:])
        step = build_kernel(
            sg_step,
            eps0,
            schedule=options["schedule"],
            decay=options["decay"],
            temperature=options["temperature"],
            runaway=options["runaway_scales"] if adapted is not None else None,
        )
        run, attrs["compile_time"] = self._run_chains(step, state, data, options, progress)
        u, eps, diverged, messages = self._collect(run, eps0, adapted, options)
        attrs["sampling_time"] = run.seconds
        chains, draws = u.shape[:2]
        u = u.reshape(chains * draws, -1)
        if adapted is not None:
            u = adapted.to_unconstrained(u).astype(positions.dtype)
        flat = bridge.constrain_many(u, data)
        samples = {k: v.reshape(chains, draws, *v.shape[1:]) for k, v in flat.items()}
        attrs.update(
            diverged=int(diverged),
            step_size=float(eps0),
            adapted=int(adapted is not None),
            control_variates=int(options["control_variates"]),
            batch_size=batches.batch_size or 0,
            num_data=batches.num_data or 0,
            mini_batched=int(
                batches.batch_size is not None and batches.batch_size < (batches.num_data or 0)
            ),
        )
        return RawResult(
            samples=samples,
            sample_stats={"step_size": eps},
            attrs=attrs,
            state=run.state,
            interrupted=run.interrupted or diverged,
            messages=messages,
        )

    def _run_chains(self, step, state, data, options, progress):
        """The kernel vmapped over chains, ``thinning`` steps per kept draw, in at most 20
        jitted chunks under the driver (stopping once a chain diverges or runs away)."""
        thinning = options["thinning"]

        def draw(state, data):
            def inner(_, state):
                return step(state, data)[0]

            state = jax.lax.fori_loop(0, thinning - 1, inner, state) if thinning > 1 else state
            state, info = step(state, data)
            return state, (state.position, state.status, info.step_size)

        num_warm_draws = math.ceil(options["num_warmup"] / thinning)
        num_draws_total = num_warm_draws + options["num_samples"]
        num_chunks = min(20, num_draws_total)
        per_chunk = math.ceil(num_draws_total / num_chunks)

        def advance(state, data):
            def scan_chain(state):
                return jax.lax.scan(lambda c, _: draw(c, data), state, None, length=per_chunk)

            return jax.vmap(scan_chain)(state)

        state, chain_data = place_chains(state, data, options["num_chains"])
        start = time.perf_counter()
        compiled = jax.jit(advance).lower(state, chain_data).compile()
        compile_time = time.perf_counter() - start
        run = run_in_chunks(
            lambda c: compiled(c, chain_data),
            state,
            num_chunks=num_chunks,
            steps_per_chunk=per_chunk * thinning,
            progress=progress,
            description=lambda i: (
                f"{self.name} warmup"
                if i * per_chunk * thinning < options["num_warmup"]
                else self.name
            ),
            postfix=lambda c, out: {"step size": f"{float(np.asarray(out[2])[0, -1]):.2g}"},
            max_time=options["max_time"],
            done=lambda state, out: bool(np.any(np.asarray(out[1]) != OK)),
        )
        return run, compile_time

    def _collect(self, run, eps0, adapted, options):
        """The kept draws (chain, draw, dim) and step sizes after burn-in: a divergence keeps
        the draws before it (with a message), an interruption keeps what it had."""
        if not run.outputs:
            raise nothing_to_keep(run, f"{self.name} stopped before its first chunk: {run.reason}.")
        u, status, eps = (
            np.concatenate([np.asarray(o[i]) for o in run.outputs], axis=1) for i in range(3)
        )
        thinning = options["thinning"]
        num_warm_draws = math.ceil(options["num_warmup"] / thinning)
        stopped = status != OK
        diverged = bool(stopped.any())
        messages: list[str] = []  # said by diagnostics() and warned by fit: saved with the fit
        advice = self._advice(eps0, adapted, options)
        if diverged:
            first_bad = int(np.min(np.argmax(stopped, axis=1)[stopped.any(axis=1)]))
            chain = int(np.argmax(stopped[:, first_bad]))
            u, eps = u[:, :first_bad], eps[:, :first_bad]
            kept = max(0, first_bad - num_warm_draws)
            what = (
                "the position became NaN or infinite"
                if status[chain, first_bad] == NON_FINITE
                else f"it went more than {options['runaway_scales']:g} Laplace scales from the "
                "mode the adaptation found (if a parameter really has tails this heavy, set "
                "runaway_scales=None)"
            )
            messages.append(
                f"{self.name} diverged at step {first_bad * thinning} (chain {chain}): {what}. "
                f"Keeping the {kept} draws per chain before it. {advice}"
            )
        u, eps = (a[:, num_warm_draws : num_warm_draws + options["num_samples"]] for a in (u, eps))
        if u.shape[1] == 0 and diverged:
            raise BayesplugError(
                f"{self.name} diverged during burn-in, before any kept draw. {advice}"
            )
        if u.shape[1] == 0:
            raise nothing_to_keep(
                run,
                f"{self.name} stopped during burn-in ({run.reason or 'divergence'}), before any "
                "kept draw: nothing to return. Lower num_warmup.",
            )
        if run.interrupted:
            warnings.warn(
                f"{self.name} stopped early: {run.reason}. Returning the {u.shape[1]} draws per "
                f"chain taken so far (of {options['num_samples']}).",
                InterruptedRunWarning,
                stacklevel=4,
            )
        return u, eps, diverged, messages

    def _adapt(self, bridge, batches, log_density, grad, u0, data, key, options, group_of):
        """The burn-in adaptation (:mod:`~bayesplug.inference.sg_adaptation`): returns the
        :class:`Adaptation`, the gradient in standardised coordinates and the attrs."""
        subsample_key, noise_key = jax.random.split(key)
        start = time.perf_counter()
        sub = data
        if batches.num_data is not None and batches.num_data > adaptation.ADAPT_DATA:
            index = jax.random.choice(
                subsample_key, batches.num_data, (adaptation.ADAPT_DATA,), replace=False
            )
            sub = {k: (v[index] if k in batches.keys else v) for k, v in data.items()}
        try:
            mode, iterations = adaptation.find_mode(log_density, u0, sub)
            if not np.isfinite(float(log_density(mode, sub))):
                raise FloatingPointError("the log density is not finite at the starting point")
            scale, curvature = adaptation.laplace_scale(
                log_density, mode, sub, options["preconditioner"], group_of
            )
            grad = adaptation.standardised_gradient(grad, mode, scale)
            if options["control_variates"]:
                from blackjax.sgmcmc.gradients import control_variates

                grad = control_variates(grad, jnp.zeros_like(mode), data)
            noisy = self._noisy_gradient(batches, grad, options, group_of, bridge.dim)
            noise = adaptation.gradient_noise(noisy, bridge.dim, noise_key, data)
        except FloatingPointError as exc:
            raise BayesplugError(
                f"{self.name} could not adapt its step size: {exc}. Check the model and data "
                "(a likelihood that is NaN at sensible parameters), or set adapt=False and a "
                "step_size by hand."
            ) from None
        adapted = adaptation.Adaptation(
            np.asarray(mode, float), np.asarray(scale), curvature, noise, iterations
        )
        attrs = {
            "adaptation_time": time.perf_counter() - start,
            "mode_iterations": iterations,
            "preconditioner": "diagonal" if adapted.scale.ndim == 1 else "dense",
            "curvature": curvature,
            "gradient_noise": noise,
        }
        return adapted, grad, attrs

    def _advice(self, eps0: float, adapted, options) -> str:
        if adapted is None:
            return (
                f"Lower step_size (now {eps0:g}, try {eps0 / 10:g}), or leave it unset with "
                "adapt=True to have it chosen."
            )
        if options["step_size"] is not None:
            return f"Lower step_size (now {eps0:g}, try {eps0 / 4:g}), or leave it unset."
        tolerance = options["variance_tolerance"]
        return (
            f"The adapted step size {eps0:.3g} was too large away from the mode: lower "
            f"variance_tolerance (now {tolerance:g}, try {tolerance / 4:g})."
        )


def _find_mode(log_density, u0, data, num_steps: int = 2000, learning_rate: float = 1e-2):
    """A posterior mode by Adam on the full-data log density (the control-variate centre when
    the adaptation is off)."""
    import optax

    tx = optax.adam(learning_rate)
    grad = jax.grad(lambda u: -log_density(u, data))

    @jax.jit
    def solve(u):
        def step(carry, _):
            u, state = carry
            g = grad(u)
            updates, state = tx.update(g, state, u)
            return (optax.apply_updates(u, updates), state), None

        (u, _), _ = jax.lax.scan(step, (u, tx.init(u)), None, length=num_steps)
        return u

    return solve(u0)


class SGLDBackend(_SGMCMC):
    """Stochastic-gradient Langevin dynamics (blackjax ``sgld``), optionally preconditioned."""

    name: ClassVar[str] = "sgld"
    options: ClassVar[Mapping[str, Option]] = {
        **_COMMON,
        "preconditioning": Option(False, (bool,), "pSGLD: RMSprop preconditioner (Li et al. 2016)"),
        "rmsprop_decay": Option(
            0.99, (float,), "pSGLD: decay of the squared-gradient average", probability
        ),
    }

    def _adapted_step_size(self, adapted, options) -> float:
        if not options["preconditioning"]:
            return super()._adapted_step_size(adapted, options)
        return adaptation.psgld_step_size(
            adapted.curvature, adapted.gradient_noise, options["variance_tolerance"]
        )

    def _setup(self, batches, grad, options, group_of, adapted):
        import blackjax

        if not options["preconditioning"]:
            kernel = blackjax.sgld(grad)

            def step(key, batch_key, position, extra, data, eps, temperature):
                batch = batches.draw(batch_key, data)
                return kernel.step(key, position, batch, eps, temperature), extra

            return (lambda u: jnp.zeros(())), step

        alpha, lam = options["rmsprop_decay"], 1e-5
        # adapted: the squared-gradient average starts at its value near the mode, lambda + V
        v0 = 0.0 if adapted is None else adapted.curvature + adapted.gradient_noise

        def precond_step(key, batch_key, position, v, data, eps, temperature):
            g = grad(position, batches.draw(batch_key, data))
            v = alpha * v + (1 - alpha) * g**2
            precond = 1.0 / (lam + jnp.sqrt(v))
            noise = jax.random.normal(key, position.shape)
            new = position + eps * precond * g + jnp.sqrt(2 * eps * temperature * precond) * noise
            return new, v

        return (lambda u: jnp.full_like(u, v0)), precond_step


class SGHMCBackend(_SGMCMC):
    """Stochastic-gradient HMC (Chen, Fox & Guestrin 2014) on blackjax's SGHMC integrator.

    Each draw resamples the momentum and takes ``num_integration_steps`` steps, each with a fresh
    mini-batch (as Chen et al.'s Algorithm 2; blackjax's ``sghmc`` kernel reuses one mini-batch
    for all of them, which adds the same gradient error L times).
    """

    name: ClassVar[str] = "sghmc"
    options: ClassVar[Mapping[str, Option]] = {
        **_COMMON,
        "num_integration_steps": Option(10, (int,), "leapfrog-like steps per draw", positive_int),
        "friction": Option(
            None,
            (float, type(None)),
            "friction alpha (blackjax's alpha); None: 2 when adapted (critical damping), else 0.01",
            positive,
        ),
    }

    @staticmethod
    def _friction(options, adapted) -> float:
        if options["friction"] is not None:
            return options["friction"]
        return adaptation.SGHMC_FRICTION if adapted is not None else 0.01

    def _adapted_step_size(self, adapted, options) -> float:
        return adaptation.sghmc_step_size(
            adapted.curvature,
            adapted.gradient_noise,
            options["variance_tolerance"],
            self._friction(options, adapted),
        )

    def _setup(self, batches, grad, options, group_of, adapted):
        from blackjax.sgmcmc.diffusions import sghmc

        integrator = sghmc(alpha=self._friction(options, adapted))
        length = options["num_integration_steps"]

        def step(key, batch_key, position, extra, data, eps, temperature):
            momentum_key, key = jax.random.split(key)

            def integrate(state, keys):
                x, p = state
                g = grad(x, batches.draw(keys[0], data))
                return integrator(keys[1], x, p, g, eps, temperature), None

            keys = jnp.stack(
                [jax.random.split(batch_key, length), jax.random.split(key, length)], axis=1
            )
            momentum = jax.random.normal(momentum_key, position.shape, position.dtype)
            (position, _), _ = jax.lax.scan(integrate, (position, momentum), keys)
            return position, extra

        return (lambda u: jnp.zeros(())), step


class StructuredSGMCMCBackend(_SGMCMC):
    """Structured SG-MCMC (Alexos, Boyd & Mandt 2022) on SGLD steps; see the module docstring.

    Adapted, the preconditioner is block-diagonal (one block per group), so each group's
    standardised coordinates are its own.
    """

    name: ClassVar[str] = "structured_sgmcmc"
    options: ClassVar[Mapping[str, Option]] = {
        **_COMMON,
        "groups": Option(
            None,
            (list, tuple, str, type(None)),
            "None: one group per site; 'coordinates': one per scalar; or lists of site names",
        ),
        "buffer_size": Option(1000, (int,), "past samples kept per chain", positive_int),
        "dropout_p": Option(
            None,
            (float, type(None)),
            "dropout variant: P(group current); None: exact scheme",
            probability,
        ),
        "vi_batch": Option(4, (int,), "dropout variant: Monte Carlo rows per step", positive_int),
    }

    def _groups(self, bridge, options) -> np.ndarray:
        return np.asarray(_group_index(bridge, options["groups"]))

    def _noisy_gradient(self, batches, grad, options, group_of, dim):
        """The structured gradient with buffers of Laplace draws (the target is close to
        N(0, I) in standardised coordinates)."""
        structured_grad = _structured_gradient(grad, group_of, options)
        size = min(options["buffer_size"], 256)

        def noisy(key, z, data):
            buffer_key, grad_key, batch_key = jax.random.split(key, 3)
            buffer = jax.random.normal(buffer_key, (size, dim), z.dtype)
            extra = {"buffer": buffer, "count": jnp.asarray(size, jnp.int32)}
            return structured_grad(grad_key, z, extra, batches.draw(batch_key, data))

        return noisy

    def _setup(self, batches, grad, options, group_of, adapted):
        structured_grad = _structured_gradient(grad, group_of, options)
        size = options["buffer_size"]

        def init(u):
            return {
                "buffer": jnp.tile(u, (size, 1)),
                "count": jnp.ones((), jnp.int32),
                "next": jnp.asarray(1 % size, jnp.int32),
            }

        def step(key, batch_key, u, extra, data, eps, temperature):
            grad_key, noise_key = jax.random.split(key)
            g = structured_grad(grad_key, u, extra, batches.draw(batch_key, data))
            noise = jax.random.normal(noise_key, u.shape)
            new = u + eps * g + jnp.sqrt(2 * eps * temperature) * noise
            buffer = extra["buffer"].at[extra["next"]].set(new)
            extra = {
                "buffer": buffer,
                "count": jnp.minimum(extra["count"] + 1, size),
                "next": (extra["next"] + 1) % size,
            }
            return new, extra

        return init, step


def _structured_gradient(grad, group_of, options):
    """``(key, u, extra, batch) -> g``: each group's gradient with the other groups drawn from the
    buffer of past samples (exact scheme) or, with ``dropout_p``, current with probability p."""
    group_of = jnp.asarray(group_of)
    num_groups = int(group_of.max()) + 1
    p, rows = options["dropout_p"], options["vi_batch"]

    def structured_grad(key, u, extra, batch):
        mask_key, pick_key = jax.random.split(key)
        if p is None:
            mask = jnp.eye(num_groups, dtype=bool)  # row m: group m current, others past
            weight = 1.0
        else:
            mask = jax.random.bernoulli(mask_key, p, (rows, num_groups))
            weight = 1.0 / (p * rows)
        picks = jax.random.randint(pick_key, mask.shape, 0, extra["count"])
        past = extra["buffer"][picks]  # (rows, groups, dim)
        past = jnp.take_along_axis(past, group_of[None, None, :], axis=1)[:, 0]  # (rows, dim)
        current = mask[:, group_of]  # (rows, dim)
        points = jnp.where(current, u[None], past)
        grads = jax.vmap(grad, in_axes=(0, None))(points, batch)
        return weight * jnp.sum(jnp.where(current, grads, 0.0), axis=0)

    return structured_grad


def _group_index(bridge: Bridge, groups: Any) -> jnp.ndarray:
    """Group number of every coordinate of the flat unconstrained vector."""
    from jax.flatten_util import ravel_pytree

    shapes = {k: jnp.shape(v) for k, v in bridge.unravel(jnp.zeros(bridge.dim)).items()}
    sites = sorted(shapes)
    if groups == "coordinates":
        return jnp.arange(bridge.dim)
    if groups is None:
        spec: Sequence[Sequence[str]] = [[s] for s in sites]
    elif isinstance(groups, str):
        raise InputError(
            "groups",
            f"unknown grouping {groups!r}.",
            "Use None, 'coordinates' or lists of site names.",
        )
    else:
        spec = [[g] if isinstance(g, str) else list(g) for g in groups]
    number = {}
    for i, group in enumerate(spec):
        for site in group:
            if site not in shapes:
                from ..errors import did_you_mean

                raise InputError(
                    "groups", f"names no latent site {site!r}.", did_you_mean(site, sites)
                )
            if site in number:
                raise InputError("groups", f"puts site {site!r} in two groups.")
            number[site] = i
    missing = [s for s in sites if s not in number]
    if missing:
        raise InputError(
            "groups", f"leaves out the sites {missing}.", "Every latent site needs a group."
        )
    flat, _ = ravel_pytree({s: jnp.full(shapes[s], number[s]) for s in sites})
    return flat.astype(jnp.int32)
