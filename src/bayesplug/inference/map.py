"""Backend ``map``: maximum a posteriori by gradient descent (optax), optionally with a Laplace
approximation around the mode.

Any model whose latent sites are continuous: the NumPyro program's parameters are flattened into
one unconstrained vector u (:class:`~bayesplug.inference._numpyro_bridge.Bridge`), and the
loss is minus the log posterior density of the *constrained* values,

    L(u) = −log p(θ(u)) − log p(y | θ(u)),

so the optimum is the usual MAP (the mode in the model's own parameters, not in u). With
``laplace=True`` the mode of the density of u itself (the Jacobian of θ(u) included) is sought
instead and draws come from N(û, H⁻¹), H the Hessian of −log p(u | y) there (MacKay 2003,
ch. 27), mapped back through θ(u): a proper Gaussian approximation of the posterior where the
dimension allows a dense Hessian.

The kernel is written the blackjax way: :func:`init` and :func:`build_kernel` give a pure
``step(state) -> (MAPState, MAPInfo)`` over NamedTuples; :class:`MAPBackend` drives it in
jitted chunks (progress bar with the loss, ``max_time``, Ctrl-C keeps the state reached,
plateau stopping) and keeps the best iterate by the training loss (never by any test error).

Examples
--------
>>> import numpy as np, numpyro, numpyro.distributions as dist, bayesplug as bp
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
>>> fit = bp.fit(model, {"y": np.array([1.0, 2.0, 3.0])}, method="map", progress=False)
>>> round(float(fit.point_estimate["mu"]), 3)   # the posterior mode 6 / 3.01
1.993
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

from ..bridge import _LOG_DET_PREFIX, Bridge, _site_log_prob_sum
from ..errors import BayesplugError, ConvergenceWarning, InputError, InterruptedRunWarning
from ..protocols import MAX_TIME, Model, Option, RawResult, positive, positive_int
from ._optim import LEARNING_RATE, OPTIMIZER, SCHEDULE, adam_with_schedule
from .driver import run_in_chunks

__all__ = ["MAPBackend", "MAPInfo", "MAPState", "build_kernel", "init"]

CHUNK = 100
MAX_LAPLACE_DIM = 2000  # a dense Hessian of this size is 32 MB


class MAPState(NamedTuple):
    """The iterate, the optimiser's state and the best iterate so far by the training loss."""

    position: jax.Array
    opt_state: Any
    loss: jax.Array
    best_position: jax.Array
    best_loss: jax.Array


class MAPInfo(NamedTuple):
    """The loss at the iterate before the step (NaN when the step was refused)."""

    loss: jax.Array


def init(position, loss_fn: Callable, optimizer) -> MAPState:
    """Start at ``position`` (flat, unconstrained)."""
    loss = loss_fn(position)
    return MAPState(position, optimizer.init(position), loss, position, loss)


def build_kernel(loss_fn: Callable, optimizer) -> Callable:
    """``step(state) -> (state, info)``: one optimiser step on ``loss_fn``; a step whose loss or
    gradient is not finite is refused (the iterate stays), so the state never holds a NaN."""
    import optax

    def step(state: MAPState) -> tuple[MAPState, MAPInfo]:
        loss, grad = jax.value_and_grad(loss_fn)(state.position)
        ok = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
        updates, opt_state = optimizer.update(grad, state.opt_state, state.position)
        position = optax.apply_updates(state.position, updates)
        position = jnp.where(ok, position, state.position)
        opt_state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), opt_state, state.opt_state)
        better = ok & (loss < state.best_loss)
        new = MAPState(
            position,
            opt_state,
            jnp.where(ok, loss, state.loss),
            jnp.where(better, state.position, state.best_position),
            jnp.where(better, loss, state.best_loss),
        )
        return new, MAPInfo(jnp.where(ok, loss, jnp.nan))

    return step


def _starting_point(model, bridge: Bridge, data, key):
    """The model's own ``initial_values(data)`` when it has them (a model with flat priors has
    no prior median to start from), else :meth:`Bridge.initial_point`."""
    values = getattr(model, "initial_values", None)
    if values is None:
        return bridge.initial_point(key, data)
    return bridge.unconstrain(values(data), data)


def _constrained_log_density(bridge: Bridge, data, jacobian: bool) -> Callable:
    """log p(θ(u), y), with or without log|det ∂θ/∂u| (the bridge's log-det sites)."""
    if jacobian:
        return lambda u: bridge.log_density(u, data)

    def log_density(u):
        trace = bridge._trace(u, data)
        total = jnp.zeros(())
        for name, site in trace.items():
            if site["type"] == "sample" and not name.startswith(_LOG_DET_PREFIX):
                total = total + _site_log_prob_sum(site)
        return total

    return log_density


