"""Solve a high-frequency Poisson problem with the GP solver (GP-HM) and draw solution and error.

u'' = f on [0, 2π], u = sin(100 x) (the GP-HM paper's first case), 400 collocation points, the
Student-t spectral mixture with Q = 30 components, fitted by ``map`` (~4 minutes on 2 CPU cores;
``--steps 3000`` for a quick look at ~1e-2 error). Writes ``pde_poisson.png``: the solution with
its predictive band, the pointwise error, and the learned spectrum's frequencies and weights.

Run: python examples/pde_poisson.py [--steps 15000] [--out pde_poisson.png]
"""

from __future__ import annotations

import argparse

import numpy as np

import bayesplug as bp
from bayesplug.models import pde


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--out", default="pde_poisson.png")
    args = parser.parse_args()

    problem = pde.case("poisson_1d-single_sin")  # or pde.poisson(exact, domain, grid, ...)
    model = bp.models.GPPDESolver(problem)
    fit = bp.fit(model, problem.data(), method="map", num_steps=args.steps, seed=0)
    print(f"relative L2 error, best iterate by training loss: {model.relative_error(fit):.2e}")
    print(f"relative L2 error, final iterate: {model.relative_error(fit, iterate='final'):.2e}")

    x = np.linspace(0.0, 2 * np.pi, 2000)
    pred = fit.predict({"x": x[:, None]})
    truth = np.sin(100 * x)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), constrained_layout=True)
    window = x < 0.5
    axes[0].plot(x[window], truth[window], "k-", lw=2.5, alpha=0.3, label="exact sin(100x)")
    axes[0].plot(x[window], pred.mean[window], "C0-", lw=1, label="GP-HM mean")
    axes[0].fill_between(
        x[window],
        pred.mean[window] - 2 * pred.std[window],
        pred.mean[window] + 2 * pred.std[window],
        color="C0",
        alpha=0.3,
        label="±2 sd (interpolation between grid points)",
    )
    grid = problem.axes()[0]
    axes[0].plot(grid[grid < 0.5], np.sin(100 * grid[grid < 0.5]), "k.", ms=3, label="grid")
    axes[0].set(xlabel="x (first 0.5 of [0, 2π])", ylabel="u", title="Solution")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].semilogy(x, np.abs(pred.mean - truth) + 1e-16, "C3-", lw=0.8, label="|error|")
    axes[1].semilogy(x, 2 * pred.std + 1e-16, "C0-", lw=0.8, alpha=0.6, label="2 sd")
    axes[1].set(xlabel="x", ylabel="absolute error", title="Error over the whole domain")
    axes[1].legend(fontsize=8)
    w = np.exp(np.asarray(fit.point_estimate["log_weight_0"]))
    mu = np.abs(np.asarray(fit.point_estimate["frequency_0"]))
    axes[2].semilogy(mu, w, "o")
    axes[2].axvline(100 / (2 * np.pi), color="k", ls="--", label="true frequency 100/2π")
    axes[2].set(xlabel="frequency μ_q (cycles per unit)", ylabel="weight w_q")
    axes[2].set_title("Learned spectrum: the weight gathers at the true frequency")
    axes[2].legend(fontsize=8)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
