import numpy as np
import pytest

import bayesplug as bp


def test_list():
    assert bp.datasets.list() == [
        "bao",
        "cosmic_chronometers",
        "functional_tensor_synthetic",
        "sf_temperature",
    ]


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


def test_functional_tensor_synthetic_and_its_split():
    data = bp.datasets.load("functional_tensor_synthetic")
    assert data["index"].shape == (1350, 2) and data["y"].shape == (1350,)
    assert data["index"].min() >= 0.0 and data["index"].max() <= 1.0
    train, test = bp.datasets.train_test_split(data)
    assert train["y"].shape == test["y"].shape == (675,)  # the authors' 50/50 split
    # first training entry of the authors' file
    np.testing.assert_allclose(train["index"][0], [0.2955785464011965, 0.7028557637034797])
    assert train["y"][0] == pytest.approx(0.011037220528098468)


def test_sf_temperature_is_a_day_by_hour_grid():
    data = bp.datasets.load("sf_temperature")
    assert data["index"].shape == (8759, 2)
    days, hours = data["index"].T
    assert set(np.unique(days)) == set(range(1, 366)) and set(np.unique(hours)) == set(range(24))
    assert len({(d, h) for d, h in data["index"]}) == 8759  # no duplicate cell; one hour missing
    assert (data["index"][0].tolist(), data["y"][0]) == ([1.0, 0.0], 47.8)
    with pytest.raises(bp.InputError, match="no published split"):
        bp.datasets.train_test_split(data)


def test_random_folds_are_reproducible_disjoint_and_sized():
    data = bp.datasets.load("sf_temperature")
    folds = bp.datasets.random_folds(data, 5, test_fraction=0.2, seed=3)
    again = bp.datasets.random_folds(data, 5, test_fraction=0.2, seed=3)
    for (train, test), (train2, _) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(train["index"], train2["index"])
        assert test["y"].shape == (1752,) and train["y"].shape == (7007,)
        rows = {tuple(r) for r in train["index"]} | {tuple(r) for r in test["index"]}
        assert len(rows) == 8759  # every entry exactly once
    assert not np.array_equal(folds[0][1]["index"], folds[1][1]["index"])  # fresh per fold
    with pytest.raises(bp.InputError, match="test_fraction"):
        bp.datasets.random_folds(data, test_fraction=1.5)
    with pytest.raises(bp.InputError, match="same number of rows"):
        bp.datasets.random_folds({"index": np.zeros((3, 2)), "y": np.zeros(4)})


def test_read_csv_maps_columns_to_model_inputs(tmp_path):
    path = tmp_path / "temps.csv"
    path.write_text("# a city\nday,hour,temp_f,station\n1,0,47.8,A\n1,1,47.4,A\n2,0,48.1,A\n")
    with pytest.warns(UserWarning, match="'station'.*text"):
        data = bp.datasets.read_csv(path, {"index": ["day", "hour"], "y": "temp_f"})
    np.testing.assert_array_equal(data["index"], [[1, 0], [1, 1], [2, 0]])
    np.testing.assert_array_equal(data["y"], [47.8, 47.4, 48.1])
    with pytest.warns(UserWarning):
        assert set(bp.datasets.read_csv(path)) == {"day", "hour", "temp_f"}
    with (
        pytest.raises(bp.InputError, match=r"columns\['y'\].*no numeric column 'temp'"),
        pytest.warns(UserWarning),
    ):
        bp.datasets.read_csv(path, {"y": "temp"})
    with pytest.raises(bp.InputError, match="expected a mapping"), pytest.warns(UserWarning):
        bp.datasets.read_csv(path, ["day"])