def _train(loss_fn, optimizer, state, num_steps, tol, progress, max_time):
    """The kernel in jitted chunks under the driver, stopping on a plateau of the best loss
    (relative improvement under ``tol`` over 500 steps); the run and the compile time."""
    kernel = build_kernel(loss_fn, optimizer)
    steps = min(CHUNK, num_steps)

    def advance(state):
        return jax.lax.scan(lambda s, _: kernel(s), state, None, length=steps)

    start = time.perf_counter()
    compiled = jax.jit(advance).lower(state).compile()
    compile_time = time.perf_counter() - start
    best_history: list[float] = []

    def plateau(state, _):
        best_history.append(float(state.best_loss))
        window = max(1, 500 // steps)
        if tol is None or len(best_history) <= window:
            return False
        old, new = best_history[-window - 1], best_history[-1]
        return old - new <= tol * max(abs(new), 1.0)

    run = run_in_chunks(
        compiled,
        state,
        num_chunks=math.ceil(num_steps / steps),
        steps_per_chunk=steps,
        progress=progress,
        description="map",
        postfix=lambda s, info: {"loss": f"{float(s.best_loss):.6g}"},
        max_time=max_time,
        done=plateau,
        total_steps=num_steps,
    )
    return run, compile_time


def _warn_if_stopped(run, losses: np.ndarray, learning_rate: float) -> None:
    """Warn on an early stop, and when most steps were refused (non-finite)."""
    if run.interrupted:
        warnings.warn(
            f"map stopped early: {run.reason}. Keeping the best iterate of {losses.size} steps.",
            InterruptedRunWarning,
            stacklevel=3,
        )
    refused = int(np.sum(~np.isfinite(losses)))
    if refused > losses.size // 2:
        warnings.warn(
            f"{refused} of {losses.size} steps met a NaN or infinite loss or gradient and were "
            f"refused. Lower learning_rate (now {learning_rate:g}).",
            ConvergenceWarning,
            stacklevel=3,
        )


class MAPBackend:
    """Maximum a posteriori (optax), optionally a Laplace approximation around the mode."""

    name: ClassVar[str] = "map"
    requires: ClassVar[frozenset[str]] = frozenset({"continuous"})
    options: ClassVar[Mapping[str, Option]] = {
        "num_steps": Option(5000, (int,), "optimisation steps at most", positive_int),
        "learning_rate": LEARNING_RATE,
        "schedule": SCHEDULE,
        "optimizer": OPTIMIZER,
        "tol": Option(
            None,
            (float, type(None)),
            "stop when the best loss improves by less than this over 500 steps (relative)",
            positive,
        ),
        "laplace": Option(False, (bool,), "Gaussian around the mode of u, with draws"),
        "num_draws": Option(1000, (int,), "draws of the Laplace approximation", positive_int),
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
        optimizer: Any,
        tol: float | None,
        laplace: bool,
        num_draws: int,
        max_time: float | None,
    ) -> RawResult:
        """Minimise the loss in chunks, keep the best iterate; Laplace draws when asked."""
        data = dict(data)
        init_key, draw_key = jax.random.split(rng_key)
        bridge = Bridge.from_model(model.model, data, init_key)
        if laplace and bridge.dim > MAX_LAPLACE_DIM:
            raise InputError(
                "laplace",
                f"needs a dense {bridge.dim} x {bridge.dim} Hessian (more than "
                f"{MAX_LAPLACE_DIM} parameters).",
                "Use laplace=False for the point estimate, or a sampling method.",
            )
        if optimizer is None:
            optimizer = adam_with_schedule(learning_rate, schedule, num_steps)
        elif not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
            raise InputError("optimizer", f"expected an optax transform, got {optimizer!r}.")
        log_density = _constrained_log_density(bridge, data, jacobian=laplace)

        def loss_fn(u):
            return -log_density(u)

        state = init(_starting_point(model, bridge, data, init_key), loss_fn, optimizer)
        if not np.isfinite(float(state.loss)):
            raise BayesplugError(
                "map could not start: the log posterior density is not finite at the starting "
                "point (the model's initial values, else the prior's median). Check the model "
                "and the data."
            )
        run, compile_time = _train(loss_fn, optimizer, state, num_steps, tol, progress, max_time)
        state = run.state
        losses = np.concatenate([np.asarray(o.loss, float) for o in run.outputs] or [np.zeros(0)])
        _warn_if_stopped(run, losses, learning_rate)
        best = bridge.constrain_many(np.asarray(state.best_position)[None], data)
        final = bridge.constrain_many(np.asarray(state.position)[None], data)
        attrs = {
            "draws_are": "point",
            "compile_time": compile_time,
            "training_time": run.seconds,
            "num_steps_run": int(losses.size),
            "best_loss": float(state.best_loss),
            "final_loss": float(state.loss),
            "best_step": int(np.nanargmin(losses)) if np.isfinite(losses).any() else -1,
            "stopped_on_plateau": int(
                tol is not None and losses.size < num_steps and not run.interrupted
            ),
            "jacobian": int(laplace),
        }
        samples = {k: v[None] for k, v in best.items()}
        if laplace:
            samples, attrs = self._laplace(
                bridge, loss_fn, state.best_position, data, draw_key, num_draws, attrs
            )
        import xarray as xr

        return RawResult(
            samples=samples,
            sample_stats={"loss": xr.DataArray(losses, dims=["step"])},
            point_estimate={k: v[0] for k, v in best.items()},
            extra_groups={"final_iterate": {k: v[0] for k, v in final.items()}},
            attrs=attrs,
            state=state,
            interrupted=run.interrupted,
        )

    @staticmethod
    def _laplace(bridge, loss_fn, mode, data, key, num_draws, attrs):
        hessian = jax.hessian(loss_fn)(mode)
        try:
            chol = np.linalg.cholesky(np.asarray(hessian, dtype=float))
        except np.linalg.LinAlgError:
            raise BayesplugError(
                "the Hessian at the mode is not positive definite: the mode is a saddle point or "
                "the posterior is flat in some direction, so no Laplace approximation exists. "
                "Run longer (num_steps) or use a sampling method."
            ) from None
        z = np.asarray(jax.random.normal(key, (num_draws, bridge.dim)))
        # u = mode + L^-T z has covariance (L L^T)^-1 = H^-1
        import scipy.linalg

        us = np.asarray(mode) + scipy.linalg.solve_triangular(chol.T, z.T, lower=False).T
        draws = bridge.constrain_many(us, data)
        attrs = {
            **attrs,
            "draws_are": "independent",
            "laplace_log_det_hessian": float(2 * np.log(np.diag(chol)).sum()),
        }
        return {k: v[None] for k, v in draws.items()}, attrs
