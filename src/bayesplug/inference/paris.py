"""Backend ``paris``: the PaRIS particle smoother (Olsson & Westerborn, Bernoulli 2017).

A bootstrap particle filter with Ñ ≥ 2 backward draws per particle that carries online estimates
of smoothed additive functionals in O(N Ñ) per step and O(N) memory (the algorithm is in
:mod:`bayesplug.inference._particles`). At fixed parameters θ it returns:

- ``fit.idata.smoothed_functionals``: per chain (an independent run), the estimates of
  E[h(x_{0:T-1}) | y] for the built-in functionals ``state_sum`` (Σ_t x_t),
  ``state_square_sum`` (Σ_t x_t x_tᵀ), ``score`` (∇θ log p(y) by Fisher's identity; one entry
  ``score_<param>`` per parameter) and any user functional;
- ``fit.log_evidence``: the filter's estimate of log p(y | θ) (averaged over chains in the
  likelihood scale, with its standard error);
- the posterior site ``x`` (T, dx): smoothing trajectories traced back through the backward
  indices (``num_paths`` per chain; ``num_paths=0`` keeps memory O(N)).

Parameters with priors need values: ``theta={"phi": 0.9}`` (or fit them with ``ppg``).

Examples
--------
>>> import jax, bayesplug as bp
>>> lg = bp.models.LinearGaussianSSM(A=0.8, Q=0.5, C=1.0, R=1.0)
>>> y = lg.simulate(jax.random.PRNGKey(0), 50)["y"]
>>> fit = bp.fit(lg, {"y": y}, method="paris", num_particles=64, num_chains=2,
...              num_paths=20, progress=False)
>>> fit.idata.posterior["x"].shape
(2, 20, 50, 1)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from ..errors import BayesplugError, InputError, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, non_negative, one_of, positive_int
from ._particles import Functional, builtin_functional, finish, make_pass, trace_paths
from .driver import nothing_to_keep, run_in_chunks

__all__ = ["PaRISBackend", "resolve_functionals", "check_particle_options"]

BUILTIN_FUNCTIONALS = ("state_sum", "state_square_sum", "score")


def resolve_functionals(model, theta, y, spec) -> tuple[Functional, tuple[str, ...]]:
    """One :class:`Functional` returning a dict, from names and user functions.

    ``spec``: None (``state_sum`` and ``state_square_sum``), a list of built-in names, or a dict
    ``{name: built-in name | fn(x_prev, x) | (init(x0), step(x_prev, x))}``.
    """
    if spec is None:
        spec = ["state_sum", "state_square_sum"]
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, Mapping):
        spec = {name: name for name in spec}
    parts: dict[str, Functional] = {}
    for name, item in spec.items():
        if isinstance(item, str):
            if item not in BUILTIN_FUNCTIONALS:
                from ..errors import did_you_mean

                raise InputError(
                    f"functionals[{name!r}]",
                    f"{item!r} is not a built-in functional. "
                    + did_you_mean(item, BUILTIN_FUNCTIONALS),
                    "Or pass a function fn(x_prev, x) of two states (each of shape (dx,)).",
                )
            parts[name] = builtin_functional(item, model, theta, y)
        elif isinstance(item, tuple) and len(item) == 2 and all(map(callable, item)):
            first, rest = item
            parts[name] = Functional(first, lambda xp, x, t, f=rest: f(xp, x))
        elif callable(item):

            def init(x0, f=item):
                return jax.tree.map(jnp.zeros_like, f(x0, x0))

            parts[name] = Functional(init, lambda xp, x, t, f=item: f(xp, x))
        else:
            raise InputError(
                f"functionals[{name!r}]",
                f"is a {type(item).__name__}; expected a built-in name, fn(x_prev, x) or a pair "
                "(init(x0), step(x_prev, x)).",
            )
    combined = Functional(
        lambda x0: {k: f.init(x0) for k, f in parts.items()},
        lambda xp, x, t: {k: f.step(xp, x, t) for k, f in parts.items()},
    )
    return combined, tuple(parts)


def flatten_estimates(estimates: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{"score": {"A": a}}`` → ``{"score_A": a}``; arrays are left as they are."""
    out = {}
    for name, value in estimates.items():
        if isinstance(value, Mapping):
            for key, v in value.items():
                out[f"{name}_{key}"] = np.asarray(v)
        else:
            out[name] = np.asarray(value)
    return out


def per_chain_dataset(values: Mapping[str, Any]):
    """An ``xarray.Dataset`` with a leading ``chain`` dimension (other axes named per variable)."""
    import xarray as xr

    return xr.Dataset(
        {
            k: (("chain",) + tuple(f"{k}_dim_{i}" for i in range(np.ndim(v) - 1)), np.asarray(v))
            for k, v in values.items()
        }
    )


