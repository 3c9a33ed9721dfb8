"""Small real data sets shipped with bayesplug, with their provenance.

>>> import bayesplug as bp
>>> bp.datasets.list()
['bao', 'cosmic_chronometers']
>>> cc = bp.datasets.load("cosmic_chronometers")
>>> len(cc), cc["x"].shape
(3, (31,))
"""

from __future__ import annotations

import builtins
import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import InputError, did_you_mean

__all__ = ["Dataset", "list", "load"]


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


_LOADERS = {"cosmic_chronometers": _cosmic_chronometers, "bao": _bao}


def list() -> builtins.list[str]:  # noqa: A001 - the public name of the contract
    """Names of the shipped data sets."""
    return sorted(_LOADERS)


def load(name: str) -> Dataset:
    """Load a shipped data set by name (see :func:`list`)."""
    if name not in _LOADERS:
        raise InputError("name", f"unknown data set {name!r}.", did_you_mean(name, _LOADERS))
    return _LOADERS[name]()
