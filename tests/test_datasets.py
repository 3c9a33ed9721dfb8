import numpy as np
import pytest

import bayesplug as bp


def test_list():
    assert bp.datasets.list() == ["bao", "cosmic_chronometers"]


def test_cosmic_chronometers_values():
    cc = bp.datasets.load("cosmic_chronometers")
    assert set(cc) == {"x", "y", "yerr"}
    assert cc["x"].shape == cc["y"].shape == cc["yerr"].shape == (31,)
    # first and last rows of the published table (Gomez-Valent & Amendola 2018)
    assert (cc["x"][0], cc["y"][0], cc["yerr"][0]) == (0.07, 69.0, 19.6)
    assert cc["x"][-1] == pytest.approx(1.965)
    assert np.all(np.diff(cc["x"]) >= 0) and np.all(cc["yerr"] > 0)
    assert len(cc.extra["reference"]) == 31
    assert "arXiv:1802.01505" in cc.description


def test_bao_values():
    bao = bp.datasets.load("bao")
    assert bao["x"].shape == (23,)
    assert (bao["x"][0], bao["y"][0], bao["yerr"][0]) == (0.24, 79.69, 2.65)


def test_unknown_dataset():
    with pytest.raises(bp.InputError, match="Did you mean 'bao'"):
        bp.datasets.load("baoo")
