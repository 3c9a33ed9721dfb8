"""Backend ``flow_vi``: flows against closed-form posteriors and evidences, k̂ in both directions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp
from bayesplug.errors import BayesplugError, ConvergenceWarning, InputError, InterruptedRunWarning
from bayesplug.inference.flows import FLOWS, PlanarTransform, RadialTransform

# Two independent normal means with a N(0, 5^2) prior and known, unequal noise: the posterior is
# an axis-aligned Gaussian far from the initial point (so every family, the diagonal one too,
# can be exact), and ln Z is closed-form.
PRIOR_SD = 5.0
SIGMA = np.array([0.5, 2.0])
Y = np.array([[3.1, -2.5], [2.8, -0.4], [3.3, -3.9], [2.9, -1.6]])


def two_means(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=y)


def exact_two_means():
    n = Y.shape[0]
    precision = 1 / PRIOR_SD**2 + n / SIGMA**2
    mean = (Y.sum(0) / SIGMA**2) / precision
    log_z = 0.0
    for j in range(2):
        cov = SIGMA[j] ** 2 * np.eye(n) + PRIOR_SD**2
        _, logdet = np.linalg.slogdet(cov)
        log_z += -0.5 * (Y[:, j] @ np.linalg.solve(cov, Y[:, j]) + logdet + n * np.log(2 * np.pi))
    return mean, 1 / np.sqrt(precision), log_z


def funnel():
    """Neal's funnel: y ~ N(0, 3^2), x | y ~ N(0, e^y); normalised, so ln Z = 0 and KL = -ELBO."""
    y = numpyro.sample("y", dist.Normal(0.0, 3.0))
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), ()))
    numpyro.factor("x_given_y", dist.Normal(0.0, jnp.exp(y / 2)).log_prob(x))


def fit_vi(model, data, **options):
    options.setdefault("progress", False)
    return bp.fit(model, data, method="flow_vi", **options)


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_every_flow_fits_a_gaussian_posterior_and_its_evidence(flow):
    mean, sd, log_z = exact_two_means()
    # tol: early stopping on a plateau (off by default), so the test also shows it stops
    fit = fit_vi(two_means, {"y": Y, "sigma": SIGMA}, flow=flow, tol=0.01, seed=0)
    attrs = fit.idata.attrs
    # KL(q || p) = ln Z - ELBO; the ELBO's Monte Carlo error over 10,000 draws is ~0.001 here.
    kl = log_z - attrs["elbo"]
    assert kl < 0.01 + 3 * attrs["elbo_err"], (flow, kl)
    est, err = fit.log_evidence
    assert abs(est - log_z) < 3 * err + 1e-3, (flow, est, log_z, err)
    mu = fit.idata.posterior["mu"].values.reshape(-1, 2)
    # 10,000 independent draws: the mean's MC error is sd / 100; allow 4 of them plus KL slack.
    np.testing.assert_allclose(mu.mean(0), mean, atol=4 * sd.max() / 100 + 0.02)
    np.testing.assert_allclose(mu.std(0), sd, rtol=0.06)
    assert attrs["stopped_on_plateau"] == 1  # converged before the 10,000-step cap


@pytest.mark.parametrize("flow", ["iaf", "bnaf", "nsf"])
def test_one_dimensional_targets_work_for_families_that_need_two(flow):
    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    fit = fit_vi(model, {"y": np.array([1.0, 2.0, 3.0])}, flow=flow, seed=1)
    mu = fit.idata.posterior["mu"].values.ravel()
    # exact posterior: N(6 / 3.01, 1 / 3.01)
    assert abs(mu.mean() - 6 / 3.01) < 4 * 0.576 / np.sqrt(mu.size) + 0.02
    assert abs(mu.std() - np.sqrt(1 / 3.01)) < 0.05
    assert set(fit.idata.posterior.data_vars) == {"mu"}


# The default flow on the funnel (20,000 draws, importance=True), seeds 0-7 measured 2026-11-30
# (jax 0.10.2, numpyro 0.22.0, flowjax 19.1.2): std(y) 2.981-3.009, |mean(y)| <= 0.041,
# ln Z within 0.001 of 0, k-hat 0.51-0.78 (mean 0.64, sd 0.09: 4 of 8 seeds above 0.7, so the
# diagnostic calls the default flow borderline about half the time; tails=True gets 0.20-0.42),
# importance shift 0.03-0.22 (mean 0.10, sd 0.06). The diagonal Gaussian at 2,000 steps, seeds
# 0-7: std(y) 1.27-1.30, importance shift 0.47-0.83, k-hat 0.57-1.08 (below 0.7 at two seeds),
# ok False at every seed. Each bound below is >= 3.8 seed-to-seed sds from those means.
@pytest.mark.parametrize("seed", [0, 1])  # the two seeds with the highest k-hat of the eight
def test_funnel_flow_recovers_the_neck(seed):
    good = fit_vi(funnel, {}, importance=True, num_draws=20_000, seed=seed)
    y = good.idata.posterior["y"].values.ravel()
    assert abs(y.std() - 3.0) < 0.15  # within 5% (the MC error of std over 20,000 draws is 0.015)
    assert abs(y.mean()) < 0.1  # 4 MC errors (3 / sqrt(20,000) = 0.021) plus slack
    report = good.diagnostics()
    # k-hat < 1: the importance weights have a finite mean (estimates converge); see above
    assert report["pareto_k"] < 1.0 and report["importance_shift"] < 0.35, report
    assert good.idata.attrs["draws_are"] == "resampled"
    assert abs(good.log_evidence[0]) < 3 * good.log_evidence[1] + 0.02  # ln Z = 0


