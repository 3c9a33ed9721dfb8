"""The main job, ``bayesplug demo``: H0 from the cosmic-chronometer H(z) data.

A zero-mean GP with a squared-exponential kernel and the published per-point errors is fitted to the
31 cosmic-chronometer points with NUTS; H0 = H(z = 0) is the GP's posterior predictive at z = 0
(a mixture over hyperparameter draws). Prints H0 and the posterior summary, writes ``run.nc`` and
``report.html``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import api, datasets
from .models.gp import GP
from .report import report

H0_ANCHOR = (
    67.5,
    4.8,
)  # type-II maximum likelihood, same data and kernel (see datasets/PROVENANCE.md)


def h0_figure(prediction):
    """Histogram of H0 draws with the mixture's mean and 68% interval."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    draws = prediction.draws[:, 0]
    ax.hist(draws, bins=60, density=True, color="C0", alpha=0.6, label="posterior predictive draws")
    lo, hi = prediction.quantile([0.16, 0.84])[:, 0]
    ax.axvline(prediction.mean[0], color="C0", label=f"mean {prediction.mean[0]:.1f}")
    ax.axvspan(lo, hi, color="C0", alpha=0.15, label="68% interval")
    ax.set_xlabel("H0 [km/s/Mpc]")
    ax.set_yticks([])
    ax.legend(loc="upper right", fontsize=8)
    return fig


def run_demo(out_dir: str | Path = ".", *, seed: int = 0, progress: bool | None = None):
    """Run the demo; returns ``(fit, h0_prediction)``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = datasets.load("cosmic_chronometers")
    print("bayesplug demo: H0 from 31 cosmic-chronometer H(z) points")
    print("model: GP (squared-exponential kernel, zero mean, published errors); method: NUTS\n")
    start = time.perf_counter()
    fit = api.fit(
        GP(kernel="rbf"), data, method="nuts", seed=seed, progress=progress, target_accept=0.9
    )
    h0 = fit.predict({"x": np.array([0.0])}, seed=seed)
    elapsed = time.perf_counter() - start
    print(fit.summary().to_string())
    lo, hi = h0.quantile([0.16, 0.84])[:, 0]
    print(
        f"\nH0 = {h0.mean[0]:.1f} ± {h0.std[0]:.1f} km/s/Mpc "
        f"(68% interval {lo:.1f} – {hi:.1f}); type-II ML anchor {H0_ANCHOR[0]} ± {H0_ANCHOR[1]}"
    )
    diagnostics = fit.diagnostics()
    print("convergence:", "ok" if diagnostics["ok"] else "; ".join(diagnostics["messages"]))
    fit.save(out_dir / "run.nc")
    report(
        fit,
        out_dir / "report.html",
        title="bayesplug demo: H0 from cosmic chronometers",
        labels=data.labels,
        extra_figures={"H0 = H(z=0), posterior predictive": h0_figure(h0)},
    )
    print(f"wrote {out_dir / 'run.nc'} and {out_dir / 'report.html'} ({elapsed:.0f} s of fitting)")
    return fit, h0
