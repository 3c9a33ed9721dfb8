"""Model plug-ins. Classes are imported on first use (``bp.models.GP``), keeping imports light."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CovarianceNormal": "bayesplug.models.gp",
    "FunctionalTucker": "bayesplug.models.functional_tucker",
    "GP": "bayesplug.models.gp",
    "GPPDESolver": "bayesplug.models.gp_pde",
    "MarginalisedGP": "bayesplug.models.marginalised_gp",
    "MeanFunction": "bayesplug.models.marginalised_gp",
    "NumPyroModel": "bayesplug.models.numpyro_model",
    "ModelBase": "bayesplug.models.base",
    "SparseWithinSparseGP": "bayesplug.models.sparse_within_sparse_gp",
    "LinearGaussianSSM": "bayesplug.models.state_space",
    "StateSpaceModel": "bayesplug.models.state_space",
    "StochasticVolatility": "bayesplug.models.state_space",
}

__all__ = [
    "CovarianceNormal",
    "FunctionalTucker",
    "GP",
    "GPPDESolver",
    "LinearGaussianSSM",
    "MarginalisedGP",
    "MeanFunction",
    "ModelBase",
    "NumPyroModel",
    "SparseWithinSparseGP",
    "StateSpaceModel",
    "StochasticVolatility",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bayesplug.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
