"""``fit``, ``load`` and ``compare``: validation, seeding and dispatch to the backends."""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

from . import registry
from ._validation import as_data_mapping
from .errors import (
    BayesplugError,
    ConvergenceWarning,
    IncompatibleMethodError,
    InputError,
    did_you_mean,
)
from .fit import Fit, _check_seed, data_from_idata, precision_context

__all__ = ["compare", "fit", "load"]


def _resolve_model(model: Any, data: Mapping[str, Any]):
    """A Model from an instance, a registered name or a plain NumPyro function."""
    if isinstance(model, str):
        return registry.get_model(model)
    if hasattr(model, "model") and hasattr(model, "validate") and hasattr(model, "predict"):
        return model
    if callable(model):
        from .models.numpyro_model import NumPyroModel

        return NumPyroModel(model)
    raise InputError(
        "model",
        "expected a model name, a bayesplug model or a NumPyro function, "
        f"got {type(model).__name__}.",
        did_you_mean("", registry.list_models()),
    )


def _resolve_backend(method: Any):
    if isinstance(method, str):
        return registry.get_backend(method)
    if hasattr(method, "run") and hasattr(method, "requires"):
        return method
    raise InputError(
        "method",
        f"expected a method name, got {type(method).__name__}.",
        did_you_mean("", registry.list_backends()),
    )


def _check_options(backend, options: Mapping[str, Any]) -> dict[str, Any]:
    """Reject unknown options and wrong types before anything is traced; fill defaults."""
    spec = getattr(backend, "options", {})
    checked = {}
    for name, value in options.items():
        if name not in spec:
            raise InputError(
                name, f"is not an option of method {backend.name!r}.", did_you_mean(name, spec)
            )
        option = spec[name]
        types = option.types
        ok = isinstance(value, types)
        if isinstance(value, bool) and bool not in types:
            ok = False
        if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise InputError(
                name,
                f"expected {expected} for option {name!r} of method {backend.name!r}, got "
                f"{type(value).__name__} {value!r}.",
            )
        if option.check is not None and value is not None:
            problem = option.check(value)
            if problem:
                raise InputError(name, f"{problem} (got {value!r}).")
        checked[name] = value
    return {**{k: o.default for k, o in spec.items()}, **checked}


def _check_capabilities(model, backend) -> None:
    missing = set(backend.requires) - set(model.capabilities)
    if not missing:
        return
    working = []
    for name in registry.list_backends():
        try:
            candidate = registry.get_backend(name)
        except Exception:  # a broken plug-in is reported elsewhere; it just cannot be suggested
            continue
        if set(candidate.requires) <= set(model.capabilities):
            working.append(name)
    raise IncompatibleMethodError(model.name, backend.name, missing, working)


def fit(
    model: Any,
    data: Mapping[str, Any],
    method: Any = "nuts",
    *,
    seed: int = 0,
    progress: bool | None = None,
    **options: Any,
) -> Fit:
    """Fit a model to data with an inference method.

    Parameters
    ----------
    model
        A registered model name (``"gp"``), a model instance (``bp.models.GP(kernel="matern32")``)
        or a plain NumPyro function, called as ``fn(**data)``.
    data
        A mapping of arrays (or a :class:`bayesplug.datasets.Dataset`).
    method
        A registered backend name (``bp.list_backends()``).
    seed
        Non-negative integer; the same seed gives identical draws.
    progress
        Show a progress bar; by default only when standard error is a terminal.
    **options
        Method options (``num_samples=...``); unknown names and wrong types are rejected.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import bayesplug as bp, numpyro, numpyro.distributions as dist
    >>> def model(y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> fit = bp.fit(model, {"y": [0.9, 1.1]}, num_samples=300, num_warmup=300, num_chains=2)
    >>> round(float(fit.samples["mu"].mean()), 1)
    1.0
    """
    import jax

    from .convert import to_inference_data

    seed = _check_seed(seed)
    data = as_data_mapping(data, allow_empty=True)  # each model says what it needs
    model = _resolve_model(model, data)
    backend = _resolve_backend(method)
    options = _check_options(backend, options)
    data = model.validate(data)
    _check_capabilities(model, backend)
    if progress is None:
        progress = sys.stderr.isatty()
    with precision_context(model):
        import jax.numpy as jnp

        run_data = {k: jnp.asarray(v) for k, v in data.items()}
        raw = backend.run(
            model, run_data, jax.random.PRNGKey(seed), progress=bool(progress), **options
        )
        start = time.perf_counter()
        idata = to_inference_data(raw, model, data, method=backend.name, seed=seed, options=options)
        idata.attrs["conversion_time"] = time.perf_counter() - start
    result = Fit(idata, model, data, state=raw.state)
    start = time.perf_counter()
    diagnostics = result.diagnostics()
    idata.attrs["diagnostics_time"] = time.perf_counter() - start
    for message in diagnostics["messages"]:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return result