# backward="auto" draws by rejection from this many particles on (when the model bounds its
# transition density), exactly below: on CPU the exact O(N²) sampler took 0.51, 0.74, 0.89 of
# the rejection sampler's time at N = 128, 192, 256 and 1.14, 1.10, 1.35 of it at N = 320, 384,
# 448 (1-D linear-Gaussian SSM, T = 500, 2026-12-05, after the rejection sampler's random
# numbers moved to rbg; the crossover was ~512 on 12-04 and ~256 before exact rows were drawn
# in two levels)
AUTO_REJECTION_FROM = 320


def check_particle_options(model, num_particles, num_backward, backward, max_trials) -> str:
    """Clear errors for settings the particle methods cannot run with; the backward sampler."""
    if num_particles < 2:
        raise InputError(
            "num_particles",
            f"is {num_particles}; a particle method needs at least 2 particles (and usually "
            "100 or more).",
        )
    if num_backward < 2:
        raise InputError(
            "num_backward",
            f"is {num_backward}; PaRIS needs at least 2 backward draws per particle to stay "
            "stable (Olsson & Westerborn 2017). The default is 2.",
        )
    theta = model.default_theta()
    has_bound = model.transition_log_bound(theta) is not None
    if backward == "rejection" and not has_bound:
        raise InputError(
            "backward",
            f"is 'rejection' but {model.name} gives no upper bound on its transition density.",
            "Use backward='exact', or give the model transition_log_bound=.",
        )
    if backward == "auto":  # whichever is faster: exact below AUTO_REJECTION_FROM particles
        backward = "rejection" if has_bound and num_particles >= AUTO_REJECTION_FROM else "exact"
    return backward


def check_finite_filter(log_increments: np.ndarray, where: str) -> None:
    """Stop with the time step where the filter lost every particle."""
    bad = ~np.isfinite(np.asarray(log_increments))
    if bad.any():
        steps = np.argwhere(bad)
        t = int(steps[0, -1])
        raise BayesplugError(
            f"{where}: the particle filter lost all its particles at time step {t} (every "
            "particle gave a zero or non-finite likelihood for that observation). Check that "
            "observation for an outlier or a unit error, widen the observation noise, or use "
            "more particles."
        )


class PaRISBackend:
    """PaRIS smoothing at fixed θ: additive functionals, log-likelihood, trajectories.

    Options
    -------
    num_particles, num_backward, backward ('exact', 'rejection' or 'auto'), max_trials,
    functionals, num_chains, num_paths, theta, max_time: see :attr:`options`.
    """

    name: ClassVar[str] = "paris"
    requires: ClassVar[frozenset[str]] = frozenset({"state_space"})
    options: ClassVar[Mapping[str, Option]] = {
        "num_particles": Option(100, (int,), "particles N", positive_int),
        "num_backward": Option(2, (int,), "backward draws per particle Ñ (≥ 2)", positive_int),
        "backward": Option(
            "auto",
            (str,),
            "backward sampler: exact O(N²), rejection (needs a transition bound) or auto "
            "(rejection from 320 particles when the model has a bound, else exact)",
            one_of(("exact", "rejection", "auto")),
        ),
        "max_trials": Option(32, (int,), "rejection candidates per index", positive_int),
        "functionals": Option(
            None, (list, tuple, dict, str, type(None)), "additive functionals to estimate"
        ),
        "num_chains": Option(4, (int,), "independent runs (vectorised)", positive_int),
        "num_paths": Option(
            0, (int,), "trajectories traced per run (0: none, O(N) memory)", non_negative
        ),
        "theta": Option(None, (dict, type(None)), "values for parameters with priors"),
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
        functionals: Any,
        num_chains: int,
        num_paths: int,
        theta: Mapping[str, Any] | None,
        max_time: float | None,
    ) -> RawResult:
        """Run ``num_chains`` independent PaRIS passes, in chunks of time steps."""
        backward = check_particle_options(model, num_particles, num_backward, backward, max_trials)
        th = model.theta_with(theta)
        y = data["y"]
        num_steps = y.shape[0]
        functional, names = resolve_functionals(model, th, y, functionals)
        keep = num_paths > 0
        init, step = make_pass(
            model,
            th,
            y,
            num_particles=num_particles,
            num_backward=num_backward,
            functional=functional,
            backward=backward,
            max_trials=max_trials,
            keep_paths=keep,
        )
        k_init, k_run, k_paths = jax.random.split(rng_key, 3)
        dummy = jnp.zeros((model.state_dim,))
        head = jax.jit(jax.vmap(lambda k: init(k, dummy)))(jax.random.split(k_init, num_chains))
        run, length = _run_pass(step, head, k_run, num_steps, num_chains, dummy, progress, max_time)
        if not run.outputs:
            raise nothing_to_keep(run, f"PaRIS stopped before its first chunk: {run.reason}.")
        state = run.state[0]
        outs = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *run.outputs)
        done = min(num_steps - 1, len(run.outputs) * length)
        outs = jax.tree.map(lambda a: jnp.swapaxes(a[:done], 0, 1), outs)  # chain first
        result = jax.vmap(lambda s, h, o: finish(s, h, o, keep))(state, head, outs)
        check_finite_filter(result.log_increments, "PaRIS")
        if run.interrupted:
            warnings.warn(
                f"PaRIS stopped early: {run.reason}. The estimates and trajectories cover the "
                f"first {done + 1} of {num_steps} time steps.",
                InterruptedRunWarning,
                stacklevel=2,
            )
        return _raw_result(
            model, th, result, names, num_paths, k_paths, run.seconds, backward, run.interrupted
        )


