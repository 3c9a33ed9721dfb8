"""The exact GP model against closed forms written here in numpy."""

import jax
import numpy as np
import pytest

import bayesplug as bp
from bayesplug.models.gp import GP


def matern32(x1, x2, amplitude, lengthscale):
    r = np.abs(x1[:, None] - x2[None, :]) / lengthscale
    return amplitude**2 * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)


def rbf(x1, x2, amplitude, lengthscale):
    return amplitude**2 * np.exp(-0.5 * (x1[:, None] - x2[None, :]) ** 2 / lengthscale**2)


def closed_form_predictive(kernel, x, y, noise_var, x_new, mean=0.0):
    """Rasmussen & Williams (2006) eqs. 2.25-2.26."""
    cov = kernel(x, x) + np.diag(noise_var)
    k_star = kernel(x, x_new)
    mu = mean + k_star.T @ np.linalg.solve(cov, y - mean)
    var = np.diag(kernel(x_new, x_new)) - np.sum(k_star * np.linalg.solve(cov, k_star), axis=0)
    return mu, var


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(5)
    x = np.sort(rng.uniform(0, 5, 12))
    y = np.sin(x) + rng.normal(0, 0.1, x.shape)
    return {"x": x, "y": y, "yerr": np.full(12, 0.1)}


def test_fixed_hyperparameters_match_closed_form(toy):
    model = GP(kernel="matern32", noise="fitted", priors={"amplitude": 1.3, "lengthscale": 0.8})
    data = model.validate(toy)
    x_new = np.linspace(-1, 6, 9)
    with jax.enable_x64(True):
        out = model.predict({"noise": np.array([0.2])}, data, {"x": x_new}, jax.random.PRNGKey(0))
    mu, var = closed_form_predictive(
        lambda a, b: matern32(a, b, 1.3, 0.8), toy["x"], toy["y"], np.full(12, 0.04), x_new
    )
    np.testing.assert_allclose(np.asarray(out["f"]["mean"][0]), mu, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(out["f"]["std"][0]) ** 2, var, rtol=1e-5, atol=1e-8)


def test_sum_kernel_with_yerr_and_constant_mean_matches_closed_form(toy):
    model = GP(kernel="rbf+linear", mean="constant")
    data = model.validate(toy)
    sample = {
        "rbf_amplitude": np.array([0.9]),
        "rbf_lengthscale": np.array([1.1]),
        "linear_amplitude": np.array([0.2]),
        "mean": np.array([0.3]),
    }
    x_new = np.array([0.5, 2.5, 7.0])
    with jax.enable_x64(True):
        out = model.predict(
            sample, data, {"x": x_new, "yerr": [0.1, 0.1, 0.3]}, jax.random.PRNGKey(0)
        )

    def kernel(a, b):
        return rbf(a, b, 0.9, 1.1) + 0.04 * a[:, None] * b[None, :]

    mu, var = closed_form_predictive(kernel, toy["x"], toy["y"], toy["yerr"] ** 2, x_new, mean=0.3)
    np.testing.assert_allclose(np.asarray(out["f"]["mean"][0]), mu, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["f"]["std"][0]) ** 2, var, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(out["y"]["std"][0]) ** 2, var + np.array([0.01, 0.01, 0.09]), rtol=1e-5
    )


def test_log_likelihood_is_the_gaussian_marginal(toy):
    from scipy import stats

    from bayesplug.bridge import Bridge

    model = GP(kernel="rbf", priors={"amplitude": 0.7})
    data = model.validate(toy)
    with jax.enable_x64(True):
        bridge = Bridge.from_model(model.model, data)
        u = bridge.unconstrain({"lengthscale": np.array(0.9)}, data)
        log_lik = float(bridge.log_likelihood(u, data))
    jitter = model.jitter * np.mean(toy["y"] ** 2)
    cov = rbf(toy["x"], toy["x"], 0.7, 0.9) + np.diag(toy["yerr"] ** 2 + jitter)
    expected = stats.multivariate_normal(np.zeros(12), cov).logpdf(toy["y"])
    np.testing.assert_allclose(log_lik, expected, rtol=1e-8)


