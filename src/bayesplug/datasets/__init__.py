"""Small real data sets shipped with bayesplug, with their provenance.

>>> import bayesplug as bp
>>> bp.datasets.list()
['bao', 'cosmic_chronometers', 'functional_tensor_synthetic', 'sf_temperature']
>>> cc = bp.datasets.load("cosmic_chronometers")
>>> len(cc), cc["x"].shape
(3, (31,))
"""

from __future__ import annotations

import builtins
import csv
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import InputError, did_you_mean

__all__ = ["Dataset", "list", "load", "random_folds", "read_csv", "train_test_split"]


@dataclass(frozen=True)
class Dataset(Mapping):
    """A named mapping of arrays (what :func:`bayesplug.fit` takes as data) with its provenance.

    Attributes
    ----------
    name
        Registered name.
    arrays
        ``{"x": ..., "y": ..., "yerr": ...}``.
    description
        One paragraph: what the data are, units, source.
    labels
        Human-readable label of each key (used by reports), e.g. ``{"x": "redshift z"}``.
    extra
        Columns that are not model inputs (e.g. literature references), as lists.
    """

    name: str
    arrays: dict[str, np.ndarray]
    description: str
    labels: dict[str, str] = field(default_factory=dict)
    extra: dict[str, builtins.list] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape}" for k, v in self.arrays.items())
        return f"Dataset({self.name!r}; {shapes})"


def _read_csv(filename: str) -> dict[str, builtins.list[str]]:
    text = resources.files(__name__).joinpath(filename).read_text()
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(rows)
    columns: dict[str, builtins.list[str]] = {name: [] for name in reader.fieldnames or []}
    for row in reader:
        for name in columns:
            columns[name].append(row[name])
    return columns


_HZ_LABELS = {"x": "redshift z", "y": "H(z) [km/s/Mpc]", "yerr": "σ_H [km/s/Mpc]"}


def _cosmic_chronometers() -> Dataset:
    columns = _read_csv("cosmic_chronometers.csv")
    arrays = {
        "x": np.array(columns["z"], dtype=float),
        "y": np.array(columns["H"], dtype=float),
        "yerr": np.array(columns["sigma_H"], dtype=float),
    }
    return Dataset(
        "cosmic_chronometers",
        arrays,
        "31 cosmic-chronometer measurements of the Hubble rate H(z) (km/s/Mpc) at redshifts "
        "0.07-1.965 with their diagonal errors; the compilation of Gomez-Valent & Amendola 2018 "
        "(arXiv:1802.01505). x = z, y = H, yerr = sigma_H.",
        _HZ_LABELS,
        {"reference": columns["reference"]},
    )


def _bao() -> Dataset:
    columns = _read_csv("bao.csv")
    arrays = {
        "x": np.array(columns["z"], dtype=float),
        "y": np.array(columns["H"], dtype=float),
        "yerr": np.array(columns["dH"], dtype=float),
    }
    return Dataset(
        "bao",
        arrays,
        "23 baryon-acoustic-oscillation measurements of H(z) (km/s/Mpc) at redshifts 0.24-2.36 "
        "(Table A3 of MNRAS 501, 4452, 2021; as used by Kroupa et al. 2024). "
        "x = z, y = H, yerr = dH.",
        _HZ_LABELS,
    )


def _functional_tensor_synthetic() -> Dataset:
    columns = _read_csv("functional_tensor_synthetic.csv")
    index = np.stack([np.array(columns["i1"], dtype=float), np.array(columns["i2"], dtype=float)])
    return Dataset(
        "functional_tensor_synthetic",
        {"index": index.T, "y": np.array(columns["y"], dtype=float)},
        "The synthetic two-mode continuous-indexed tensor of Fang et al. (ICLR 2024, FunBaT): "
        "1,350 entries at coordinates in [0, 1]^2 (a rank-1 product of two smooth functions), "
        "with the authors' 50/50 split in extra['split'] (see train_test_split). "
        "index = (mode-1, mode-2) coordinates, y = value.",
        {"index": "coordinates (mode 1, mode 2)", "y": "value"},
        {"split": columns["split"]},
    )


