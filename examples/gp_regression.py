"""Exact GP regression on the cosmic chronometers with two kernels, compared by ELPD-LOO.

Run: python examples/gp_regression.py  (about a minute on 2 CPU cores)
"""

import bayesplug as bp

data = bp.datasets.load("cosmic_chronometers")
fits = {
    kernel: bp.fit(bp.models.GP(kernel=kernel), data, method="nuts", seed=0, target_accept=0.9)
    for kernel in ("rbf", "matern32")
}
for kernel, fit in fits.items():
    h0 = fit.predict({"x": [0.0]})
    print(f"{kernel:>9}: H0 = {h0.mean[0]:.1f} ± {h0.std[0]:.1f} km/s/Mpc")
print(bp.compare(fits)[["elpd_loo", "se", "elpd_diff", "dse", "weight"]])
bp.report(fits, "gp_regression.html", labels=data.labels)
print("wrote gp_regression.html")
