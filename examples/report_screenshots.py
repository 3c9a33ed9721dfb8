"""The two report screenshots in docs/getting_started.md, remade with today's report.

The demo's report (kernel-marginalised GP by nested sampling, the demo's settings) and a compare
report of three fits of one model (``nuts``, ``svi``, ``nested``), each drawn by headless
Chromium (Debian's ``chromium`` package). About 3 minutes on 2 CPU cores.

Usage: ``python examples/report_screenshots.py [folder]`` (default ``docs/img``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesplug as bp
from bayesplug.demo import run_demo


def line(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("points", x.shape[0]):
        numpyro.sample("y", dist.Normal(a + b * x, sigma), obs=y)


def screenshot(chromium: str, page: Path, png: Path, height: int) -> None:
    """``page`` as Chromium draws it in a 1100-pixel-wide window, its top ``height`` pixels."""
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size=1100,{height}", f"--screenshot={png}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    print(f"wrote {png}")


def main(folder: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs headless Chromium: apt-get install -y chromium")
    work = Path(tempfile.mkdtemp())
    run_demo(work)  # writes run.nc and report.html there
    screenshot(chromium, work / "report.html", folder / "report_demo.png", 2600)
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 30)
    data = {"x": x, "y": 0.5 + 2.0 * x + rng.normal(0, 0.3, x.size)}
    fits = {
        "nuts": bp.fit(line, data, seed=0, progress=False),
        "svi": bp.fit(line, data, method="svi", seed=0, progress=False),
        "nested": bp.fit(line, data, method="nested", seed=0, progress=False),
    }
    bp.report(fits, work / "compare.html")
    screenshot(chromium, work / "compare.html", folder / "report_compare.png", 2600)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "docs" / "img")
