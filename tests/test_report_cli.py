"""The HTML report, the command line and the import cost."""

import base64
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

import bayesplug as bp
from bayesplug.cli import main


def test_report_contains_its_figures(cc_gp_fit, tmp_path):
    path = bp.report(cc_gp_fit, tmp_path / "report.html", labels={"x": "z", "y": "H"})
    html = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4  # predictive band, posterior, trace, rank (NUTS draws are chains)
    for image in images:
        assert base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Posterior predictive" in html and "lengthscale" in html and "<table" in html
    assert "Settings and run statistics" in html and "target_accept" in html
    assert re.search(r"created \d{4}-\d\d-\d\dT\d\d:\d\d", html)  # the creation time
    assert external_resources(html) == []  # self-contained: nothing to fetch


class _ResourceFinder(HTMLParser):
    """Collects every reference a browser would fetch: URL-valued attributes, <link>, CSS url()."""

    URL_ATTRIBUTES = frozenset({"src", "href", "srcset", "action", "poster", "data", "background"})

    def __init__(self):
        super().__init__()
        self.found = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        for name, value in attrs:
            if name == "style":
                self.found += _css_urls(value or "")
            elif name in self.URL_ATTRIBUTES and value and not _inline(value):
                self.found.append(f"<{tag} {name}={value[:60]!r}>")
        if tag == "link":
            self.found.append(f"<link {dict(attrs)!r}>")

    def handle_endtag(self, tag):
        self._in_style = False if tag == "style" else self._in_style

    def handle_data(self, data):
        if self._in_style:
            self.found += _css_urls(data)


def _inline(url):
    return url.startswith(("data:", "#"))


def _css_urls(css):
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    urls += re.findall(r"@import\s+['\"]([^'\"]+)", css)
    return [f"css {url[:60]!r}" for url in urls if not _inline(url)]


def external_resources(html):
    """References in ``html`` to anything outside the file (none in a self-contained page)."""
    finder = _ResourceFinder()
    finder.feed(html)
    return finder.found


def test_the_resource_check_sees_external_references():
    page = '<img src="data:image/png;base64,QUhodHRwcw=="><a href="#top">top</a>'
    assert external_resources(page) == []  # base64 holding "http" is data, not a reference
    for bad in [
        '<script src="https://cdn.example/x.js"></script>',
        '<link rel="stylesheet" href="style.css">',
        '<img src="figure.png">',
        "<style>body { background: url('https://x/y.png') }</style>",
        "<style>@import 'https://x/y.css';</style>",
        '<div style="background: url(//x/y.png)"></div>',
    ]:
        assert external_resources(page + bad) != [], bad


def test_report_of_several_fits_has_the_comparison(normal_fit, tmp_path):
    path = bp.report({"a": normal_fit, "b": normal_fit}, tmp_path / "two.html")
    assert "Model comparison" in path.read_text()


def test_report_refuses_labels_for_an_axis_it_does_not_draw(normal_fit, cc_gp_fit, tmp_path):
    with pytest.raises(bp.InputError, match="'z' is neither an axis.*Known: 'x', 'y'"):
        bp.report(normal_fit, tmp_path / "r.html", labels={"x": "redshift", "z": "H"})
    with pytest.raises(bp.InputError, match="Did you mean 'yerr'"):
        bp.report(cc_gp_fit, tmp_path / "r.html", labels={"x": "redshift", "yer": "σ"})
    with pytest.raises(bp.InputError, match="expected a mapping"):
        bp.report(normal_fit, tmp_path / "r.html", labels="redshift")
    assert not (tmp_path / "r.html").exists()
    # a data set's labels name every column, yerr included: accepted
    labels = bp.datasets.load("cosmic_chronometers").labels
    assert "yerr" in labels
    assert bp.report(cc_gp_fit, tmp_path / "r.html", labels=labels).exists()  # drawn on the PNG


