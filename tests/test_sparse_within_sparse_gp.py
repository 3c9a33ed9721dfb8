"""Sparse-within-sparse GP: its bound against gpjax's SVGP, its pieces, fits by SVI and SG-MCMC."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import bayesplug as bp
from bayesplug.models.sparse_within_sparse_gp import (
    SparseWithinSparseGP,
    _cholesky_rows,
    band_covariance,
    band_order,
    banded_rows,
    banded_subset_covariance,
    bitonic_argsort,
    nearest_inducing,
    space_filling_order,
    subset_covariance,
    swsgp_bound,
)


def sine_data(n: int, seed: int = 0, noise: float = 0.1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, n)
    return {"x": x, "y": np.sin(2 * x) + noise * rng.normal(size=n)}


def dense_factor(rows, values):
    m = rows.shape[0]
    dense = np.zeros((m, m))
    for j in range(m):
        for c, v in zip(rows[j], values[j], strict=True):
            dense[j, c] += v  # padding entries (c == j beyond the first) hold 0
    return dense


def random_q(gp, rng):
    """Random variational parameters for ``gp`` (validated), in the guide's naming."""
    m, k = gp.num_inducing, gp.covariance_neighbours
    return {
        "amplitude_map": 1.0,
        "lengthscale_map": 0.7,
        "noise_map": 0.3,
        "q_mean": jnp.asarray(rng.normal(size=m)),
        "q_diag": jnp.asarray(rng.uniform(0.2, 0.8, m)),
        "q_offdiag": jnp.asarray(0.3 * rng.normal(size=(m, k - 1))),
        "inducing_inputs": jnp.asarray(gp.inducing_init),
    }


def vecchia_rows(z, k):
    """Rows of a factor with K - 1 entries at the nearest *earlier* inducing inputs (the pattern
    fits used before the band for D >= 2; ``subset_covariance`` still reads it)."""
    m = z.shape[0]
    rows = np.repeat(np.arange(m)[:, None], k, axis=1)
    for j in range(1, m):
        earlier = np.argsort(((z[:j] - z[j]) ** 2).sum(-1))[: k - 1]
        rows[j, 1 : 1 + len(earlier)] = earlier
    return rows


def masked_values(gp, params):
    rows = gp.rows
    values = np.concatenate([params["q_diag"][:, None], params["q_offdiag"]], axis=1)
    values[:, 1:] *= rows[:, 1:] != np.arange(rows.shape[0])[:, None]
    return values


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_bound_with_all_neighbours_is_the_svgp_bound(likelihood, monkeypatch):
    """H = M: the SWSGP bound equals gpjax's SVGP ELBO (VariationalGaussian) at the same q.

    1-D inputs give a factor L that is triangular in the sorted order of the inducing inputs
    (``band_order``), so gpjax gets them in that order (the same q, relabelled)."""
    import gpjax as gpx
    from jax.scipy.special import ndtr

    # gpjax floors its probit at 1e-3 (a jitter of its own); compare like with like.
    monkeypatch.setattr(gpx.likelihoods, "inv_probit", ndtr)

    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        data = sine_data(40, seed=1)
        if likelihood == "bernoulli":
            data["y"] = (data["y"] > 0).astype(float)
        m = 6
        gp = SparseWithinSparseGP(
            num_inducing=m,
            num_neighbours=m,
            covariance_neighbours=m,
            likelihood=likelihood,
            jitter=1e-6,  # gpjax's default jitter (amplitude 1)
        )
        clean = gp.validate(data)
        params = random_q(gp, rng)
        if likelihood == "bernoulli":
            del params["noise_map"]
        x, y = jnp.asarray(clean["x"]), jnp.asarray(clean["y"])
        log_prior = sum(
            gp._prior(n).log_prob(params[f"{n}_map"]) for n in gp.hyperparameter_names()
        )
        ours = float(gp.bound(params, x, y) - log_prior)

        order = gp.band_order
        factor = dense_factor(gp.rows, masked_values(gp, params))[np.ix_(order, order)]
        assert np.array_equal(factor, np.tril(factor))
        kernel = gpx.kernels.RBF(lengthscale=0.7, variance=1.0)
        prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Zero(), kernel=kernel, jitter=1e-6)
        lik = (
            gpx.likelihoods.Gaussian(obs_stddev=0.3)
            if likelihood == "gaussian"
            else gpx.likelihoods.Bernoulli()
        )
        q = gpx.variational_families.VariationalGaussian(
            prior * lik,
            inducing_inputs=jnp.asarray(gp.inducing_init)[order],
            variational_mean=params["q_mean"][order, None],
            variational_root_covariance=jnp.asarray(factor),
        )
        reference = float(gpx.objectives.elbo(q, gpx.Dataset(X=x, y=y[:, None])))
    assert ours == pytest.approx(reference, rel=1e-6, abs=1e-6)


