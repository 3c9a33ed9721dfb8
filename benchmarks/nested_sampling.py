"""Nested sampling: bayesplug ``nested`` against dynesty and a raw ``blackjax.nss`` loop.

Problems with known evidence, prior U(-5, 5)^D:

* ``gauss-D`` (D = 2, 5, 10): L = N(x | mu, I), ln Z from the normal CDF;
* ``rosenbrock-2``: L = exp(-[(1 - x)^2 + 100 (y - x^2)^2]), Z = (pi / 10) / 100 (the
  truncation to the box is negligible).

All use 500 live points and stop at ln(Z + Z_live) - ln Z < 0.01. dynesty as its users run
it: the likelihood in NumPy (no JAX call per point), the static ``NestedSampler`` at its
defaults (``sample="auto"``) and with ``sample="rslice"``; ln Z error from its own estimate.
(Before 2026-12-02 this script gave dynesty a jitted JAX likelihood converted to a float per
point and ``rwalk``: ~0.2 ms of overhead a call, which made bayesplug look 11.5x faster.)
raw blackjax: ``blackjax.nss`` with the same settings as
bayesplug, jitted step in a Python loop, ``utils.finalise`` + ``utils.log_weights`` (100
simulations) for ln Z ± error. Columns: ln Z, reported error, true error, likelihood
evaluations, and wall time split into compilation and the rest.

Also the kernel-marginalised GP on the cosmic chronometers (bayesplug only; no closed form).

Run: python benchmarks/nested_sampling.py   (about 10 minutes on 2 CPU cores; dynesty rows are
left out where dynesty is not installed, e.g. on the GPU machine)
"""

from __future__ import annotations

import importlib.util
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy import stats

import bayesplug as bp
from bayesplug.models.numpyro_model import NumPyroModel

NUM_LIVE, DLOGZ, HALF = 500, 0.01, 5.0


def gaussian(d):
    mu = np.linspace(-1.0, 1.0, d)
    mass = stats.norm.cdf(HALF - mu) - stats.norm.cdf(-HALF - mu)
    truth = float(np.sum(np.log(mass / (2 * HALF))))

    def log_l(x):
        return -0.5 * jnp.sum((x - mu) ** 2) - 0.5 * d * jnp.log(2 * jnp.pi)

    def log_l_numpy(x):  # what a dynesty user writes
        return -0.5 * np.sum((x - mu) ** 2) - 0.5 * d * np.log(2 * np.pi)

    return f"gauss-{d}", d, (log_l, log_l_numpy), truth