def test_a_point_estimate_is_reported_as_one(normal_fit, normal_data, tmp_path):
    import warnings

    from conftest import normal_mean_model

    from bayesplug.report import overlaid_posteriors_figure

    point = bp.fit(normal_mean_model, normal_data, method="map", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "sd of one draw" noise
        table = point.summary()
    assert list(table.columns) == ["value"]
    value = float(point.idata.posterior["mu"].values.ravel()[0])
    assert table.loc["mu", "value"] == value
    html = bp.report(point, tmp_path / "point.html").read_text()
    assert "Point estimate" in html and "Posterior distributions" not in html
    assert "no posterior distribution to plot" in html
    # beside a posterior: its density, and the point estimate as a dashed line at its value
    figure = overlaid_posteriors_figure({"nuts": normal_fit, "map": point}, ["mu"])
    ax = figure.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [value]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["nuts", "map (point estimate)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", bp.errors.IncompleteResultWarning)  # said on the page
        both = bp.report({"nuts": normal_fit, "map": point}, tmp_path / "both.html").read_text()
    assert "map: a point estimate (one draw), so no ELPD-LOO" in both


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in bp.list_models() + bp.list_backends() + bp.datasets.list():
        assert f"  {name}\n" in out
    assert main(["list", "backends"]) == 0
    assert "nuts" in capsys.readouterr().out


def test_cli_fit_report_compare(tmp_path, capsys):
    csv = tmp_path / "points.csv"
    x = np.linspace(0, 1, 8)
    rows = "\n".join(f"{a},{b}" for a, b in zip(x, np.sin(3 * x), strict=True))
    csv.write_text("# a comment\nx,y\n" + rows + "\n")
    out = tmp_path / "run.nc"
    code = main(
        [
            "fit",
            "gp",
            "--data",
            str(csv),
            "--option",
            "num_samples=100",
            "--option",
            "num_warmup=100",
            "--option",
            "num_chains=2",
            "--model-option",
            "kernel=matern32",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.exists()
    assert "lengthscale" in capsys.readouterr().out
    assert bp.load(out).model.kernel == "matern32"
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert main(["compare", str(out), str(out)]) == 0
    assert "elpd_loo" in capsys.readouterr().out


def test_cli_fit_checkpoints_and_resumes(tmp_path, capsys):
    """--checkpoint writes the run's state; --resume of a finished run replays the same draws."""
    csv = tmp_path / "points.csv"
    x = np.linspace(0, 1, 8)
    csv.write_text("x,y\n" + "\n".join(f"{a},{np.sin(3 * a)}" for a in x) + "\n")
    ckpt = str(tmp_path / "run.ckpt")
    common = ["fit", "gp", "--data", str(csv), "--option", "num_samples=60", "--option",
              "num_warmup=60", "--option", "num_chains=2", "--devices", "1"]  # fmt: skip
    assert main([*common, "--checkpoint", ckpt, "--out", str(tmp_path / "a.nc")]) == 0
    assert main([*common, "--resume", ckpt, "--out", str(tmp_path / "b.nc")]) == 0
    a, b = bp.load(tmp_path / "a.nc"), bp.load(tmp_path / "b.nc")
    np.testing.assert_array_equal(
        a.idata.posterior["lengthscale"].values, b.idata.posterior["lengthscale"].values
    )
    assert b.idata.attrs["resumed_from"] == ckpt


def test_cli_maps_csv_columns_to_model_inputs(tmp_path, capsys):
    """A day,hour,temp_f file fits functional_tucker once --column names the index columns;
    without it the error lists the file's columns and shows the flag."""
    rng = np.random.default_rng(0)
    day, hour = np.repeat(np.arange(1, 9), 6), np.tile(np.arange(0, 24, 4), 8)
    temp = 50 + 5 * np.sin(day / 3) + 3 * np.cos(hour / 4) + rng.normal(0, 0.1, day.size)
    csv = tmp_path / "city.csv"
    csv.write_text("day,hour,temp_f\n" + "\n".join(f"{a},{b},{c}" for a, b, c in
                                                   zip(day, hour, temp, strict=True)))  # fmt: skip
    common = ["fit", "functional_tucker", "--data", str(csv), "--method", "cep"]
    assert main([*common, "--out", str(tmp_path / "a.nc")]) == 2
    assert "--column index=day,hour" in capsys.readouterr().err
    columns = ["--column", "index=day,hour", "--column", "y=temp_f"]
    options = ["--option", "max_epochs=5", "--option", "progress=False"]
    assert main([*common, *columns, *options, "--out", str(tmp_path / "b.nc")]) == 0
    assert bp.load(tmp_path / "b.nc").idata.posterior["tau"].size > 0


def test_cli_reports_errors_in_words(capsys):
    assert main(["fit", "gp", "--data", "cosmic_chronometers", "--method", "nutz"]) == 2
    assert "Did you mean 'nuts'" in capsys.readouterr().err
    assert main(["fit", "gp", "--data", "no_such_file.csv", "--out", "x.nc"]) == 2
    assert "no file at 'no_such_file.csv' and no shipped data set" in capsys.readouterr().err


def test_import_is_light():
    """Heavy libraries load only when the piece that needs them is used."""
    heavy = "('arviz', 'gpjax', 'blackjax', 'matplotlib', 'jax', 'pandas')"
    code = f"import sys, bayesplug; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_report_draws_smoothed_paths_as_bands(tmp_path):
    """A state-space fit's smoothed states are drawn as a median with bands over time."""
    lg = bp.models.LinearGaussianSSM(A=0.9, Q=0.5, C=1.0, R=0.3)
    y = np.asarray(lg.simulate(__import__("jax").random.PRNGKey(0), 40)["y"])
    fit = bp.fit(lg, {"y": y}, method="paris", num_particles=64, num_paths=40, progress=False)
    html = bp.report(fit, tmp_path / "paris.html").read_text()
    assert "<h3>Paths</h3>" in html and "<h3>Trace</h3>" not in html
    assert "Posterior distributions" not in html  # not one density panel per time step


def test_report_shows_the_nested_run_and_the_flow_check(tmp_path):
    """Each method's own evidence: a nested run's points over ln X; a flow's importance weights
    with its k-hat verdict."""

    def line(x, y=None):
        import numpyro
        import numpyro.distributions as dist

        slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(slope * x, 0.5), obs=y)

    x = np.linspace(-1, 1, 20)
    data = {"x": x, "y": 0.7 * x + 0.5 * np.random.default_rng(0).normal(size=20)}
    nested = bp.fit(line, data, method="nested", num_live=50, seed=0, progress=False)
    html = bp.report(nested, tmp_path / "nested.html").read_text()
    assert "<h3>Live points over the run</h3>" in html and "<h3>Trace</h3>" not in html
    flow = bp.fit(line, data, method="flow_vi", num_steps=300, importance=True, seed=0,
                  progress=False)  # fmt: skip
    html = bp.report(flow, tmp_path / "flow.html").read_text()
    assert "importance weights" in html and "the flow covers the posterior" in html
    raw = flow.idata.sample_stats["flow_log_weight"]  # the figure's weights: not resampled
    assert raw.dims == ("flow_draw",) and raw.size == 10_000


def test_report_draws_ppg_learning_curves_not_a_trace(tmp_path):
    """ppg's learned parameters are drawn as learning curves per chain, not as a Markov chain."""
    import numpyro.distributions as dist

    lg = bp.models.LinearGaussianSSM(A=dist.Uniform(-1, 1), Q=0.5, C=1.0, R=1.0)
    y = np.asarray(bp.models.LinearGaussianSSM(A=0.8, Q=0.5).simulate(
        __import__("jax").random.PRNGKey(0), 30)["y"])  # fmt: skip
    fit = bp.fit(lg, {"y": y}, method="ppg", learn="mle", num_particles=16, num_iterations=40,
                 burn_in=10, num_chains=2, progress=False)  # fmt: skip
    html = bp.report(fit, tmp_path / "ppg.html").read_text()
    assert "<h3>Parameter learning</h3>" in html and "<h3>Trace</h3>" not in html


def test_the_demo_runs_end_to_end(tmp_path, capsys):
    """``bayesplug demo`` as the README runs it (~15 s of fitting): the fit, H0, the printed
    tables, ``run.nc`` and the report with the data set's labels (which name ``yerr`` too)."""
    from bayesplug import demo

    fit, h0 = demo.run_demo(tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "kernel posterior" in out and "H0 = " in out
    assert (tmp_path / "run.nc").exists() and (tmp_path / "report.html").exists()
    # the paper's 66 ± 6 km/s/Mpc; seed 0 gives 65.1 ± 5.8
    assert abs(h0.mean[0] - demo.PAPER_H0_CC[0]) < demo.PAPER_H0_CC[1]
    assert abs(h0.std[0] - demo.PAPER_H0_CC[1]) < 2.0