def test_subset_covariance_is_the_true_marginal():
    """S_AA from the sparse rows equals the sub-block of the dense S = L Lᵀ (not of L)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 2))
    rows = vecchia_rows(z, 5)
    assert np.all(rows <= np.arange(30)[:, None])  # lower triangular in the inducing order
    values = rng.normal(size=rows.shape)
    values[:, 0] = np.abs(values[:, 0]) + 0.5
    values[:, 1:] *= rows[:, 1:] != np.arange(30)[:, None]
    dense = dense_factor(rows, values)
    s = dense @ dense.T
    subset = jnp.asarray([29, 3, 17, 8, 22])
    got = subset_covariance(jnp.asarray(rows), jnp.asarray(values), subset)
    np.testing.assert_allclose(got, s[np.ix_(subset, subset)], rtol=1e-5, atol=1e-6)
    naive = dense[np.ix_(subset, subset)] @ dense[np.ix_(subset, subset)].T
    assert not np.allclose(naive, s[np.ix_(subset, subset)], atol=1e-3)
    for small in ([17], [4, 29]):  # no pair, one pair
        got = subset_covariance(jnp.asarray(rows), jnp.asarray(values), jnp.asarray(small))
        np.testing.assert_allclose(got, s[np.ix_(small, small)], rtol=1e-5, atol=1e-6)


def test_banded_subset_covariance_is_the_true_marginal():
    """1-D inputs: L is banded in sorted order, and S_AA read from the band of S equals the
    sub-block of the dense L Lᵀ, pairs more than K apart (zero) included; rows that are not
    banded in any order (Vecchia rows, a row moved) are recognised as such."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(40, 1))
    rows = _cholesky_rows(z, 5)
    order = band_order(rows)
    np.testing.assert_array_equal(order, np.argsort(z[:, 0]))
    values = rng.normal(size=rows.shape)
    values[:, 0] = np.abs(values[:, 0]) + 0.5
    values[:, 1:] *= rows[:, 1:] != np.arange(40)[:, None]
    dense = dense_factor(rows, values)
    assert np.array_equal(dense[np.ix_(order, order)], np.tril(dense[np.ix_(order, order)]))
    s = dense @ dense.T
    position = np.argsort(order)
    band = band_covariance(jnp.asarray(values)[order])
    for subset in ([order[0], order[39], order[20]], rng.choice(40, 16, replace=False)):
        subset = np.asarray(subset)
        got = banded_subset_covariance(band, jnp.asarray(position[subset]))
        np.testing.assert_allclose(got, s[np.ix_(subset, subset)], rtol=1e-5, atol=1e-6)
    assert band_order(vecchia_rows(rng.normal(size=(40, 2)), 5)) is None
    moved = banded_rows(order, 5)
    moved[order[10], 2] = order[3]
    assert band_order(moved) is None
    assert band_order(banded_rows(order, 5)[:, :1]) is not None  # K = 1: diagonal S