def test_the_diagonal_gaussian_on_the_funnel_is_flagged():
    with pytest.warns(ConvergenceWarning, match="The variational draws are off"):
        bad = fit_vi(funnel, {}, flow="diagonal", num_steps=2000, seed=1)
    report = bad.diagnostics()
    assert report["importance_shift"] > 0.2 and not report["ok"]  # measured 0.47-0.83
    assert bad.idata.posterior["y"].values.std() < 2.0  # mean-field misses the neck (1.27-1.30)


def test_elbo_trace_early_stopping_and_saved_fit(tmp_path):
    fit = fit_vi(
        two_means, {"y": Y, "sigma": SIGMA}, flow="diagonal", num_steps=20_000, tol=0.05, seed=2
    )
    attrs = fit.idata.attrs
    trace = fit.idata.sample_stats["elbo"]
    assert trace.dims == ("step",)
    assert attrs["stopped_on_plateau"] == 1 and attrs["num_steps_run"] < 20_000
    assert trace.size == attrs["num_steps_run"]
    # the trace climbs: the last window beats the first by far
    assert float(trace[-100:].mean()) > float(trace[:100].mean()) + 10
    path = tmp_path / "vi.nc"
    fit.save(path)
    again = bp.load(path, model=two_means)
    np.testing.assert_allclose(again.idata.sample_stats["elbo"].values, trace.values)
    assert again.log_evidence == pytest.approx(fit.log_evidence)


def test_unknown_flow_name_lists_the_valid_ones():
    with pytest.raises(InputError, match="Did you mean 'planar'.*'nsf'"):
        fit_vi(two_means, {"y": Y, "sigma": SIGMA}, flow="planer")


def test_nan_elbo_stops_and_keeps_the_last_good_state():
    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1e4))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        # the log density is NaN beyond 30: the optimiser walks towards y = 1000 and hits it
        numpyro.factor("wall", jnp.where(mu > 30.0, jnp.nan, 0.0))

    with pytest.warns(ConvergenceWarning, match="Lower learning_rate"):
        fit = fit_vi(
            model, {"y": np.array([1000.0])}, flow="diagonal", learning_rate=0.5, num_steps=3000
        )
    attrs = fit.idata.attrs
    assert attrs["diverged"] == 1 and attrs["num_steps_run"] < 3000
    mu = fit.idata.posterior["mu"].values
    # the last good flow sits just short of the wall (draws beyond it would get weight 0)
    assert np.all(np.isfinite(mu)) and 25.0 < np.median(mu) < 30.5
    assert "diverged" in " ".join(fit.diagnostics()["messages"])


def test_nan_at_the_start_is_a_clear_error():
    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        numpyro.factor("broken", jnp.nan)

    with pytest.raises(BayesplugError, match="could not start"):
        fit_vi(model, {"y": np.array([0.0])}, flow="diagonal", num_steps=200)


def test_ctrl_c_keeps_the_flow_trained_so_far(interrupt_at_chunk):
    interrupt_at_chunk(3)
    with pytest.warns(InterruptedRunWarning, match="200 of 3000 steps"):
        fit = fit_vi(two_means, {"y": Y, "sigma": SIGMA}, flow="diagonal", num_steps=3000)
    assert fit.idata.attrs["interrupted"] == 1
    assert fit.idata.attrs["num_steps_run"] == 200
    assert fit.idata.posterior["mu"].shape == (1, 10_000, 2)


@pytest.mark.parametrize("layer", ["planar", "radial"])
def test_paper_flows_log_determinant_matches_the_jacobian(layer):
    key = jax.random.split(jax.random.PRNGKey(3), 4)
    dim = 3
    if layer == "planar":
        # u nearly anti-parallel to w: the invertibility fix must keep w.u_hat >= -1
        w = jax.random.normal(key[0], (dim,))
        transform = PlanarTransform(-3.0 * w, w, jnp.array(0.3))
        assert float(jnp.dot(w, transform._u_hat())) >= -1.0
    else:
        transform = RadialTransform(
            jax.random.normal(key[0], (dim,)), jnp.array(0.2), jnp.array(-1.5)
        )
    for x in jax.random.normal(key[1], (5, dim)):
        jac = jax.jacfwd(transform)(x)
        _, expected = jnp.linalg.slogdet(jac)
        _, log_det = transform.call_with_intermediates(x)
        assert float(log_det) == pytest.approx(float(expected), abs=1e-4)
        assert float(transform.log_abs_det_jacobian(x, None)) == pytest.approx(float(log_det))


