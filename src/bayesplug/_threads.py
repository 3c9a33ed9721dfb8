"""One NumPyro program at a time per process.

NumPyro keeps its effect-handler stack in one module-level list (``numpyro.primitives.
_PYRO_STACK``) that every thread shares, so two threads tracing programs at once push their
handlers onto each other's stack (``AssertionError: ... duplicated``, or worse, a site recorded
in the wrong trace). Every public entry point that runs a program — :func:`bayesplug.fit`,
:func:`bayesplug.load`, :meth:`bayesplug.Fit.predict` — holds :data:`NUMPYRO_LOCK`, so fits
started from several threads are correct and run one after the other. For fits in parallel use
processes: :func:`bayesplug.fit_many` with a Dask cluster.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

NUMPYRO_LOCK = threading.RLock()


def one_at_a_time(fn: F) -> F:
    """Run ``fn`` holding :data:`NUMPYRO_LOCK` (re-entrant: a fit inside a fit is fine)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with NUMPYRO_LOCK:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
