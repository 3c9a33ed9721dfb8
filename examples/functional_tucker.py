"""Functional Tucker decomposition of hourly San Francisco temperatures (day of year x hour).

Fits FunBaT (Fang et al., ICLR 2024) by conditional expectation propagation on a random 80% of
the 8,759 hourly readings, predicts the other 20%, and draws the learned factor trajectories
with their 90% bands and the predicted surface.

Run: python examples/functional_tucker.py   (about 30 s on 2 CPU cores; writes funbat_sf.png)
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bayesplug as bp  # noqa: E402

if __name__ == "__main__":
    data = bp.datasets.load("sf_temperature")
    ((train, test),) = bp.datasets.random_folds(data, 1, seed=0)
    model = bp.models.FunctionalTucker(ranks=3, kernel="matern32", lengthscale=0.1)
    fit = bp.fit(model, train, method="cep", seed=0)
    pred = fit.predict({"index": test["index"]})
    lo, hi = pred["y"].quantile(0.05), pred["y"].quantile(0.95)
    print(
        f"held-out RMSE {np.sqrt(np.mean((pred.mean - test['y']) ** 2)):.3f} °F, MAE "
        f"{np.mean(np.abs(pred.mean - test['y'])):.3f} °F, 90% interval coverage "
        f"{np.mean((test['y'] > lo) & (test['y'] < hi)):.1%}"
    )

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    post = fit.idata.posterior
    for ax, k, label in ((axes[0], 0, "day of year"), (axes[1], 1, "hour of day")):
        coords = fit.data[f"coords_{k}"]
        factor = post[f"factor_{k}"].values.reshape(-1, coords.size, 3)
        for r in range(3):
            band = np.quantile(factor[:, :, r], [0.05, 0.95], axis=0)
            ax.fill_between(coords, *band, alpha=0.3)
            ax.plot(coords, factor[:, :, r].mean(0), label=f"u{k + 1},{r + 1}")
        ax.set(xlabel=label, title=f"mode {k + 1} factors (mean, 90% band)")
        ax.legend()
    days, hours = np.arange(1, 366, 2.0), np.arange(0, 24, 0.5)
    grid = np.stack(np.meshgrid(days, hours, indexing="ij"), -1).reshape(-1, 2)
    surface = fit.predict({"index": grid}, num_draws=200)["f"].mean.reshape(days.size, hours.size)
    image = axes[2].pcolormesh(hours, days, surface, shading="auto")
    axes[2].set(xlabel="hour of day", ylabel="day of year", title="predicted temperature (°F)")
    fig.colorbar(image, ax=axes[2])
    fig.tight_layout()
    fig.savefig("funbat_sf.png", dpi=110)
    print("wrote funbat_sf.png")
