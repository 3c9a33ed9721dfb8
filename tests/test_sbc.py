"""Simulation-based calibration and many fits: in-process and on a Dask LocalCluster."""

import sys
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import bayesplug as bp
from bayesplug.sbc import SBCResult

NUTS = {"num_warmup": 150, "num_samples": 300, "num_chains": 1}


def location(y):
    """mu ~ N(0, 2), y_i ~ N(mu, 1): the posterior of mu is Gaussian (conjugate)."""
    mu = numpyro.sample("mu", dist.Normal(0, 2))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)


def regression(x, y):
    beta = numpyro.sample("beta", dist.Normal(0, 1).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(beta[0] + beta[1] * x, sigma), obs=y)


class TooNarrow:
    """NUTS with every draw pulled halfway to its mean: a posterior half as wide as the truth."""

    name = "too_narrow"

    def __init__(self):
        self.inner = bp.get_backend("nuts")
        self.requires = self.inner.requires
        self.options = self.inner.options

    def run(self, model, data, rng_key, **options):
        raw = self.inner.run(model, data, rng_key, **options)
        for name, draws in raw.samples.items():
            draws = np.asarray(draws)
            raw.samples[name] = draws.mean(axis=(0, 1)) + 0.5 * (draws - draws.mean(axis=(0, 1)))
        return raw


def _replicates(u_values):
    return [
        {"truth": {"a": 0.0}, "rank": {"a": int(u * 100)}, "num_draws": {"a": 100}, "u": {"a": u}}
        | {"warnings": []}
        for u in u_values
    ]


def test_the_uniformity_tests_and_the_band():
    """The χ² test catches too-narrow and too-wide posteriors; KS p > alpha exactly when the
    ECDF difference stays inside the plotted band."""
    rng = np.random.default_rng(0)
    uniform = SBCResult("x", _replicates(rng.uniform(size=200)), 0)
    narrow = SBCResult("x", _replicates(stats.beta(0.6, 0.6).rvs(200, random_state=rng)), 0)
    wide = SBCResult("x", _replicates(stats.beta(2, 2).rvs(200, random_state=rng)), 0)
    assert uniform.passed() and not narrow.passed() and not wide.passed()
    for result in (uniform, narrow, wide):
        u = np.sort(result.u["a"])
        n = u.size
        sup = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
        assert (sup <= stats.kstwo.ppf(0.99, n)) == (result.p_values("ks")["a"] > 0.01)
    # too narrow: u piles at both ends (sd above 1/sqrt(12)); too wide: in the middle
    assert narrow.table()["sd u"][0] > 0.32 > 0.289 > 0.25 > wide.table()["sd u"][0]


def test_failed_simulations_are_counted_not_hidden():
    result = SBCResult("x", [*_replicates([0.3, 0.6]), ValueError("boom")], 0)
    assert result.num_simulations == 2
    assert result.failures == [(2, "ValueError: boom")]


@pytest.mark.slow
def test_nuts_passes_and_a_too_narrow_posterior_fails(tmp_path):
    """60 simulations of the conjugate model, χ² on 12 bins. NUTS must pass. The too-narrow
    method (posterior sd halved) makes u = Φ(2z): the χ² test rejects it at 1% in 98% of
    replications of this design (2,000 simulated: median p 1e-7), so at a fixed seed p < 0.01
    is a check with margin, not luck."""
    bp.register_backend("too_narrow", TooNarrow)
    data = {"y": np.zeros(5)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good = bp.sbc(location, data, "nuts", num_simulations=60, seed=1, **NUTS)
        bad = bp.sbc(location, data, "too_narrow", num_simulations=60, seed=1, **NUTS)
    assert good.passed(), good.table()
    assert bad.p_values()["mu"] < 0.01, bad.table()
    assert bad.table()["sd u"][0] > 0.33
    # the same simulated truths: only the method differs
    np.testing.assert_array_equal(good.truth["mu"], bad.truth["mu"])
    good.report(tmp_path / "sbc.html")
    text = (tmp_path / "sbc.html").read_text()
    assert "passes" in text and "data:image/png;base64" in text


def test_sbc_refuses_what_it_cannot_simulate():
    def flat(y):
        mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    def factor_likelihood(y):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        numpyro.factor("like", dist.Normal(mu, 1).log_prob(y).sum())

    def transformed(y):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(mu, 1), obs=2 * y)

    y = {"y": np.zeros(3)}
    with pytest.raises(bp.InputError, match="improper prior"):
        bp.sbc(flat, y)
    with pytest.raises(bp.InputError, match="factor"):
        bp.sbc(factor_likelihood, y)
    with pytest.raises(bp.InputError, match="transformed inside the program"):
        bp.sbc(transformed, {"y": np.ones(3)})
    with pytest.raises(bp.InputError, match="num_simulations"):
        bp.sbc(location, y, num_simulations=1)
    with pytest.raises(bp.InputError, match="num_sample"):
        bp.sbc(location, y, num_sample=10)
    with pytest.raises(bp.InputError, match="cluster"):
        bp.fit_many([bp.FitTask(location, y)], cluster="nowhere")
    with pytest.raises(bp.InputError, match=r"tasks\[0\]"):
        bp.fit_many([{"model": location}])


