"""The HTML report, the command line and the import cost."""

import base64
import re
import subprocess
import sys

import numpy as np

import bayesplug as bp
from bayesplug.cli import main


def test_report_contains_its_figures(cc_gp_fit, tmp_path):
    path = bp.report(cc_gp_fit, tmp_path / "report.html", labels={"x": "z", "y": "H"})
    html = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3  # predictive band, posterior, trace
    for image in images:
        assert base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Posterior predictive" in html and "lengthscale" in html and "<table" in html
    assert "http" not in html.replace("http-equiv", "")  # self-contained: no external resources


def test_report_of_several_fits_has_the_comparison(normal_fit, tmp_path):
    path = bp.report({"a": normal_fit, "b": normal_fit}, tmp_path / "two.html")
    assert "Model comparison" in path.read_text()


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


def test_cli_reports_errors_in_words(capsys):
    assert main(["fit", "gp", "--data", "cosmic_chronometers", "--method", "nutz"]) == 2
    assert "Did you mean 'nuts'" in capsys.readouterr().err


def test_import_is_light():
    """Heavy libraries load only when the piece that needs them is used."""
    heavy = "('arviz', 'gpjax', 'blackjax', 'matplotlib', 'jax', 'pandas')"
    code = f"import sys, bayesplug; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
