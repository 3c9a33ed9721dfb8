"""Backend ``nuts``: NumPyro's No-U-Turn sampler, several chains vectorised with ``vmap``.

The reference baseline of the suite (Hoffman & Gelman 2014, as implemented by NumPyro): windowed
adaptation of the step size and a diagonal (or dense) mass matrix during warmup, then sampling.
The chains advance together in jitted chunks of ``lax.scan`` steps, so the progress bar moves and
Ctrl-C keeps every draw taken so far.

Examples
--------
>>> import bayesplug as bp, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0, 10))
...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
>>> fit = bp.fit(model, {"y": [1.0, 2.0, 3.0]}, method="nuts", num_warmup=200,
...              num_samples=200, num_chains=2, progress=False)
>>> fit.idata.posterior["mu"].shape
(2, 200)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..bridge import program_key
from ..errors import BayesplugError, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, non_negative, positive_int, probability
from .driver import (
    data_signature,
    devices_in_use,
    keep_program,
    nothing_to_keep,
    place_chains,
    run_in_chunks,
)

__all__ = ["NUTSBackend"]

_COMPILED: dict[tuple, Any] = {}  # the last runs' compiled chunks, oldest first


class NUTSBackend:
    """NumPyro NUTS with vectorised chains, chunked for progress and interruption.

    Options
    -------
    num_warmup, num_samples, num_chains, thinning, target_accept, max_tree_depth, dense_mass,
    max_time: see :attr:`options`.
    """

    name: ClassVar[str] = "nuts"
    requires: ClassVar[frozenset[str]] = frozenset({"continuous"})
    options: ClassVar[Mapping[str, Option]] = {
        "num_warmup": Option(500, (int,), "adaptation steps per chain", non_negative),
        "num_samples": Option(1000, (int,), "kept draws per chain", positive_int),
        "num_chains": Option(4, (int,), "independent chains (vectorised)", positive_int),
        "thinning": Option(1, (int,), "keep every k-th draw", positive_int),
        "target_accept": Option(0.8, (float,), "target acceptance probability", probability),
        "max_tree_depth": Option(10, (int,), "maximum tree depth", positive_int),
        "dense_mass": Option(False, (bool,), "adapt a dense mass matrix"),
        "max_time": MAX_TIME,
    }

    def run(
        self,
        model: Model,
        data: Mapping[str, Any],
        rng_key,
        *,
        progress: bool = False,
        num_warmup: int,
        num_samples: int,
        num_chains: int,
        thinning: int,
        target_accept: float,
        max_tree_depth: int,
        dense_mass: bool,
        max_time: float | None,
    ) -> RawResult:
        """Run the chains and return constrained draws shaped (chain, draw, ...)."""
        from numpyro.infer import NUTS

        kernel = NUTS(
            model.model,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
        )
        data = dict(data)
        state = _initial_state(
            kernel, model, data, jax.random.split(rng_key, num_chains), num_warmup
        )
        total = num_warmup + num_samples * thinning
        num_chunks = min(20, total)
        steps_per_chunk = math.ceil(total / num_chunks)

        state, chain_data = place_chains(state, data, num_chains)
        # Compile once, ahead of time, so compilation and sampling are timed apart; a later
        # run of the same program, data shapes and settings (another seed or data set) reuses
        # the chunk: the data are its arguments, and NumPyro's kernel rebuilds the potential
        # from them at every step.
        cache_key = (
            program_key(model.model),
            data_signature(data),
            num_warmup,
            steps_per_chunk,
            num_chains,
            float(target_accept),
            max_tree_depth,
            bool(dense_mass),
            bool(jax.config.jax_enable_x64),
            devices_in_use(),
        )
        try:
            compiled = _COMPILED.get(cache_key)
        except TypeError:  # an unhashable program: no reuse
            compiled, cache_key = None, None
        compile_start = time.perf_counter()
        if compiled is None:
            compiled = _chunk(kernel, steps_per_chunk).lower(state, chain_data).compile()
            if cache_key is not None:
                keep_program(_COMPILED, cache_key, compiled)
        compile_time = time.perf_counter() - compile_start

        run = run_in_chunks(
            lambda s: compiled(s, chain_data),
            state,
            num_chunks=num_chunks,
            steps_per_chunk=steps_per_chunk,
            progress=progress,
            description=lambda i: "nuts warmup" if i * steps_per_chunk < num_warmup else "nuts",
            postfix=lambda state, out: {"divergences": int(np.sum(out[1]["diverging"]))},
            max_time=max_time,
        )
        if not run.outputs:
            raise nothing_to_keep(run, f"NUTS stopped before its first chunk: {run.reason}.")
        z, stats = _kept_draws(run, num_warmup, num_samples, thinning)
        constrain = kernel.postprocess_fn((), data)
        samples = jax.jit(jax.vmap(jax.vmap(constrain)))(jax.tree.map(jnp.asarray, z))
        stats["tree_depth"] = np.floor(np.log2(stats["n_steps"] + 1)).astype(int)
        return RawResult(
            samples={k: np.asarray(v) for k, v in samples.items()},
            sample_stats=stats,
            attrs={"sampling_time": run.seconds, "compile_time": compile_time},
            state=run.state,
            interrupted=run.interrupted,
            messages=_divergence_messages(stats["diverging"]),
        )


def _chunk(kernel, steps_per_chunk: int):
    """``advance(state, data) -> (state, (z, stats))``: ``steps_per_chunk`` NUTS transitions."""

    @jax.jit
    def advance(state, data):
        def step(state, _):
            state = kernel.sample(state, (), data)
            stats = {
                "diverging": state.diverging,
                "acceptance_rate": state.accept_prob,
                "n_steps": state.num_steps,
                "lp": -state.potential_energy,
                "energy": state.energy,
                "step_size": state.adapt_state.step_size,
            }
            return state, (state.z, stats)

        return jax.lax.scan(step, state, None, length=steps_per_chunk)

    return advance


def _initial_state(kernel, model, data, keys, num_warmup):
    """NumPyro's NUTS state for each chain, or an error in words when no valid start exists."""
    try:
        return kernel.init(keys, num_warmup, model_args=(), model_kwargs=data)
    except RuntimeError as exc:
        if "Cannot find valid initial parameters" not in str(exc):
            raise
        raise BayesplugError(
            f"NUTS could not start: every trial initial point of model {model.name!r} gave a "
            "NaN or infinite log density or gradient. Check that the data fit the model's "
            "support (e.g. positive values for a LogNormal likelihood) and that priors are "
            "not too narrow."
        ) from None


