"""Sparse-within-sparse GP (bayesplug ``svi``) against gpjax 1.0's SVGP (whitened variational).

Two tables.

1. **Time per step** (batch 256, Adam, float32 for both, compilation excluded) as the number
   of inducing points M grows, on synthetic 1-D and 4-D regression (N = 20,000; N = 200,000
   with the largest M only): ours with H = 16 neighbours and K = 8 entries per row of the
   Cholesky factor of S; gpjax's SVGP up to M = 4,096 on the 20,000-point sets (its step is
   O(M³)).
   Ours is timed inside ``bp.fit`` (``training_time / num_steps_run``), gpjax's as the
   difference of two ``gpx.fit`` runs of different lengths.
2. **Accuracy at equal training time**: test RMSE and NLPD (mean negative log predictive density
   of y) on a random 20% held out, each method trained for the same wall-clock budget (30 s):
   SVGP with M = 256 (float64: NaN in float32), ours with M = 256 and M = 2,048 (H = 16,
   float32). Data: synthetic 1-D and 4-D
   (N = 20,000) and the Mauna Loa CO2 weekly series (statsmodels, 2,225 points, standardised).

Run: python benchmarks/sparse_gp.py [--quick]   (about 12 minutes on 2 CPU cores)
Needs the ``bench`` extra (statsmodels) for the CO2 rows.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import bayesplug as bp

BATCH, H, K = 256, 16, 8


def synthetic(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, d))
    f = np.sin(2 * x[:, 0]) + (0.5 * np.cos(3 * x[:, 1]) * x[:, 2] / 3 if d >= 3 else 0.0)
    return x, f + 0.1 * rng.normal(size=n)


def co2():
    import statsmodels.api as sm

    frame = sm.datasets.co2.load_pandas().data.dropna()
    t = (frame.index - frame.index[0]).days.to_numpy() / 365.25
    y = frame["co2"].to_numpy()
    return t[:, None], y


def standardise(x, y):
    return (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std()


def split(x, y, seed=0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


# --- ours ------------------------------------------------------------------------------------
def ours(x, y, m, num_steps, max_time=None, h=H):
    gp = bp.models.SparseWithinSparseGP(num_inducing=m, num_neighbours=h, covariance_neighbours=K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = bp.fit(
            gp,
            {"x": x, "y": y},
            method="svi",
            num_steps=num_steps,
            batch_size=BATCH,
            num_draws=2,
            max_time=max_time,
            progress=False,
        )
    attrs = fit.idata.attrs
    return fit, {
        "per_step": attrs["training_time"] / attrs["num_steps_run"],
        "steps": attrs["num_steps_run"],
        "total": time.perf_counter() - start,
    }


def ours_scores(fit, x_test, y_test):
    pred = fit.predict({"x": x_test})["y"]
    mean, sd = np.asarray(pred.mean), np.asarray(pred.std)
    return scores(mean, sd, y_test)


def scores(mean, sd, y):
    rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
    nlpd = float(np.mean(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((y - mean) / sd) ** 2))
    return rmse, nlpd


# --- gpjax SVGP --------------------------------------------------------------------------------
def svgp(x, y, m, seed=0):
    import gpjax as gpx

    rng = np.random.default_rng(seed)
    z = x[rng.choice(len(y), m, replace=False)]
    kernel = gpx.kernels.RBF(lengthscale=jnp.ones(()), variance=jnp.ones(()))
    prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Zero(), kernel=kernel)
    posterior = prior * gpx.likelihoods.Gaussian(obs_stddev=jnp.asarray(0.3))
    q = gpx.variational_families.WhitenedVariationalGaussian(posterior, inducing_inputs=z)
    data = gpx.Dataset(X=jnp.asarray(x), y=jnp.asarray(y)[:, None])
    return q, data


def svgp_train(q, data, num_iters, seed=0):
    import gpjax as gpx
    import optax

    return gpx.fit(
        model=q,
        objective=lambda q, d: -gpx.objectives.elbo(q, d),
        train_data=data,
        optim=optax.adam(1e-2),
        num_iters=num_iters,
        batch_size=BATCH,
        key=jax.random.key(seed),
        verbose=False,
    )[0]


def svgp_per_step(x, y, m, short, long):
    q, data = svgp(x, y, m)
    times = []
    for n in (short, long):
        start = time.perf_counter()
        jax.block_until_ready(svgp_train(q, data, n))
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / (long - short)


def svgp_for(x, y, m, budget, x_test, y_test):
    """Train SVGP in rounds of 100 steps until the budget is spent; score it."""
    q, data = svgp(x, y, m)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        q = jax.block_until_ready(svgp_train(q, data, 100, seed=steps))
        steps += 100
    latent = q.predict(jnp.asarray(x_test))
    mean = np.asarray(latent.mean).ravel()
    var = np.asarray(latent.variance).ravel()
    from gpjax.variational_families import val

    noise = float(np.asarray(val(q.model.likelihood.obs_stddev)))
    return scores(mean, np.sqrt(var + noise**2), y_test), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--ms", type=int, nargs="*", help="inducing points timed (ours)")
    parser.add_argument("--svgp-ms", type=int, nargs="*", help="inducing points timed (SVGP)")
    parser.add_argument("--sizes", type=str, nargs="*", help="N:D pairs timed, e.g. 20000:1")
    parser.add_argument("--no-accuracy", action="store_true", help="only the timing table")
    parser.add_argument("--no-timing", action="store_true", help="only the accuracy table")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.processor()} jax {jax.__version__} {jax.devices()[0]}")
    print(f"# {time.strftime('%Y-%m-%d')}")
    # both in float32: bayesplug's default for this model, and jax's default for gpjax
    sizes = [(20_000, 1), (20_000, 4), (200_000, 4)]
    ms = [256, 1024, 4096, 16_384]
    svgp_ms = [256, 512, 1024, 4096]
    if args.quick:
        sizes, ms, svgp_ms = [(20_000, 1)], [256, 1024], [256]
    ms, svgp_ms = args.ms or ms, args.svgp_ms if args.svgp_ms is not None else svgp_ms
    if args.sizes:
        sizes = [tuple(int(v) for v in pair.split(":")) for pair in args.sizes]
    print("\n## Time per step (ms), batch 256")
    print("| data | N | M | ours (H=16) | gpjax SVGP | ratio |")
    print("|---|---|---|---|---|---|")
    for n, d in [] if args.no_timing else sizes:
        x, y = synthetic(n, d)
        for m in sorted(set(ms) | set(svgp_ms)):
            if n > 20_000 and m != max(ms):  # the large N: only the largest M
                continue
            _, timing = ours(x, y, m, num_steps=300)
            mine = 1e3 * timing["per_step"]
            theirs = None
            if m in svgp_ms and n == 20_000:
                short, long = {4096: (2, 4), 1024: (5, 25)}.get(m, (5, 105))
                theirs = 1e3 * svgp_per_step(x, y, m, short, long)
            cell = f"{theirs:.1f}" if theirs else "—"
            ratio = f"{theirs / mine:.2g}×" if theirs else "—"
            print(f"| {d}-D | {n:,} | {m:,} | {mine:.1f} | {cell} | {ratio} |", flush=True)

    if args.no_accuracy:
        return
    budget = 20.0 if args.quick else 30.0
    print(f"\n## Accuracy at equal training time ({budget:.0f} s), held-out 20%")
    print("| data | method | M | steps | test RMSE | test NLPD |")
    print("|---|---|---|---|---|---|")
    sets = {"synthetic 1-D": synthetic(20_000, 1), "synthetic 4-D": synthetic(20_000, 4)}
    try:
        sets["Mauna Loa CO2"] = co2()
    except ImportError:
        print("| Mauna Loa CO2 | (statsmodels not installed: pip install '.[bench]') |")
    if args.quick:
        sets = {"synthetic 1-D": sets["synthetic 1-D"]}
    for name, (x, y) in sets.items():
        x, y = standardise(x, y)
        (x_tr, y_tr), (x_te, y_te) = split(x, y)
        with jax.enable_x64(True):  # gpjax's SVGP needs float64 (NaN in float32)
            (rmse, nlpd), steps = svgp_for(x_tr, y_tr, 256, budget, x_te, y_te)
        print(f"| {name} | gpjax SVGP | 256 | {steps} | {rmse:.4f} | {nlpd:.3f} |", flush=True)
        for m in (256, 2048):
            m = min(m, len(y_tr) // 2)
            fit, timing = ours(x_tr, y_tr, m, num_steps=1_000_000, max_time=budget)
            rmse, nlpd = ours_scores(fit, x_te, y_te)
            print(
                f"| {name} | ours (H=16) | {m} | {timing['steps']} | {rmse:.4f} | {nlpd:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
