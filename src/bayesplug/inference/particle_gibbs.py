"""Backend ``ppg``: Parisian particle Gibbs (Cardoso, Janati El Idrissi, Le Corff, Moulines &
Olsson, "State and parameter learning with PaRIS particle Gibbs", ICML 2023).

Each iteration runs a *conditional* PaRIS pass (:mod:`bayesplug.inference._particles`): slot 0
of the particle system follows a frozen reference path, the other N − 1 particles are a
bootstrap filter, Ñ backward indices per particle update the additive-functional statistics,
and the new reference path is traced back through those indices. The path chain leaves the
smoothing distribution invariant, and averaging the PaRIS estimates over iterations after a
burn-in removes most of PaRIS's O(1/N) bias. Three uses, chosen by the model and ``learn``:

- **smoothing at fixed θ** (no priors, or ``theta=`` given): posterior draws of ``x`` (one path
  per iteration and chain) and the bias-reduced functional estimates
  (``fit.idata.smoothed_functionals``);
- **parameter learning**, ``learn="mle"``: the PPG estimate of the score ∇θ log p(y) (Fisher's
  identity) drives Adam on the unconstrained parameters, the reference path kept across θ
  updates; ``learn="score_climbing"``: Markovian score climbing (Naesseth, Lindsten & Blei 2020)
  with the PPG path, the gradient ∇θ log p(x, y | θ) at the new reference. Either gives
  ``fit.point_estimate`` (the Polyak average of the second half of the iterates, over chains)
  and the learning trace (``fit.idata.learning_trace``);
- **Bayesian inference** for parameters with priors: Gibbs sweeps alternating a PPG draw of
  x | θ, y and ``theta_steps`` MALA steps (blackjax) on θ | x, y with the step size adapted to
  acceptance 0.574 during burn-in; θ's draws land in ``idata.posterior``.

The algorithm is a pure kernel in the blackjax shape: :class:`Parameters` (θ's fixed values and
free ones with priors), :func:`init` (one chain's first reference path, from an unconditional
pass) and :func:`build_kernel` → ``step(rng_key, state) -> (PPGState, PPGInfo)``, one
iteration: the conditional pass and the new reference (common to every mode), then the mode's θ
update (none; Adam on the PPG score; Adam on ∇θ log p(x, y | θ); MALA steps). The backend
vmaps it over chains and runs it in chunks under the driver.

Examples
--------
>>> import jax, bayesplug as bp
>>> sv = bp.models.StochasticVolatility(phi=0.9, sigma=0.3, beta=0.7)
>>> y = sv.simulate(jax.random.PRNGKey(0), 40)["y"]
>>> fit = bp.fit(sv, {"y": y}, method="ppg", num_particles=32, num_iterations=60,
...              burn_in=20, num_chains=2, progress=False)
>>> fit.idata.posterior["x"].shape
(2, 40, 40, 1)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import biject_to

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
)
from ._particles import (
    Functional,
    particle_pass,
    score_functional,
    trace_paths,
)
from .driver import nothing_to_keep, run_in_chunks
from .paris import (
    check_finite_filter,
    check_particle_options,
    flatten_estimates,
    per_chain_dataset,
    resolve_functionals,
)

__all__ = [
    "PPGInfo",
    "PPGState",
    "Parameters",
    "ParticleGibbsBackend",
    "build_kernel",
    "init",
    "robbins_monro_adam",
]

_SCORE = "__score__"
MODES = ("smooth", "mle", "score_climbing", "gibbs")


class PPGState(NamedTuple):
    """One chain: the reference path, the unconstrained free parameters, the optimiser's state
    (learning; ``()`` otherwise), the MALA log step size (Gibbs) and the iteration count."""

    reference: jax.Array  # (T, dx)
    eta: dict
    opt_state: Any
    log_step: jax.Array
    iteration: jax.Array


class PPGInfo(NamedTuple):
    """One iteration: the new reference path, θ (constrained) after the update, the PaRIS
    estimates of the functionals, the log-likelihood estimate, whether every filter increment
    was finite, MALA's acceptance (1 outside Gibbs) and the backward sampler's acceptance."""

    x: jax.Array
    theta: dict
    estimate: dict
    log_likelihood: jax.Array
    increments_ok: jax.Array
    theta_acceptance: jax.Array
    backward_acceptance: jax.Array


class Parameters(NamedTuple):
    """θ split into ``fixed`` values and ``priors`` (free, learned or sampled on the
    unconstrained scale through ``transforms``, their supports' bijections)."""

    fixed: dict
    priors: dict
    transforms: dict

    @classmethod
    def of(cls, model, theta: Mapping[str, Any] | None) -> Parameters:
        """A model's split; ``theta`` given fixes every parameter at those values."""
        free = {} if theta is not None else dict(model.priors)
        fixed = model.theta_with(theta) if theta is not None else dict(model.fixed)
        return cls(fixed, free, {k: biject_to(p.support) for k, p in free.items()})

    def theta(self, eta) -> dict:
        """The model's θ at unconstrained values ``eta`` of the free parameters."""
        return {**self.fixed, **{k: self.transforms[k](v) for k, v in eta.items()}}

    def unconstrain(self, values: Mapping[str, Any]) -> dict:
        return {k: jnp.asarray(self.transforms[k].inv(jnp.asarray(values[k]))) for k in self.priors}

    def log_posterior(self, model, eta, path, y) -> jax.Array:
        """log p(x, y | θ) + log p(θ) + log |dθ/dη| at ``eta``."""
        lp = model.joint_log_density(self.theta(eta), path, y)
        for k, v in eta.items():
            value = self.transforms[k](v)
            lp = lp + jnp.sum(self.priors[k].log_prob(value))
            lp = lp + jnp.sum(self.transforms[k].log_abs_det_jacobian(v, value))
        return lp


def robbins_monro_adam(learning_rate: float):
    """Adam with a Robbins–Monro decay (exponent 0.6), so the Markovian gradient noise of the
    learning modes averages out."""
    import optax

    return optax.adam(lambda k: learning_rate * (1.0 + k / 100.0) ** -0.6)


def init(
    rng_key, model, y, params: Parameters, eta, mode: str, optimizer=None, step_size=0.05, **kw
) -> tuple[PPGState, jax.Array]:
    """One chain's first state: the reference path traced from an unconditional pass at θ(eta),
    and that pass's log increments (to check the filter did not collapse). ``kw``: the particle
    options of :func:`~bayesplug.inference._particles.particle_pass`."""
    k1, k2 = jax.random.split(rng_key)
    result = particle_pass(k1, model, params.theta(eta), y, keep_paths=True, **kw)
    reference = trace_paths(k2, result, 1)[0]
    opt_state = optimizer.init(eta) if mode in ("mle", "score_climbing") else ()
    state = PPGState(reference, eta, opt_state, jnp.log(step_size), jnp.asarray(0))
    return state, result.log_increments


_init = init  # the backend's ``run`` has an option named ``init``


def build_kernel(
    model,
    y,
    params: Parameters,
    mode: str,
    *,
    functionals: Any = None,
    optimizer=None,
    theta_steps: int = 5,
    burn_in: int = 0,
    **kw,
):
    """``step(rng_key, state) -> (PPGState, PPGInfo)``: one PPG iteration in ``mode``
    (``"smooth"``, ``"mle"``, ``"score_climbing"`` or ``"gibbs"``). The common part: the
    conditional PaRIS pass on the reference and a new reference traced back through the
    backward indices; then the mode's update of θ (:func:`_updates`). ``kw``: the particle
    options of :func:`~bayesplug.inference._particles.particle_pass`.

    Examples
    --------
    >>> import jax, bayesplug as bp
    >>> from bayesplug.inference import particle_gibbs as ppg
    >>> lg = bp.models.LinearGaussianSSM(A=0.9, Q=0.5, C=1.0, R=0.3)
    >>> y = lg.simulate(jax.random.PRNGKey(0), 20)["y"]
    >>> params = ppg.Parameters.of(lg, None)
    >>> state, _ = ppg.init(jax.random.key(1), lg, y, params, {}, "smooth", num_particles=16)
    >>> step = ppg.build_kernel(lg, y, params, "smooth", num_particles=16)
    >>> state, info = jax.jit(step)(jax.random.key(2), state)
    >>> info.x.shape, int(state.iteration)
    ((20, 1), 1)
    """
    if mode not in MODES:
        raise InputError("mode", f"expected one of {MODES}, got {mode!r}.")
    update = _updates(model, y, params, optimizer, theta_steps, burn_in)[mode]

    def functionals_at(eta):
        user, _ = resolve_functionals(model, params.theta(eta), y, functionals)
        if mode != "mle":
            return user
        score = score_functional(model, params.theta, eta, y)
        return Functional(
            lambda x0: {**user.init(x0), _SCORE: score.init(x0)},
            lambda xp, x, t: {**user.step(xp, x, t), _SCORE: score.step(xp, x, t)},
        )

    def step(rng_key, state: PPGState) -> tuple[PPGState, PPGInfo]:
        k_pass, k_path, k_theta = jax.random.split(rng_key, 3)
        result = particle_pass(
            k_pass,
            model,
            params.theta(state.eta),
            y,
            reference=state.reference,
            keep_paths=True,
            functional=functionals_at(state.eta),
            **kw,
        )
        path = trace_paths(k_path, result, 1)[0]
        estimate = dict(result.estimate)
        score = estimate.pop(_SCORE, None)
        eta, opt_state, log_step, accept = update(k_theta, state, path, score)
        info = PPGInfo(
            x=path,
            theta={k: params.transforms[k](v) for k, v in eta.items()},
            estimate=estimate,
            log_likelihood=result.log_likelihood,
            increments_ok=jnp.all(jnp.isfinite(result.log_increments)),
            theta_acceptance=accept,
            backward_acceptance=result.acceptance,
        )
        return PPGState(path, eta, opt_state, log_step, state.iteration + 1), info

    return step


def _updates(model, y, params: Parameters, optimizer, theta_steps: int, burn_in: int) -> dict:
    """Each mode's θ update ``(key, state, path, score) -> (eta, opt_state, log_step,
    acceptance)``; ``mle`` and ``score_climbing`` share the Adam step and differ in the
    gradient (the PPG score estimate by Fisher's identity; ∇θ log p(x, y | θ) at the path)."""
    import blackjax
    import optax

    one = jnp.asarray(1.0)

    def smooth(key, state, path, score):
        return state.eta, state.opt_state, state.log_step, one

    def adam(state, grad):
        updates, opt_state = optimizer.update(grad, state.opt_state, state.eta)
        return optax.apply_updates(state.eta, updates), opt_state, state.log_step, one

    def mle(key, state, path, score):
        return adam(state, jax.tree.map(lambda g: -g, score))

    def score_climbing(key, state, path, score):
        log_joint = lambda e: model.joint_log_density(params.theta(e), path, y)  # noqa: E731
        return adam(state, jax.grad(lambda e: -log_joint(e))(state.eta))

    mala = blackjax.mala.build_kernel()

    def gibbs(key, state, path, score):
        logdensity = lambda e: params.log_posterior(model, e, path, y)  # noqa: E731

        def mala_step(s, k):
            s, info = mala(k, s, logdensity, jnp.exp(state.log_step))
            return s, info.acceptance_rate

        start = blackjax.mala.init(state.eta, logdensity)
        end, rates = jax.lax.scan(mala_step, start, jax.random.split(key, theta_steps))
        accept = jnp.mean(rates)
        adapting = state.iteration < burn_in
        log_step = state.log_step + jnp.where(adapting, 0.5 * (accept - 0.574), 0.0)
        return end.position, state.opt_state, log_step, accept

    return {"smooth": smooth, "mle": mle, "score_climbing": score_climbing, "gibbs": gibbs}


class ParticleGibbsBackend:
    """Parisian particle Gibbs: smoothing, MLE / score climbing, or Gibbs on θ.

    Options
    -------
    num_particles, num_backward, backward, max_trials, num_iterations, burn_in, thinning,
    num_chains, functionals, learn, learning_rate, theta_steps, step_size, theta, init,
    max_time: see :attr:`options`.
    """

    name: ClassVar[str] = "ppg"
    requires: ClassVar[frozenset[str]] = frozenset({"state_space"})
    options: ClassVar[Mapping[str, Option]] = {
        "num_particles": Option(64, (int,), "particles N", positive_int),
        "num_backward": Option(2, (int,), "backward draws per particle Ñ (≥ 2)", positive_int),
        "backward": Option(
            "auto",
            (str,),
            "exact, rejection or auto (rejection from 320 particles when the model has a bound)",
            one_of(("exact", "rejection", "auto")),
        ),
        "max_trials": Option(32, (int,), "rejection candidates per index", positive_int),
        "num_iterations": Option(500, (int,), "PPG iterations per chain", positive_int),
        "burn_in": Option(100, (int,), "iterations discarded from estimates/draws", non_negative),
        "thinning": Option(1, (int,), "keep every k-th path", positive_int),
        "num_chains": Option(4, (int,), "independent chains (vectorised)", positive_int),
        "functionals": Option(
            None, (list, tuple, dict, str, type(None)), "additive functionals to estimate"
        ),
        "learn": Option(
            None,
            (str, type(None)),
            "None (smoothing / Gibbs), 'mle' or 'score_climbing'",
            one_of(("mle", "score_climbing")),
        ),
        "learning_rate": Option(
            0.05, (float,), "initial Adam learning rate, decaying as (1 + k/100)^-0.6", positive
        ),
        "theta_steps": Option(5, (int,), "MALA steps on θ per Gibbs sweep", positive_int),
        "step_size": Option(0.05, (float,), "initial MALA step size (Gibbs)", positive),
        "theta": Option(None, (dict, type(None)), "fix parameters with priors at values"),
        "init": Option(None, (dict, type(None)), "initial values of parameters with priors"),
        "max_time": MAX_TIME,
    }

    def run(
        self,
        model: Model,
        data: Mapping[str, Any],
        rng_key,
        *,
        progress: bool = False,
        num_particles: int,
        num_backward: int,
        backward: str,
        max_trials: int,
        num_iterations: int,
        burn_in: int,
        thinning: int,
        num_chains: int,
        functionals: Any,
        learn: str | None,
        learning_rate: float,
        theta_steps: int,
        step_size: float,
        theta: Mapping[str, Any] | None,
        init: Mapping[str, Any] | None,
        max_time: float | None,
    ) -> RawResult:
        """Run ``num_chains`` PPG chains of ``num_iterations`` iterations, in chunks."""
        backward = check_particle_options(model, num_particles, num_backward, backward, max_trials)
        if burn_in >= num_iterations:
            raise InputError(
                "burn_in",
                f"is {burn_in} but only {num_iterations} iterations run: nothing would be kept.",
                "Lower burn_in or raise num_iterations.",
            )
        y = data["y"]
        params = Parameters.of(model, theta)
        if learn is not None and not params.priors:
            raise InputError(
                "learn",
                f"is {learn!r} but {model.name} has no parameter with a prior to learn.",
                "Give the parameters to learn as priors (their supports set the constraints), "
                "e.g. StochasticVolatility(phi=dist.Uniform(-1, 1)).",
            )
        mode = learn or ("gibbs" if params.priors else "smooth")
        eta0 = params.unconstrain({**model.default_theta(), **dict(init or {})})
        optimizer = robbins_monro_adam(learning_rate)
        kw = dict(
            num_particles=num_particles,
            num_backward=num_backward,
            backward=backward,
            max_trials=max_trials,
        )

        def kernel_for(y):  # y is an argument of the compiled programs, not a constant in them
            return build_kernel(
                model, y, params, mode, functionals=functionals, optimizer=optimizer,
                theta_steps=theta_steps, burn_in=burn_in, **kw,
            )  # fmt: skip

        _, names = resolve_functionals(model, params.theta(eta0), y, functionals)
        k_init, k_run = jax.random.split(rng_key)
        first = jax.jit(
            jax.vmap(
                lambda k, y, eta: _init(k, model, y, params, eta, mode, optimizer, step_size, **kw),
                in_axes=(0, None, None),
            )
        )  # fmt: skip
        state, increments = first(jax.random.split(k_init, num_chains), y, eta0)
        check_finite_filter(increments, "PPG (the first particle pass)")
        run = _run_chains(
            kernel_for, y, state, k_run, num_iterations, num_chains, mode, progress, max_time
        )
        outs = _collect(run, num_iterations, burn_in, mode)
        return _result(outs, run, params, model, mode, theta, burn_in, thinning, backward, names)


def _run_chains(kernel_for, y, state, key, num_iterations, num_chains, mode, progress, max_time):
    """The kernel ``kernel_for(y)`` vmapped over chains, in at most 20 jitted chunks under the
    driver; each iteration's keys come from one split of ``key`` made up front. The
    observations and the keys are the chunk's arguments, so another data set or seed of the
    same shapes reuses the compiled chunk (JAX's persistent cache: SBC, ``fit_many``)."""
    num_chunks = min(20, num_iterations)
    length = math.ceil(num_iterations / num_chunks)
    keys = jax.random.split(key, (num_chunks * length, num_chains))

    @jax.jit
    def chunk_of(carry, y, keys):
        state, chunk = carry
        step = kernel_for(y)
        block = jax.lax.dynamic_slice_in_dim(keys, chunk * length, length)
        state, outs = jax.lax.scan(lambda s, k: jax.vmap(step)(k, s), state, block)
        return (state, chunk + 1), outs

    def advance(carry):
        return chunk_of(carry, y, keys)

    def postfix(carry, outs):
        info = {"loglik": f"{float(np.mean(outs.log_likelihood[-1])):.1f}"}
        for k, v in outs.theta.items():
            if np.ndim(v) == 2:
                info[k] = f"{float(np.mean(v[-1])):.3g}"
        return info

    return run_in_chunks(
        advance,
        (state, jnp.asarray(0)),
        num_chunks=num_chunks,
        steps_per_chunk=length,
        progress=progress,
        description=f"ppg ({mode})",
        postfix=postfix,
        max_time=max_time,
        total_steps=num_chunks * length,
    )


def _collect(run, num_iterations: int, burn_in: int, mode: str) -> dict:
    """The chunks' outputs as a dict of (chain, iteration, ...) arrays; a collapsed filter is
    an error in words, an interruption keeps what it had (nothing after burn-in: an
    interruption)."""
    if not run.outputs:
        raise nothing_to_keep(run, f"PPG stopped before its first chunk: {run.reason}.")
    outs = jax.tree.map(lambda *a: np.concatenate(a, axis=0), *run.outputs)._asdict()
    outs = jax.tree.map(lambda a: np.swapaxes(a[:num_iterations], 0, 1), outs)
    done = outs["log_likelihood"].shape[1]
    if not np.all(outs["increments_ok"]):
        chain, it = np.argwhere(~outs["increments_ok"])[0]
        learning = mode in ("mle", "score_climbing")
        raise BayesplugError(
            f"PPG: the conditional particle filter of chain {chain} lost all its free "
            f"particles at iteration {it} (a zero or non-finite likelihood everywhere). "
            + (
                "The parameters being learned may have moved somewhere absurd: lower "
                "learning_rate. "
                if learning
                else ""
            )
            + "Check the observations for outliers, or use more particles."
        )
    if done <= burn_in:
        raise nothing_to_keep(
            run,
            f"PPG stopped during burn-in ({run.reason}) after {done} iterations: nothing "
            "to keep. Run again with a smaller burn_in or more time.",
        )
    if run.interrupted:
        warnings.warn(
            f"PPG stopped early: {run.reason}. Keeping the {done - burn_in} iterations per "
            f"chain after burn-in (of {num_iterations - burn_in} asked for).",
            InterruptedRunWarning,
            stacklevel=3,
        )
    return outs


def _result(outs, run, params, model, mode, theta, burn_in, thinning, backward, names):
    """Draws of x (and θ in Gibbs; each chain's Polyak average in the learning modes), the
    bias-reduced functional estimates and the learning trace."""
    done = outs["log_likelihood"].shape[1]
    kept = slice(burn_in, done, thinning)
    samples = {"x": outs["x"][:, kept]}
    point: dict[str, Any] = {}
    averaged = jax.tree.map(lambda a: a[:, burn_in:done].mean(axis=1), outs["estimate"])
    extra: dict[str, Any] = {
        "smoothed_functionals": per_chain_dataset(
            {
                **flatten_estimates(averaged),
                "log_likelihood": outs["log_likelihood"][:, burn_in:done].mean(axis=1),
            }
        )
    }
    sample_stats = {"log_likelihood_estimate": outs["log_likelihood"][:, kept]}
    if mode == "gibbs":
        samples.update({k: v[:, kept] for k, v in outs["theta"].items()})
        sample_stats["theta_acceptance"] = outs["theta_acceptance"][:, kept]
    elif mode in ("mle", "score_climbing"):
        half = done // 2
        per_chain = {k: v[:, half:done].mean(axis=1) for k, v in outs["theta"].items()}
        point = {k: v.mean(axis=0) for k, v in per_chain.items()}
        num_kept = samples["x"].shape[1]
        for k, v in per_chain.items():  # each chain's estimate, as constant draws
            samples[k] = np.repeat(v[:, None], num_kept, axis=1)
        extra["learning_trace"] = per_chain_dataset(
            {**outs["theta"], "log_likelihood": outs["log_likelihood"]}
        )
    if theta is not None:
        for k in model.priors:
            value = np.asarray(params.fixed[k])
            samples[k] = np.broadcast_to(value, samples["x"].shape[:2] + value.shape).copy()
    return RawResult(
        samples=samples,
        sample_stats=sample_stats,
        extra_groups=extra,
        point_estimate=point,
        attrs={
            "sampling_time": run.seconds,
            "mode": mode,
            "backward_sampler": backward,
            "backward_acceptance": float(np.mean(outs["backward_acceptance"])),
            "functionals": list(names),
            **({"draws_are": "learning"} if mode in ("mle", "score_climbing") else {}),
        },
        interrupted=run.interrupted,
    )
