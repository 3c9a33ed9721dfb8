"""Where models and backends are found by name.

Three sources, in order of precedence:

1. **Built-ins**, registered as ``"module:attribute"`` strings and imported only when used, so a
   heavy or optional dependency costs nothing until its piece is asked for.
2. **In-process registrations** with :func:`register_model` / :func:`register_backend`.
3. **Entry points** of installed packages, in the groups ``bayesplug.models`` and
   ``bayesplug.backends``; listing them never imports them. A plug-in that fails to import is
   reported by name with the reason, and the rest keep working.

A third-party package declares, in its ``pyproject.toml``::

    [project.entry-points."bayesplug.models"]
    my_model = "my_package.models:MyModel"

Examples
--------
>>> "nuts" in list_backends() and "gp" in list_models()
True
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from .errors import BayesplugError, InputError, did_you_mean

__all__ = [
    "backend_options",
    "get_backend",
    "get_model",
    "list_backends",
    "list_models",
    "refresh",
    "register_backend",
    "register_model",
]

MODEL_GROUP = "bayesplug.models"
BACKEND_GROUP = "bayesplug.backends"

_BUILTIN_MODELS: dict[str, str] = {
    "gp": "bayesplug.models.gp:GP",
    "functional_tucker": "bayesplug.models.functional_tucker:FunctionalTucker",
    "gp_pde": "bayesplug.models.gp_pde:GPPDESolver",
    "marginalised_gp": "bayesplug.models.marginalised_gp:MarginalisedGP",
    "sparse_within_sparse_gp": "bayesplug.models.sparse_within_sparse_gp:SparseWithinSparseGP",
    "linear_gaussian_ssm": "bayesplug.models.state_space:LinearGaussianSSM",
    "stochastic_volatility": "bayesplug.models.state_space:StochasticVolatility",
}
_BUILTIN_BACKENDS: dict[str, str] = {
    "nuts": "bayesplug.inference.nuts:NUTSBackend",
    "cep": "bayesplug.inference.cep:CEPBackend",
    "map": "bayesplug.inference.map:MAPBackend",
    "nested": "bayesplug.inference.nested:NestedBackend",
    "flow_vi": "bayesplug.inference.flow_vi:FlowVIBackend",
    "sgld": "bayesplug.inference.sgmcmc:SGLDBackend",
    "sghmc": "bayesplug.inference.sgmcmc:SGHMCBackend",
    "structured_sgmcmc": "bayesplug.inference.sgmcmc:StructuredSGMCMCBackend",
    "svi": "bayesplug.inference.svi:SVIBackend",
    "paris": "bayesplug.inference.paris:PaRISBackend",
    "ppg": "bayesplug.inference.particle_gibbs:ParticleGibbsBackend",
}
_REGISTERED: dict[str, dict[str, Any]] = {MODEL_GROUP: {}, BACKEND_GROUP: {}}


class PluginLoadError(BayesplugError, ImportError):
    """A plug-in was found but could not be imported."""


@functools.cache
def _entry_points(group: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=group):
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"two installed packages register the {group} plug-in {ep.name!r} "
                f"({found[ep.name].value} and {ep.value}); using the first.",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def refresh() -> None:
    """Forget the cached entry points (after installing a plug-in in a running session)."""
    _entry_points.cache_clear()


def _builtins(group: str) -> dict[str, str]:
    return _BUILTIN_MODELS if group == MODEL_GROUP else _BUILTIN_BACKENDS


def _names(group: str) -> list[str]:
    names = set(_builtins(group)) | set(_REGISTERED[group]) | set(_entry_points(group))
    return sorted(names)


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj


def _resolve(group: str, name: str, kind: str) -> Any:
    if not isinstance(name, str):
        raise InputError(kind, f"expected a name (str), got {type(name).__name__}.")
    if name in _REGISTERED[group]:
        return _REGISTERED[group][name]
    if name in _builtins(group):
        return _import_target(_builtins(group)[name])
    eps = _entry_points(group)
    if name in eps:
        try:
            return eps[name].load()
        except Exception as exc:  # a broken third-party plug-in must not look like our bug
            raise PluginLoadError(
                f"the {kind} plug-in {name!r} ({eps[name].value}, from the entry point group "
                f"{group!r}) failed to import: {type(exc).__name__}: {exc}. Reinstall or fix "
                "that package; the other plug-ins are unaffected."
            ) from exc
    raise InputError(kind, f"unknown {kind} {name!r}.", did_you_mean(name, _names(group)))


def _check_name(name: str, group: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError("name", f"{name!r} is not a valid plug-in name (use letters, digits, _).")
    if name in _builtins(group):
        raise InputError("name", f"{name!r} is a built-in and cannot be replaced.")


def list_models() -> list[str]:
    """Names of every registered model: built-in, registered in-process and from entry points."""
    return _names(MODEL_GROUP)


def list_backends() -> list[str]:
    """Names of every registered inference backend (the ``method=`` of :func:`bayesplug.fit`)."""
    return _names(BACKEND_GROUP)


def register_model(name: str, factory: Callable[..., Any]) -> None:
    """Register a model factory (a class or function returning a Model) under ``name``."""
    _check_name(name, MODEL_GROUP)
    _REGISTERED[MODEL_GROUP][name] = factory


def register_backend(name: str, factory: Callable[..., Any]) -> None:
    """Register a backend factory (a class or function returning a Backend) under ``name``."""
    _check_name(name, BACKEND_GROUP)
    _REGISTERED[BACKEND_GROUP][name] = factory


def get_model(name: str, **options: Any):
    """Build the model registered as ``name`` with its ``options``.

    Examples
    --------
    >>> get_model("gp", kernel="matern52").kernel
    'matern52'
    """
    factory = _resolve(MODEL_GROUP, name, "model")
    return factory(**options)


def get_backend(name: str):
    """Build the backend registered as ``name``."""
    factory = _resolve(BACKEND_GROUP, name, "method")
    return factory()


def backend_options(name: str):
    """The options of the backend ``name``: a ``pandas.DataFrame`` indexed by option, with its
    default, accepted types and meaning (what ``bp.fit(..., option=value)`` takes).

    Examples
    --------
    >>> table = backend_options("nuts")
    >>> int(table.loc["num_chains", "default"]), list(table.columns)
    (4, ['default', 'types', 'meaning'])
    """
    import pandas as pd

    options = get_backend(name).options
    rows = {
        key: {
            "default": opt.default,
            "types": " or ".join(t.__name__ for t in opt.types),
            "meaning": opt.doc,
        }
        for key, opt in options.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["default", "types", "meaning"])


def plugin_errors() -> dict[str, str]:
    """``{"group:name": reason}`` for every installed entry-point plug-in that fails to import."""
    errors = {}
    for group in (MODEL_GROUP, BACKEND_GROUP):
        for name, ep in _entry_points(group).items():
            try:
                ep.load()
            except Exception as exc:
                errors[f"{group}:{name}"] = f"{type(exc).__name__}: {exc}"
    return errors
