"""Overhead of ``bp.fit(..., method="nuts")`` over NumPyro's own ``MCMC(NUTS)``, same run.

Two models, 4 vectorised chains, 1000 warmup steps:

* ``logistic``: Bayesian logistic regression, N = 5000, D = 20 (21 parameters);
* ``means100``: 100 independent normal means, one observation each (100 parameters) -- the
  size the foundation issue names for the ArviZ conversion budget (< 1 s for 4 x 1000 x 100).

Both libraries compile anew on every run, so the cost "after compilation" is the difference
between a run with LONG and one with SHORT draws per chain, per 1000 extra draws: compilation,
initialisation, conversion and every other fixed cost cancel. The wall time of the SHORT run is
shown too, with bayesplug's ArviZ conversion (pointwise log-likelihood included) and convergence
diagnostics on their own; "sampling only" leaves those two out (NumPyro does neither).
Runs are repeated and the fastest kept (a noisy 2-core machine).

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

NUM_CHAINS, NUM_WARMUP = 4, 1000
SHORT, LONG = 1000, 6000  # draws per chain of the two runs whose difference gives the cost
REPEATS = 3


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


def time_numpyro(fn, data, num_samples: int) -> float:
    mcmc = MCMC(
        NUTS(fn),
        num_warmup=NUM_WARMUP,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    jdata = {k: jnp.asarray(v) for k, v in data.items()}
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), **jdata)  # NumPyro stops at draws: no ArviZ conversion
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - start


def time_bayesplug(fn, data, num_samples: int) -> tuple[float, float]:
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
    wall = time.perf_counter() - start
    attrs = fit.idata.attrs
    return wall, attrs["conversion_time"] + attrs["diagnostics_time"]


def main() -> None:
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {jax.device_count()} x "
        f"{jax.devices()[0].platform}, jax {jax.__version__}, numpyro {numpyro.__version__}"
    )
    print(
        f"| model | numpyro wall, {SHORT} draws (s) | bp wall, {SHORT} draws (s) "
        f"| bp ArviZ conversion + diagnostics, {SHORT} draws (s) "
        "| numpyro per 1000 extra draws (s) | bp per 1000 extra draws (s) "
        "| bp per 1000 extra draws, sampling only (s) | overhead, all | overhead, sampling |",
        flush=True,
    )
    print("|" + "---|" * 9, flush=True)
    for name, fn, data in problems():
        np_short = min(time_numpyro(fn, data, SHORT) for _ in range(REPEATS))
        np_long = min(time_numpyro(fn, data, LONG) for _ in range(REPEATS))
        bp_short, post_short = min(time_bayesplug(fn, data, SHORT) for _ in range(REPEATS))
        bp_long, post_long = min(time_bayesplug(fn, data, LONG) for _ in range(REPEATS))
        scale = 1000 / (LONG - SHORT)
        np_per, bp_per = (np_long - np_short) * scale, (bp_long - bp_short) * scale
        bp_sampling = ((bp_long - post_long) - (bp_short - post_short)) * scale
        print(
            f"| {name} | {np_short:.2f} | {bp_short:.2f} | {post_short:.2f} | {np_per:.2f} | "
            f"{bp_per:.2f} | {bp_sampling:.2f} | {bp_per / np_per - 1:+.1%} | "
            f"{bp_sampling / np_per - 1:+.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
