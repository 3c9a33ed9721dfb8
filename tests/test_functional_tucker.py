"""Model ``functional_tucker``: the chain prior, the Tucker/CP contraction, input checks, NUTS."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import bayesplug as bp
from bayesplug.models.functional_tucker import FunctionalTucker, tucker_contract
from bayesplug.models.matern_sde import matern_sde


def matern32(tau, ell, s2):
    r = np.sqrt(3) * np.abs(tau) / ell
    return s2 * (1 + r) * np.exp(-r)


def test_the_chain_prior_is_the_matern_gp_at_the_unique_coordinates():
    """factor = M innovations is linear: M Mᵀ must be the Matérn covariance of the scaled inputs."""
    model = FunctionalTucker(ranks=1, kernel="matern32", lengthscale=0.3, variance=2.0)
    coords = np.sort(np.random.default_rng(0).uniform(5, 25, 9))  # raw coordinates, scaled inside
    with jax.enable_x64(True):
        sde = matern_sde("matern32", 0.3, 2.0)

        def factor(eps):
            return model._states(sde, jnp.asarray(coords), eps.reshape(9, 1, 2))[:, 0, 0]

        M = jax.jacfwd(factor)(jnp.zeros(18))
    t = (coords - coords[0]) / (coords[-1] - coords[0])
    expected = matern32(t[:, None] - t[None, :], 0.3, 2.0)
    np.testing.assert_allclose(M @ M.T, expected, atol=1e-7)  # the 1e-9 relative jitter


def test_cp_is_tucker_with_a_diagonal_core():
    rng = np.random.default_rng(1)
    rows = [jnp.asarray(rng.normal(size=(7, 3))) for _ in range(3)]
    weights = jnp.asarray(rng.normal(size=3))
    core = jnp.zeros((3, 3, 3)).at[jnp.arange(3), jnp.arange(3), jnp.arange(3)].set(weights)
    np.testing.assert_allclose(tucker_contract(weights, rows), tucker_contract(core, rows), 1e-6)
    # the Tucker contraction against an explicit sum, K = 3 with unequal ranks
    rows = [jnp.asarray(rng.normal(size=(5, r))) for r in (2, 3, 4)]
    core = jnp.asarray(rng.normal(size=(2, 3, 4)))
    explicit = np.einsum("na,nb,nc,abc->n", *map(np.asarray, rows), np.asarray(core))
    np.testing.assert_allclose(tucker_contract(core, rows), explicit, rtol=1e-5, atol=1e-6)


def test_validate_finds_unique_coordinates_and_names_bad_input():
    index = np.array([[0.1, 3.0], [0.5, 3.0], [0.1, 4.0], [0.9, 5.0]])  # repeated coordinates
    y = np.array([1.0, 2.0, 0.5, 1.5])
    out = FunctionalTucker(ranks=[1, 2]).validate({"index": index, "y": y})
    for k in range(2):
        np.testing.assert_array_equal(out[f"coords_{k}"][out[f"where_{k}"]], index[:, k])
        assert np.all(np.diff(out[f"coords_{k}"]) > 0)
    model = FunctionalTucker(ranks=1)
    bad = [
        ({"index": index, "y": np.array([1.0, np.nan, 0.5, 1.5])}, r"data\['y'\].*NaN"),
        ({"index": index[:, 0], "y": y}, r"data\['index'\].*1 dimension"),
        ({"index": index[:3], "y": y}, "3 rows but 'y' has 4"),
        ({"index": np.c_[index[:, 0], np.ones(4)], "y": y}, "mode 1 has a single coordinate"),
        ({"index": index, "y": y, "x": y}, r"data\['x'\]: is not an input"),
    ]
    for data, match in bad:
        with pytest.raises(bp.InputError, match=match):
            model.validate(data)
    with pytest.raises(bp.InputError, match="ranks.*3 entries but the data have 2 modes"):
        FunctionalTucker(ranks=[1, 2, 3]).validate({"index": index, "y": y})
    with pytest.raises(bp.InputError, match="unknown kernel 'matern23'.*Known: 'matern12'"):
        FunctionalTucker(kernel="matern23")
    with pytest.raises(bp.InputError, match="cp=True needs one rank"):
        FunctionalTucker(ranks=[1, 2], cp=True)
    with pytest.raises(bp.InputError, match="lengthscale"):
        FunctionalTucker(lengthscale=-1.0)
    with pytest.raises(bp.InputError, match="noise_prior"):
        FunctionalTucker(noise_prior=(1.0,))


@pytest.fixture(scope="module")
def small_fit():
    data = bp.datasets.load("functional_tensor_synthetic")
    train, test = bp.datasets.train_test_split(data)
    train = {k: v[:80] for k, v in train.items()}
    model = FunctionalTucker(ranks=1, cp=True, kernel="matern32", lengthscale=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CP sign symmetry: R-hat of the core is undefined
        fit = bp.fit(model, train, num_warmup=200, num_samples=200, num_chains=1, progress=False)
    return fit, test


def test_nuts_on_the_program_predicts_held_out_entries(small_fit):
    fit, test = small_fit
    assert {"core", "tau", "innovations_0", "factor_1"} <= set(fit.idata.posterior.data_vars)
    pred = fit.predict({"index": test["index"]}, seed=0)
    rmse = np.sqrt(np.mean((pred["f"].mean - test["y"]) ** 2))
    assert rmse < 0.25 * test["y"].std(), rmse  # 80 training entries of 1,350
    # y's predictive spread adds the noise (sd ~0.011 against f's ~0.007 here)
    assert np.median(pred["y"].std / pred["f"].std) > 1.2
    q05, q95 = pred["y"].quantile(0.05), pred["y"].quantile(0.95)
    assert 0.8 < np.mean((test["y"] > q05) & (test["y"] < q95)) <= 1.0


def test_prediction_at_training_coordinates_reads_the_factors_back(small_fit, tmp_path):
    fit, _ = small_fit
    index = fit.data["index"][:5]
    pred = fit.predict({"index": index}, seed=1)
    post = fit.idata.posterior
    f = post["core"].values[..., :1] * post["factor_0"].values[..., fit.data["where_0"][:5], 0]
    f = f * post["factor_1"].values[..., fit.data["where_1"][:5], 0]
    y = fit.data["y"]
    np.testing.assert_allclose(pred["f"].draws, y.mean() + y.std() * f.reshape(-1, 5), atol=1e-8)
    with pytest.raises(bp.InputError, match=r"expected \(M, 2\)"):
        fit.predict({"index": np.zeros((3, 3))})
    path = tmp_path / "ft.nc"
    fit.save(path)
    again = bp.load(path)
    assert again.model.options == fit.model.options
    np.testing.assert_allclose(again.predict({"index": index}, seed=1).mean, pred.mean)


def test_hyperparameter_priors_are_sampled():
    from numpyro import handlers
    from numpyro.infer import Predictive

    data = bp.datasets.load("functional_tensor_synthetic")
    model = FunctionalTucker(ranks=1, lengthscale=dist.LogNormal(-1.5, 0.5), variance=[1.0, 2.0])
    train = model.validate({k: v[:30] for k, v in data.items()})
    with jax.enable_x64(True):
        trace = handlers.trace(handlers.seed(model.model, 0)).get_trace(**train)
        prior = Predictive(model.model, num_samples=4)(jax.random.PRNGKey(1), **train)
        pred = model.predict(prior, train, {"index": train["index"][:3]}, jax.random.PRNGKey(2))
    assert {"lengthscale_0", "lengthscale_1"} <= set(trace) and "variance_0" not in trace
    assert "lengthscale" not in model.options and model.options["variance"] == [1.0, 2.0]
    assert pred["f"].shape == pred["y"].shape == (4, 3)
    with pytest.raises(bp.InputError, match="variance.*3 entries but the data have 2 modes"):
        FunctionalTucker(variance=[1.0, 1.0, 1.0]).model(**train)