def rosenbrock():
    def log_l(x):
        return -((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)

    # the same formula serves NumPy arrays (no JAX call per point)
    return "rosenbrock-2", 2, (log_l, log_l), float(np.log(np.pi / 10) - np.log(100.0))


def as_numpyro(d, log_l):
    def model():
        x = numpyro.sample("x", dist.Uniform(-HALF, HALF).expand([d]).to_event(1))
        numpyro.factor("log_l", log_l(x))

    return model


def run_bayesplug(d, log_l):
    model = NumPyroModel(as_numpyro(d, log_l))
    start = time.perf_counter()
    fit = bp.fit(model, {}, method="nested", num_live=NUM_LIVE, dlogz=DLOGZ, progress=False)
    wall = time.perf_counter() - start
    a = fit.idata.attrs
    return (
        fit.log_evidence,
        a["likelihood_evaluations"],
        a["compile_time"],
        wall - a["compile_time"],
    )


def run_dynesty(d, log_l_numpy, sample="auto"):
    """dynesty as its users run it: the likelihood in NumPy, the static sampler at its defaults
    (``sample="auto"``, its choice by dimension) or with ``"rslice"`` (advised in its docs for
    moderate dimension)."""
    import dynesty

    def transform(u):
        return 2 * HALF * u - HALF

    start = time.perf_counter()
    sampler = dynesty.NestedSampler(
        log_l_numpy, transform, d, nlive=NUM_LIVE, rstate=np.random.default_rng(0), sample=sample
    )
    sampler.run_nested(dlogz=DLOGZ, print_progress=False)
    wall = time.perf_counter() - start
    res = sampler.results
    return (float(res.logz[-1]), float(res.logzerr[-1])), int(np.sum(res.ncall)), 0.0, wall


def run_raw_blackjax(d, log_l):
    import blackjax
    from blackjax.ns import utils

    def log_prior(x):
        inside = jnp.all(jnp.abs(x) <= HALF)
        return jnp.where(inside, -d * jnp.log(2 * HALF), -jnp.inf)

    algo = blackjax.nss(log_prior, log_l, num_inner_steps=max(5, 2 * d), num_delete=NUM_LIVE // 10)
    key = jax.random.PRNGKey(0)
    positions = jax.random.uniform(key, (NUM_LIVE, d), minval=-HALF, maxval=HALF)
    start = time.perf_counter()
    state = algo.init(positions)
    step = jax.jit(algo.step)
    dead, evaluations, compile_time = [], 0, 0.0
    while True:
        key, sub = jax.random.split(key)
        t = time.perf_counter()
        state, info = step(sub, state)
        jax.block_until_ready(state)
        if not dead:
            compile_time = time.perf_counter() - t
        dead.append(info)
        evaluations += int(
            jnp.sum(info.update_info.num_expansions) + jnp.sum(info.update_info.num_shrink)
        )
        remaining = jnp.logaddexp(state.integrator.logZ, state.integrator.logZ_live)
        if remaining - state.integrator.logZ < DLOGZ:
            break
    final = utils.finalise(state, dead)
    log_z = jax.scipy.special.logsumexp(utils.log_weights(key, final, shape=100), axis=0)
    wall = time.perf_counter() - start
    return (float(log_z.mean()), float(log_z.std())), evaluations, compile_time, wall - compile_time


def main() -> None:
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}; {NUM_LIVE} live points, dlogz {DLOGZ}",
        flush=True,
    )
    print(
        "| problem | sampler | ln Z | reported error | true error | likelihood evaluations "
        "| compile (s) | run (s) |",
        flush=True,
    )
    print("|" + "---|" * 8, flush=True)
    problems = [gaussian(2), gaussian(5), gaussian(10), rosenbrock()]
    runners = {
        "bayesplug": lambda d, f: run_bayesplug(d, f[0]),
        "raw blackjax.nss": lambda d, f: run_raw_blackjax(d, f[0]),
    }
    if importlib.util.find_spec("dynesty") is not None:
        runners["dynesty (defaults, NumPy)"] = lambda d, f: run_dynesty(d, f[1])
        runners["dynesty (rslice, NumPy)"] = lambda d, f: run_dynesty(d, f[1], "rslice")
    else:
        print("| (dynesty not installed: pip install -e '.[bench]') |" + " |" * 7, flush=True)
    for name, d, log_l, truth in problems:
        for label, runner in runners.items():
            (log_z, err), calls, compile_time, run = runner(d, log_l)
            print(
                f"| {name} (ln Z = {truth:.3f}) | {label} | {log_z:.3f} | {err:.3f} | "
                f"{log_z - truth:+.3f} | {calls:,} | {compile_time:.1f} | {run:.1f} |",
                flush=True,
            )
    start = time.perf_counter()
    fit = bp.fit(
        bp.models.MarginalisedGP(),
        bp.datasets.load("cosmic_chronometers"),
        method="nested",
        num_live=NUM_LIVE,
        progress=False,
    )
    a = fit.idata.attrs
    print(
        f"| CC kernel-marginalised GP (13-D) | bayesplug | {fit.log_evidence[0]:.3f} | "
        f"{fit.log_evidence[1]:.3f} | n/a | {a['likelihood_evaluations']:,} | "
        f"{a['compile_time']:.1f} | {time.perf_counter() - start - a['compile_time']:.1f} |"
    )


if __name__ == "__main__":
    main()
