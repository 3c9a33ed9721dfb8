"""The bad-input table: every registered model and every backend option, each bad value named.

Each row is one bad input a user can give; the test asserts a :class:`bayesplug.InputError`
whose ``argument`` names what was wrong (a data key, a model option or a method option). The
README states how many rows there are (``test_the_readme_counts_the_table``).
"""

import re
from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp
from bayesplug import registry

NAN, INF = float("nan"), float("inf")
X5 = np.linspace(0.0, 1.0, 5)

# (model, data, argument named, message pattern)
MODEL_DATA = [
    ("gp", {"x": [0.0, 1.0], "y": [1.0, NAN]}, "data['y']", "NaN"),
    ("gp", {"x": X5, "y": np.ones(5)}, "data['y']", "same value"),
    ("marginalised_gp", {"x": X5, "y": np.zeros(5), "yerr": X5 + 1}, "data['y']", "same value"),
    ("sparse_within_sparse_gp", {"x": X5, "y": np.ones(5)}, "data['y']", "same value"),
    ("gp", {"x": [0.0, 1.0, 2.0], "y": [1.0, 2.0]}, "data", "mismatched lengths"),
    ("gp", {"x": [0.0, 1.0]}, "data", "no key 'y'"),
    ("gp", {"x": X5, "y": X5, "yerr": -X5}, "data['yerr']", "positive"),
    ("marginalised_gp", {"x": [0.0, 1.0], "y": [1.0, NAN]}, "data['y']", "NaN"),
    ("marginalised_gp", {"x": [0.0, 1.0], "y": [1.0, 2.0]}, "data['yerr']", "required"),
    ("marginalised_gp", {"x": X5, "y": X5, "yerr": X5, "z": X5}, "data['z']", "not an input"),
    ("sparse_within_sparse_gp", {"x": np.zeros((5, 2)), "y": np.zeros(4)}, "data", "mismatched"),
    ("sparse_within_sparse_gp", {"x": np.ones((5, 2)), "y": [0, INF, 0, 0, 0]}, "data['y']", "inf"),
    ("sparse_within_sparse_gp", {"y": np.zeros(5)}, "data", "no key 'x'"),
    ("linear_gaussian_ssm", {"y": np.full((10, 2), NAN)}, "data['y']", "NaN"),
    ("linear_gaussian_ssm", {"y": np.zeros(0)}, "data['y']", "empty"),
    ("linear_gaussian_ssm", {"x": np.zeros(3)}, "data['x']", "not an input"),
    ("stochastic_volatility", {"y": [0.0, NAN]}, "data['y']", "NaN"),
    ("stochastic_volatility", {"y": np.zeros((3, 3, 3))}, "data['y']", "dimension"),
    ("functional_tucker", {"index": X5, "y": X5}, "data['index']", "dimension"),
    ("functional_tucker", {"index": np.zeros((5, 2)), "y": np.zeros(4)}, "data", "5 rows"),
    ("functional_tucker", {"index": np.zeros((5, 2)), "y": [0, 0, NAN, 0, 0]}, "data['y']", "NaN"),
    ("gp_pde", {"x": X5}, "pde", "without a PDE"),
]

# (model, constructor options, argument named, message pattern)
MODEL_OPTIONS = [
    ("gp", {"kernel": "rbff"}, "kernel", "Did you mean 'rbf'"),
    ("gp", {"jitter": -1.0}, "jitter", ""),
    ("marginalised_gp", {"means": ["quadratic"]}, "means", "unknown mean"),
    ("marginalised_gp", {"means": []}, "means", "empty"),
    ("sparse_within_sparse_gp", {"num_inducing": 0}, "num_inducing", ""),
    ("sparse_within_sparse_gp", {"likelihood": "poisson"}, "likelihood", ""),
    ("linear_gaussian_ssm", {"A": "x"}, "A", ""),
    ("stochastic_volatility", {"sigma": -1.0}, "sigma", ""),
    ("functional_tucker", {"ranks": 0}, "ranks", "positive integers"),
    ("functional_tucker", {"ranks": [2, 3], "cp": True}, "ranks", "one rank"),
    ("functional_tucker", {"noise_prior": (1.0,)}, "noise_prior", ""),
    ("gp_pde", {"kernel": "gauss"}, "kernel", "unknown kernel"),
    ("gp_pde", {"pde": 3}, "pde", "expected a PDE"),
]

# bad values by the check an option carries (its ``Option.check``'s name)
BAD_BY_CHECK = {
    "positive_int": [0, -3],
    "positive": [0.0, -1.0, NAN],
    "probability": [1.5, -0.1, NAN],
    "non_negative": [-1],
    "positive_finite": [0, -1.0, NAN, INF],
    "_at_least_two": [1],
    "check": ["nonsense"],
    "<lambda>": ["nonsense"],
    "_is_optax": [3],
    "_cluster_check": ["lokal", 3],
}
WRONG_TYPES = ["3", 2.5, [1], 7]


def _wrong_type(types) -> object | None:
    for value in WRONG_TYPES:
        if object in types:
            return None
        accepted = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if int in types and float in types and isinstance(value, int | float):
            accepted = True
        if not accepted:
            return value
    return None


def _backend_rows():
    rows = []
    for name in registry.list_backends():
        options = registry.get_backend(name).options
        first = next(iter(options))
        rows.append((name, first + "x", 1, "Did you mean"))
        for option, spec in options.items():
            check = getattr(spec.check, "__name__", None)
            for value in BAD_BY_CHECK.get(check, []):
                rows.append((name, option, value, ""))
            wrong = _wrong_type(spec.types)
            if wrong is not None:
                rows.append((name, option, wrong, "expected"))
    return rows


BACKEND_OPTIONS = _backend_rows()


def line(x, y=None):
    a = numpyro.sample("a", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(a * x, 0.3), obs=y)


@pytest.mark.parametrize(("model", "data", "argument", "pattern"), MODEL_DATA)
def test_bad_data_for_each_model_is_named(model, data, argument, pattern):
    method = "paris" if model in ("linear_gaussian_ssm", "stochastic_volatility") else "map"
    method = "cep" if model == "functional_tucker" else method
    with pytest.raises(bp.InputError, match=pattern) as info:
        bp.fit(model, data, method=method)
    assert info.value.argument == argument


@pytest.mark.parametrize(("model", "options", "argument", "pattern"), MODEL_OPTIONS)
def test_bad_model_options_are_named(model, options, argument, pattern):
    with pytest.raises(bp.InputError, match=pattern) as info:
        registry.get_model(model, **options)
    assert info.value.argument == argument


@pytest.mark.parametrize(
    ("method", "option", "value", "pattern"),
    BACKEND_OPTIONS,
    ids=[f"{m}-{o}={v!r}" for m, o, v, _ in BACKEND_OPTIONS],
)
def test_bad_method_options_are_named(method, option, value, pattern):
    data = {"x": X5, "y": X5}
    with pytest.raises(bp.InputError, match=pattern) as info:
        bp.fit(line, data, method=method, **{option: value})
    assert info.value.argument == option


def test_the_readme_counts_the_table():
    total = len(MODEL_DATA) + len(MODEL_OPTIONS) + len(BACKEND_OPTIONS)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    found = re.search(r"(\d[\d,]*) bad inputs tested", readme)
    assert found, "the README should say how many bad inputs the table tests"
    assert int(found.group(1).replace(",", "")) == total, total
