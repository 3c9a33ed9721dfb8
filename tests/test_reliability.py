"""Reliability: no run loses its draws after sampling; observed values never need prior draws."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp
from bayesplug.errors import IncompleteResultWarning

X = np.linspace(0, 1, 20)
Y = 2 * X + np.random.default_rng(0).normal(0, 0.3, 20)


def flat_line(x, y=None):
    """An improper prior and an observed site not named like its data key ("obs" vs "y")."""
    a = numpyro.sample("a", dist.ImproperUniform(dist.constraints.real, (), ()))
    numpyro.sample("obs", dist.Normal(a * x, 0.3), obs=y)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("nuts", {"num_warmup": 200, "num_samples": 200, "num_chains": 1}),
        ("svi", {"num_steps": 500, "num_draws": 200}),
    ],
)
def test_improper_prior_with_renamed_observed_site_converts(method, options):
    # stage 1 drew from the prior to read the observed values: NotImplementedError after sampling
    fit = bp.fit(flat_line, {"x": X, "y": Y}, method=method, progress=False, **options)
    np.testing.assert_array_equal(fit.idata.observed_data["obs"].values, Y)
    slope = (X @ Y) / (X @ X)  # the flat-prior posterior mean; sd 0.3 / |x| = 0.12
    assert abs(float(fit.idata.posterior["a"].mean()) - slope) < 0.1
    assert fit.idata.log_likelihood["obs"].shape[-1] == 20


def test_a_failure_after_sampling_keeps_the_draws(monkeypatch, tmp_path):
    from bayesplug import api

    def broken(*args, **kwargs):
        raise RuntimeError("the log-likelihood could not be evaluated")

    monkeypatch.setattr("bayesplug.convert.to_inference_data", broken)
    with pytest.warns(IncompleteResultWarning, match="log-likelihood could not be evaluated"):
        fit = api.fit(
            flat_line,
            {"x": X, "y": Y},
            num_warmup=100,
            num_samples=100,
            num_chains=1,
            progress=False,
        )
    assert fit.idata.posterior["a"].shape == (1, 100)
    assert "incomplete" in fit.idata.attrs
    fit.save(tmp_path / "kept.nc")  # the draws can be saved and read back
    assert bp.load(tmp_path / "kept.nc").idata.posterior["a"].shape == (1, 100)


def test_output_paths_are_made_or_refused_before_any_work(
    normal_fit, tmp_path, monkeypatch, capsys
):
    from bayesplug import api
    from bayesplug.cli import main

    normal_fit.save(tmp_path / "new" / "deeper" / "run.nc")  # parent folders are created
    assert (tmp_path / "new" / "deeper" / "run.nc").exists()
    with pytest.raises(bp.InputError, match="is a folder"):
        normal_fit.save(tmp_path)
    with pytest.raises(bp.InputError, match="is a folder"):
        bp.report(normal_fit, tmp_path)
    (tmp_path / "a_file").write_text("")

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran although its output cannot be written")

    monkeypatch.setattr(api, "fit", no_fit)
    for out in (tmp_path, tmp_path / "a_file" / "run.nc"):
        code = main(["fit", "gp", "--data", "cosmic_chronometers", "--out", str(out)])
        assert code == 2
        assert "--out" in capsys.readouterr().err


def test_numbers_limits_and_quantiles_are_checked(normal_fit, normal_data):
    from conftest import normal_mean_model

    # NumPy integers are integers
    fit = bp.fit(
        normal_mean_model,
        normal_data,
        num_warmup=np.int64(50),
        num_samples=np.int32(50),
        num_chains=np.int64(1),
        progress=False,
    )
    assert fit.idata.posterior.sizes["draw"] == 50
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(bp.InputError, match="max_time.*positive, finite"):
            bp.fit(normal_mean_model, normal_data, max_time=bad)
    with pytest.raises(bp.InputError, match="seed.*below 2\\*\\*63"):
        bp.fit(normal_mean_model, normal_data, seed=2**70)
    prediction = normal_fit.predict({"y": np.zeros(2)}, num_draws=10)
    with pytest.raises(bp.InputError, match="quantiles must lie in"):
        prediction.quantile(float("nan"))


def test_flow_start_failure_quotes_the_users_init_scale():
    import jax.numpy as jnp

    def broken(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        numpyro.factor("nan", jnp.nan)

    with pytest.raises(bp.BayesplugError, match=r"init_scale \(now 0.05\)"):
        bp.fit(
            broken,
            {"y": np.zeros(3)},
            method="flow_vi",
            flow="maf",
            init_scale=0.05,
            num_steps=200,
            progress=False,
        )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no file at"),
        ("", "no data rows"),
        ("x,y,yerr\n", "no data rows"),
        ("x,y,yerr\n0.1,1.0,0.2\n0.2,1.5\n", "data row 2 has 2 fields but the header has 3"),
        ("x,y,yerr\n0.1,1.0,0.2\n0.2,1.5,NA\n", "'yerr'.*1 missing or non-numeric.*row 2: 'NA'"),
        ("x,y\n0.1,a\n0.2,b\n", "has no key 'y'"),
    ],
)
def test_cli_csv_problems_are_named_before_fitting(tmp_path, capsys, content, match):
    from bayesplug.cli import main

    path = tmp_path / "points.csv"
    if content is not None:
        path.write_text(content)
    assert main(["fit", "gp", "--data", str(path), "--out", str(tmp_path / "r.nc")]) == 2
    assert __import__("re").search(match, capsys.readouterr().err)


def test_cli_reads_semicolon_separated_files(tmp_path, monkeypatch):
    from bayesplug import cli

    path = tmp_path / "points.csv"
    path.write_text("# a comment\nx;y\n0.1;1.0\n0.2;1.5\n0.3;1.7\n")
    columns = cli._read_data(str(path), [])
    np.testing.assert_allclose(columns["y"], [1.0, 1.5, 1.7])


def test_nested_refuses_a_single_live_point():
    def model(mu=None):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("mu", dist.Normal(x, 1.0), obs=mu)

    with pytest.raises(bp.InputError, match="num_live: must be at least 2"):
        bp.fit(model, {"mu": np.zeros(2)}, method="nested", num_live=1)


def test_state_space_parameters_that_are_not_numbers_are_named():
    with pytest.raises(bp.InputError, match="A: expected a number, an array or a NumPyro"):
        bp.models.LinearGaussianSSM(A="x")


def line(x, y=None):
    a = numpyro.sample("a", dist.Normal(0, 10))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(a * x, 1.0), obs=y)


def test_observed_values_of_the_wrong_shape_are_refused_not_broadcast():
    # validation refuses before anything runs
    with pytest.raises(bp.InputError, match=r"site 'y' of line have shape \(20, 1\).*\(20,\)"):
        bp.fit(line, {"x": X, "y": Y[:, None]})
    with pytest.raises(bp.InputError, match=r"shape \(5,\).*draws shape \(20,\)"):
        bp.fit(line, {"x": X, "y": Y[:5]})

    # a scalar distribution broadcast up to the observations is one term per observation: fine
    def scalar(y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 10))
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    fit = bp.fit(scalar, {"y": Y}, num_warmup=50, num_samples=50, num_chains=1, progress=False)
    assert fit.idata.log_likelihood["y"].shape == (1, 50, 20)


def test_plain_function_predictions_check_their_inputs():
    fit = bp.fit(
        line, {"x": X, "y": Y}, num_warmup=50, num_samples=50, num_chains=1, progress=False
    )
    # a given observed site shapes the call but is drawn, never copied into the prediction
    drawn = fit.predict({"x": X, "y": np.full(20, 1e6)})
    assert drawn.draws.shape == (50, 20) and np.abs(drawn.mean).max() < 100
    for bad in ({"x": 0.5}, {"x": np.ones((3, 2))}):
        with pytest.raises(bp.InputError, match=r"inputs\['x'\]: has \d dimension"):
            fit.predict(bad)
    with pytest.raises(bp.InputError, match="expected a mapping like the data"):
        fit.predict(np.array([0.5]))
    assert fit.predict({"x": np.array([0.5])}).draws.shape == (50, 1)


def test_a_non_finite_evidence_is_flagged(normal_fit):
    import copy

    fit = copy.copy(normal_fit)
    fit.idata = normal_fit.idata.copy()
    fit.idata.attrs["log_evidence"] = -3.8e58
    fit.idata.attrs["log_evidence_err"] = float("nan")
    report = fit.diagnostics()
    assert not report["ok"]
    assert any("evidence estimate is not a number" in m for m in report["messages"])


@pytest.mark.parametrize("method", ["nuts", "svi", "sgld", "nested", "flow_vi", "map"])
def test_a_plate_that_subsamples_inside_the_program_is_refused(method):
    def subsampled(y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("data", 10, subsample_size=3) as idx:
            numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])

    with pytest.raises(bp.InputError, match=r"subsample_size=3\) in subsampled subsamples"):
        bp.fit(subsampled, {"y": np.zeros(10)}, method=method)


def slope(x, y=None):
    a = numpyro.sample("a", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(a * x, 0.3), obs=y)


def location(y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 10))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)


def test_fits_from_two_threads_are_correct_and_equal_the_sequential_ones():
    """NumPyro's handler stack is one global list: without the lock, two threads tracing at
    once fail with 'AssertionError: ... duplicated' or record sites in each other's traces."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(slope, {"x": X, "y": Y}), (location, {"y": Y})] * 2
    options = {"num_warmup": 100, "num_samples": 100, "num_chains": 1, "progress": False}

    def run(job):
        fit = bp.fit(*job, **options)
        return {k: np.asarray(v) for k, v in fit.samples.items()}

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(run, jobs))
    for job, draws in zip(jobs, together, strict=True):
        alone = run(job)
        assert alone.keys() == draws.keys()
        for name in alone:
            np.testing.assert_array_equal(alone[name], draws[name])


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("nuts", {"num_warmup": 3000, "num_samples": 10, "num_chains": 1}),
        ("sgld", {"num_warmup": 30_000, "num_samples": 100, "num_chains": 1}),
        ("flow_vi", {"num_steps": 3000}),
    ],
)
def test_max_time_before_anything_to_keep_is_an_error_not_a_ctrl_c(
    normal_data, method, options, interrupt_at_chunk
):
    """max_time is a limit the program set: a TimeLimitError (an Exception) when it stops a run
    in warm-up; Ctrl-C there is the user's stop: KeyboardInterrupt, as before."""
    from conftest import normal_mean_model

    from bayesplug.errors import TimeLimitError

    with pytest.raises(TimeLimitError, match="max_time=1e-09.*larger max_time"):
        bp.fit(normal_mean_model, normal_data, method=method, max_time=1e-9, progress=False,
               **options)  # fmt: skip
    interrupt_at_chunk(1)
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C") as info:
        bp.fit(normal_mean_model, normal_data, method=method, progress=False, **options)
    assert not isinstance(info.value, TimeLimitError)
