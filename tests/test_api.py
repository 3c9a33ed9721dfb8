"""fit() with plain NumPyro functions, and every bad input rejected before tracing."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp


def line(x, y=None):
    slope = numpyro.sample("slope", dist.Normal(0.0, 10.0))
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 10.0))
    with numpyro.plate("points", x.shape[0]):
        numpyro.sample("y", dist.Normal(intercept + slope * x, 0.5), obs=y)


@pytest.fixture(scope="module")
def line_data():
    rng = np.random.default_rng(3)
    x = np.linspace(-1, 1, 25)
    return {"x": x, "y": 2.0 * x - 1.0 + rng.normal(0, 0.5, x.shape)}


@pytest.fixture(scope="module")
def line_fit(line_data):
    return bp.fit(line, line_data, num_warmup=300, num_samples=500, num_chains=2, progress=False)


def test_plain_numpyro_function_posterior(line_fit, line_data):
    # Conjugate linear regression with known noise: exact posterior by linear algebra.
    x, y = line_data["x"], line_data["y"]
    design = np.stack([x, np.ones_like(x)], axis=1)
    precision = design.T @ design / 0.25 + np.eye(2) / 100
    cov = np.linalg.inv(precision)
    mean = cov @ design.T @ y / 0.25
    ess = line_fit.diagnostics()["ess_bulk_min"]
    for i, site in enumerate(["slope", "intercept"]):
        draws = np.asarray(line_fit.samples[site])
        assert abs(draws.mean() - mean[i]) < 4 * np.sqrt(cov[i, i] / ess)


def test_plain_function_predict(line_fit):
    pred = line_fit.predict({"x": np.array([0.0, 1.0])}, seed=3)
    assert pred.site == "y" and pred.draws.shape == (1000, 2)
    slope = np.asarray(line_fit.samples["slope"])
    intercept = np.asarray(line_fit.samples["intercept"])
    expected = np.array([intercept.mean(), (intercept + slope).mean()])
    # predictive sd = sqrt(0.25 + posterior var) ~ 0.5; 1000 draws -> se ~ 0.016
    np.testing.assert_allclose(pred.mean, expected, atol=4 * 0.52 / np.sqrt(1000))
    np.testing.assert_allclose(pred.std, 0.5, rtol=0.15)
    again = line_fit.predict({"x": np.array([0.0, 1.0])}, seed=3)
    np.testing.assert_array_equal(pred.draws, again.draws)
    sub = line_fit.predict({"x": np.array([0.0])}, num_draws=10)
    assert sub.draws.shape == (10, 1)


def test_a_data_frame_is_data_by_column():
    import pandas as pd

    x = np.linspace(0.0, 1.0, 12)
    frame = pd.DataFrame({"x": x, "y": np.sin(6 * x)})
    fit = bp.fit("gp", frame, method="map", progress=False)
    same = bp.fit("gp", {"x": x, "y": np.sin(6 * x)}, method="map", progress=False)
    np.testing.assert_array_equal(fit.samples["lengthscale"], same.samples["lengthscale"])
    with pytest.raises(bp.InputError, match="'H'.*not an input"):
        bp.fit("gp", frame.rename(columns={"y": "H"}), method="map", progress=False)
    with pytest.raises(bp.InputError, match="repeated column names"):
        bp.fit("gp", pd.concat([frame, frame["y"]], axis=1), method="map", progress=False)


def test_static_arguments_are_passed_through():
    def grouped(n_groups, group, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 5).expand([n_groups]).to_event(1))
        numpyro.sample("y", dist.Normal(mu[group], 1.0).to_event(1), obs=y)

    data = {"n_groups": 2, "group": np.array([0, 0, 1, 1]), "y": np.array([1.0, 1.2, -1.0, -0.8])}
    fit = bp.fit(grouped, data, num_warmup=200, num_samples=200, num_chains=2, progress=False)
    assert fit.idata.posterior["mu"].shape == (2, 200, 2)
    assert float(fit.samples["mu"][:, 0].mean()) > 0 > float(fit.samples["mu"][:, 1].mean())


def _needs_a_python_float(y):
    scale = 1.0 if float(np.max(y)) > 0 else 2.0  # the value of y: unknown while compiling
    mu = numpyro.sample("mu", dist.Uniform(-5, 5))
    numpyro.sample("y", dist.Normal(mu, scale), obs=y)


def _branches_on_a_parameter(y):
    mu = numpyro.sample("mu", dist.Uniform(-5, 5))
    scale = 1.0 if mu > 0 else 2.0  # the value of a parameter: unknown while compiling
    numpyro.sample("y", dist.Normal(mu, scale), obs=y)


def _masks_the_data(y):
    mu = numpyro.sample("mu", dist.Uniform(-5, 5))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y[y > 0])  # a shape known only from values


@pytest.mark.parametrize("method", ["nuts", "nested", "svi", "map", "sgld", "flow_vi"])
@pytest.mark.parametrize(
    ("model", "cause"),
    [
        (_needs_a_python_float, "ConcretizationTypeError"),
        (_branches_on_a_parameter, "TracerBoolConversionError"),
        (_masks_the_data, "NonConcreteBooleanIndexError"),
    ],
)
def test_a_model_that_needs_concrete_values_is_refused_in_words(method, model, cause):
    """Every backend compiles the model: Python that needs an array's value gets bayesplug's
    error naming the model, the method, JAX's error and the fix (JAX's kept as the cause)."""
    data = {"y": np.array([0.5, 1.0, -0.2])}
    with pytest.raises(bp.errors.ModelTracingError) as caught:
        bp.fit(model, data, method=method, progress=False)
    message = str(caught.value)
    assert model.__name__ in message and repr(method) in message and cause in message
    assert "jnp.where" in message
    assert type(caught.value.__cause__).__name__ == cause
    assert isinstance(caught.value, TypeError)  # what JAX raised: old handlers still catch it


@pytest.mark.parametrize(
    ("data", "argument", "pattern"),
    [
        ({"x": [0.0, np.nan], "y": [1.0, 2.0]}, "data['x']", "NaN"),
        ({"x": [0.0, 1.0], "y": [1.0, np.inf]}, "data['y']", "infinite"),
        ({"x": [0.0, 1.0], "y": [1.0, 2.0], "yerr": [0.1, 0.0]}, "data['yerr']", "positive"),
        ({"x": [0.0, 1.0], "y": [1.0, 2.0], "yerr": [0.1, -1.0]}, "data['yerr']", "positive"),
        ({"x": [0.0, 1.0, 2.0], "y": [1.0, 2.0]}, "data", "mismatched lengths"),
        ({"x": [[[0.0]]], "y": [1.0]}, "data['x']", "dimension"),
        ({"x": [], "y": []}, "data['x']", "empty"),
        ({"x": [0.0, 1.0]}, "data", "no key 'y'"),
        ({}, "data", "empty"),
        ({"x": [0.0, 1.0], "y": [1.0, 2.0], "z": [1.0, 1.0]}, "data['z']", "not an input"),
        ({"x": ["a", "b"], "y": [1.0, 2.0]}, "data['x']", "numbers"),
    ],
)
def test_bad_gp_data_named_before_tracing(data, argument, pattern):
    with pytest.raises(bp.InputError, match=pattern) as info:
        bp.fit("gp", data)
    assert info.value.argument == argument
    assert argument in str(info.value)


def test_bad_plain_function_data(line_data):
    with pytest.raises(bp.InputError, match="not an argument.*Did you mean 'x'") as info:
        bp.fit(line, {"xx": line_data["x"], "y": line_data["y"]})
    assert info.value.argument == "data['xx']"
    with pytest.raises(bp.InputError, match="NaN") as info:
        bp.fit(line, {"x": line_data["x"], "y": np.full(25, np.nan)})
    assert info.value.argument == "data['y']"
    with pytest.raises(bp.InputError, match="no sample site.*obs.*'y'.*prior") as info:
        bp.fit(line, {"x": line_data["x"]})  # forgotten observations: never the prior silently
    with pytest.raises(bp.InputError, match="mapping") as info:
        bp.fit(line, [1, 2, 3])
    assert info.value.argument == "data"


def test_unknown_and_mistyped_options(line_data):
    with pytest.raises(bp.InputError, match="num_sample.*Did you mean 'num_samples'") as info:
        bp.fit(line, line_data, num_sample=100)
    assert info.value.argument == "num_sample"
    with pytest.raises(bp.InputError, match="expected int.*got str") as info:
        bp.fit(line, line_data, num_samples="100")
    assert info.value.argument == "num_samples"
    with pytest.raises(bp.InputError, match="expected int.*got bool"):
        bp.fit(line, line_data, num_chains=True)
    with pytest.raises(bp.InputError, match="between 0 and 1") as info:
        bp.fit(line, line_data, target_accept=1.5)
    assert info.value.argument == "target_accept"
    with pytest.raises(bp.InputError, match="at least 1"):
        bp.fit(line, line_data, num_samples=0)


def test_unknown_method_and_model_and_seed(line_data):
    with pytest.raises(bp.InputError, match="Did you mean 'nuts'") as info:
        bp.fit(line, line_data, method="nutts")
    assert info.value.argument == "method"
    with pytest.raises(bp.InputError, match="Did you mean 'gp'") as info:
        bp.fit("gq", line_data)
    assert info.value.argument == "model"
    with pytest.raises(bp.InputError, match="non-negative integer") as info:
        bp.fit(line, line_data, seed=-1)
    assert info.value.argument == "seed"
    with pytest.raises(bp.InputError, match="model"):
        bp.fit(42, line_data)


def test_incompatible_method_names_missing_capability():
    def mixture(y=None):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)

    with pytest.raises(bp.IncompatibleMethodError, match="'continuous'.*'nuts' requires") as info:
        bp.fit(mixture, {"y": np.array(1.0)})
    assert info.value.missing == ("continuous",)
    assert "nuts" not in info.value.working
    # which site, and how to make it continuous
    assert "latent site(s) ['z'] are discrete" in str(info.value)
    assert "MixtureSameFamily" in str(info.value)


def test_gp_model_options_rejected():
    with pytest.raises(bp.InputError, match="Did you mean 'matern52'") as info:
        bp.models.GP(kernel="matern25")
    assert info.value.argument == "kernel"
    with pytest.raises(bp.InputError, match="Did you mean 'constant'"):
        bp.models.GP(mean="constnt")
    with pytest.raises(bp.InputError, match="Did you mean 'lengthscale'") as info:
        bp.models.GP(priors={"lenghtscale": 1.0})
    assert info.value.argument == "priors['lenghtscale']"
    with pytest.raises(bp.InputError, match="yerr.*required") as info:
        bp.fit(bp.models.GP(noise="yerr"), {"x": [0.0, 1.0], "y": [1.0, 2.0]})
    assert info.value.argument == "data['yerr']"


def test_a_factor_is_a_likelihood_and_data_may_be_empty():
    """A program whose likelihood is a numpyro.factor needs no data: here p(x) ∝ N(x | 1, 0.5²)."""

    def potential():
        x = numpyro.sample("x", dist.Normal(0.0, 10.0))
        numpyro.factor("likelihood", dist.Normal(1.0, 0.5).log_prob(x))

    fit = bp.fit(potential, {}, num_warmup=300, num_samples=500, num_chains=2, progress=False)
    # posterior N(m, s²) with precision 1/100 + 4 and mean (1 * 4) / precision
    precision = 0.01 + 4.0
    ess = fit.diagnostics()["ess_bulk_min"]
    draws = np.asarray(fit.samples["x"])
    assert abs(draws.mean() - 4.0 / precision) < 4 * precision**-0.5 / np.sqrt(ess)


def funnel(dim=10):
    """NumPyro's ``examples/funnel.py`` (Neal's funnel): no observed site, no factor."""
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


def reparam_funnel(dim=10):
    """The same funnel, non-centred as in NumPyro's example (``LocScaleReparam(0)``)."""
    from numpyro.handlers import reparam
    from numpyro.infer.reparam import LocScaleReparam

    with reparam(config={"x": LocScaleReparam(0)}):
        funnel(dim)