def test_inputs_in_two_or_more_dimensions_are_banded_along_the_z_order_curve():
    """D >= 2: L is banded in the Morton order of the inducing inputs, an order that keeps near
    points near: on a 32 x 32 grid a step along it is 1.6 grid spacings on average (a random
    order: ~17)."""
    grid = np.stack(np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij"), -1)
    grid = grid.reshape(-1, 2)
    steps = np.linalg.norm(np.diff(grid[space_filling_order(grid)], axis=0), axis=1)
    assert steps.mean() < 2.0 and np.median(steps) == 1.0
    shuffled = grid[np.random.default_rng(0).permutation(len(grid))]
    assert np.linalg.norm(np.diff(shuffled, axis=0), axis=1).mean() > 10.0
    z = np.random.default_rng(6).normal(size=(300, 3))
    order = band_order(_cholesky_rows(z, 6))
    np.testing.assert_array_equal(order, space_filling_order(z))
    assert np.array_equal(np.sort(order), np.arange(300))
    flat = np.zeros((5, 2))  # a constant coordinate is no problem
    flat[:, 0] = [3.0, 1.0, 2.0, 0.0, 4.0]
    np.testing.assert_array_equal(space_filling_order(flat), [3, 1, 2, 0, 4])


def two_d_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, 2))
    return {"x": x, "y": np.sin(2 * x[:, 0]) * np.cos(x[:, 1]) + 0.1 * rng.normal(size=n)}