def test_pointwise_loo_densities_match_brute_force(toy):
    model = GP(kernel="rbf")
    data = model.validate(toy)
    samples = {"amplitude": np.array([[0.8]]), "lengthscale": np.array([[1.2]])}
    with jax.enable_x64(True):
        loo = model.pointwise_log_likelihood(samples, data)["y"][0, 0]
    jitter = model.jitter * np.mean(toy["y"] ** 2)
    cov = rbf(toy["x"], toy["x"], 0.8, 1.2) + np.diag(toy["yerr"] ** 2 + jitter)
    y = toy["y"]
    for i in [0, 5, 11]:
        rest = np.arange(12) != i
        c_rest = cov[np.ix_(rest, rest)]
        mean_i = cov[i, rest] @ np.linalg.solve(c_rest, y[rest])
        var_i = cov[i, i] - cov[i, rest] @ np.linalg.solve(c_rest, cov[rest, i])
        expected = -0.5 * np.log(2 * np.pi * var_i) - 0.5 * (y[i] - mean_i) ** 2 / var_i
        np.testing.assert_allclose(loo[i], expected, rtol=1e-6)


def test_prediction_inputs_checked(cc_gp_fit):
    with pytest.raises(bp.InputError, match="NaN") as info:
        cc_gp_fit.predict({"x": [np.nan]})
    assert info.value.argument == "inputs['x']"
    assert info.value.fix.endswith("before predicting.")  # not "before fitting"
    with pytest.raises(bp.InputError, match="inputs: is empty. Pass the inputs to predict at"):
        cc_gp_fit.predict({})
    with pytest.raises(bp.InputError, match="not an input") as info:
        cc_gp_fit.predict({"z": [0.0]})
    with pytest.raises(bp.InputError, match="num_draws"):
        cc_gp_fit.predict({"x": [0.0]}, num_draws=10**6)


def test_h0_from_cosmic_chronometers(cc_gp_fit):
    """H0 = f(z=0) against the type-II maximum-likelihood anchor 67.5 ± 4.8 (same data, same
    kernel; ../shared/data/README.md; Yu, Ratra & Wang 2018 give 67.42 ± 4.75).

    Full Bayes averages the predictive over the lengthscale/amplitude posterior instead of fixing
    them at the ML point, which widens the interval (longer lengthscales extrapolate to z = 0 with
    more spread) and may move the mean by a fraction of the ML error. Hence: the mean within half
    an ML standard deviation of 67.5, and a std between 0.9x and 1.5x the ML one. The Monte Carlo
    error of the mean (4000 draws, ESS > 1000) is ~0.2 km/s/Mpc, far inside these bands.
    """
    h0 = cc_gp_fit.predict({"x": [0.0]})
    assert abs(h0.mean[0] - 67.5) < 0.5 * 4.8
    assert 0.9 * 4.8 < h0.std[0] < 1.5 * 4.8
    assert cc_gp_fit.diagnostics()["ok"]
    assert cc_gp_fit.idata.posterior["lengthscale"].dtype == np.float64


def test_gp_is_float64_without_global_x64(cc_gp_fit):
    import jax.numpy as jnp

    assert jnp.zeros(1).dtype == jnp.float32  # x64 was enabled only inside the fit


def test_an_exact_gp_on_many_points_says_what_it_costs_and_what_to_use():
    import warnings

    x = np.linspace(0.0, 1.0, 5_000)
    for model, extra in ((bp.models.GP(), {}), (bp.models.MarginalisedGP(), {"yerr": x + 1})):
        with pytest.warns(UserWarning, match=r"5,000 x 5,000 .*SparseWithinSparseGP"):
            model.validate({"x": x, "y": np.sin(9 * x), **extra})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # one point fewer: no warning
            model.validate(
                {"x": x[1:], "y": np.sin(9 * x[1:]), **{k: v[1:] for k, v in extra.items()}}
            )
