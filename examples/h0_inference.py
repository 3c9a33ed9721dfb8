"""H0 from cosmic chronometers (CC), BAO, and both, with kernel-marginalised GPs (Kroupa et al.
2024), and the tension statistic ln R = ln Z_{CC+BAO} - ln Z_CC - ln Z_BAO.

Run: python examples/h0_inference.py   (about 5 minutes on 2 CPU cores)
"""

import numpy as np

import bayesplug as bp

PAPER = {"CC": (66, 6), "BAO": (67, 10), "CC+BAO": (69, 6)}


def main() -> None:
    cc, bao = bp.datasets.load("cosmic_chronometers"), bp.datasets.load("bao")
    both = {k: np.concatenate([cc[k], bao[k]]) for k in ("x", "y", "yerr")}
    order = np.argsort(both["x"])
    both = {k: v[order] for k, v in both.items()}
    fits = {}
    for name, data in {"CC": cc, "BAO": bao, "CC+BAO": both}.items():
        fit = bp.fit(bp.models.MarginalisedGP(), data, method="nested", num_live=500, seed=0)
        h0 = fit.predict({"x": [0.0]}, num_draws=2000)
        log_z, err = fit.log_evidence
        table = fit.discrete_posterior("kernel")
        print(
            f"{name:>7}: H0 = {h0.mean[0]:.1f} ± {h0.std[0]:.1f} (paper {PAPER[name][0]} ± "
            f"{PAPER[name][1]}), ln Z = {log_z:.2f} ± {err:.2f}, most probable kernel "
            f"{table['probability'].idxmax()} ({table['probability'].max():.2f})"
        )
        fits[name] = fit
    log_r = (
        fits["CC+BAO"].log_evidence[0] - fits["CC"].log_evidence[0] - fits["BAO"].log_evidence[0]
    )
    err = np.sqrt(sum(f.log_evidence[1] ** 2 for f in fits.values()))
    print(f"ln R = {log_r:.2f} ± {err:.2f} (paper 12.17 ± 0.02)")


if __name__ == "__main__":
    main()
