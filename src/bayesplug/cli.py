"""The ``bayesplug`` command: ``demo``, ``list``, ``fit``, ``report``, ``compare``.

Heavy imports happen inside the sub-commands, so ``bayesplug --help`` and ``bayesplug list`` answer
quickly.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parse_options(pairs: Sequence[str], flag: str) -> dict:
    options = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"bayesplug: {flag} {pair!r}: expected key=value")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text  # a bare word such as kernel=matern52
    return options


def _cmd_list(args) -> int:
    from . import datasets
    from .registry import list_backends, list_models

    what = args.what or "all"
    sections = {
        "models": list_models,
        "backends": list_backends,
        "datasets": datasets.list,
    }
    for name, lister in sections.items():
        if what in ("all", name):
            print(f"{name}:")
            for item in lister():
                print(f"  {item}")
    return 0


def _read_data(path: str, pairs: Sequence[str]) -> dict:
    """A shipped data set by name, or a CSV file's numeric columns (``--column`` maps them to
    model inputs: ``index=day,hour`` stacks two columns, ``y=temp_f`` renames one)."""
    from . import datasets
    from .errors import InputError

    columns = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key or not text:
            raise SystemExit(f"bayesplug: --column {pair!r}: expected input=column[,column...]")
        names = [c.strip() for c in text.split(",")]
        columns[key] = names if len(names) > 1 else names[0]
    if path in datasets.list() and not columns:
        return datasets.load(path)
    if not os.path.exists(path) and path not in datasets.list():
        raise InputError(
            "--data",
            f"no file at {path!r} and no shipped data set of that name.",
            "Give a CSV file, or a name from 'bayesplug list datasets'.",
        )
    return datasets.read_csv(path, columns or None, argument="--data")


def _cmd_fit(args) -> int:
    from . import api
    from ._validation import output_path
    from .errors import InputError
    from .registry import get_model

    output_path(args.out, "--out")  # refused or its folder made before hours of sampling
    if args.hosts:
        from .inference.driver import initialize_hosts

        initialize_hosts()
    model = get_model(args.model, **_parse_options(args.model_option, "--model-option"))
    data = _read_data(args.data, args.column)
    try:
        fit = api.fit(
            model,
            data,
            args.method,
            seed=args.seed,
            checkpoint=args.checkpoint,
            resume=args.resume,
            devices=args.devices,
            **_parse_options(args.option, "--option"),
        )
    except InputError as exc:
        if exc.argument.startswith("data[") and not args.column:
            raise InputError(
                exc.argument,
                exc.problem,
                f"{exc.fix or ''} Columns of the file: {', '.join(data)}; map them to the model's "
                "inputs with --column, e.g. --column index=day,hour --column y=temp_f.".strip(),
            ) from None
        raise
    import jax

    if jax.process_index() == 0:  # several processes: one writes
        print(fit.summary().to_string())
        fit.save(args.out)
        print(f"wrote {args.out}")
    return 0


def _load_runs(paths: Sequence[str]) -> dict:
    """``{label: Fit}`` keyed by file name, made unique when a path repeats."""
    from . import api

    fits = {}
    for path in paths:
        label = path if path not in fits else f"{path} ({len(fits) + 1})"
        fits[label] = api.load(path)
    return fits


def _cmd_report(args) -> int:
    from .report import report

    fits = _load_runs(args.runs)
    target = report(fits if len(fits) > 1 else next(iter(fits.values())), args.output)
    print(f"wrote {target}")
    return 0


def _cmd_compare(args) -> int:
    from .api import compare

    table = compare(_load_runs(args.runs))
    print(table.to_string())
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out_dir, seed=args.seed, progress=None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesplug",
        description="NumPyro models and interchangeable inference backends behind one interface.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job: H0 from cosmic chronometers")
    demo.add_argument("--out-dir", default=".", help="where run.nc and report.html go")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_cmd_demo)

    listing = sub.add_parser("list", help="registered models, backends and shipped datasets")
    listing.add_argument("what", nargs="?", choices=["models", "backends", "datasets"])
    listing.set_defaults(handler=_cmd_list)

    fit = sub.add_parser("fit", help="fit a registered model to a CSV file or a shipped dataset")
    fit.add_argument("model", help="registered model name (bayesplug list models)")
    fit.add_argument("--data", required=True, help="CSV with a header row, or a dataset name")
    fit.add_argument(
        "--column",
        action="append",
        metavar="INPUT=COL[,COL]",
        help="model input from CSV column(s), e.g. index=day,hour (default: columns by name)",
    )
    fit.add_argument("--method", default="nuts")
    fit.add_argument("--option", action="append", metavar="KEY=VALUE", help="method option")
    fit.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="model option")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", default="run.nc")
    fit.add_argument("--checkpoint", help="write the sampler's state here after every chunk")
    fit.add_argument("--resume", help="continue the run saved in this checkpoint file")
    fit.add_argument("--devices", type=int, help="local devices to split chains over (all)")
    fit.add_argument(
        "--hosts",
        action="store_true",
        help="join a multi-process run (BAYESPLUG_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)",
    )
    fit.set_defaults(handler=_cmd_fit)

    rep = sub.add_parser("report", help="HTML report of one or more saved fits")
    rep.add_argument("runs", nargs="+", help="NetCDF files written by fit/save")
    rep.add_argument("-o", "--output", default="report.html")
    rep.set_defaults(handler=_cmd_report)

    cmp_ = sub.add_parser("compare", help="compare saved fits (ELPD-LOO, evidences)")
    cmp_.add_argument("runs", nargs="+")
    cmp_.set_defaults(handler=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesplug`` command."""
    args = build_parser().parse_args(argv)
    from .errors import BayesplugError

    try:
        return args.handler(args)
    except BayesplugError as exc:
        print(f"bayesplug: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayesplug: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
