"""Several processes, one fit (issue 19): JAX's multi-controller runtime on localhost CPUs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
from _child_regression import SETUP

CHILD = (
    r"""
import json, sys, warnings
from bayesplug.inference.driver import initialize_hosts
if sys.argv[1] == "hosts":
    initialize_hosts()
"""
    + SETUP
    + r"""
report = {"processes": jax.process_count(), "devices": jax.device_count()}
for method, options in {
    "sgld": {"num_warmup": 200, "num_samples": 200, "num_chains": 4, "batch_size": 10},
    "nuts": {"num_warmup": 1, "num_samples": 100, "num_chains": 4},
}.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(model, data, method=method, seed=4, progress=False, **options)
    report[method] = {
        "b": fit.idata.posterior["b"].values.tolist(),
        "used": int(fit.idata.attrs["num_devices"]),
    }
print("REPORT" + json.dumps(report))
"""
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def report_of(output: str) -> dict:
    return json.loads(output.split("REPORT")[-1])


def test_two_processes_run_one_sharded_fit_equal_to_a_single_process(tmp_path):
    port = free_port()
    children = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "BAYESPLUG_COORDINATOR": f"localhost:{port}",
            "BAYESPLUG_NUM_PROCESSES": "2",
            "BAYESPLUG_PROCESS_ID": str(rank),
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, "hosts"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for child in children:
            out, err = child.communicate(timeout=400)
            assert child.returncode == 0, err[-3000:]
            outputs.append(report_of(out))
    finally:
        for child in children:
            child.kill()
    alone = subprocess.run(
        [sys.executable, "-c", CHILD, "single"], capture_output=True, text=True, timeout=400
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    single = report_of(alone.stdout)
    assert [o["processes"] for o in outputs] == [2, 2] and single["processes"] == 1
    for method in ("sgld", "nuts"):
        assert [o[method]["used"] for o in outputs] == [2, 2], method
        assert single[method]["used"] == 1
        reference = np.asarray(single[method]["b"])
        for o in outputs:  # every process holds the whole result
            np.testing.assert_allclose(np.asarray(o[method]["b"]), reference, atol=1e-5)