def test_fit_many_keeps_every_outcome_when_one_fails():
    tasks = [
        bp.FitTask(location, {"y": np.zeros(3)}, options=NUTS),
        bp.FitTask(location, {"y": np.array([0.0, np.nan])}, options=NUTS),
    ]
    with pytest.raises(bp.FitManyError, match="1 of 2 fits failed") as info:
        bp.fit_many(tasks)
    first, second = info.value.results
    assert isinstance(first, bp.Fit) and isinstance(second, bp.InputError)
    again = bp.fit_many(tasks, return_exceptions=True)
    np.testing.assert_array_equal(again[0].samples["mu"], first.samples["mu"])


def test_a_fit_out_of_time_fails_alone_in_fit_many():
    """max_time reached in warm-up is a TimeLimitError, the task's own failure: the next task
    still runs (a KeyboardInterrupt, as it was, stopped the whole batch as if Ctrl-C)."""
    out_of_time = {**NUTS, "num_warmup": 3000, "max_time": 1e-9}  # the first chunk is warm-up
    tasks = [
        bp.FitTask(location, {"y": np.zeros(3)}, options=out_of_time),
        bp.FitTask(location, {"y": np.zeros(3)}, options=NUTS),
    ]
    first, second = bp.fit_many(tasks, return_exceptions=True)
    assert isinstance(first, bp.errors.TimeLimitError) and isinstance(first, TimeoutError)
    assert "max_time=1e-09" in str(first) and "larger max_time" in str(first)
    assert isinstance(second, bp.Fit)


@pytest.mark.slow
def test_a_local_cluster_gives_the_in_process_results():
    import cloudpickle  # with distributed, from the test extra

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    x = np.linspace(0, 1, 8)
    tasks = [
        bp.FitTask(location, {"y": np.zeros(4)}, seed=3, options=NUTS),
        bp.FitTask(regression, {"x": x, "y": x}, seed=4, options=NUTS),
    ]
    here = bp.fit_many(tasks)
    there = bp.fit_many(tasks, cluster="local")
    for a, b in zip(here, there, strict=True):
        for name in a.samples:
            np.testing.assert_array_equal(a.samples[name], b.samples[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sbc_here = bp.sbc(regression, {"x": x, "y": x}, num_simulations=4, seed=2, **NUTS)
        sbc_there = bp.sbc(
            regression, {"x": x, "y": x}, num_simulations=4, seed=2, cluster="local", **NUTS
        )
    assert list(sbc_here.u) == ["beta[0]", "beta[1]", "sigma"]
    for name in sbc_here.u:
        np.testing.assert_array_equal(sbc_here.rank[name], sbc_there.rank[name])
        np.testing.assert_array_equal(sbc_here.u[name], sbc_there.u[name])


def test_the_simulated_values_replace_the_observed_array_not_an_equal_input():
    """y = x in the design: the simulation must replace y (the observed site's key), not x."""
    from bayesplug.api import _resolve_model
    from bayesplug.sbc import _simulate

    x = np.linspace(0, 1, 8)
    model = _resolve_model(regression, {"x": x, "y": x})
    truth, simulated = _simulate(model, {"x": x, "y": x}, seed=0)
    np.testing.assert_array_equal(simulated["x"], x)
    assert not np.allclose(simulated["y"], x)
    assert sorted(truth) == ["beta", "sigma"]
