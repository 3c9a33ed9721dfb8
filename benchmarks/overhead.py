"""Overhead of ``bp.fit(..., method="nuts")`` over NumPyro's own ``MCMC(NUTS)``, same run.

Two models, 4 vectorised chains, 1000 warmup steps:

* ``logistic``: Bayesian logistic regression, N = 5000, D = 20 (21 parameters);
* ``means100``: 100 independent normal means, one observation each (100 parameters) -- the
  size the foundation issue names for the ArviZ conversion budget (< 1 s for 4 x 1000 x 100).

Three figures per model:

* whole run: wall time of one ``bp.fit`` against one ``MCMC.run`` + ``get_samples`` (1000 warmup +
  1000 draws), compilation included; bayesplug's includes the ArviZ conversion (pointwise
  log-likelihood) and the convergence diagnostics, shown on their own;
* sampling after compilation, per 1000 steps of 4 chains: for NumPyro, ``MCMC.run`` continuing
  from ``MCMC.warmup`` (5000 draws), minus the tracing / lowering / XLA-compilation durations that
  JAX reports through ``jax.monitoring`` (NumPyro re-traces its sampler on every ``run``); for
  bayesplug, the chunked sampling loop, which it compiles ahead of time and times apart
  (``idata.attrs["sampling_time"]``, 1000 warmup + 5000 draws);
* the ArviZ conversion of 4 x 1000 draws (``means100``: 100 parameters).

Each figure is the fastest of REPEATS runs (a noisy 2-core machine).

Run: python benchmarks/overhead.py
"""

from __future__ import annotations

import platform
import time

import arviz  # noqa: F401  (imported up front: its import is a once-per-process cost)
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import bayesplug as bp

NUM_CHAINS, NUM_WARMUP, NUM_DRAWS, LONG = 4, 1000, 1000, 5000
REPEATS = 3

_COMPILE_EVENTS = (
    "/jax/core/compile/backend_compile_duration",
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
)
_compile_seconds = [0.0]


def _on_event(event: str, duration: float, **kwargs) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def logistic(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def means100(y=None):
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([y.shape[0]]).to_event(1))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)


def problems():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 20))
    w = rng.normal(size=20) / 2
    y = (rng.uniform(size=5000) < 1 / (1 + np.exp(-(x @ w + 0.5)))).astype(float)
    yield "logistic", logistic, {"x": x, "y": y}
    yield "means100", means100, {"y": rng.normal(size=100)}


def numpyro_mcmc(fn, num_samples: int) -> MCMC:
    return MCMC(
        NUTS(fn),
        num_warmup=NUM_WARMUP,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
        jit_model_args=True,
    )


def numpyro_whole_run(fn, data) -> float:
    mcmc = numpyro_mcmc(fn, NUM_DRAWS)
    jdata = {k: jnp.asarray(v) for k, v in data.items()}
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), **jdata)  # NumPyro stops at draws: no ArviZ conversion
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - start


def numpyro_sampling_per_1000(fn, data) -> float:
    mcmc = numpyro_mcmc(fn, LONG)
    jdata = {k: jnp.asarray(v) for k, v in data.items()}
    mcmc.warmup(jax.random.PRNGKey(0), **jdata)
    best = float("inf")
    for seed in range(REPEATS):
        compile_before, start = _compile_seconds[0], time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed + 1), **jdata)
        jax.block_until_ready(mcmc.get_samples())
        wall = time.perf_counter() - start
        best = min(best, wall - (_compile_seconds[0] - compile_before))
    return best * 1000 / LONG


def bayesplug_run(fn, data, num_samples: int):
    start = time.perf_counter()
    fit = bp.fit(
        fn,
        data,
        seed=0,
        progress=False,
        num_warmup=NUM_WARMUP,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
    )
    return time.perf_counter() - start, fit.idata.attrs


def main() -> None:
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {jax.device_count()} x "
        f"{jax.devices()[0].platform}, jax {jax.__version__}, numpyro {numpyro.__version__}"
    )
    print(
        "| model | numpyro whole run (s) | bp whole run (s) | of which bp conversion "
        "+ diagnostics (s) | numpyro sampling per 1000 steps (s) | bp sampling per 1000 "
        "steps (s) | sampling overhead |",
        flush=True,
    )
    print("|" + "---|" * 7, flush=True)
    for name, fn, data in problems():
        np_whole = min(numpyro_whole_run(fn, data) for _ in range(REPEATS))
        runs = [bayesplug_run(fn, data, NUM_DRAWS) for _ in range(REPEATS)]
        bp_whole, attrs = min(runs, key=lambda r: r[0])
        post = attrs["conversion_time"] + attrs["diagnostics_time"]
        np_per = numpyro_sampling_per_1000(fn, data)
        bp_per = min(
            bayesplug_run(fn, data, LONG)[1]["sampling_time"] * 1000 / (NUM_WARMUP + LONG)
            for _ in range(REPEATS)
        )
        print(
            f"| {name} | {np_whole:.2f} | {bp_whole:.2f} | {post:.2f} | {np_per:.3f} | "
            f"{bp_per:.3f} | {bp_per / np_per - 1:+.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