def test_tail_layer_inverts_and_its_log_determinant_matches_the_jacobian():
    from bayesplug.inference._tails import SinhArcsinhTails

    layer = SinhArcsinhTails(jnp.array([-0.4, 0.0, 0.7]))
    for x in jax.random.normal(jax.random.PRNGKey(5), (5, 3)) * 3.0:
        y, log_det = layer.transform_and_log_det(x)
        _, expected = jnp.linalg.slogdet(jax.jacfwd(layer.transform)(x))
        assert float(log_det) == pytest.approx(float(expected), abs=1e-4)
        back, inverse_log_det = layer.inverse_and_log_det(y)
        assert np.allclose(back, x, atol=1e-4)
        assert float(inverse_log_det) == pytest.approx(-float(log_det), abs=1e-4)
    # a = e^0.7 > 1 stretches the tails (|y| > |x| beyond 1), a = e^-0.4 < 1 shrinks them
    y = layer.transform(jnp.array([4.0, 4.0, 4.0]))
    assert float(y[0]) < 4.0 and float(y[1]) == pytest.approx(4.0) and float(y[2]) > 4.0


def test_tail_layer_option_fits_with_maf_and_is_refused_elsewhere():
    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    data = {"y": np.array([1.0, 2.0, 3.0])}
    fit = fit_vi(model, data, flow="maf", tails=True, num_steps=2000, seed=1)
    mu = fit.idata.posterior["mu"].values.ravel()
    # exact posterior N(6 / 3.01, 1 / 3.01); 10,000 draws: the mean's MC error is 0.006
    assert abs(mu.mean() - 6 / 3.01) < 4 * 0.576 / np.sqrt(mu.size) + 0.02
    assert abs(mu.std() - np.sqrt(1 / 3.01)) < 0.05
    with pytest.raises(InputError, match="tails.*flowjax flows"):
        fit_vi(model, data, flow="iaf", tails=True)


def three_means(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([3]).to_event(1))
    numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


@pytest.mark.parametrize("flow", ["maf", "nsf", "planar"])
def test_a_repeated_fit_reuses_the_programs_and_draws_as_a_fresh_one(flow):
    """A second fit (other data values, other seed) runs the first one's compiled programs, and
    its draws equal those of the same fit with nothing cached: maf's and nsf's permutations
    (random, from the seed; 3 dimensions) are arguments of the programs, not constants."""
    from bayesplug.inference import flow_vi

    options = {"flow": flow, "num_steps": 200, "num_draws": 50}
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(2, 4, 3))
    flow_vi._PROGRAMS.clear()
    fit_vi(three_means, {"y": first}, seed=0, **options)
    programs = dict(flow_vi._PROGRAMS)
    assert len(programs) == 2  # the warm start's diagonal Gaussian and the flow
    reused = fit_vi(three_means, {"y": second}, seed=1, **options)
    assert flow_vi._PROGRAMS == programs  # nothing new compiled
    flow_vi._PROGRAMS.clear()
    fresh = fit_vi(three_means, {"y": second}, seed=1, **options)
    np.testing.assert_array_equal(reused.idata.posterior["mu"], fresh.idata.posterior["mu"])
    fit_vi(three_means, {"y": second[:3]}, seed=1, **options)  # other shapes: new programs
    assert len(flow_vi._PROGRAMS) == 4


def test_a_stage_keeps_the_drawing_programs_of_its_last_sizes_only(monkeypatch):
    """Fits that differ only in ``num_draws`` share a stage, which compiles one drawing program
    per size: it keeps the last ``PROGRAMS_KEPT`` (2 here), not one per size ever asked."""
    from bayesplug.inference import driver, flow_vi

    monkeypatch.setattr(driver, "PROGRAMS_KEPT", 2)
    flow_vi._PROGRAMS.clear()
    for num_draws in (10, 11, 12):
        y = np.random.default_rng(0).normal(size=(4, 3))
        fit = fit_vi(three_means, {"y": y}, flow="planar", num_steps=50, num_draws=num_draws)
        assert fit.idata.posterior["mu"].shape[1] == num_draws
    stages = list(flow_vi._PROGRAMS.values())
    assert stages and all(list(stage.draws) in ([], [11, 12]) for stage in stages), [
        list(stage.draws) for stage in stages
    ]
    assert any(list(stage.draws) == [11, 12] for stage in stages)
