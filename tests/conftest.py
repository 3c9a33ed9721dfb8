"""Shared fixtures. Fits are expensive to compile on 2 cores, so the suite shares them by scope."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

PLUGIN_DIST = Path(__file__).parent / "plugin_dist"
collect_ignore = ["plugin_dist"]  # a fake installed distribution, put on sys.path by a fixture


def normal_mean_model(y=None):
    """y_i ~ N(mu, 1), mu ~ N(0, 10^2): conjugate, posterior known in closed form."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def normal_mean_posterior(y: np.ndarray, prior_sd: float = 10.0) -> tuple[float, float]:
    precision = 1.0 / prior_sd**2 + y.shape[0]
    return float(y.sum() / precision), float(precision**-0.5)


@pytest.fixture(scope="session")
def normal_data() -> dict:
    rng = np.random.default_rng(42)
    return {"y": rng.normal(1.5, 1.0, size=20)}


@pytest.fixture(scope="session")
def normal_fit(normal_data):
    import bayesplug as bp

    return bp.fit(normal_mean_model, normal_data, seed=1, progress=False)


@pytest.fixture(scope="session")
def cc_gp_fit():
    """The squared-exponential GP on the 31 cosmic chronometers, as the demo fits it."""
    import bayesplug as bp

    data = bp.datasets.load("cosmic_chronometers")
    return bp.fit(bp.models.GP(kernel="rbf"), data, seed=0, progress=False, target_accept=0.9)


@pytest.fixture
def interrupt_at_chunk(monkeypatch):
    """``interrupt_at_chunk(n)``: the n-th chunk of any run raises KeyboardInterrupt (Ctrl-C)."""
    import jax

    from bayesplug.inference import driver

    real = jax.block_until_ready

    def arm(n: int) -> None:
        calls = {"n": 0}

        def block(x):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(x)

        monkeypatch.setattr(driver.jax, "block_until_ready", block)

    return arm


@pytest.fixture
def plugin_on_path():
    """Put the test plug-in distribution's metadata and code on sys.path."""
    from bayesplug import registry

    sys.path.insert(0, str(PLUGIN_DIST))
    registry.refresh()
    yield
    sys.path.remove(str(PLUGIN_DIST))
    for name in [m for m in sys.modules if m.startswith("bayesplug_testplugin")]:
        del sys.modules[name]
    registry.refresh()
