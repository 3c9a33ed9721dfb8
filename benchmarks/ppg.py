"""Parisian particle Gibbs: bias against PaRIS, learning against the Kalman MLE, SV smoothing.

1. Bias of Σ_t x_t² on a 1-D linear-Gaussian SSM (T = 50) at small N, over 400 replicates:
   PaRIS (one pass) against PPG (average of iterations after burn-in), exact value from RTS.
2. ``learn="mle"`` and ``learn="score_climbing"`` against the exact Kalman MLE (T = 200).
3. Smoothing a 1,000-step stochastic-volatility series with PPG: wall time including compile.

Run: ``python benchmarks/ppg.py``. Prints markdown tables.
"""

from __future__ import annotations

import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import scipy.optimize

import bayesplug as bp
from bayesplug.inference.paris import functional_summary


def bias_table() -> None:
    lg = bp.models.LinearGaussianSSM(A=0.8, Q=0.5, C=1.0, R=1.0)
    with jax.enable_x64(True):
        y = np.asarray(lg.simulate(jax.random.PRNGKey(0), 50)["y"])
        means, covs = lg.rts_smoother(y)
        exact = float(np.sum(means[:, 0] ** 2 + covs[:, 0, 0]))
    print(f"\n## Bias of Σ x_t² (exact {exact:.3f}), T = 50, 400 replicates, Ñ = 2")
    print("| N | PaRIS bias ± se | PPG bias ± se (40 it., burn-in 10) | ratio |")
    print("|---|---|---|---|")
    for n in (16, 32, 64):
        out = []
        for method, extra in (("paris", {}), ("ppg", {"num_iterations": 40, "burn_in": 10})):
            fit = bp.fit(
                lg,
                {"y": y},
                method=method,
                num_particles=n,
                num_chains=400,
                backward="exact",
                functionals=["state_square_sum"],
                progress=False,
                **extra,
            )
            mean, se = (float(np.squeeze(v)) for v in functional_summary(fit)["state_square_sum"])
            out.append((mean - exact, se))
        ratio = abs(out[1][0]) / abs(out[0][0])
        print(
            f"| {n} | {out[0][0]:+.3f} ± {out[0][1]:.3f} | {out[1][0]:+.3f} ± {out[1][1]:.3f} "
            f"| {ratio:.2f} |",
            flush=True,
        )


def learning_table() -> None:
    model = bp.models.LinearGaussianSSM(A=dist.Uniform(-1, 1), Q=dist.LogNormal(0, 1), C=1.0, R=1.0)
    with jax.enable_x64(True):
        y = np.asarray(model.simulate(jax.random.PRNGKey(3), 200, theta={"A": 0.8, "Q": 0.5})["y"])
        neg = jax.jit(
            jax.value_and_grad(lambda p: -model.log_likelihood(y, {"A": p[0], "Q": jnp.exp(p[1])}))
        )
        best = scipy.optimize.minimize(
            lambda p: tuple(np.asarray(v, dtype=float) for v in neg(jnp.asarray(p))),
            np.array([0.5, 0.0]),
            jac=True,
            method="BFGS",
        )
    mle = {"A": best.x[0], "Q": np.exp(best.x[1])}
    print(
        f"\n## Learning (T = 200, N = 32, 400 iterations, 2 chains); Kalman MLE "
        f"A = {mle['A']:.4f}, Q = {mle['Q']:.4f}"
    )
    print("| learn | A | Q | wall s (incl. compile) |")
    print("|---|---|---|---|")
    for learn in ("mle", "score_climbing"):
        start = time.perf_counter()
        fit = bp.fit(
            model,
            {"y": y},
            method="ppg",
            learn=learn,
            num_particles=32,
            num_iterations=400,
            burn_in=50,
            num_chains=2,
            progress=False,
        )
        wall = time.perf_counter() - start
        p = fit.point_estimate
        print(f"| {learn} | {float(p['A']):.4f} | {float(p['Q']):.4f} | {wall:.1f} |", flush=True)


def sv_smoothing() -> None:
    sv = bp.models.StochasticVolatility(phi=0.95, sigma=0.25, beta=0.7)
    sim = sv.simulate(jax.random.PRNGKey(5), 1000)
    print("\n## Stochastic volatility, T = 1,000, PPG smoothing")
    print("| N | iterations × chains | wall s (incl. compile) | corr(smoothed, true x) |")
    print("|---|---|---|---|")
    for n, iters in ((64, 60), (128, 200)):
        start = time.perf_counter()
        fit = bp.fit(
            sv,
            {"y": np.asarray(sim["y"])},
            method="ppg",
            num_particles=n,
            num_iterations=iters,
            burn_in=iters // 3,
            num_chains=2,
            progress=False,
        )
        wall = time.perf_counter() - start
        smoothed = fit.samples["x"][..., 0].mean(axis=0)
        corr = np.corrcoef(smoothed, np.asarray(sim["x"])[:, 0])[0, 1]
        print(f"| {n} | {iters} × 2 | {wall:.1f} | {corr:.3f} |", flush=True)


def main() -> None:
    print(
        f"# {platform.node()} jax {jax.__version__} {jax.devices()[0]}, {time.strftime('%Y-%m-%d')}"
    )
    warnings.simplefilter("ignore")
    sv_smoothing()
    learning_table()
    bias_table()


if __name__ == "__main__":
    main()