def _run_pass(step, head, key, num_steps, num_chains, dummy, progress, max_time):
    """The time steps 1..T−1 of ``num_chains`` passes (vmapped) in at most 20 jitted chunks
    under the driver; a padded last chunk leaves the state unchanged past T − 1. Returns the
    run and the chunk length."""
    num_chunks = min(20, num_steps - 1)
    length = math.ceil((num_steps - 1) / num_chunks)
    step_keys = jax.random.split(key, (num_chunks * length, num_chains))

    @jax.jit
    def advance(carry):
        state, chunk = carry
        ts = 1 + chunk * length + jnp.arange(length)

        def one_step(state, inputs):
            keys, t = inputs
            t_safe = jnp.minimum(t, num_steps - 1)
            new, out = jax.vmap(lambda s, k: step(s, (k, t_safe, dummy)))(state, keys)
            new = jax.tree.map(lambda a, b: jnp.where(t < num_steps, a, b), new, state)
            return new, out

        keys = jax.lax.dynamic_slice_in_dim(step_keys, chunk * length, length)
        state, outs = jax.lax.scan(one_step, state, (keys, ts))
        return (state, chunk + 1), outs

    run = run_in_chunks(
        advance,
        (head, jnp.asarray(0)),
        num_chunks=num_chunks,
        steps_per_chunk=length,
        progress=progress,
        description="paris",
        max_time=max_time,
    )
    return run, length


def _raw_result(model, th, result, names, num_paths, key, seconds, backward, interrupted):
    num_chains = result.log_likelihood.shape[0]
    samples: dict[str, Any] = {}
    if num_paths > 0:
        keys = jax.random.split(key, num_chains)
        samples["x"] = np.asarray(jax.vmap(lambda k, r: trace_paths(k, r, num_paths))(keys, result))
        for name in model.priors:  # the values the run used, as constant draws
            value = np.asarray(th[name])
            samples[name] = np.broadcast_to(value, (num_chains, num_paths) + value.shape).copy()
    log_lik = np.asarray(result.log_likelihood)
    log_mean = float(logsumexp(log_lik) - np.log(num_chains))  # log of the mean of the Z's
    ratio = np.exp(log_lik - log_mean)  # Z_c / mean Z
    se = float(np.std(ratio, ddof=1) / np.sqrt(num_chains)) if num_chains > 1 else float("nan")
    functionals = flatten_estimates(result.estimate)
    functionals["log_likelihood"] = log_lik
    messages = _degeneracy_messages(log_lik)
    return RawResult(
        messages=messages,
        samples=samples,
        log_evidence=(log_mean, se) if not model.priors else None,
        extra_groups={"smoothed_functionals": per_chain_dataset(functionals)},
        attrs={
            # traced paths of one run share ancestors: not MCMC draws, no R-hat / ESS checks
            "draws_are": "smoother_paths",
            "sampling_time": seconds,
            "backward_sampler": backward,
            "backward_acceptance": float(np.mean(np.asarray(result.acceptance))),
            "functionals": list(names),
        },
        interrupted=interrupted,
    )


# Spread of ln p̂(y) across independent filters above which the estimate is not to be trusted.
# Pitt, Silva, Giordani & Kohn (J. Econometrics 2012) and Doucet, Pitt, Deligiannidis & Kohn
# (Biometrika 2015) tune particle counts to a standard deviation of about 1-1.7; 3 is far past it.
MAX_LOG_LIKELIHOOD_SD = 3.0


def _degeneracy_messages(log_lik: np.ndarray) -> list[str]:
    """Words for a degenerate filter: the chains' ln p̂(y) disagree (or are not numbers)."""
    if not np.all(np.isfinite(log_lik)):
        return [
            "Some runs' likelihood estimates are not numbers: the particle weights under- or "
            "overflowed. Check the data's scale and the model; the smoothed values and the "
            "evidence are unusable."
        ]
    if log_lik.size < 2:
        return []
    spread = float(np.std(log_lik, ddof=1))
    if spread <= MAX_LOG_LIKELIHOOD_SD:
        return []
    return [
        f"The independent runs' estimates of ln p(y) differ by a standard deviation of "
        f"{spread:.3g} (a reliable particle filter has about 1): the filter is degenerate, so "
        "the evidence and the smoothed values are unreliable. Increase num_particles, or check "
        "that the model can explain the data (their scale and units)."
    ]


def functional_summary(fit) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (mean over chains, standard error)}`` of a PaRIS/PPG fit's functionals."""
    group = fit.idata["smoothed_functionals"]
    out = {}
    for name, value in group.data_vars.items():
        v = np.asarray(value)
        n = v.shape[0]
        out[name] = (v.mean(0), v.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.nan * v[0])
    return out
