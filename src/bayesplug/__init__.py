"""bayesplug: NumPyro models and interchangeable inference backends behind one fit/predict API.

>>> import bayesplug as bp
>>> "nuts" in bp.list_backends()
True

Heavy libraries (ArviZ, gpjax, blackjax, matplotlib) are imported only by the pieces that use
them, so ``import bayesplug`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import datasets, models
from .api import compare, fit, load
from .errors import (
    BayesplugError,
    ConvergenceWarning,
    IncompatibleMethodError,
    IncompleteResultWarning,
    InputError,
    InterruptedRunWarning,
)
from .fit import Fit, Prediction
from .many import FitManyError, FitTask, fit_many
from .registry import (
    backend_options,
    get_backend,
    get_model,
    list_backends,
    list_models,
    register_backend,
    register_model,
)
from .report import report  # binds the function over the submodule of the same name
from .sbc import SBCResult, sbc

try:
    __version__ = _version("bayesplug")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"


__all__ = [
    "BayesplugError",
    "ConvergenceWarning",
    "Fit",
    "FitManyError",
    "FitTask",
    "IncompatibleMethodError",
    "InputError",
    "IncompleteResultWarning",
    "InterruptedRunWarning",
    "Prediction",
    "compare",
    "datasets",
    "fit",
    "fit_many",
    "get_backend",
    "get_model",
    "list_backends",
    "list_models",
    "load",
    "models",
    "SBCResult",
    "sbc",
    "register_backend",
    "register_model",
    "report",
    "backend_options",
]
