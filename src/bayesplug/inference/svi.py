"""Backend ``svi``: NumPyro stochastic variational inference with the model's own guide.

A model that defines ``guide(**data)`` (its variational family) is fitted with it, and with its
own ELBO when it defines ``svi_loss()`` (e.g. the sparse-within-sparse GP's analytic bound);
any other model gets NumPyro's ``AutoNormal`` guide and ``Trace_ELBO``. Mini-batches (capability
``minibatch``): every step draws ``batch_size`` data; a generic model's likelihood is scaled by
N / batch_size with :func:`~bayesplug.inference._minibatch.scale_likelihood`, a model with its
own loss scales its own terms.

Training: Adam (learning-rate schedule ``cosine`` by default, so mini-batch noise dies down at
the end; or ``constant``, ``exponential``), compiled in chunks of 100
steps under ``lax.scan``, with a progress bar showing the running ELBO. A step whose loss or
parameters are not finite is skipped; ten in a row stop the run (divergence), keeping the last
good parameters and saying which setting to lower. Ctrl-C or ``max_time`` keep the parameters
reached so far.

Output: ``num_draws`` draws of the latent sites from the fitted guide (the model's
``draw_from_guide`` when it has one), the ELBO trace (``sample_stats["elbo"]``, dim ``step``) and
the model's point estimates (variational parameters) in ``fit.point_estimate``.

Examples
--------
>>> import bayesplug as bp, numpy as np, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0, 10))
...     with numpyro.plate("data", y.shape[0]):
...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
>>> y = np.random.default_rng(0).normal(1.0, 1.0, 1000)
>>> fit = bp.fit(model, {"y": y}, method="svi", num_steps=2000, batch_size=100, progress=False)
>>> bool(abs(fit.samples["mu"].mean() - y.mean()) < 0.02)  # posterior sd 0.03
True
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..bridge import trace_model
from ..errors import BayesplugError, ConvergenceWarning, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, positive_int
from ._minibatch import MiniBatches, scale_likelihood
from ._optim import LEARNING_RATE, SCHEDULE, adam_with_schedule, all_finite
from .driver import run_in_chunks

__all__ = ["SVIBackend", "SVIInfo", "SVIState", "build_kernel", "init"]

CHUNK = 100
MAX_SKIPS = 10
DIVERGED = (
    "The optimisation diverged (NaN ELBO) and was stopped at its last good state; "
    "lower learning_rate and fit again."
)


class SVIState(NamedTuple):
    """NumPyro's ``SVIState`` (optimiser state and its key), the state before the last accepted
    update, and the run of refused steps. When a streak of refusals starts, the current
    parameters are the culprit: ``previous`` is then the last good state."""

    svi_state: Any
    previous: Any
    streak: jax.Array


class SVIInfo(NamedTuple):
    """The step's ELBO estimate (NaN when the step was refused)."""

    elbo: jax.Array


def init(svi, rng_key, *args, **kwargs) -> SVIState:
    """Initialise NumPyro's ``svi`` (an ``SVI`` object) with the model's arguments (a first
    mini-batch)."""
    state = svi.init(rng_key, *args, **kwargs)
    return SVIState(state, state, jnp.zeros((), jnp.int32))


def build_kernel(svi, max_skips: int = MAX_SKIPS) -> Callable:
    """``step(state, *args, **kwargs) -> (SVIState, SVIInfo)``: one ``svi.update`` with the
    model's arguments (a mini-batch); a step whose loss or new parameters are not finite is
    refused (the parameters stay, a fresh key is kept for the retry, the streak grows; after
    ``max_skips`` in a row every step is refused, which a driver reads as divergence).

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist, optax
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> from numpyro.infer.autoguide import AutoNormal
    >>> from numpyro.optim import optax_to_numpyro
    >>> from bayesplug.inference import svi as svi_kernel
    >>> def model(y):
    ...     numpyro.sample("y", dist.Normal(numpyro.sample("mu", dist.Normal(0, 1)), 1), obs=y)
    >>> svi = SVI(model, AutoNormal(model), optax_to_numpyro(optax.adam(1e-2)), Trace_ELBO())
    >>> state = svi_kernel.init(svi, jax.random.key(0), y=1.0)
    >>> state, info = jax.jit(svi_kernel.build_kernel(svi))(state, y=1.0)
    >>> bool(jax.numpy.isfinite(info.elbo)), int(state.streak)
    (True, 0)
    """

    def step(state: SVIState, *args, **kwargs) -> tuple[SVIState, SVIInfo]:
        current = state.svi_state
        new, loss = svi.update(current, *args, **kwargs)
        ok = jnp.isfinite(loss) & all_finite(svi.get_params(new)) & (state.streak < max_skips)

        def pick(a, b):
            return jax.tree.map(lambda x, y: jnp.where(ok, x, y), a, b)

        kept = pick(new, current)._replace(rng_key=new.rng_key)
        streak = jnp.where(ok, 0, jnp.minimum(state.streak + 1, max_skips))
        return SVIState(kept, pick(current, state.previous), streak), SVIInfo(
            jnp.where(ok, -loss, jnp.nan)
        )

    return step


