"""Checkpoint and resume (issue 19): a killed run continues and takes the same draws."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesplug as bp
from bayesplug.errors import BayesplugError, InterruptedRunWarning


def regression(x, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(b[0] + b[1] * x, s), obs=y)


DATA = {"x": np.linspace(-1.0, 1.0, 30), "y": 0.5 + 2.0 * np.linspace(-1.0, 1.0, 30)}
DATA["y"] = DATA["y"] + np.random.default_rng(0).normal(0.0, 0.3, 30)

RUNS = {
    "nuts": {"num_warmup": 300, "num_samples": 300, "num_chains": 2},
    "nested": {"num_live": 100},
    "svi": {"num_steps": 4000},
}

CHILD = """
import sys, time
import numpy as np
import bayesplug as bp
from bayesplug.inference import driver

written = driver._write_atomically

def slowly(path, arrays):  # a slow sampler: time to kill the process between chunks
    written(path, arrays)
    time.sleep(0.4)

driver._write_atomically = slowly
import numpyro, numpyro.distributions as dist
{model}
data = {{"x": np.array({x}), "y": np.array({y})}}
bp.fit(regression, data, method={method!r}, seed=3, progress=False, checkpoint={path!r},
       **{options!r})
"""


def header(path: str) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(bytes(archive["header"]).decode())


def kill_after_two_chunks(method: str, path: str) -> dict:
    """Run a checkpointed fit in a child process and SIGKILL it once two chunks are saved."""
    script = CHILD.format(
        model=inspect.getsource(regression),
        x=DATA["x"].tolist(),
        y=DATA["y"].tolist(),
        method=method,
        path=path,
        options=RUNS[method],
    )
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if os.path.exists(path):
                try:
                    if header(path)["loops"][0]["chunks"] >= 2:
                        break
                except (OSError, ValueError, KeyError):
                    pass  # the rename is atomic, but the file may be opened mid-replace
            if child.poll() is not None:
                pytest.fail(f"the child ended before it was killed: {child.stderr.read()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint with two chunks within 240 s")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return header(path)


@pytest.mark.parametrize("method", sorted(RUNS))
def test_a_killed_run_resumes_to_the_same_draws(method, tmp_path):
    path = str(tmp_path / "run.ckpt")
    saved = kill_after_two_chunks(method, path)
    assert not saved["loops"][0]["complete"], "the child finished before the kill: no test"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = bp.fit(regression, DATA, method=method, seed=3, resume=path, **RUNS[method])
        straight = bp.fit(regression, DATA, method=method, seed=3, **RUNS[method])
    assert resumed.idata.attrs["resumed_from"] == path
    for site in ("b", "s"):
        np.testing.assert_array_equal(resumed.samples[site], straight.samples[site])
    assert header(path)["loops"][0]["complete"]  # it went on checkpointing to the same file


def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_a_stopped_run_resumes_in_process_and_a_finished_one_replays(tmp_path):
    path = str(tmp_path / "run.ckpt")
    options = {"num_warmup": 10, "num_samples": 400, "num_chains": 2}  # chunk 1 has draws
    straight = bp.fit(model, {"y": [1.0, 2.0]}, seed=5, progress=False, **options)
    with pytest.warns(InterruptedRunWarning, match="resume="):
        part = bp.fit(model, {"y": [1.0, 2.0]}, seed=5, checkpoint=path, max_time=1e-9, **options)
    assert part.idata.posterior.sizes["draw"] < 400
    resumed = bp.fit(model, {"y": [1.0, 2.0]}, seed=5, resume=path, **options)
    np.testing.assert_array_equal(resumed.samples["mu"], straight.samples["mu"])
    replayed = bp.fit(model, {"y": [1.0, 2.0]}, seed=5, resume=path, **options)
    np.testing.assert_array_equal(replayed.samples["mu"], straight.samples["mu"])


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    path = str(tmp_path / "run.ckpt")
    options = {"num_warmup": 50, "num_samples": 50, "num_chains": 1}
    bp.fit(model, {"y": [1.0]}, seed=0, checkpoint=path, **options)
    with pytest.raises(BayesplugError, match="different run .*seed"):
        bp.fit(model, {"y": [1.0]}, seed=1, resume=path, **options)
    with pytest.raises(BayesplugError, match="different run .*data"):
        bp.fit(model, {"y": [2.0]}, seed=0, resume=path, **options)
    with pytest.raises(BayesplugError, match="different run .*options"):
        bp.fit(model, {"y": [1.0]}, seed=0, resume=path, **{**options, "num_samples": 60})


def test_a_missing_or_unreadable_checkpoint_is_an_error_not_a_traceback(tmp_path):
    with pytest.raises(BayesplugError, match="no checkpoint file"):
        bp.fit(model, {"y": [1.0]}, resume=str(tmp_path / "absent.ckpt"), num_samples=10)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BayesplugError, match="not a readable bayesplug checkpoint") as info:
        bp.fit(model, {"y": [1.0]}, resume=str(junk), num_samples=10)
    assert "unsafely" not in str(info.value)  # NumPy's advice to load pickles is not repeated
    pickled = tmp_path / "objects.npy"  # numpy's own advice would be to allow pickles: never
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BayesplugError, match="pickled objects, which bayesplug never"):
        bp.fit(model, {"y": [1.0]}, resume=str(pickled), num_samples=10)


def test_a_checkpoint_and_a_saved_fit_are_told_apart(tmp_path):
    """Each file given where the other is expected says what it is and what to do."""
    options = {"num_warmup": 20, "num_samples": 20, "num_chains": 1}
    path = str(tmp_path / "run.ckpt")
    fit = bp.fit(model, {"y": [1.0]}, checkpoint=path, **options)
    fit.save(tmp_path / "run.nc")
    with pytest.raises(bp.InputError, match="checkpoint of a run, not a saved fit.*resume="):
        bp.load(path)
    with pytest.raises(BayesplugError, match="a saved fit .*read it with bp.load"):
        bp.fit(model, {"y": [1.0]}, resume=str(tmp_path / "run.nc"), **options)
    with pytest.raises(bp.InputError, match="checkpoint: .* is a folder"):  # before any work
        bp.fit(model, {"y": [1.0]}, checkpoint=str(tmp_path), **options)


def test_a_checkpoint_is_data_only(tmp_path):
    path = str(tmp_path / "run.ckpt")
    bp.fit(model, {"y": [1.0]}, checkpoint=path, num_warmup=20, num_samples=20, num_chains=1)
    with np.load(path, allow_pickle=False) as archive:  # would raise on any object array
        arrays = [archive[k] for k in archive.files]
    assert all(a.dtype != object for a in arrays)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_the_driver_resumes_a_loop_by_hand(tmp_path):
    import jax
    import jax.numpy as jnp

    from bayesplug.inference.driver import checkpointing, run_in_chunks

    def advance(state):
        key, total = state
        key, sub = jax.random.split(key)
        draw = jax.random.normal(sub)
        return (key, total + draw), draw

    start = (jax.random.PRNGKey(0), jnp.zeros(()))
    path = str(tmp_path / "loop.ckpt")
    straight = run_in_chunks(
        jax.jit(advance), start, num_chunks=6, steps_per_chunk=1, progress=False
    )
    with checkpointing(path, fingerprint={"a": 1}):
        run_in_chunks(
            jax.jit(advance), start, num_chunks=6, steps_per_chunk=1, progress=False, max_time=1e-9
        )
    assert header(path)["loops"][0]["chunks"] == 1
    with checkpointing(path, resume_from=path, fingerprint={"a": 1}):
        resumed = run_in_chunks(
            jax.jit(advance), start, num_chunks=6, steps_per_chunk=1, progress=False
        )
    assert resumed.resumed_chunks == 1
    np.testing.assert_array_equal(np.stack(resumed.outputs), np.stack(straight.outputs))
    with pytest.raises(BayesplugError, match="does not fit this run"):
        with checkpointing(path, resume_from=path, fingerprint={"a": 1}):
            run_in_chunks(
                jax.jit(lambda s: (s, s)),
                jnp.zeros(3),
                num_chunks=6,
                steps_per_chunk=1,
                progress=False,
            )