@pytest.mark.parametrize(
    ("method", "model", "options"),
    [
        ("nuts", reparam_funnel, {"num_warmup": 500, "num_samples": 1000, "num_chains": 2}),
        ("svi", reparam_funnel, {"num_steps": 3000, "num_draws": 4000}),
        ("flow_vi", funnel, {"num_draws": 4000}),
    ],
)
def test_a_program_with_no_observation_is_sampled(method, model, options):
    """A program with no likelihood is a density to sample: y ~ N(0, 3) exactly (the funnel's
    marginal). Tolerances: 5 Monte Carlo standard errors for NUTS (from its ESS); for the
    variational fits, whose family holds the answer (svi: the non-centred funnel is a product of
    normals) or nearly (flow_vi), 0.3 on the mean and 10% on the sd."""
    fit = bp.fit(model, {}, method=method, seed=0, progress=False, **options)
    y = np.asarray(fit.samples["y"]).ravel()
    if method == "nuts":
        ess = fit.diagnostics()["ess_bulk_min"]
        assert abs(y.mean()) < 5 * 3.0 / np.sqrt(ess)
        assert abs(y.std() / 3.0 - 1) < 5 / np.sqrt(2 * ess)
    else:
        assert abs(y.mean()) < 0.3
        assert abs(y.std() / 3.0 - 1) < 0.10
    assert "log_likelihood" not in fit.idata.groups()


def test_nested_sampling_refuses_a_program_with_no_likelihood_and_says_why():
    with pytest.raises(bp.InputError, match="nested sampling needs a likelihood.*'nuts'"):
        bp.fit(funnel, {}, method="nested")