def _kept_draws(run, num_warmup: int, num_samples: int, thinning: int):
    """The chunks' draws and statistics after warm-up and thinning, shaped (chain, draw, ...);
    an interrupted run keeps what it had (with a warning), none kept is an interruption."""
    z, stats = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *run.outputs)
    keep = slice(num_warmup, num_warmup + num_samples * thinning, thinning)
    z = jax.tree.map(lambda a: np.swapaxes(a[keep], 0, 1), z)
    stats = {k: np.swapaxes(v[keep], 0, 1) for k, v in stats.items()}
    num_kept = next(iter(stats.values())).shape[1]
    if num_kept == 0:
        raise nothing_to_keep(
            run,
            f"NUTS stopped during warmup ({run.reason}), before any posterior draw: "
            "nothing to keep. Run again, with fewer warmup steps if time is short.",
        )
    if run.interrupted:
        warnings.warn(
            f"NUTS stopped early: {run.reason}. Returning the {num_kept} draws per chain "
            f"taken so far (of {num_samples} asked for).",
            InterruptedRunWarning,
            stacklevel=3,
        )
    return z, stats


def _divergence_messages(diverging: np.ndarray) -> list[str]:
    """Advice when any transition diverged."""
    num_divergent = int(np.sum(diverging))
    if not num_divergent:
        return []
    share = num_divergent / diverging.size
    return [
        f"{num_divergent} divergent transition(s) ({share:.1%} of draws): the sampler "
        "could not follow the posterior's curvature, so the draws may be biased. Raise "
        "target_accept (e.g. 0.95) or reparametrise the model."
    ]