def _sf_temperature() -> Dataset:
    columns = _read_csv("sf_temperature.csv")
    index = np.stack([np.array(columns[c], dtype=float) for c in ("day", "hour")])
    return Dataset(
        "sf_temperature",
        {"index": index.T, "y": np.array(columns["temp_f"], dtype=float)},
        "Hourly San Francisco air temperature in 2010 (deg F) as a two-mode continuous-indexed "
        "tensor: day of year (1-365) x hour of day (0-23), 8,759 entries (one hour missing). "
        "From the sf-temps table of vega_datasets 0.9.0 (MIT). Very smooth, like hourly climate "
        "normals rather than raw station readings. index = (day, hour), y = temperature.",
        {"index": "(day of year, hour of day)", "y": "temperature [deg F]"},
    )


def _numeric_columns(path: str, argument: str) -> dict[str, np.ndarray]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            lines = [ln for ln in handle if ln.strip() and not ln.lstrip().startswith("#")]
    except FileNotFoundError:
        raise InputError(argument, f"no file at {path!r}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(argument, f"{path!r} cannot be read as text ({exc}).") from None
    if len(lines) < 2:
        raise InputError(argument, f"{path!r} has no data rows (a header and rows expected).")
    delimiter = max(",;\t", key=lines[0].count)
    rows = builtins.list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    for number, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise InputError(
                argument,
                f"{path!r}: data row {number} has {len(row)} fields but the header has "
                f"{len(header)} ({', '.join(header)}).",
            )
    columns = {}
    for i, name in enumerate(header):
        cells = [r[i].strip() for r in rows[1:]]
        values = []
        for cell in cells:
            try:
                values.append(float(cell))
            except ValueError:
                values.append(None)
        bad = [n for n, v in enumerate(values, start=1) if v is None]
        if len(bad) == len(values):
            message = f"column {name!r} of {path!r} is text (e.g. {cells[0]!r}): not used"
            warnings.warn(message, stacklevel=3)
            continue
        if bad:
            raise InputError(
                f"{argument} column {name!r}",
                f"has {len(bad)} missing or non-numeric value(s) (first at data row {bad[0]}: "
                f"{cells[bad[0] - 1]!r}).",
                "Fill them in or remove those rows; a column is never dropped silently.",
            )
        columns[name] = np.array(values, dtype=float)
    if not columns:
        raise InputError(argument, f"{path!r} has no numeric column.")
    return columns


def read_csv(
    path: str | os.PathLike,
    columns: Mapping[str, str | Sequence[str]] | None = None,
    *,
    argument: str = "path",
) -> dict[str, np.ndarray]:
    """The numeric columns of a CSV file, as model data.

    Comma, semicolon or tab separated, a header row, ``#`` comment lines skipped. A column whose
    every cell is text (labels, references) is left out with a warning; a numeric column with a
    missing or unreadable cell is an error naming the row, never a silently dropped column.

    Parameters
    ----------
    path
        The file.
    columns
        Which columns make which model input: ``{input: column}`` for a vector, or
        ``{input: [column, ...]}`` for an (N, k) array with those columns side by side, e.g.
        ``{"index": ["day", "hour"], "y": "temp_f"}`` for ``FunctionalTucker``.
        Without it every numeric column is an input under its own name.
    argument
        How errors name the file (the command line passes ``"--data"``).

    Returns
    -------
    dict
        ``{name: (N,) or (N, k) float array}``: what :func:`bayesplug.fit` takes as data.

    Examples
    --------
    >>> import bayesplug as bp, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "temps.csv")
    >>> _ = open(path, "w").write("day,hour,temp_f\\n1,0,47.8\\n1,1,47.4\\n2,0,48.1\\n")
    >>> data = bp.datasets.read_csv(path, {"index": ["day", "hour"], "y": "temp_f"})
    >>> data["index"].shape, data["y"]
    ((3, 2), array([47.8, 47.4, 48.1]))
    """
    table = _numeric_columns(os.fspath(path), argument)
    if columns is None:
        return table
    if not isinstance(columns, Mapping):
        raise InputError("columns", f"expected a mapping {{input: column(s)}}, got {columns!r}.")
    data = {}
    for name, chosen in columns.items():
        names = [chosen] if isinstance(chosen, str) else builtins.list(chosen)
        for column in names:
            if column not in table:
                raise InputError(
                    f"columns[{name!r}]",
                    f"{path!r} has no numeric column {column!r} "
                    f"(it has {', '.join(map(repr, table))}).",
                    did_you_mean(column, table),
                )
        if not names:
            raise InputError(f"columns[{name!r}]", "names no column.")
        stacked = [table[c] for c in names]
        data[name] = stacked[0] if isinstance(chosen, str) else np.stack(stacked, axis=1)
    return data


_LOADERS = {
    "cosmic_chronometers": _cosmic_chronometers,
    "bao": _bao,
    "functional_tensor_synthetic": _functional_tensor_synthetic,
    "sf_temperature": _sf_temperature,
}


def list() -> builtins.list[str]:  # noqa: A001 - the public name of the contract
    """Names of the shipped data sets."""
    return sorted(_LOADERS)


def load(name: str) -> Dataset:
    """Load a shipped data set by name (see :func:`list`)."""
    if name not in _LOADERS:
        raise InputError("name", f"unknown data set {name!r}.", did_you_mean(name, _LOADERS))
    return _LOADERS[name]()


def _subset(data: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[rows] for k, v in data.items()}


def train_test_split(dataset: Dataset) -> tuple[dict, dict]:
    """The published train/test split of a data set that has one (``extra["split"]``).

    >>> import bayesplug as bp
    >>> train, test = bp.datasets.train_test_split(bp.datasets.load("functional_tensor_synthetic"))
    >>> train["index"].shape, test["y"].shape
    ((675, 2), (675,))
    """
    if "split" not in getattr(dataset, "extra", {}):
        raise InputError(
            "dataset",
            f"{getattr(dataset, 'name', 'this data set')!r} has no published split.",
            "Use bp.datasets.random_folds(data) for random train/test folds.",
        )
    split = np.asarray(dataset.extra["split"])
    return _subset(dataset, np.flatnonzero(split == "train")), _subset(
        dataset, np.flatnonzero(split == "test")
    )


def random_folds(
    data: Mapping[str, np.ndarray],
    num_folds: int = 5,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> builtins.list[tuple[dict, dict]]:
    """``num_folds`` independent random train/test splits of the rows of ``data``.

    Each fold holds out ``test_fraction`` of the rows (at least one), drawn afresh per fold, as
    in the functional Tucker paper's protocol (five random 80/20 splits). Same ``seed``, same
    folds.

    Examples
    --------
    >>> import bayesplug as bp
    >>> folds = bp.datasets.random_folds(bp.datasets.load("sf_temperature"), 5, seed=0)
    >>> len(folds), folds[0][0]["y"].shape, folds[0][1]["y"].shape
    (5, (7007,), (1752,))
    """
    sizes = {np.shape(v)[0] if np.ndim(v) else None for v in data.values()}
    if len(sizes) != 1 or None in sizes:
        raise InputError("data", f"every array needs the same number of rows, got {sizes}.")
    n = sizes.pop()
    if isinstance(num_folds, bool) or not isinstance(num_folds, int | np.integer) or num_folds < 1:
        raise InputError("num_folds", f"expected a positive integer, got {num_folds!r}.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InputError("test_fraction", f"expected a number in (0, 1), got {test_fraction!r}.")
    rng = np.random.default_rng(seed)
    num_test = max(1, round(float(test_fraction) * n))
    folds = []
    for _ in range(int(num_folds)):
        order = rng.permutation(n)
        test, train = np.sort(order[:num_test]), np.sort(order[num_test:])
        folds.append((_subset(data, train), _subset(data, test)))
    return folds
