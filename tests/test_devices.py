"""Chains and draws split over devices (issue 19): 4 host devices give the draws of 1, to float
rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _child_regression import SETUP

import bayesplug as bp
from bayesplug.errors import BayesplugError

CHILD = (
    r"""
import json, warnings
"""
    + SETUP
    + r"""
runs = {
    # NUTS's warm-up amplifies rounding differences (chaotic dynamics: 7e-5 after 30 adapted
    # steps, 0.1 sd after 200), so the plumbing is checked on draws with a fixed step size
    "nuts": {"num_warmup": 1, "num_samples": 200, "num_chains": 4},
    "sgld": {"num_warmup": 200, "num_samples": 200, "num_chains": 4, "batch_size": 10},
    # trained on one device either way; the flow's draws are split over the devices
    "flow_vi": {"num_steps": 300, "num_draws": 400},
}
report = {"device_count": jax.device_count()}
for method, options in runs.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = bp.fit(model, data, method=method, seed=4, progress=False, **options)
        single = bp.fit(model, data, method=method, seed=4, progress=False, devices=1, **options)
    a, b = split.idata.posterior["b"].values, single.idata.posterior["b"].values
    report[method] = {
        "used": [int(split.idata.attrs["num_devices"]), int(single.idata.attrs["num_devices"])],
        "max_abs_diff": float(np.max(np.abs(a - b))),
        "sd": float(np.std(b)),
    }
print("REPORT" + json.dumps(report))
"""
)


def _report_on_four_devices(script: str, timeout: int) -> dict:
    """Run ``script`` in a child process that sees 4 XLA host devices; its REPORT line."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.split("REPORT")[-1])
    assert report["device_count"] == 4
    return report


def test_four_host_devices_give_the_draws_of_one():
    report = _report_on_four_devices(CHILD, timeout=600)
    for method in ("nuts", "sgld", "flow_vi"):
        result = report[method]
        assert result["used"] == [4, 1], (method, result)
        # the same chains, reassociated floating point at most: far below the posterior sd
        assert result["max_abs_diff"] < 1e-4 * result["sd"], (method, result)


ITEMS_CHILD = (
    r"""
import json, warnings
"""
    + SETUP
    + r"""
lg = bp.models.LinearGaussianSSM(A=0.8, Q=0.5, C=1.0, R=1.0)
series = {"y": np.asarray(lg.simulate(jax.random.PRNGKey(0), 40)["y"])}
runs = {
    # mini-batch split (data-parallel gradients)
    "svi": (model, data, {"num_steps": 300, "batch_size": 20, "num_draws": 200}, "b"),
    # live points and the slice chains' likelihood evaluations split; nested sampling's path
    # amplifies float rounding like NUTS's warm-up (ln Z agrees to 6e-6 after 20 steps, the
    # runs part after ~60), so the plumbing is checked on 10 steps
    "nested": (model, data, {"num_live": 200, "num_delete": 20, "max_steps": 10}, None),
    # particles split; paris draws backward by rejection (rbg random numbers), ppg exactly
    "paris": (
        lg,
        series,
        {"num_particles": 64, "num_chains": 2, "num_paths": 50, "backward": "rejection"},
        "x",
    ),
    "ppg": (
        lg, series, {"num_particles": 32, "num_chains": 2, "num_iterations": 30, "burn_in": 10}, "x"
    ),
}
report = {"device_count": jax.device_count()}
for method, (m, d, options, name) in runs.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = bp.fit(m, d, method=method, seed=4, progress=False, **options)
        single = bp.fit(m, d, method=method, seed=4, progress=False, devices=1, **options)
    if name is None:  # ln Z against its error
        (a, _), (b, sd) = split.log_evidence, single.log_evidence
    else:
        a, b = split.idata.posterior[name].values, single.idata.posterior[name].values
        sd = np.std(b)
    report[method] = {
        "used": [int(split.idata.attrs["num_devices"]), int(single.idata.attrs["num_devices"])],
        "max_abs_diff": float(np.max(np.abs(a - b))),
        "sd": float(sd),
    }
print("REPORT" + json.dumps(report))
"""
)


def test_four_host_devices_split_particles_live_points_and_batches():
    """PaRIS / PPG particles, nested sampling's live points and SVI's mini-batches split over 4
    devices: the same results as one device (the same random numbers; sums reassociated)."""
    report = _report_on_four_devices(ITEMS_CHILD, timeout=900)
    for method in ("svi", "nested", "paris", "ppg"):
        result = report[method]
        assert result["used"] == [4, 1], (method, result)
        assert result["max_abs_diff"] < 1e-4 * result["sd"], (method, result)


def test_a_device_count_this_machine_lacks_is_refused():
    def model(y=None):
        import numpyro
        import numpyro.distributions as dist

        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(BayesplugError, match="devices=64"):
        bp.fit(model, {"y": [0.0]}, devices=64, num_samples=10)


def test_one_device_runs_unchanged():
    import numpyro
    import numpyro.distributions as dist

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    options = {"num_warmup": 50, "num_samples": 50, "num_chains": 2, "seed": 1}
    a = bp.fit(model, {"y": [0.0]}, **options)
    b = bp.fit(model, {"y": [0.0]}, devices=1, **options)
    np.testing.assert_array_equal(a.samples["mu"], b.samples["mu"])