class SVIBackend:
    """Stochastic variational inference (NumPyro ``SVI``) with the model's guide and loss."""

    name: ClassVar[str] = "svi"
    requires: ClassVar[frozenset[str]] = frozenset({"continuous"})
    options: ClassVar[Mapping[str, Option]] = {
        "num_steps": Option(5000, (int,), "optimisation steps", positive_int),
        "learning_rate": LEARNING_RATE,
        "schedule": SCHEDULE,
        "batch_size": Option(
            None,
            (int, type(None)),
            "data per mini-batch (default min(N, 256); None if no plate)",
            positive_int,
        ),
        "num_particles": Option(
            1, (int,), "Monte Carlo draws per ELBO (generic guide)", positive_int
        ),
        "num_draws": Option(1000, (int,), "draws from the fitted guide", positive_int),
        "max_time": MAX_TIME,
    }

    def run(
        self,
        model: Model,
        data: Mapping[str, Any],
        rng_key,
        *,
        progress: bool = False,
        num_steps: int,
        learning_rate: float,
        schedule: str,
        batch_size: int | None,
        num_particles: int,
        num_draws: int,
        max_time: float | None,
    ) -> RawResult:
        """Fit the guide by SVI, then draw from it."""
        data = dict(data)
        info = trace_model(model.model, data)
        batches = MiniBatches(info.data_plate_size, data, batch_size, default=256)
        svi, guide, model_fn = _numpyro_svi(
            model, batches, num_particles, adam_with_schedule(learning_rate, schedule, num_steps)
        )
        own_guide = hasattr(model, "guide")
        init_key, batch_key, draw_key = jax.random.split(rng_key, 3)
        state = init(svi, init_key, **batches.draw(batch_key, data))
        run, compile_time = _train(
            svi, state, batches, data, batch_key, num_steps, progress, max_time
        )
        kernel_state, _ = run.state
        diverged = int(kernel_state.streak) >= MAX_SKIPS
        state = kernel_state.previous if diverged else kernel_state.svi_state
        elbo = np.concatenate([np.asarray(o, float) for o in run.outputs]) if run.outputs else []
        elbo = np.asarray(elbo, dtype=float)
        _warn_if_stopped(diverged, run, elbo, num_steps, learning_rate)
        params = svi.get_params(state)
        start = time.perf_counter()
        if hasattr(model, "draw_from_guide"):
            samples, point = model.draw_from_guide(params, draw_key, num_draws, data)
        else:
            samples = _draw_generic(guide, model_fn, info, params, draw_key, num_draws, data)
            point = {}
        import xarray as xr

        window = elbo[-min(len(elbo), 500) :] if len(elbo) else np.array([np.nan])
        return RawResult(
            samples={k: np.asarray(v)[None] for k, v in samples.items()},
            sample_stats={"elbo": xr.DataArray(elbo, dims=["step"])},
            point_estimate={k: np.asarray(v) for k, v in point.items()},
            attrs={
                "draws_are": "independent",
                "guide": "model" if own_guide else "auto_normal",
                "elbo": float(np.nanmean(window)),
                "compile_time": compile_time,
                "training_time": run.seconds,
                "drawing_time": time.perf_counter() - start,
                "num_steps_run": int(np.isfinite(elbo).sum()),
                "batch_size": batches.batch_size or 0,
                "num_data": batches.num_data or 0,
                "diverged": int(diverged),
            },
            state=state,
            interrupted=run.interrupted,
            messages=[DIVERGED] if diverged else [],
        )