@pytest.mark.parametrize("data", [sine_data(200, seed=2), two_d_data(200, seed=2)])
def test_bound_and_its_gradient_are_the_same_through_the_band(data):
    """The banded S_AA is a faster route to the same bound: value and gradient agree with the
    column matching of ``subset_covariance`` (float64), for 1-D and 2-D inputs."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        gp = SparseWithinSparseGP(num_inducing=30, num_neighbours=6, covariance_neighbours=4)
        clean = gp.validate(data)
        assert gp.band_order is not None
        params = random_q(gp, rng)
        theta = gp._bound_params(params, jnp.float64)
        x, y = jnp.asarray(clean["x"]), jnp.asarray(clean["y"])
        options = dict(
            num_data=200,
            kernel="rbf",
            likelihood="gaussian",
            num_neighbours=6,
            rows=jnp.asarray(gp.rows),
            jitter=1e-5,
        )
        values = [
            jax.value_and_grad(lambda t, o=o: swsgp_bound(t, x, y, order=o, **options))(theta)
            for o in (None, gp.band_order)
        ]
    np.testing.assert_allclose(values[0][0], values[1][0], rtol=1e-12)
    for key in theta:
        np.testing.assert_allclose(values[0][1][key], values[1][1][key], rtol=1e-9, atol=1e-12)


def test_neighbours_follow_the_inducing_inputs():
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=(50, 2)), rng.normal(size=(20, 2))
    got = np.asarray(nearest_inducing(jnp.asarray(x), jnp.asarray(z), 4))
    brute = np.argsort(((x[:, None] - z[None]) ** 2).sum(-1), axis=1)[:, :4]
    assert np.array_equal(np.sort(got, 1), np.sort(brute, 1))
    moved = z.copy()
    moved[got[0, 0]] += 10.0  # the nearest inducing input of x[0] moves away
    again = np.asarray(nearest_inducing(jnp.asarray(x), jnp.asarray(moved), 4))
    assert got[0, 0] not in again[0]


@pytest.mark.parametrize("m, h", [(40, 4), (8, 4), (7, 4), (200, 16), (5000, 16)])
def test_neighbours_on_a_line_are_the_exact_nearest(m, h):
    """1-D inputs (a sorted window when M >= 2H, else all distances; from M = 4,096 sorted by
    the bitonic network): the h nearest, exactly, including points beyond either end of the
    inducing inputs."""
    rng = np.random.default_rng(m)
    z = rng.uniform(-3, 3, (m, 1))
    x = np.concatenate([rng.uniform(-4, 4, (300, 1)), [[-9.0], [9.0]], z[:3] + 1e-9])
    got = np.asarray(nearest_inducing(jnp.asarray(x), jnp.asarray(z), h))
    distance = np.abs(x - z[:, 0])
    chosen = np.take_along_axis(distance, got, 1)
    assert np.all(np.diff(chosen, axis=1) >= 0)  # nearest first
    assert np.all(chosen[:, -1] <= np.sort(distance, 1)[:, h - 1])  # none farther than needed
    assert np.all(np.sort(got, 1)[:, 1:] != np.sort(got, 1)[:, :-1])  # distinct


@pytest.mark.parametrize("m", [1, 2, 3, 8, 37, 4096, 5000])
def test_bitonic_argsort_sorts(m):
    """The sorting network returns a permutation that sorts, for lengths that are and are not
    powers of two, with and without ties."""
    rng = np.random.default_rng(m)
    for values in (rng.normal(size=m), rng.integers(0, 3, m)):
        values = values.astype(np.float32)
        got = np.asarray(jax.jit(bitonic_argsort)(jnp.asarray(values)))
        np.testing.assert_array_equal(np.sort(got), np.arange(m))
        np.testing.assert_array_equal(values[got], np.sort(values))


@pytest.fixture(scope="module")
def svi_fit():
    data = sine_data(600, seed=2)
    gp = SparseWithinSparseGP(num_inducing=48, num_neighbours=8)
    return data, bp.fit(
        gp, data, method="svi", num_steps=2000, batch_size=200, num_draws=200, progress=False
    )


def exact_gp_posterior(x, y, x_new, amplitude, lengthscale, noise):
    def k(a, b):
        return amplitude**2 * np.exp(-0.5 * (a[:, None] - b[None]) ** 2 / lengthscale**2)

    c = k(x, x) + noise**2 * np.eye(len(x))
    ks = k(x_new, x)
    mean = ks @ np.linalg.solve(c, y)
    var = amplitude**2 - np.einsum("ij,ji->i", ks, np.linalg.solve(c, ks.T))
    return mean, np.sqrt(var)


def test_svi_fit_matches_the_exact_gp(svi_fit):
    """At the learned hyperparameters, the predictive is the exact GP's (N = 600, M = 48, H = 8)."""
    data, fit = svi_fit
    theta = {k: float(fit.samples[k][0]) for k in ("amplitude", "lengthscale", "noise")}
    assert theta["noise"] == pytest.approx(0.1, rel=0.15)
    x_new = np.linspace(-2.8, 2.8, 25)
    pred = fit.predict({"x": x_new})
    mean, sd = exact_gp_posterior(data["x"], data["y"], x_new, **theta)
    # an approximation (H = 8 of M = 48): means within 1.5 exact posterior sds. Its sds are
    # smaller than the exact ones (about 0.55x here): the bound charges each point the KL of an
    # H-dimensional marginal, not SVGP's M-dimensional KL, so q(u) is less tied to the prior.
    assert np.max(np.abs(pred["f"].mean - mean) / sd) < 1.5
    assert 0.35 < np.median(pred["f"].std / sd) < 1.2
    assert np.all(pred["y"].std > pred["f"].std)
    assert set(fit.point_estimate) >= {"q_mean", "inducing_inputs"}
    moved = np.abs(fit.point_estimate["inducing_inputs"] - fit.model.inducing_init).max()
    assert moved > 0  # learned inducing inputs
    elbo = fit.idata.sample_stats["elbo"].values
    assert np.mean(elbo[-200:]) > np.mean(elbo[:200])


def test_svi_log_likelihood_uses_the_learned_inducing_inputs(svi_fit):
    """Averaged over the 200 draws of u ~ q(u), p(y_i | u_A) is the closed-form predictive
    density of y_i under q (linear-Gaussian), which predict() computes at the learned inputs."""
    from scipy.special import logsumexp
    from scipy.stats import norm

    data, fit = svi_fit
    log_lik = fit.idata.log_likelihood["y"].values.reshape(-1, len(data["y"]))
    mixture = logsumexp(log_lik, axis=0) - np.log(log_lik.shape[0])
    pred = fit.predict({"x": data["x"]})["y"]
    exact = norm.logpdf(data["y"], pred.mean, pred.std)
    # Monte Carlo over 200 draws: the per-point error is well below 0.1 nats here
    assert np.median(np.abs(mixture - exact)) < 0.05


