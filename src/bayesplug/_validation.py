"""Named checks on user input, run before anything is traced (one message style everywhere)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import InputError, did_you_mean


def as_data_mapping(data: Any, name: str = "data", allow_empty: bool = False) -> dict[str, Any]:
    """``data`` as a plain dict (accepts any mapping, including a :class:`Dataset`, and a
    pandas DataFrame: one array per column, named by the column)."""
    if _is_data_frame(data):
        names = [str(c) for c in data.columns]
        if len(set(names)) != len(names):
            raise InputError(name, f"has repeated column names ({names}).")
        return {n: data[c].to_numpy() for n, c in zip(names, data.columns, strict=True)}
    if not isinstance(data, Mapping):
        raise InputError(
            name,
            f"expected a mapping of names to arrays (a dict or a bayesplug Dataset), "
            f"got {type(data).__name__}.",
            'Pass e.g. {"x": x, "y": y}.',
        )
    if len(data) == 0 and not allow_empty:
        fix = (
            "Pass the inputs to predict at, keyed as in the data (e.g. {'x': x_new})."
            if name == "inputs"
            else "Pass at least the observed values."
        )
        raise InputError(name, "is empty.", fix)
    return dict(data)


def as_array(
    data: Mapping[str, Any],
    key: str,
    *,
    ndim: Iterable[int] = (1,),
    finite: bool = True,
    positive: bool = False,
    name: str = "data",
) -> np.ndarray:
    """``data[key]`` as a float array, checked for dimension, emptiness and non-finite values."""
    argument = f"{name}[{key!r}]"
    if key not in data:
        raise InputError(name, f"has no key {key!r}.", did_you_mean(key, data.keys()))
    try:
        value = np.asarray(data[key], dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(argument, f"could not be read as numbers ({exc}).") from None
    ndim = tuple(ndim)
    if value.ndim not in ndim:
        allowed = " or ".join(str(n) for n in ndim)
        raise InputError(
            argument, f"has {value.ndim} dimension(s) (shape {value.shape}); expected {allowed}."
        )
    if value.size == 0:
        raise InputError(argument, "is empty.")
    if finite:
        bad = ~np.isfinite(value)
        if bad.any():
            where = np.argwhere(bad)[:3].tolist()
            raise InputError(
                argument,
                f"contains {int(bad.sum())} NaN or infinite value(s) (first at index {where}).",
                "Remove or impute those entries before "
                f"{'predicting' if argument.startswith('inputs') else 'fitting'}.",
            )
    if positive and (value <= 0).any():
        n = int((value <= 0).sum())
        raise InputError(
            argument,
            f"must be strictly positive; {n} value(s) are zero or negative.",
            "Standard deviations must be > 0.",
        )
    return value


def _is_data_frame(data: Any) -> bool:
    """A pandas DataFrame, recognised without importing pandas."""
    return (
        type(data).__name__ == "DataFrame"
        and hasattr(data, "columns")
        and hasattr(data, "to_numpy")
    )


def check_varies(values: np.ndarray, argument: str, why: str) -> None:
    """Refuse observations with one value throughout, saying ``why`` the model needs spread."""
    if values.size and np.ptp(values) == 0:
        raise InputError(
            argument,
            f"has the same value ({values.flat[0]:g}) at all {values.size} points: {why}",
            "Check the data (a column read twice, a constant placeholder).",
        )


EXACT_GP_WARN_FROM = 5_000  # points: an N x N factorisation per density evaluation from here


def warn_if_exact_gp_is_large(num_points: int, model: str) -> None:
    """Say what an exact GP on many points costs, and what to use instead."""
    if num_points < EXACT_GP_WARN_FROM:
        return
    import warnings

    gigabytes = 8 * num_points**2 / 1e9
    warnings.warn(
        f"model {model!r} is an exact GP: each evaluation of its density factorises a "
        f"{num_points:,} x {num_points:,} covariance (O(N^3) time, {gigabytes:.1f} GB a copy in "
        "float64), and a fit needs thousands of evaluations. For this many points use "
        "bp.models.SparseWithinSparseGP with method='svi' (minutes for 20,000 points).",
        UserWarning,
        stacklevel=5,  # warn_if ← validate ← fit ← the fit lock ← the caller of fit
    )


def check_same_length(arrays: Mapping[str, np.ndarray], name: str = "data") -> None:
    """All arrays share their leading dimension, else name the odd one out."""
    lengths = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise InputError(
            name, f"arrays have mismatched lengths ({listing}).", "Give one entry per point."
        )


def check_unknown_keys(
    data: Mapping[str, Any], allowed: Iterable[str], owner: str, name: str = "data"
) -> None:
    """Reject keys the model does not use (usually a typo)."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise InputError(
                f"{name}[{key!r}]", f"is not an input of {owner}.", did_you_mean(key, allowed)
            )


def output_path(path: Any, argument: str = "path"):
    """A path a result can be written to, checked before any work: parent folders are created,
    a folder or an unwritable place is refused, naming ``argument``."""
    import os
    from pathlib import Path

    try:
        target = Path(os.fspath(path))
    except TypeError:
        raise InputError(argument, f"expected a file path, got {type(path).__name__}.") from None
    if target.is_dir():
        raise InputError(argument, f"{str(target)!r} is a folder.", "Give a file name in it.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            argument, f"its folder {str(target.parent)!r} cannot be created ({exc.strerror})."
        ) from None
    if not os.access(target.parent, os.W_OK):
        raise InputError(argument, f"the folder {str(target.parent)!r} is not writable.")
    return target