def _train(svi, state, batches, data, key, num_steps, progress, max_time):
    """The kernel in jitted chunks of ``CHUNK`` steps (a fresh mini-batch each step) under the
    driver; returns the driver's run and the compile time."""
    kernel = build_kernel(svi)
    steps = min(CHUNK, num_steps)

    def advance(carry, data):
        def one(carry, _):
            state, key = carry
            key, sub = jax.random.split(key)
            state, info = kernel(state, **batches.draw(sub, data))
            return (state, key), info.elbo

        return jax.lax.scan(one, carry, None, length=steps)

    carry = (state, key)
    start = time.perf_counter()
    compiled = jax.jit(advance).lower(carry, data).compile()
    compile_time = time.perf_counter() - start
    run = run_in_chunks(
        lambda c: compiled(c, data),
        carry,
        num_chunks=math.ceil(num_steps / steps),
        steps_per_chunk=steps,
        progress=progress,
        description="svi",
        postfix=lambda c, out: {"elbo": f"{np.nanmean(np.asarray(out)):.4g}"},
        max_time=max_time,
        done=lambda c, out: int(c[0].streak) >= MAX_SKIPS,
        total_steps=num_steps,
    )
    return run, compile_time


def _numpyro_svi(model, batches: MiniBatches, num_particles: int, tx):
    """NumPyro's ``SVI`` for ``model``: its own guide and loss when it has them, else
    ``AutoNormal`` and ``Trace_ELBO`` on the program, the likelihood scaled to the mini-batch."""
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.optim import optax_to_numpyro

    own_loss = hasattr(model, "svi_loss")
    model_fn = model.model
    if not own_loss and batches.scale != 1.0:
        model_fn = scale_likelihood(model.model, batches.scale)
    guide = model.guide if hasattr(model, "guide") else AutoNormal(model_fn, init_scale=0.1)
    loss = model.svi_loss() if own_loss else Trace_ELBO(num_particles=num_particles)
    # A model with its own loss evaluates its bound from the guide's parameters; SVI.init
    # must not replay the generative program (whose latent sites the guide does not cover).
    svi = SVI(_no_program if own_loss else model_fn, guide, optax_to_numpyro(tx), loss)
    return svi, guide, model_fn


def _warn_if_stopped(diverged: bool, run, elbo, num_steps: int, learning_rate: float) -> None:
    """Refuse a run that never had a finite ELBO; warn on divergence or an early stop."""
    if diverged:
        if not np.isfinite(elbo).any():
            raise BayesplugError(
                "svi could not start: the ELBO is NaN or infinite from the first step. "
                f"Lower learning_rate (now {learning_rate:g}) or check the model's log "
                "density and the data."
            )
        warnings.warn(
            f"The ELBO became NaN or infinite {MAX_SKIPS} steps in a row: the optimisation "
            "diverged and stopped at its last good parameters. Lower learning_rate (now "
            f"{learning_rate:g}, try {learning_rate / 3:.2g}).",
            ConvergenceWarning,
            stacklevel=3,
        )
    if run.interrupted:
        warnings.warn(
            f"svi stopped early: {run.reason}. Drawing from the guide as fitted so far "
            f"({int(np.isfinite(elbo).sum())} of {num_steps} steps).",
            InterruptedRunWarning,
            stacklevel=3,
        )


def _no_program(**data) -> None:
    """The model SVI sees when the model's own loss does the work."""


def _draw_generic(guide, model_fn, info, params, key, num_draws, data):
    """Latent and deterministic sites from an autoguide, via NumPyro's ``Predictive``."""
    from numpyro.infer import Predictive

    latent = Predictive(guide, params=params, num_samples=num_draws)(key, **data)
    predictive = Predictive(model_fn, posterior_samples=latent, condition_deterministic=True)
    sites = {**predictive(jax.random.fold_in(key, 1), **data), **latent}
    keep = set(info.latent_sites) | set(info.deterministic_sites)
    return {k: v for k, v in sites.items() if k in keep}