def test_svi_fit_saves_and_predicts_the_same(svi_fit, tmp_path):
    data, fit = svi_fit
    path = tmp_path / "swsgp.nc"
    fit.save(path)
    loaded = bp.load(path)
    x_new = np.array([-1.0, 0.3, 2.0])
    np.testing.assert_allclose(
        loaded.predict({"x": x_new})["f"].mean, fit.predict({"x": x_new})["f"].mean, rtol=1e-6
    )


def test_bernoulli_classification():
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, (800, 2))
    truth = np.sin(2 * x[:, 0]) + x[:, 1] > 0
    y = (rng.uniform(size=800) < np.where(truth, 0.95, 0.05)).astype(float)
    gp = SparseWithinSparseGP(
        num_inducing=36, num_neighbours=9, likelihood="bernoulli", init="grid"
    )
    fit = bp.fit(gp, {"x": x, "y": y}, method="svi", num_steps=1500, num_draws=50, progress=False)
    x_test = rng.uniform(-2, 2, (400, 2))
    p = fit.predict({"x": x_test})["p"].mean
    accuracy = np.mean((p > 0.5) == (np.sin(2 * x_test[:, 0]) + x_test[:, 1] > 0))
    assert accuracy > 0.9


@pytest.mark.slow
def test_nuts_on_the_program_matches_the_gaussian_posterior_of_u():
    """H = M with the hyperparameters pinned: u | y is Gaussian in closed form (FITC-like)."""
    with jax.enable_x64(True):
        data = sine_data(60, seed=5)
        m, ell, amp, noise = 6, 0.8, 1.0, 0.2
        pinned = {"amplitude": amp, "lengthscale": ell, "noise": noise}

        class Pinned(SparseWithinSparseGP):
            """θ conditioned on its values: NUTS samples u alone (a tight prior on θ instead
            made NUTS take 1,023 leapfrog steps a draw)."""

            def model(self, x, y=None):
                with numpyro.handlers.condition(data=pinned):
                    super().model(x, y)

            def pointwise_log_likelihood(self, samples, data):
                return {}

        gp = Pinned(num_inducing=m, num_neighbours=m)
        fit = bp.fit(
            gp, data, method="nuts", num_warmup=300, num_samples=500, num_chains=2, progress=False
        )
        z, x, y = fit.model.inducing_init[:, 0], data["x"], data["y"]

        def k(a, b):
            return amp**2 * np.exp(-0.5 * (a[:, None] - b[None]) ** 2 / ell**2)

        kzz = k(z, z) + 1e-6 * np.eye(m)
        phi = np.linalg.solve(kzz, k(z, x)).T
        d = amp**2 - np.einsum("ij,ji->i", phi, k(z, x)) + noise**2
        precision = np.linalg.inv(kzz) + phi.T @ (phi / d[:, None])
        cov = np.linalg.inv(precision)
        mean = cov @ phi.T @ (y / d)
    u = np.asarray(fit.samples["u"])
    sd = np.sqrt(np.diag(cov))
    # 1000 draws, ESS of a few hundred: the mean's Monte Carlo error is below 0.1 sd
    assert np.max(np.abs(u.mean(0) - mean) / sd) < 0.3
    np.testing.assert_allclose(u.std(0), sd, rtol=0.2)


