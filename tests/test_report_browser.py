"""Reports opened in a real browser (headless Chromium): every figure decodes and draws, and the
page logs nothing to the console.

Chromium comes from Debian's ``chromium`` package; where it is missing and the tests run as root
with ``apt-get`` (CI), the fixture installs it. Where it cannot, the tests are skipped and the
skip names the reason.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp

_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const drawn = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  const marker = document.createElement("pre");
  marker.id = "figure-check";
  marker.textContent = `figures ${drawn} of ${images.length}`;
  document.body.appendChild(marker);
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            capture_output=True,
            timeout=600,
            check=False,
        )
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("headless Chromium is not installed and cannot be (apt-get install chromium)")
    return path


def open_in_browser(chromium, report, tmp_path):
    """(figures drawn, figures in the page, console errors) of ``report`` in headless Chromium."""
    page = tmp_path / f"checked-{report.name}"
    page.write_text(report.read_text().replace("</body>", _CHECK + "</body>"))
    run = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r"figures (\d+) of (\d+)", run.stdout)
    assert found, f"the page did not finish loading: {run.stderr[-2000:]}"
    # a report runs no script of its own: every console message (errors, uncaught exceptions;
    # Chromium logs them all at INFO level) is a defect
    errors = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return int(found[1]), int(found[2]), errors


def _line(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("points", x.shape[0]):
        numpyro.sample("y", dist.Normal(a + b * x, sigma), obs=y)


def test_demo_kind_report_renders_in_chromium(chromium, tmp_path):
    """The demo's kind of fit (a kernel choice by nested sampling), at a small size."""
    data = bp.datasets.load("cosmic_chronometers")
    model = bp.models.MarginalisedGP(kernels=["rbf", "matern32"])
    fit = bp.fit(model, data, method="nested", seed=0, progress=False, num_live=60)
    report = bp.report(fit, tmp_path / "demo.html")
    html = report.read_text()
    assert "Discrete choice: kernel" in html and "Nested sampling run" in html
    assert "not a Markov chain" in html and "<h3>Trace</h3>" not in html
    drawn, total, errors = open_in_browser(chromium, report, tmp_path)
    assert total >= 4 and drawn == total and errors == []


def test_compare_report_of_three_fits_renders_in_chromium(chromium, tmp_path):
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 30)
    data = {"x": x, "y": 0.5 + 2.0 * x + rng.normal(0, 0.3, x.size)}
    fits = {
        "nuts": bp.fit(_line, data, num_warmup=200, num_samples=200, num_chains=2, progress=False),
        "svi": bp.fit(_line, data, method="svi", num_steps=1500, progress=False),
        "nested": bp.fit(_line, data, method="nested", num_live=100, progress=False),
    }
    report = bp.report(fits, tmp_path / "compare.html")
    html = report.read_text()
    assert "Model comparison" in html and "Shared parameters" in html and "Optimisation" in html
    assert "Posterior predictive, side by side" in html
    drawn, total, errors = open_in_browser(chromium, report, tmp_path)
    assert total >= 8 and drawn == total and errors == []


def test_a_broken_figure_is_caught(chromium, tmp_path):
    """The check can fail: a figure whose data do not decode is not drawn."""
    report = tmp_path / "broken.html"
    report.write_text(
        '<!DOCTYPE html><html><body><img alt="figure" src="data:image/png;base64,AAAA">'
        "<script>console.error('boom')</script></body></html>"
    )
    drawn, total, errors = open_in_browser(chromium, report, tmp_path)
    assert (drawn, total) == (0, 1) and any("boom" in e for e in errors)
