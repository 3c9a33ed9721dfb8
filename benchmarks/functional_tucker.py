"""Functional Tucker (FunBaT, cep) against discrete Tucker / CP (tensorly) and a GP regression.

For each data set, random 80/20 fold, rank R and kind (Tucker, CP), in the same run:

- ``funbat``: ``bp.models.FunctionalTucker`` fitted by ``cep`` (Matérn-3/2, lengthscale 0.1);
- ``tensorly``: tensorly's ``tucker`` / ``parafac`` with a missing-value mask on the grid of the
  unique coordinates (the paper's kind of discrete baseline), its defaults otherwise, y
  standardised as for ours;
- ``gp``: the unstructured reference, a GP regression over the 2-D index
  (``sparse_within_sparse_gp`` by ``svi``, over the min-max scaled coordinates), once per fold.

Prints one table (mean ± sd over folds of test RMSE and MAE, wall time) and the 90% interval
coverage of ours. Needs the ``bench`` extra (tensorly).

Run: python benchmarks/functional_tucker.py [--folds 5] [--ranks 1 2 3 5] [--data sf_temperature]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import bayesplug as bp


def errors(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2))), float(np.mean(np.abs(pred - y)))


def run_funbat(train, test, rank, cp, seed):
    model = bp.models.FunctionalTucker(ranks=rank, cp=cp, kernel="matern32", lengthscale=0.1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(model, train, method="cep", seed=seed, progress=False)
    pred = fit.predict({"index": test["index"]})
    seconds = time.perf_counter() - start
    lo, hi = pred["y"].quantile(0.05), pred["y"].quantile(0.95)
    cover = float(np.mean((test["y"] > lo) & (test["y"] < hi)))
    return (*errors(pred.mean, test["y"]), seconds, cover, fit.idata.attrs["num_epochs_run"])


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
    return (*errors(pred, test["y"]), seconds)


def run_gp(train, test, seed):
    lo, hi = train["index"].min(0), train["index"].max(0)

    def scaled(x):
        return (x - lo) / (hi - lo)

    model = bp.models.SparseWithinSparseGP()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(
            model,
            {"x": scaled(train["index"]), "y": train["y"]},
            method="svi",
            seed=seed,
            progress=False,
        )
    pred = fit.predict({"x": scaled(test["index"])})["f"].mean
    return (*errors(pred, test["y"]), time.perf_counter() - start)


def summary(values):
    values = np.asarray(values)
    return f"{values.mean():.4g} ± {values.std():.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument(
        "--data", nargs="+", default=["sf_temperature", "functional_tensor_synthetic"]
    )
    parser.add_argument("--no-gp", action="store_true", help="skip the GP reference")
    args = parser.parse_args()
    header = (
        "| data | method | kind | R | test RMSE | test MAE | time (s) | 90% coverage |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for name in args.data:
        folds = bp.datasets.random_folds(bp.datasets.load(name), args.folds, seed=0)
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
                results.setdefault(("gp (svi)", "-", "-"), []).append(run_gp(train, test, f))
            print(f"{name}: fold {f + 1}/{args.folds} done", flush=True)
        table = []
        for (method, kind, rank), values in results.items():
            values = np.asarray(values, dtype=float)
            cover = summary(values[:, 3]) if values.shape[1] > 3 else ""
            table.append(
                f"| {name} | {method} | {kind} | {rank} | {summary(values[:, 0])} | "
                f"{summary(values[:, 1])} | {summary(values[:, 2])} | {cover} |"
            )
        print(header + "\n" + "\n".join(table), flush=True)  # each data set as it finishes
        rows += table
    if len(args.data) > 1:
        print(header + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