def test_sgld_runs_on_mini_batches_and_predicts():
    data = sine_data(2000, seed=6)
    gp = SparseWithinSparseGP(num_inducing=32, num_neighbours=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: ESS warnings expected
        fit = bp.fit(
            gp,
            data,
            method="sgld",
            step_size=1e-5,
            adapt=False,
            batch_size=100,
            control_variates=True,
            num_warmup=500,
            num_samples=300,
            num_chains=2,
            progress=False,
        )
    x_new = np.linspace(-2.5, 2.5, 11)
    pred = fit.predict({"x": x_new}, num_draws=100)
    assert np.max(np.abs(pred["f"].mean - np.sin(2 * x_new))) < 0.15


def test_bad_input_is_refused():
    data = sine_data(50)
    with pytest.raises(bp.InputError, match="num_neighbours"):
        SparseWithinSparseGP(num_inducing=8, num_neighbours=9)
    with pytest.raises(bp.InputError, match="likelihood"):
        SparseWithinSparseGP(likelihood="poisson")
    with pytest.raises(bp.InputError, match="kernel"):
        SparseWithinSparseGP(kernel="linear")
    bad = dict(data)
    bad["y"] = bad["y"].copy()
    bad["y"][3] = np.nan
    with pytest.raises(bp.InputError, match="NaN"):
        SparseWithinSparseGP(num_inducing=8, num_neighbours=4).validate(bad)
    with pytest.raises(bp.InputError, match="num_inducing"):
        SparseWithinSparseGP(num_inducing=64, num_neighbours=4).validate(data)
    with pytest.raises(bp.InputError, match="0 or 1"):
        SparseWithinSparseGP(num_inducing=8, num_neighbours=4, likelihood="bernoulli").validate(
            data
        )
    with pytest.raises(bp.InputError, match="grid"):
        SparseWithinSparseGP(num_inducing=8, num_neighbours=4, init="grid").validate(
            {"x": np.c_[data["x"], data["x"]], "y": data["y"]}
        )
    with pytest.raises(bp.InputError, match="batch_size"):
        bp.fit(
            SparseWithinSparseGP(num_inducing=8, num_neighbours=4),
            data,
            method="svi",
            batch_size=51,
            progress=False,
        )


def test_refitting_one_instance_leaves_an_earlier_fit_unchanged():
    """Each fit owns its model: validate's data-derived constants (y scale, inducing
    initialisation, neighbour rows) of a second fit must not leak into the first (issue 19)."""
    gp = SparseWithinSparseGP(num_inducing=16, num_neighbours=4)
    options = {"method": "svi", "num_steps": 200, "num_draws": 20, "progress": False}
    first = bp.fit(gp, sine_data(100, seed=1), **options)
    x_new = {"x": np.linspace(-2.0, 2.0, 7)}
    before = first.predict(x_new)["f"].mean
    other = sine_data(150, seed=2)  # now two input dimensions, another scale
    wide = np.column_stack([5.0 * other["x"], other["x"] ** 2])
    bp.fit(gp, {"x": wide, "y": 30.0 * other["y"]}, **options)
    np.testing.assert_array_equal(first.predict(x_new)["f"].mean, before)
    assert first.model is not gp and not hasattr(gp, "y_scale")  # the user's instance untouched


@pytest.mark.parametrize("one_theta", [True, False])
def test_pointwise_log_likelihood_per_draw(one_theta):
    """One hyperparameter point (an SVI fit) takes the shortcut of projecting each datum once;
    both paths equal log N(y_i; E[f_i | u_A], Var[f_i | u_A] + noise²) computed draw by draw."""
    gp = SparseWithinSparseGP(num_inducing=12, num_neighbours=4, precision="float64")
    data = gp.validate(sine_data(40, seed=3))
    rng = np.random.default_rng(0)
    draws = 3
    scale = np.ones(draws) if one_theta else np.array([0.8, 1.0, 1.3])
    samples = {
        "amplitude": (1.1 * scale)[None],
        "lengthscale": (0.7 * scale)[None],
        "noise": (0.2 * scale)[None],
        "u": rng.normal(size=(1, draws, 12)),
    }
    with jax.enable_x64(True):
        got = gp.pointwise_log_likelihood(samples, data)["y"]
        z = jnp.asarray(gp.inducing_init)
        for d in range(draws):
            names = ("amplitude", "lengthscale", "noise")
            theta = {k: jnp.asarray(samples[k][0, d]) for k in names}
            x = jnp.asarray(data["x"])
            mean, var, _ = gp._given_u(theta, z, x, jnp.asarray(samples["u"][0, d]))
            expected = gp._observation(mean, var, theta).log_prob(jnp.asarray(data["y"]))
            np.testing.assert_allclose(got[0, d], expected, rtol=1e-10)
