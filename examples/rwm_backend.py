"""A backend plug-in in the kernel shape: random-walk Metropolis (Metropolis et al. 1953).

The algorithm is a pure kernel usable without bayesplug (``init`` and ``build_kernel`` ->
``step(rng_key, state) -> (state, info)`` over NamedTuples, like blackjax); the backend's ``run``
is the adapter: model -> bridge -> kernel -> driver -> ``RawResult``. Because the chains advance
through :func:`bayesplug.inference.driver.run_in_chunks` with their keys in the carried state,
the backend gets the progress bar, Ctrl-C, ``max_time`` and checkpoint/resume for free.

Run: python examples/rwm_backend.py
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesplug.bridge import Bridge
from bayesplug.errors import BayesplugError
from bayesplug.inference.driver import run_in_chunks
from bayesplug.protocols import MAX_TIME, Option, RawResult, positive, positive_int


class RWMState(NamedTuple):
    position: jax.Array
    log_density: jax.Array


class RWMInfo(NamedTuple):
    acceptance_rate: jax.Array
    is_accepted: jax.Array


def init(position: jax.Array, log_density_fn: Callable) -> RWMState:
    """The state at ``position``."""
    return RWMState(position, log_density_fn(position))


def build_kernel(log_density_fn: Callable, scale: float) -> Callable:
    """``step(rng_key, state)``: propose x' = x + scale * N(0, I), accept with min(1, p'/p)."""

    def step(rng_key, state: RWMState) -> tuple[RWMState, RWMInfo]:
        move_key, accept_key = jax.random.split(rng_key)
        proposal = state.position + scale * jax.random.normal(move_key, state.position.shape)
        log_density = log_density_fn(proposal)
        log_ratio = jnp.nan_to_num(log_density - state.log_density, nan=-jnp.inf)
        accept = jnp.log(jax.random.uniform(accept_key)) < log_ratio
        new = RWMState(proposal, log_density)
        state = jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, state)
        return state, RWMInfo(jnp.minimum(1.0, jnp.exp(log_ratio)), accept)

    return step


class RandomWalkMetropolis:
    """Backend ``rwm``: vectorised random-walk Metropolis chains on the unconstrained space."""

    name = "rwm"
    requires = frozenset({"continuous"})
    options = {
        "num_warmup": Option(1000, (int,), "discarded steps per chain", positive_int),
        "num_samples": Option(2000, (int,), "kept draws per chain", positive_int),
        "num_chains": Option(4, (int,), "independent chains", positive_int),
        "scale": Option(0.1, (float,), "proposal standard deviation", positive),
        "max_time": MAX_TIME,
    }

    def run(self, model, data, rng_key, *, progress, num_warmup=1000, num_samples=2000,
            num_chains=4, scale=0.1, max_time=None) -> RawResult:  # fmt: skip
        bridge = Bridge.from_model(model.model, data)
        log_density = jax.vmap(lambda u: bridge.log_density(u, data))
        step = jax.vmap(build_kernel(lambda u: bridge.log_density(u, data), scale))
        init_key, run_key = jax.random.split(rng_key)
        start = jnp.broadcast_to(bridge.initial_point(init_key, data), (num_chains, bridge.dim))
        total = num_warmup + num_samples
        chunk = math.ceil(total / 20)

        def advance(carry):
            def one(carry, _):
                key, state = carry
                key, sub = jax.random.split(key)
                state, info = step(jax.random.split(sub, num_chains), state)
                return (key, state), (state.position, info.is_accepted)

            return jax.lax.scan(one, carry, None, length=chunk)

        carry = (run_key, RWMState(start, log_density(start)))
        run = run_in_chunks(jax.jit(advance), carry, num_chunks=20, steps_per_chunk=chunk,
                            progress=progress, description="rwm", max_time=max_time)  # fmt: skip
        positions = np.concatenate([o[0] for o in run.outputs])[num_warmup:total]
        accepted = np.concatenate([o[1] for o in run.outputs])[num_warmup:total]
        if len(positions) == 0:
            raise BayesplugError(f"rwm stopped in warm-up ({run.reason}): no draw to keep.")
        samples = bridge.constrain_many(positions.reshape(-1, bridge.dim), data)
        shape = (positions.shape[0], num_chains)
        samples = {k: np.swapaxes(v.reshape(shape + v.shape[1:]), 0, 1) for k, v in samples.items()}
        return RawResult(
            samples=samples,
            sample_stats={"is_accepted": np.swapaxes(accepted, 0, 1)},
            interrupted=run.interrupted,
        )


if __name__ == "__main__":
    import numpyro
    import numpyro.distributions as dist

    import bayesplug as bp

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    bp.register_backend("rwm", RandomWalkMetropolis)
    fit = bp.fit(model, {"y": np.array([0.9, 1.1, 1.3])}, method="rwm", scale=1.0, seed=0)
    print(fit.summary().to_string())  # exact posterior: N(1.0963, 0.5764^2)
