"""Simulation-based calibration of every sampling backend (Talts et al. 2018), on Dask.

Each backend runs on a small model with a proper prior: a linear regression with unknown noise
(beta[0], beta[1], sigma; 20 points) for nuts, nested, flow_vi, sgld (``sgld``: stage 1's
hand-set step with adapt=False; ``sgld_defaults``: the adapted defaults) and svi, and a linear-
Gaussian state-space model with a Uniform(0, 1) prior on its transition coefficient A (50 steps;
A is checked, the 50 latent states are not) for ppg. Options are each backend's defaults except
where the table says. Prints one row per backend and parameter: χ² p-value (12–20 bins), KS
p-value, mean and sd of the PIT values (0.5 and 0.289 when calibrated), pass at 1%
(Bonferroni over the backend's parameters), failed simulations, wall time.

Run: python benchmarks/sbc.py [--simulations 200] [--backends nuts nested ...]
     [--cluster local|none|tcp://host:8786] [--report docs/img/sbc]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesplug as bp


def regression(x, y):
    beta = numpyro.sample("beta", dist.Normal(0, 1).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(beta[0] + beta[1] * x, sigma), obs=y)


X = np.linspace(-1, 1, 20)
REGRESSION = {"x": X, "y": np.zeros_like(X)}  # y's values are replaced by simulated ones
SETUPS = {
    "nuts": (regression, REGRESSION, {"num_chains": 1}, None),
    "nested": (regression, REGRESSION, {}, None),
    "flow_vi": (regression, REGRESSION, {"num_steps": 3000, "num_draws": 2000}, None),
    "svi": (regression, REGRESSION, {"num_steps": 3000}, None),
    "sgld": (regression, REGRESSION, {"num_chains": 1, "step_size": 1e-3, "adapt": False}, None),
    "sgld_defaults": (regression, REGRESSION, {"num_chains": 1}, None),  # adapted (issue 20)
    "ppg": (
        "ssm",
        {"y": np.zeros(50)},
        {"num_iterations": 300, "burn_in": 100, "num_chains": 1},
        ["A"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=list(SETUPS))
    parser.add_argument("--cluster", default="local")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", default=None, help="folder for one HTML report per backend")
    args = parser.parse_args()
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this
    cluster = None if args.cluster == "none" else args.cluster
    print(
        "| backend | options | parameter | M | chi2 p | KS p | mean u | sd u | passes (1%) "
        "| failed | time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.backends:
        model, data, options, sites = SETUPS[name]
        method = name.removesuffix("_defaults")
        if model == "ssm":
            model = bp.models.LinearGaussianSSM(A=dist.Uniform(0.0, 1.0))
        start = time.perf_counter()
        result = bp.sbc(
            model,
            data,
            method,
            num_simulations=args.simulations,
            seed=args.seed,
            cluster=cluster,
            sites=sites,
            progress=False,
            **options,
        )
        seconds = time.perf_counter() - start
        verdict = "yes" if result.passed() else "**no**"
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        for row in result.table().itertuples(index=False):
            print(
                f"| {name} | {shown} | {row.parameter} | {row.simulations} | {row[3]:.3g} "
                f"| {row[4]:.3g} | {row[6]:.3f} | {row[7]:.3f} | {verdict} "
                f"| {len(result.failures)} | {seconds:.0f} |",
                flush=True,
            )
        if args.report:
            from pathlib import Path

            Path(args.report).mkdir(parents=True, exist_ok=True)
            result.report(Path(args.report) / f"sbc_{name}.html")


if __name__ == "__main__":
    main()
