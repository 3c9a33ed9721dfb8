"""Issue 20: SG-MCMC at its defaults on unscaled data, against NUTS on the same model.

The problems (simulated, seeded) are those of ``benchmarks/sgmcmc_unscaled.py``: a regression
with an interaction (covariates around 1, 100 and up to 140, outcome sd ~20) and a logistic
regression with unscaled features. Measured at seeds 0, 1, 2 (the benchmark): mean errors at most
0.17 NUTS sd, sd errors at most 15%; the thresholds are the issue's 0.3 sd and 35% (the mean's
Monte Carlo error is ~0.06 sd at the ~300 bulk ESS of these runs, so 0.3 is about 4 of them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import bayesplug as bp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sgmcmc_unscaled import PROBLEMS, compare  # noqa: E402


@pytest.fixture(scope="module", params=sorted(PROBLEMS))
def reference(request):
    model, make = PROBLEMS[request.param]
    data = make(0)
    nuts = bp.fit(model, data, method="nuts", seed=0, progress=False)
    return model, data, nuts


@pytest.mark.parametrize("method", ["sgld", "sghmc", "structured_sgmcmc"])
def test_defaults_match_nuts_on_unscaled_data(reference, method):
    model, data, nuts = reference
    fit = bp.fit(model, data, method=method, seed=0, progress=False)
    mean_error, sd_error = compare(fit, nuts)
    assert mean_error < 0.3 and sd_error < 0.35, (mean_error, sd_error)
    assert fit.idata.attrs["adapted"] == 1 and fit.idata.attrs["diverged"] == 0


def test_a_runaway_chain_stops_with_a_warning_and_keeps_its_draws():
    model, make = PROBLEMS["interaction"]
    with pytest.warns(bp.ConvergenceWarning, match="Laplace scales from the mode") as caught:
        fit = bp.fit(
            model,
            make(0),
            method="sgld",
            step_size=3.0,
            runaway_scales=50.0,
            num_warmup=0,
            seed=0,
            progress=False,
        )
    assert fit.idata.attrs["diverged"] == 1
    assert np.all(np.isfinite(fit.idata.posterior["beta"].values))
    said = [str(w.message) for w in caught if "Laplace scales" in str(w.message)]
    assert len(said) == 1  # warned once, at fit time
    assert any("Laplace scales" in m for m in fit.diagnostics()["messages"])  # and kept
