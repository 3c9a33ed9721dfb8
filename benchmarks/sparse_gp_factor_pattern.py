"""Sparse-within-sparse GP: the pattern of q(u)'s Cholesky factor for D >= 2 inputs, side by side.

Three patterns of the factor L of S (K = 8 entries a row), each fitted by the default ``svi``
(batch 256, Adam) in the same process:

- ``z-order`` (the model's): L banded along the Morton curve of the initial inducing inputs, so
  S is banded and each point's S_AA is read from the band;
- ``nearest-earlier`` (the model's before 2026-12-05): row j at the K - 1 nearest inducing inputs
  earlier in the inducing order, a Vecchia pattern, S_AA matched per point from L's rows;
- ``random``: banded in a random order (no locality: a control).

Printed: time a step, the ELBO (mean of the last 1,000 steps, with its standard error from 10
blocks), test RMSE against the noise-free function and NLPD of y on a held-out 20%.

Run: python benchmarks/sparse_gp_factor_pattern.py   (about 6 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import platform

import jax
import numpy as np

import bayesplug as bp
from bayesplug.models import sparse_within_sparse_gp as swsgp

MODEL_PATTERN = swsgp._cholesky_rows


def nearest_earlier_rows(z, num_entries: int) -> np.ndarray:
    """Row j = [j, its K - 1 nearest inducing inputs among 0..j-1] (padded with j)."""
    z = np.asarray(z)
    m, k = z.shape[0], min(num_entries, z.shape[0])
    rows = np.repeat(np.arange(m)[:, None], k, axis=1)
    for j in range(1, m):
        earlier = np.argsort(((z[:j] - z[j]) ** 2).sum(-1))[: k - 1]
        rows[j, 1 : 1 + len(earlier)] = earlier
    return rows


def random_band_rows(z, num_entries: int) -> np.ndarray:
    order = np.random.default_rng(1).permutation(len(z))
    return swsgp.banded_rows(order, min(num_entries, len(z)))


PATTERNS = {
    "z-order": MODEL_PATTERN,
    "nearest-earlier": nearest_earlier_rows,
    "random": random_band_rows,
}


def synthetic(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, d))
    second = 0.5 * np.cos(3 * x[:, 1]) * (x[:, 2] / 3 if d >= 3 else 1.0)
    f = np.sin(2 * x[:, 0]) + second
    return x, f, f + 0.1 * rng.normal(size=n)


def one_run(pattern: str, n: int, d: int, m: int, steps: int, seed: int) -> dict[str, float]:
    x, f, y = synthetic(n, d)
    order = np.random.default_rng(0).permutation(n)
    train, test = order[: int(0.8 * n)], order[int(0.8 * n) :]
    swsgp._cholesky_rows = PATTERNS[pattern]
    try:
        gp = bp.models.SparseWithinSparseGP(num_inducing=m, num_neighbours=16)
        fit = bp.fit(
            gp,
            {"x": x[train], "y": y[train]},
            method="svi",
            num_steps=steps,
            batch_size=256,
            seed=seed,
            progress=False,
        )
    finally:
        swsgp._cholesky_rows = MODEL_PATTERN
    pred = fit.predict({"x": x[test]})
    mean, sd = np.asarray(pred["y"].mean), np.asarray(pred["y"].std)
    elbo = np.asarray(fit.idata.sample_stats["elbo"])[-1000:]
    return {
        "ms": 1e3 * float(fit.idata.attrs["training_time"]) / steps,
        "elbo": float(elbo.mean()),
        "elbo_se": float(elbo.reshape(10, -1).mean(1).std() / np.sqrt(10)),
        "rmse": float(np.sqrt(np.mean((np.asarray(pred["f"].mean) - f[test]) ** 2))),
        "nlpd": float(
            np.mean(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * (y[test] - mean) ** 2 / sd**2)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems",
        nargs="*",
        default=["20000:4:1024:6000", "4000:2:512:4000"],
        help="N:D:M:steps",
    )
    parser.add_argument("--patterns", nargs="*", default=list(PATTERNS), choices=list(PATTERNS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    args = parser.parse_args()
    print(f"{platform.node()} · jax {jax.__version__} · {jax.devices()[0].platform}")
    print("| N | D | M | pattern | seed | ms / step | ELBO (± se) | test RMSE | NLPD |")
    print("|---|---|---|---|---|---|---|---|---|")
    for problem in args.problems:
        n, d, m, steps = (int(v) for v in problem.split(":"))
        for seed in args.seeds:
            for pattern in args.patterns:
                r = one_run(pattern, n, d, m, steps, seed)
                print(
                    f"| {n:,} | {d} | {m:,} | {pattern} | {seed} | {r['ms']:.1f} | "
                    f"{r['elbo']:,.0f} ± {r['elbo_se']:.0f} | {r['rmse']:.4f} | {r['nlpd']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