def load(path: str | os.PathLike, *, model: Any = None) -> Fit:
    """Read a fit saved with :meth:`Fit.save`.

    The model is rebuilt from the saved name and options (registered models) or import path
    (NumPyro functions defined in an importable module); otherwise pass ``model=`` so that the
    loaded fit can predict.
    """
    import arviz as az

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("path", f"no file at {path!r}.")
    try:
        idata = az.from_netcdf(path)
    except Exception as exc:
        raise InputError("path", f"{path!r} is not a bayesplug fit ({exc}).") from exc
    if "method" not in idata.attrs:
        raise InputError("path", f"{path!r} is an ArviZ file but not one written by bayesplug.")
    data = data_from_idata(idata)
    attrs = idata.attrs
    static = json.loads(attrs.get("model_static", "{}"))
    if model is None:
        model = _rebuild_model(attrs)
    else:
        model = _resolve_model(model, data)
    if model is not None:
        model.validate({**data, **static})
    return Fit(idata, model, data)


def _rebuild_model(attrs: Mapping[str, Any]):
    name = str(attrs.get("model", ""))
    if name in registry.list_models():
        options = json.loads(attrs.get("model_options", "{}"))
        try:
            return registry.get_model(name, **options)
        except Exception:
            return None
    target = attrs.get("model_import_path")
    if target:
        from .models.numpyro_model import NumPyroModel
        from .registry import _import_target

        try:
            return NumPyroModel(_import_target(str(target)))
        except Exception:
            return None
    return None


def compare(fits: Mapping[str, Fit], *, ic: str = "loo"):
    """Compare fits by evidence (where known) and by ELPD-LOO (where a log-likelihood exists).

    Returns a DataFrame indexed by the names of ``fits``, best first, with the columns of
    ``arviz.compare`` (``rank``, ``elpd_loo``, ``p_loo``, ``elpd_diff``, ``weight``, ``se``,
    ``dse``, ``warning``) and, for fits with evidences, ``log_evidence``, ``log_evidence_err``,
    ``probability`` (posterior model probability under equal prior odds) and
    ``probability_err``.
    """
    import arviz as az
    import numpy as np
    import pandas as pd

    if not isinstance(fits, Mapping) or not fits:
        raise InputError("fits", "expected a non-empty mapping {name: Fit}.")
    for name, item in fits.items():
        if not isinstance(item, Fit):
            raise InputError(f"fits[{name!r}]", f"expected a Fit, got {type(item).__name__}.")
    table = pd.DataFrame(index=list(fits))
    with_ll = {n: f.idata for n, f in fits.items() if "log_likelihood" in f.idata.groups()}
    if len(with_ll) == 1:
        name, idata = next(iter(with_ll.items()))
        loo = az.loo(idata)
        for column in ("elpd_loo", "se", "p_loo"):
            table.loc[name, column] = float(loo[column])
    elif len(with_ll) >= 2:
        var_names = {tuple(i.log_likelihood.data_vars) for i in with_ll.values()}
        if len(var_names) != 1 or len(next(iter(var_names))) != 1:
            raise BayesplugError(
                "compare needs every fit to have the same single observed site, "
                f"found {sorted(var_names)}."
            )
        sizes = {i.log_likelihood[next(iter(var_names))[0]].shape[2:] for i in with_ll.values()}
        if len(sizes) != 1:
            raise BayesplugError(
                "compare needs fits of the same observations; the log-likelihoods have "
                f"shapes {sorted(sizes)}."
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Pareto.*")
            loo = az.compare(with_ll, ic=ic)
        table = table.join(loo, how="left")
    evidences = {n: f.log_evidence for n, f in fits.items() if f.log_evidence is not None}
    if evidences:
        names = list(evidences)
        log_z = np.array([evidences[n][0] for n in names])
        err = np.array([evidences[n][1] for n in names])
        p = np.exp(log_z - np.logaddexp.reduce(log_z))
        # delta method: dp_i/dlnZ_j = p_i (delta_ij - p_j)
        jac = np.diag(p) - np.outer(p, p)
        p_err = np.sqrt((jac**2) @ (err**2))
        table.loc[names, "log_evidence"] = log_z
        table.loc[names, "log_evidence_err"] = err
        table.loc[names, "probability"] = p
        table.loc[names, "probability_err"] = p_err
    if "rank" in table:
        table = table.sort_values("rank")
    elif "log_evidence" in table:
        table = table.sort_values("log_evidence", ascending=False)
    return table
