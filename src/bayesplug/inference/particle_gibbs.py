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
from .driver import run_in_chunks
from .paris import (
    check_finite_filter,
    check_particle_options,
    flatten_estimates,
    per_chain_dataset,
    resolve_functionals,
)

__all__ = ["ParticleGibbsBackend"]

_SCORE = "__score__"


class _ChainState(NamedTuple):
    reference: jax.Array  # (T, dx)
    eta: dict  # unconstrained parameters with priors
    opt_state: Any  # optax state (learning) or ()
    log_step: jax.Array  # MALA log step size (Gibbs)
    iteration: jax.Array


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
            "auto", (str,), "exact, rejection or auto", one_of(("exact", "rejection", "auto"))
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
        import blackjax
        import optax

        backward = check_particle_options(model, num_particles, num_backward, backward, max_trials)
        if burn_in >= num_iterations:
            raise InputError(
                "burn_in",
                f"is {burn_in} but only {num_iterations} iterations run: nothing would be kept.",
                "Lower burn_in or raise num_iterations.",
            )
        y = data["y"]
        free = {} if theta is not None else dict(model.priors)
        if learn is not None and not free:
            raise InputError(
                "learn",
                f"is {learn!r} but {model.name} has no parameter with a prior to learn.",
                "Give the parameters to learn as priors (their supports set the constraints), "
                "e.g. StochasticVolatility(phi=dist.Uniform(-1, 1)).",
            )
        mode = learn or ("gibbs" if free else "smooth")
        fixed = model.theta_with(theta) if theta is not None else dict(model.fixed)
        transforms = {k: biject_to(p.support) for k, p in free.items()}
        start = {**model.default_theta(), **dict(init or {})}
        eta0 = {k: jnp.asarray(transforms[k].inv(jnp.asarray(start[k]))) for k in free}

        def to_theta(eta):
            return {**fixed, **{k: transforms[k](v) for k, v in eta.items()}}

        def log_posterior(eta, path):
            th = to_theta(eta)
            lp = model.joint_log_density(th, path, y)
            for k, v in eta.items():
                value = transforms[k](v)
                lp = lp + jnp.sum(free[k].log_prob(value))
                lp = lp + jnp.sum(transforms[k].log_abs_det_jacobian(v, value))
            return lp

        # Robbins–Monro decay (exponent 0.6) so the Markovian gradient noise averages out
        optimizer = optax.adam(lambda k: learning_rate * (1.0 + k / 100.0) ** -0.6)
        kw = dict(
            num_particles=num_particles,
            num_backward=num_backward,
            backward=backward,
            max_trials=max_trials,
        )

        def functionals_at(eta):
            th = to_theta(eta)
            user, _ = resolve_functionals(model, th, y, functionals)
            if mode != "mle":
                return user
            score = score_functional(model, to_theta, eta, y)
            return Functional(
                lambda x0: {**user.init(x0), _SCORE: score.init(x0)},
                lambda xp, x, t: {**user.step(xp, x, t), _SCORE: score.step(xp, x, t)},
            )

        _, names = resolve_functionals(model, to_theta(eta0), y, functionals)
        mala = blackjax.mala.build_kernel()

        def iterate(state: _ChainState, key):
            k_pass, k_path, k_theta = jax.random.split(key, 3)
            th = to_theta(state.eta)
            result = particle_pass(
                k_pass,
                model,
                th,
                y,
                reference=state.reference,
                keep_paths=True,
                functional=functionals_at(state.eta),
                **kw,
            )
            path = trace_paths(k_path, result, 1)[0]
            estimate = dict(result.estimate)
            eta, opt_state, log_step = state.eta, state.opt_state, state.log_step
            accept = jnp.asarray(1.0)
            if mode == "mle":
                grad = jax.tree.map(lambda g: -g, estimate.pop(_SCORE))
                updates, opt_state = optimizer.update(grad, opt_state, eta)
                eta = optax.apply_updates(eta, updates)
            elif mode == "score_climbing":
                grad = jax.grad(lambda e: -model.joint_log_density(to_theta(e), path, y))(eta)
                updates, opt_state = optimizer.update(grad, opt_state, eta)
                eta = optax.apply_updates(eta, updates)
            elif mode == "gibbs":
                logdensity = lambda e: log_posterior(e, path)  # noqa: E731
                mstate = blackjax.mala.init(eta, logdensity)

                def mala_step(s, k):
                    s, info = mala(k, s, logdensity, jnp.exp(log_step))
                    return s, info.acceptance_rate

                mstate, rates = jax.lax.scan(
                    mala_step, mstate, jax.random.split(k_theta, theta_steps)
                )
                eta = mstate.position
                accept = jnp.mean(rates)
                adapting = state.iteration < burn_in
                log_step = log_step + jnp.where(adapting, 0.5 * (accept - 0.574), 0.0)
            new = _ChainState(path, eta, opt_state, log_step, state.iteration + 1)
            out = {
                "x": path,
                "theta": {k: transforms[k](v) for k, v in eta.items()},
                "estimate": estimate,
                "log_likelihood": result.log_likelihood,
                "increments_ok": jnp.all(jnp.isfinite(result.log_increments)),
                "theta_acceptance": accept,
                "backward_acceptance": result.acceptance,
            }
            return new, out

        # initial reference: an unconditional pass at the starting θ
        k_init, k_run = jax.random.split(rng_key)

        def first(key):
            k1, k2 = jax.random.split(key)
            result = particle_pass(k1, model, to_theta(eta0), y, keep_paths=True, **kw)
            return trace_paths(k2, result, 1)[0], result.log_increments

        refs, incs = jax.jit(jax.vmap(first))(jax.random.split(k_init, num_chains))
        check_finite_filter(incs, "PPG (the first particle pass)")
        opt0 = optimizer.init(eta0) if mode in ("mle", "score_climbing") else ()
        state = jax.vmap(lambda r: _ChainState(r, eta0, opt0, jnp.log(step_size), jnp.asarray(0)))(
            refs
        )

        num_chunks = min(20, num_iterations)
        length = math.ceil(num_iterations / num_chunks)
        keys = jax.random.split(k_run, (num_chunks * length, num_chains))

        @jax.jit
        def advance(carry):
            state, chunk = carry
            block = jax.lax.dynamic_slice_in_dim(keys, chunk * length, length)
            state, outs = jax.lax.scan(lambda s, k: jax.vmap(iterate)(s, k), state, block)
            return (state, chunk + 1), outs

        def postfix(carry, outs):
            info = {"loglik": f"{float(np.mean(outs['log_likelihood'][-1])):.1f}"}
            for k, v in outs["theta"].items():
                if np.ndim(v) == 2:
                    info[k] = f"{float(np.mean(v[-1])):.3g}"
            return info

        run = run_in_chunks(
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
        if not run.outputs:
            raise KeyboardInterrupt(f"PPG stopped before its first chunk: {run.reason}.")
        outs = jax.tree.map(lambda *a: np.concatenate(a, axis=0), *run.outputs)
        outs = jax.tree.map(lambda a: np.swapaxes(a[:num_iterations], 0, 1), outs)
        done = outs["log_likelihood"].shape[1]
        if not np.all(outs["increments_ok"]):
            chain, it = np.argwhere(~outs["increments_ok"])[0]
            raise BayesplugError(
                f"PPG: the conditional particle filter of chain {chain} lost all its free "
                f"particles at iteration {it} (a zero or non-finite likelihood everywhere). "
                + (
                    "The parameters being learned may have moved somewhere absurd: lower "
                    "learning_rate. "
                    if mode in ("mle", "score_climbing")
                    else ""
                )
                + "Check the observations for outliers, or use more particles."
            )
        if done <= burn_in:
            raise KeyboardInterrupt(
                f"PPG stopped during burn-in ({run.reason}) after {done} iterations: nothing "
                "to keep. Run again with a smaller burn_in or more time."
            )
        if run.interrupted:
            warnings.warn(
                f"PPG stopped early: {run.reason}. Keeping the {done - burn_in} iterations per "
                f"chain after burn-in (of {num_iterations - burn_in} asked for).",
                InterruptedRunWarning,
                stacklevel=2,
            )
        kept = slice(burn_in, done, thinning)
        samples = {"x": outs["x"][:, kept]}
        point: dict[str, Any] = {}
        extra: dict[str, Any] = {
            "smoothed_functionals": per_chain_dataset(
                {
                    **flatten_estimates(
                        jax.tree.map(lambda a: a[:, burn_in:done].mean(axis=1), outs["estimate"])
                    ),
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
                value = np.asarray(fixed[k])
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
