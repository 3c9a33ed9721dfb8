"""NUTS backend: the analytic posterior, reproducibility, interruption."""

import warnings

import numpy as np
import pytest
from conftest import normal_mean_model, normal_mean_posterior

import bayesplug as bp
from bayesplug.inference import driver


def test_conjugate_normal_posterior(normal_fit, normal_data):
    mean, sd = normal_mean_posterior(normal_data["y"])
    draws = np.asarray(normal_fit.samples["mu"])
    ess = normal_fit.diagnostics()["ess_bulk_min"]
    # Tolerances: 4 Monte Carlo standard errors; se(mean) = sd/sqrt(ESS) and
    # se(sd) ≈ sd/sqrt(2 ESS) for a Gaussian posterior.
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(ess)
    assert abs(draws.std() - sd) < 4 * sd / np.sqrt(2 * ess)


def test_idata_groups_and_shapes(normal_fit):
    idata = normal_fit.idata
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"):
        assert group in idata.groups()
    assert idata.posterior["mu"].shape == (4, 1000)
    assert idata.log_likelihood["y"].shape == (4, 1000, 20)
    assert {"diverging", "acceptance_rate", "lp", "step_size", "tree_depth"} <= set(
        idata.sample_stats
    )
    assert idata.attrs["method"] == "nuts" and idata.attrs["seed"] == 1
    assert normal_fit.log_evidence is None
    assert normal_fit.diagnostics()["ok"]


def test_same_seed_same_draws_other_seed_other_draws(normal_data):
    kwargs = {"num_warmup": 100, "num_samples": 50, "num_chains": 2, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bp.ConvergenceWarning)
        a = bp.fit(normal_mean_model, normal_data, seed=7, **kwargs)
        b = bp.fit(normal_mean_model, normal_data, seed=7, **kwargs)
        c = bp.fit(normal_mean_model, normal_data, seed=8, **kwargs)
    np.testing.assert_array_equal(np.asarray(a.samples["mu"]), np.asarray(b.samples["mu"]))
    assert not np.array_equal(np.asarray(a.samples["mu"]), np.asarray(c.samples["mu"]))


def test_ctrl_c_keeps_the_draws_so_far(normal_data, interrupt_at_chunk):
    """A KeyboardInterrupt during sampling returns the finished chunks with a warning."""
    interrupt_at_chunk(15)
    with pytest.warns(bp.InterruptedRunWarning, match="Ctrl-C"):
        fit = bp.fit(
            normal_mean_model,
            normal_data,
            num_warmup=100,
            num_samples=100,
            num_chains=2,
            progress=False,
        )
    # 200 steps in 20 chunks of 10: 14 chunks finished = 140 steps, 40 after warmup
    assert fit.idata.posterior["mu"].shape == (2, 40)
    assert fit.idata.attrs["interrupted"] == 1
    assert any("interrupted" in m for m in fit.diagnostics()["messages"])


def test_ctrl_c_during_warmup_says_nothing_to_keep(normal_data, interrupt_at_chunk):
    interrupt_at_chunk(1)
    with pytest.raises(KeyboardInterrupt, match="before its first chunk|nothing to keep"):
        bp.fit(normal_mean_model, normal_data, num_warmup=100, num_samples=100, progress=False)


def test_run_in_chunks_wall_clock_limit():
    import time

    def advance(state):
        time.sleep(0.05)
        return state + 1, np.array([state])

    run = driver.run_in_chunks(
        advance, 0, num_chunks=100, steps_per_chunk=1, progress=False, max_time=0.2
    )
    assert run.interrupted and "max_time" in run.reason
    assert 3 <= len(run.outputs) < 100 and run.state == len(run.outputs)


def test_failed_initialisation_is_explained():
    import numpyro
    import numpyro.distributions as dist

    def bad(y=None):
        scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.LogNormal(0.0, scale), obs=y)

    with pytest.raises(bp.BayesplugError, match="could not start.*support"):
        bp.fit(bad, {"y": np.array([-1.0, 2.0])}, num_warmup=10, num_samples=10, progress=False)


def test_a_repeated_fit_reuses_the_chunk_and_draws_as_a_fresh_one():
    """A fit of the same model to other data values (same shapes) with another seed runs the
    first fit's compiled chunk, and draws exactly what it draws with nothing cached: no value of
    the first data set is baked into the chunk (NumPyro's kernel rebuilds the potential from the
    data passed at each step; warm-up windows included)."""
    from bayesplug.inference import nuts

    kwargs = {"num_warmup": 200, "num_samples": 50, "num_chains": 2, "progress": False}
    rng = np.random.default_rng(1)
    first, second = rng.normal(1.0, 1.0, 30), rng.normal(40.0, 1.0, 30)  # far apart
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bp.ConvergenceWarning)
        nuts._COMPILED.clear()
        bp.fit(normal_mean_model, {"y": first}, seed=0, **kwargs)
        compiled = dict(nuts._COMPILED)
        assert len(compiled) == 1
        reused = bp.fit(normal_mean_model, {"y": second}, seed=1, **kwargs)
        assert nuts._COMPILED == compiled  # nothing new compiled
        nuts._COMPILED.clear()
        fresh = bp.fit(normal_mean_model, {"y": second}, seed=1, **kwargs)
        bp.fit(normal_mean_model, {"y": second[:20]}, seed=1, **kwargs)  # other shapes
    np.testing.assert_array_equal(np.asarray(reused.samples["mu"]), np.asarray(fresh.samples["mu"]))
    assert len(nuts._COMPILED) == 2
