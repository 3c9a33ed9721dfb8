"""Normalizing-flow VI: every ``flow_vi`` family against exact answers and against NUTS.

Problems:

* ``funnel-2`` / ``funnel-10``: Neal's funnel, y ~ N(0, 3^2), x_i | y ~ N(0, e^y) (D - 1 of them).
  Normalised, so ln Z = 0 and KL(q || p) = -ELBO; errors are scored on y (exact mean 0, std 3):
  x's marginal is too heavy-tailed for a sample std to mean anything.
* ``banana``: Haario's banana, z1 ~ N(0, 10^2), z2 | z1 ~ N(0.1 (z1^2 - 100), 1); ln Z = 0, exact
  std(z1) = 10, std(z2) = sqrt(1 + 0.01 * 2 * 100^2) = 14.18, both means 0.
* ``eight-schools``: the centred parametrisation (the hard one); reference: a long NUTS run on the
  non-centred parametrisation (same posterior, no divergences).
* ``gp-cc``: hyperparameter posterior of the ``gp`` model (RBF kernel) on the cosmic chronometers;
  reference: a long NUTS run.

Every flow runs with the same settings (``SETTINGS``: 20,000 steps, 64 particles, 20,000 draws,
``importance=True``), so the families are compared at equal steps; ``maf`` and ``nsf`` with
``tails=True`` (their learned tail layer; off by default in the library, see
``docs/benchmarks.md``).

Columns: KL = ln Z - ELBO where ln Z is known (ELBO from 20,000 draws), Pareto k-hat, the largest
error of a posterior mean (in posterior standard deviations) and of a posterior std (relative),
over all coordinates, from the importance-resampled draws (``importance=True``); wall time split
into set-up + compilation and the rest (training, the warm start's included, + drawing; for
NUTS: sampling), and that run time as a multiple of NUTS's on the same problem. NUTS runs
4 chains x 1,000 draws after 1,000 warmup steps with target_accept 0.9 and reports its divergences.
``iaf`` and ``bnaf`` are NumPyro's own ``AutoIAFNormal`` / ``AutoBNAFNormal`` under the same
training loop.

A last row per problem (``maf, short``) runs ``maf`` on a budget aimed at a third of NUTS's time,
with the library's 32 particles and 10,000 draws (``SHORT``: on the funnels, the fewest steps
that kept the std error under 5% in a sweep on 2 CPU cores; on the banana, 5,000 steps, which is
not enough: it needs about 20,000; 1,000 on the others). ``--seeds K`` adds a
second table: the default flow (``maf``) with ``SETTINGS`` on funnel-2 and banana, and the
short budgets, over seeds 0..K-1, to show how steady KL, k-hat and the errors are.

Run: python benchmarks/flow_vi.py [--problems funnel-2,banana] [--flows maf,iaf] [--seeds 6]
(about 37 minutes on 2 CPU cores for everything with --seeds 4)
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesplug as bp
from bayesplug.inference.flow_vi import FlowVIBackend
from bayesplug.inference.flows import FLOWS, TAILED

FLOW_ORDER = ["maf", "nsf", "iaf", "bnaf", "planar", "radial", "full_rank", "diagonal"]
SETTINGS = {"num_steps": 20_000, "num_particles": 64, "num_draws": 20_000, "importance": True}
SHORT_DEFAULTS = {k: FlowVIBackend.options[k].default for k in ("num_particles", "num_draws")}
SHORT = {  # funnels: ~0.3x NUTS on 2 CPU cores; the banana needs ~15,000-20,000 steps for 5%
    "funnel-2": {"num_steps": 500, "learning_rate": 0.03},
    "funnel-10": {"num_steps": 1500, "learning_rate": 0.02},
    "banana": {"num_steps": 5000, "learning_rate": 0.01},
    "eight-schools": {"num_steps": 1000, "learning_rate": 0.01},
    "gp-cc": {"num_steps": 1000, "learning_rate": 0.01},
}


def funnel(d):
    def model():
        y = numpyro.sample("y", dist.Normal(0.0, 3.0))
        x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (d - 1,)))
        scale = jnp.exp(y / 2)
        numpyro.factor("x_given_y", dist.Normal(0.0, scale).expand([d - 1]).to_event(1).log_prob(x))

    # x's marginal is so heavy-tailed (E x^4 = 3 e^18) that its sample std says nothing: y only.
    return model, {}, 0.0, {"y": (np.zeros(1), np.full(1, 3.0))}


def banana():
    def model():
        z1 = numpyro.sample("z1", dist.Normal(0.0, 10.0))
        z2 = numpyro.sample("z2", dist.ImproperUniform(dist.constraints.real, (), ()))
        numpyro.factor("z2_given_z1", dist.Normal(0.1 * (z1**2 - 100.0), 1.0).log_prob(z2))

    exact = {
        "z1": (np.zeros(1), np.full(1, 10.0)),
        "z2": (np.zeros(1), np.full(1, np.sqrt(1 + 0.01 * 2 * 100.0**2))),
    }
    return model, {}, 0.0, exact


SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def schools_centred(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", 8):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def schools_noncentred(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", 8):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * eta)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def nuts_reference(model, data, sites, num_samples=25_000):
    fit = bp.fit(
        model,
        data,
        method="nuts",
        num_warmup=2000,
        num_samples=num_samples,
        num_chains=4,
        target_accept=0.95,
        progress=False,
        seed=123,
    )
    post = fit.idata.posterior
    return {
        s: (
            np.atleast_1d(post[s].mean(("chain", "draw")).values),
            np.atleast_1d(post[s].std(("chain", "draw")).values),
        )
        for s in sites
    }


def eight_schools():
    data = {"y": SCHOOLS_Y, "sigma": SCHOOLS_SIGMA}
    exact = nuts_reference(schools_noncentred, data, ["mu", "tau", "theta"])
    return schools_centred, data, None, exact


def gp_cc():
    model = bp.models.GP(kernel="rbf")
    data = bp.datasets.load("cosmic_chronometers")
    probe = bp.fit(
        model, data, method="nuts", num_warmup=50, num_samples=10, num_chains=1, progress=False
    )
    sites = list(probe.idata.posterior.data_vars)
    exact = nuts_reference(model, data, sites, num_samples=10_000)
    return model, data, None, exact


PROBLEMS = {
    "funnel-2": lambda: funnel(2),
    "funnel-10": lambda: funnel(10),
    "banana": banana,
    "eight-schools": eight_schools,
    "gp-cc": gp_cc,
}


def errors(posterior, exact):
    mean_err, std_err = 0.0, 0.0
    for site, (mean, sd) in exact.items():
        draws = posterior[site].values.reshape(-1, mean.size)
        mean_err = max(mean_err, float(np.max(np.abs(draws.mean(0) - mean) / sd)))
        std_err = max(std_err, float(np.max(np.abs(draws.std(0) / sd - 1))))
    return mean_err, std_err


def run_flow(model, data, log_z, exact, flow, seed=0, **overrides):
    """(table cells, run seconds) of one flow_vi fit with ``SETTINGS`` (and ``overrides``);
    ``maf`` and ``nsf`` with their tail layer (``tails=True``)."""
    options = {**SETTINGS, **({"tails": True} if flow in TAILED else {}), **overrides}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(model, data, method="flow_vi", flow=flow, progress=False, seed=seed, **options)
    wall = time.perf_counter() - start
    a = fit.idata.attrs
    run = a["training_time"] + a["drawing_time"]
    kl = f"{log_z - a['elbo']:.4f}" if log_z is not None else "n/a"
    mean_err, std_err = errors(fit.idata.posterior, exact)
    cells = (
        f"{kl} | {a['pareto_k']:.2f} | {mean_err:.3f} | {std_err:+.1%} | "
        f"{a['num_steps_run']} | {wall - run:.1f} | {run:.2f}"
    )
    return cells, run


def run_nuts(model, data, exact):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(
            model, data, method="nuts", target_accept=0.9, num_warmup=1000, progress=False, seed=0
        )
    wall = time.perf_counter() - start
    a = fit.idata.attrs
    mean_err, std_err = errors(fit.idata.posterior, exact)
    divergences = int(fit.idata.sample_stats["diverging"].sum())
    cells = (
        f"n/a | n/a | {mean_err:.3f} | {std_err:+.1%} | {divergences} divergences | "
        f"{wall - a['sampling_time']:.1f} | {a['sampling_time']:.2f}"
    )
    return cells, a["sampling_time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--flows", default=",".join(FLOW_ORDER))
    parser.add_argument("--seeds", type=int, default=0, help="seeds for the steadiness table")
    args = parser.parse_args()
    flows = [f for f in args.flows.split(",") if f]
    unknown = set(flows) - set(FLOWS)
    if unknown:
        raise SystemExit(f"unknown flows {sorted(unknown)}; known: {sorted(FLOWS)}")
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}, settings {SETTINGS}",
        flush=True,
    )
    print(
        "| problem | method | KL (nats) | k-hat | mean error (sd) | std error | steps "
        "| set-up + compile (s) | run (s) | run / NUTS run |",
        flush=True,
    )
    print("|" + "---|" * 10, flush=True)
    for name in args.problems.split(","):
        model, data, log_z, exact = PROBLEMS[name]()
        nuts_cells, nuts_run = run_nuts(model, data, exact)
        for flow in flows:
            cells, run = run_flow(model, data, log_z, exact, flow)
            print(f"| {name} | {flow} | {cells} | {run / nuts_run:.1f} |", flush=True)
        if "maf" in flows:  # the default flow on a budget aimed at a third of NUTS's time
            short = {**SHORT_DEFAULTS, **SHORT[name]}
            cells, run = run_flow(model, data, log_z, exact, "maf", **short)
            print(f"| {name} | maf, short | {cells} | {run / nuts_run:.2f} |", flush=True)
        print(f"| {name} | NUTS | {nuts_cells} | 1 |", flush=True)
    if args.seeds:
        print(
            "\n| problem | seed | KL (nats) | k-hat | mean error (sd) | std error | steps "
            "| set-up + compile (s) | run (s) |",
            flush=True,
        )
        print("|" + "---|" * 9, flush=True)
        for name, short in [
            ("funnel-2", False),
            ("banana", False),
            ("funnel-2", True),
            ("funnel-10", True),
        ]:
            model, data, log_z, exact = PROBLEMS[name]()
            overrides = {**SHORT_DEFAULTS, **SHORT[name]} if short else {}
            label = f"{name}, short" if short else name
            for seed in range(args.seeds):
                cells, _ = run_flow(model, data, log_z, exact, "maf", seed=seed, **overrides)
                print(f"| {label} | {seed} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
