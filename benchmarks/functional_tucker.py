"""Functional Tucker (FunBaT, cep) against discrete Tucker / CP (tensorly) and a GP regression.

For each data set, random 80/20 fold, rank R and kind (Tucker, CP), in the same run:

- ``funbat``: ``bp.models.FunctionalTucker`` fitted by ``cep`` (Matérn-3/2, lengthscale 0.1);
- ``tensorly``: tensorly's ``tucker`` / ``parafac`` with a missing-value mask on the grid of the
  unique coordinates (the paper's kind of discrete baseline), its defaults otherwise, y
  standardised as for ours;
- ``gp``: the unstructured reference, the project's exact GP regression (``bp.models.GP``,
  Matérn-3/2 with one lengthscale per index dimension, constant mean) over the K-D index: its
  hyperparameters by ``map`` on a random subsample of the fold's training entries
  (``--gp-subsample``: the exact GP costs O(n³) per step), then conditioned
  exactly on *all* the fold's training entries;
- ``nuts`` (functional_tensor_synthetic only): NUTS on the same NumPyro program at small size
  (CP R = 1 on the first ``--nuts-size`` training entries), beside ``cep`` on the same entries.

Prints one table per data set (mean ± sd over folds of test RMSE and MAE, wall time in total
and per epoch) and the 90% interval coverage of ours. Needs the ``bench`` extra (tensorly).

Run: python benchmarks/functional_tucker.py [--folds 5] [--ranks 1 2 3 5 8 12]
     [--data sf_temperature | another_city.csv [--columns day hour temp_f]] [--no-gp]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import bayesplug as bp


def errors(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2))), float(np.mean(np.abs(pred - y)))


def run_funbat(train, test, rank, cp, seed, method="cep"):
    model = bp.models.FunctionalTucker(ranks=rank, cp=cp, kernel="matern32", lengthscale=0.1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "cep":
            fit = bp.fit(model, train, method="cep", seed=seed, progress=False)
        else:
            fit = bp.fit(model, train, num_chains=1, seed=seed, progress=False)
    pred = fit.predict({"index": test["index"]})
    seconds = time.perf_counter() - start
    lo, hi = pred["y"].quantile(0.05), pred["y"].quantile(0.95)
    cover = float(np.mean((test["y"] > lo) & (test["y"] < hi)))
    attrs = fit.idata.attrs
    epoch = attrs["training_time"] / attrs["num_epochs_run"] if method == "cep" else np.nan
    return (*errors(pred.mean, test["y"]), seconds, epoch, cover)


def run_tensorly(train, test, rank, cp, seed):
    import tensorly as tl
    from tensorly.decomposition import parafac, tucker

    index = np.concatenate([train["index"], test["index"]])
    cells = [np.unique(index[:, k], return_inverse=True) for k in range(index.shape[1])]
    shape = tuple(c[0].size for c in cells)
    where = np.stack([c[1] for c in cells], 1)
    tr, te = where[: len(train["y"])], where[len(train["y"]) :]
    offset, scale = train["y"].mean(), train["y"].std()
    tensor = np.zeros(shape)
    mask = np.zeros(shape)
    tensor[tuple(tr.T)] = (train["y"] - offset) / scale
    mask[tuple(tr.T)] = 1.0
    start = time.perf_counter()
    if cp:
        cp_tensor = parafac(tl.tensor(tensor), rank=rank, mask=tl.tensor(mask), random_state=seed)
        full = tl.cp_to_tensor(cp_tensor)
    else:
        ranks = [min(rank, n) for n in shape]
        decomposition = tucker(
            tl.tensor(tensor), rank=ranks, mask=tl.tensor(mask), random_state=seed
        )
        full = tl.tucker_to_tensor(decomposition)
    seconds = time.perf_counter() - start
    pred = offset + scale * np.asarray(full)[tuple(te.T)]
    return (*errors(pred, test["y"]), seconds, np.nan, np.nan)


def run_gp(train, test, seed, subsample):
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist

    x, y = train["index"], train["y"]
    ranges = np.ptp(x, axis=0)
    model = bp.models.GP(
        kernel="matern32",
        mean="constant",
        jitter=1e-6,
        priors={"lengthscale": dist.LogNormal(jnp.log(jnp.asarray(ranges / 10.0)), 1.0)},
    )
    rows = np.random.default_rng(seed).choice(len(y), min(subsample, len(y)), replace=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(model, {"x": x[rows], "y": y[rows]}, method="map", seed=seed, progress=False)
    mode = {k: np.asarray(v)[None] for k, v in fit.point_estimate.items()}
    with jax.enable_x64(True):  # as bp.fit runs the model (its precision is float64)
        full = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
        pred = model.predict(mode, full, {"x": test["index"]}, None)
    mean, std = np.asarray(pred["f"]["mean"])[0], np.asarray(pred["f"]["std"])[0]
    sd = np.sqrt(std**2 + float(mode["noise"][0]) ** 2)
    cover = float(np.mean(np.abs(test["y"] - mean) < 1.6449 * sd))
    return (*errors(mean, test["y"]), time.perf_counter() - start, np.nan, cover)


def summary(values):
    values = np.asarray(values)
    if np.isnan(values).all():
        return ""
    return f"{values.mean():.4g} ± {values.std():.2g}"


def load(name: str, columns: list[str]) -> dict:
    """A shipped data set by name, or a CSV file (index columns, then the value column)."""
    if name in bp.datasets.list():
        return bp.datasets.load(name)
    return bp.datasets.read_csv(name, {"index": columns[:-1], "y": columns[-1]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 5, 8, 12])
    parser.add_argument(
        "--data", nargs="+", default=["sf_temperature", "functional_tensor_synthetic"]
    )
    parser.add_argument(
        "--columns",
        nargs="+",
        default=["day", "hour", "temp_f"],
        help="for a CSV given to --data: the index columns, then the value column",
    )
    parser.add_argument("--no-gp", action="store_true", help="skip the GP reference")
    parser.add_argument("--gp-subsample", type=int, default=400)
    parser.add_argument("--nuts-size", type=int, default=100)
    args = parser.parse_args()
    header = (
        "| data | method | kind | R | test RMSE | test MAE | time (s) | s / epoch "
        "| 90% coverage |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for name in args.data:
        folds = bp.datasets.random_folds(load(name, args.columns), args.folds, seed=0)
        results: dict[tuple, list] = {}
        for f, (train, test) in enumerate(folds):
            for rank in args.ranks:
                for cp in (False, True):
                    kind = "CP" if cp else "Tucker"
                    results.setdefault(("funbat", kind, rank), []).append(
                        run_funbat(train, test, rank, cp, f)
                    )
                    results.setdefault(("tensorly", kind, rank), []).append(
                        run_tensorly(train, test, rank, cp, f)
                    )
            if not args.no_gp:
                results.setdefault(("gp (exact, map)", "-", "-"), []).append(
                    run_gp(train, test, f, args.gp_subsample)
                )
            if name == "functional_tensor_synthetic":
                small = {k: v[: args.nuts_size] for k, v in train.items()}
                for method in ("nuts", "cep"):
                    results.setdefault((f"{method} (n={args.nuts_size})", "CP", 1), []).append(
                        run_funbat(small, test, 1, True, f, method)
                    )
            print(f"{name}: fold {f + 1}/{args.folds} done", flush=True)
        table = []
        for (method, kind, rank), values in results.items():
            values = np.asarray(values, dtype=float)
            cells = " | ".join(summary(values[:, j]) for j in range(5))
            table.append(f"| {name} | {method} | {kind} | {rank} | {cells} |")
        print(header + "\n" + "\n".join(table), flush=True)  # each data set as it finishes
        rows += table
    if len(args.data) > 1:
        print(header + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
