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
from ._compilation_cache import enable_compilation_cache
from ._threads import one_at_a_time
from ._validation import as_data_mapping, output_path
from .errors import (
    BayesplugError,
    ConvergenceWarning,
    IncompatibleMethodError,
    IncompleteResultWarning,
    InputError,
    ModelTracingError,
    did_you_mean,
)
from .fit import Fit, _check_seed, data_from_idata, is_point_estimate, precision_context

__all__ = ["compare", "fit", "load"]


def _resolve_model(model: Any, data: Mapping[str, Any]):
    """A Model from an instance, a registered name or a plain NumPyro function."""
    if isinstance(model, str):
        return registry.get_model(model)
    if hasattr(model, "model") and hasattr(model, "validate") and hasattr(model, "predict"):
        # Each fit owns its model: `validate` may store data-derived constants on the instance
        # (scales, initial inducing inputs), and refitting the user's instance on new data must
        # not change an earlier fit's predictions.
        import copy

        return copy.copy(model)
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


def _plain_number(value: Any) -> Any:
    """NumPy scalars as Python numbers (bools stay bools)."""
    item = getattr(value, "item", None)
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if item is not None and getattr(value, "shape", None) == () and kind in "iuf":
        return item()
    return value


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
        value = _plain_number(value)  # np.int64(500) is as good as 500
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
    error = IncompatibleMethodError(model.name, backend.name, missing, working)
    discrete = getattr(getattr(model, "info", None), "discrete_sites", ())
    if "continuous" in missing and discrete:  # say which sites, and how to make them continuous
        error.args = (
            f"{error.args[0]} Its latent site(s) {list(discrete)} are discrete"
            + ("" if working else ", and no registered method samples discrete sites")
            + ". Sum them out in the model (a "
            "mixture: dist.MixtureSameFamily, or jax.nn.logsumexp over the values in a "
            "numpyro.factor), or give a continuous site that picks the category, as "
            "bp.models.MarginalisedGP does (u ~ U(0, 1), category floor(K u)).",
        )
    raise error


@one_at_a_time
def fit(
    model: Any,
    data: Mapping[str, Any],
    method: Any = "nuts",
    *,
    seed: int = 0,
    progress: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    devices: int | list[Any] | None = None,
    **options: Any,
) -> Fit:
    """Fit a model to data with an inference method.

    Parameters
    ----------
    model
        A registered model name (``"gp"``), a model instance (``bp.models.GP(kernel="matern32")``)
        or a plain NumPyro function, called as ``fn(**data)``.
    data
        A mapping of arrays (or a :class:`bayesplug.datasets.Dataset`, or a pandas DataFrame:
        one array per column, named by the column).
    method
        A registered backend name (``bp.list_backends()``).
    seed
        Non-negative integer; the same seed gives identical draws.
    progress
        Show a progress bar; by default only when standard error is a terminal.
    checkpoint
        A file to which the sampler's state and draws are written after every chunk (about 20
        per run; atomically, as NumPy arrays and JSON, never pickle). A run that is killed,
        interrupted or stopped by ``max_time`` can then be resumed.
    resume
        A checkpoint file written by an earlier call with the same model, data, method, options
        and seed: the run continues from its last chunk (and keeps checkpointing to the same file
        unless ``checkpoint`` names another) and returns the same draws as a run that was never
        interrupted. A checkpoint of a different run is refused.
    devices
        The local devices that the chains of ``nuts`` and the SG-MCMC backends are split over:
        None (all of them), a count, or a list of JAX devices. The same seed gives the same
        draws on any number of devices up to floating-point rounding (which NUTS's warm-up can
        amplify over hundreds of steps: the chains then differ draw by draw, each a valid
        chain of the same posterior). On a CPU-only machine
        there is one device unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is
        set before JAX starts.
    **options
        Method options (``num_samples=...``); unknown names and wrong types are rejected.

    Returns
    -------
    Fit

    Notes
    -----
    Thread-safe: fits started from several threads are correct and run one at a time (NumPyro's
    effect-handler stack is shared by the whole process). For fits in parallel, use processes.

    Examples
    --------
    >>> import bayesplug as bp, numpyro, numpyro.distributions as dist
    >>> def model(y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> fit = bp.fit(model, {"y": [0.9, 1.1]}, num_samples=300, num_warmup=300, num_chains=2)
    >>> mu = fit.samples["mu"]  # exact posterior N(0.995, 0.705^2); MC error of the mean ~0.05
    >>> bool(abs(float(mu.mean()) - 0.995) < 0.25)
    True
    """
    seed = _check_seed(seed)
    data = as_data_mapping(data, allow_empty=True)  # each model says what it needs
    enable_compilation_cache()  # a second process with the same model and shapes compiles nothing
    model = _resolve_model(model, data)
    backend = _resolve_backend(method)
    options = _check_options(backend, options)
    data = model.validate(data)
    _check_capabilities(model, backend)
    if progress is None:
        progress = sys.stderr.isatty()
    if resume is not None and checkpoint is None:
        checkpoint = resume
    if checkpoint is not None:  # a folder or an unwritable place: refused before any work
        checkpoint = os.fspath(output_path(checkpoint, "checkpoint"))
    from .bridge import TRACING_ERRORS

    with precision_context(model):
        try:
            raw, plan = _run_backend(
                model, backend, data, seed, bool(progress), options, checkpoint, resume, devices
            )
        except TRACING_ERRORS as exc:  # the model's Python needs concrete values: say so
            raise ModelTracingError(model.name, backend.name, exc) from exc
        idata = _as_inference_data(raw, model, data, backend.name, seed, options)
    idata.attrs["num_devices"] = plan.used
    _record_checkpoint(idata, checkpoint, resume, raw.interrupted)
    result = Fit(idata, model, data, state=raw.state)
    _warn_diagnostics(result)
    return result


def _run_backend(model, backend, data, seed, progress, options, checkpoint, resume, devices):
    """The backend's run inside the driver's device and checkpoint settings."""
    import jax
    import jax.numpy as jnp

    from .inference.driver import checkpointing, using_devices

    run_data = {k: jnp.asarray(v) for k, v in data.items()}
    # hashing the data costs a pass over it: only a checkpointed run needs the fingerprint
    fingerprint = (
        None if checkpoint is None else _fingerprint(model, backend.name, seed, options, data)
    )
    with (
        using_devices(devices) as plan,
        checkpointing(checkpoint, resume_from=resume, fingerprint=fingerprint),
    ):
        raw = backend.run(model, run_data, jax.random.PRNGKey(seed), progress=progress, **options)
    return raw, plan


def _as_inference_data(raw, model, data, method: str, seed: int, options):
    """ArviZ data of the run; if the full conversion fails, the draws alone (never lost)."""
    from .convert import to_inference_data

    start = time.perf_counter()
    try:
        idata = to_inference_data(raw, model, data, method=method, seed=seed, options=options)
    except Exception as exc:  # the draws are the user's work: never lose them here
        idata = _draws_only(raw, method, seed, exc)
    idata.attrs["conversion_time"] = time.perf_counter() - start
    return idata


def _record_checkpoint(idata, checkpoint, resume, interrupted: bool) -> None:
    """Say in ``attrs`` where the run was saved / resumed from; point an interrupted run there."""
    if checkpoint is not None:
        idata.attrs["checkpoint"] = os.fspath(checkpoint)
    if resume is not None:
        idata.attrs["resumed_from"] = os.fspath(resume)
    if interrupted and checkpoint is not None:
        from .errors import InterruptedRunWarning

        warnings.warn(
            f"The run so far is saved in the checkpoint {os.fspath(checkpoint)!r}: continue it "
            f"with the same arguments and resume={os.fspath(checkpoint)!r}.",
            InterruptedRunWarning,
            stacklevel=4,  # the caller of fit, past the lock
        )


def _warn_diagnostics(result: Fit) -> None:
    """Warn each convergence message at fit time (timed into ``attrs``)."""
    start = time.perf_counter()
    try:
        diagnostics = result.diagnostics()
    except Exception as exc:
        diagnostics = {"messages": []}
        _warn_incomplete(f"the convergence diagnostics could not be computed ({_why(exc)})", 5)
    result.idata.attrs["diagnostics_time"] = time.perf_counter() - start
    for message in diagnostics["messages"]:
        warnings.warn(message, ConvergenceWarning, stacklevel=4)  # the caller, past the lock


def _fingerprint(model, method: str, seed: int, options, data) -> dict[str, Any]:
    """What identifies a run for resuming: model and its options, method, options, seed, data."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for key in sorted(data):
        value = np.ascontiguousarray(np.asarray(data[key]))
        digest.update(f"{key}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    options = {k: v for k, v in options.items() if k != "max_time"}  # a stop rule, not the run
    return {
        "model": model.name,
        "model_options": json.dumps(getattr(model, "options", {}), default=_stable, sort_keys=True),
        "method": method,
        "options": json.dumps(dict(options), default=_stable, sort_keys=True),
        "seed": int(seed),
        "data": digest.hexdigest(),
    }


def _stable(value: Any) -> str:
    """A description of a non-JSON option that is the same in every process (no addresses)."""
    import re

    name = getattr(value, "__qualname__", None)
    module = getattr(value, "__module__", None)
    if name is not None:
        return f"{module}.{name}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _warn_incomplete(what: str, stacklevel: int = 4) -> None:
    warnings.warn(
        f"Sampling finished, but {what}. The draws are kept in fit.idata.posterior; save them "
        "with fit.save(path).",
        IncompleteResultWarning,
        stacklevel=stacklevel,
    )


def _draws_only(raw, method: str, seed: int, exc: BaseException):
    """An InferenceData with the posterior draws alone, when the full conversion failed."""
    import arviz as az
    import numpy as np

    idata = az.from_dict(
        posterior={k: np.asarray(v) for k, v in raw.samples.items()},
        attrs={
            "method": method,
            "seed": int(seed),
            "data_keys": "[]",
            "interrupted": int(raw.interrupted),
            "backend_messages": json.dumps(list(raw.messages)),
            "incomplete": _why(exc),
        },
    )
    _warn_incomplete(
        f"building the full result failed ({_why(exc)}): the log-likelihood, observed data and "
        "sample statistics are missing",
        stacklevel=6,  # _draws_only, _as_inference_data, fit, the lock, the caller
    )
    return idata


@one_at_a_time
def load(path: str | os.PathLike, *, model: Any = None) -> Fit:
    """Read a fit saved with :meth:`Fit.save`.

    A results file is data: loading never imports a module or calls anything that the file
    names. A fit of a registered model (built in, or a plug-in you installed) is rebuilt from the
    registry by its saved name and options. A fit of a plain NumPyro function comes back without
    its model: summaries, diagnostics, reports and comparisons work, and to predict you pass the
    function yourself (``model=fn``), which is checked against the file's posterior.

    Parameters
    ----------
    path
        A NetCDF file written by :meth:`Fit.save`.
    model
        The model that was fitted: a NumPyro function, a model instance or a registered name.
        It must have the latent sites (names and shapes) of the file's posterior.

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist, bayesplug as bp
    >>> def mean_model(y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> fit = bp.fit(mean_model, {"y": np.array([0.4, 1.1])}, num_warmup=100, num_samples=100,
    ...              num_chains=1, progress=False)
    >>> import tempfile, os; path = os.path.join(tempfile.mkdtemp(), "run.nc"); fit.save(path)
    >>> bp.load(path).model is None            # the function is not re-imported from the file
    True
    >>> bp.load(path, model=mean_model).predict({}).draws.shape
    (100,)
    """
    import arviz as az

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("path", f"no file at {path!r}.")
    if os.path.isdir(path):
        raise InputError("path", f"{path!r} is a folder, not a saved fit.")
    try:
        idata = az.from_netcdf(path)
    except Exception as exc:
        from .inference.driver import is_checkpoint

        if is_checkpoint(path):
            raise InputError(
                "path",
                f"{path!r} is a checkpoint of a run, not a saved fit.",
                f"Continue the run with bp.fit(..., resume={path!r}) (same model, data, "
                "method, options and seed); its result is a fit to save.",
            ) from None
        raise InputError("path", f"{path!r} is not a bayesplug fit ({exc}).") from exc
    attrs = idata.attrs
    results = {"posterior", "smoothed_functionals"}  # draws, or PaRIS's functionals alone
    if "method" not in attrs or not results & set(idata.groups()):
        raise InputError("path", f"{path!r} is an ArviZ file but not one written by bayesplug.")
    try:
        data = data_from_idata(idata)
        static = json.loads(attrs.get("model_static", "{}"))
        saved_options = json.loads(attrs.get("model_options", "{}"))
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputError(
            "path", f"{path!r} is damaged: its data or model settings cannot be read ({exc})."
        ) from None
    if not isinstance(static, dict) or not isinstance(saved_options, dict):
        raise InputError("path", f"{path!r} is damaged: its model settings are not a mapping.")
    if model is None:
        model = _registered_model(str(attrs.get("model", "")), saved_options)
    else:
        model = _resolve_model(model, data)
    if model is not None:
        _check_model_name(model, idata)
        model.validate({**data, **static})
        _check_model_sites(model, idata)
    return Fit(idata, model, data)


def _registered_model(name: str, options: Mapping[str, Any]):
    """The registered model ``name`` built with the saved ``options``; None when not registered.

    Only names in the registry are looked up (built-ins and the plug-ins the user installed):
    nothing named in a file is imported.
    """
    if name not in registry.list_models():
        return None
    try:
        return registry.get_model(name, **options)
    except Exception as exc:
        warnings.warn(
            f"the saved model {name!r} could not be rebuilt with its saved options "
            f"({type(exc).__name__}: {exc}); the fit is loaded without its model. "
            "Pass model=... to bp.load to predict.",
            stacklevel=4,
        )
        return None


def _check_model_name(model, idata) -> None:
    """A model plug-in (not a plain function) must be the one the file names."""
    from .models.numpyro_model import NumPyroModel

    saved = str(idata.attrs.get("model", ""))
    if isinstance(model, NumPyroModel) or model.name == saved:
        return
    raise InputError(
        "model",
        f"is {model.name!r} but the file holds a fit of {saved!r}.",
        f"Pass the model that was fitted (the file says {_fitted_function(idata)}).",
    )


def _check_model_sites(model, idata) -> None:
    """Refuse a NumPyro function whose latent sites differ from the saved posterior's (names and
    shapes): it would predict from its prior for the sites the file has no draws of, silently."""
    info = getattr(model, "info", None)
    if info is None or not hasattr(info, "latent_sites"):
        return  # a model plug-in: its name was checked, its sites are its own
    if "posterior" not in idata.groups():
        return  # no draws to match (PaRIS's functionals alone)
    posterior = idata.posterior
    drawn = set(posterior.data_vars)
    latent = set(info.latent_sites)
    allowed = latent | set(info.deterministic_sites)
    missing, extra = sorted(latent - drawn), sorted(drawn - allowed)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"it has latent site(s) {missing} that the file has no draws of")
        if extra:
            problems.append(f"the file has draws of {extra}, which it does not have")
        raise InputError(
            "model",
            f"{model.name} is not the model this fit was made with: {'; '.join(problems)}.",
            f"Pass the function that was fitted (the file says {_fitted_function(idata)}).",
        )
    for site in sorted(latent):
        shape = tuple(posterior[site].shape[2:])
        if shape != tuple(info.shapes[site]):
            raise InputError(
                "model",
                f"site {site!r} of {model.name} has shape {tuple(info.shapes[site])} but the "
                f"file's draws have shape {shape}.",
                f"Pass the function that was fitted (the file says {_fitted_function(idata)}).",
            )


def _fitted_function(idata) -> str:
    name = idata.attrs.get("model_function") or idata.attrs.get("model", "")
    return repr(str(name)) if name else "nothing about it"


def compare(fits: Mapping[str, Fit], *, ic: str = "loo"):
    """Compare fits by evidence (where known) and by ELPD-LOO (where a log-likelihood exists).

    Returns a DataFrame indexed by the names of ``fits``, best first, with the columns of
    ``arviz.compare`` (``rank``, ``elpd_loo``, ``p_loo``, ``elpd_diff``, ``weight``, ``se``,
    ``dse``, ``warning``) and, for fits with evidences, ``log_evidence``, ``log_evidence_err``,
    ``probability`` (posterior model probability under equal prior odds) and
    ``probability_err``. A point estimate (``method="map"``: one draw) has no LOO: its LOO
    columns stay empty, with an :class:`~bayesplug.errors.IncompleteResultWarning`; a
    comparison with nothing to compare by (no evidence, no posterior draws) is refused.
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
    points = [n for n, i in with_ll.items() if is_point_estimate(i)]
    if points:  # a point estimate (method="map": one draw) has no posterior to leave one out of
        warnings.warn(
            f"{', '.join(repr(n) for n in points)}: one draw (a point estimate, e.g. "
            "method='map'), so no ELPD-LOO (it needs posterior draws); "
            f"{'their' if len(points) > 1 else 'its'} LOO columns are left empty. Fit with a "
            "method that draws from the posterior ('nuts', 'svi', 'flow_vi', 'nested') to "
            "compare by LOO.",
            IncompleteResultWarning,
            stacklevel=2,
        )
        with_ll = {n: i for n, i in with_ll.items() if n not in points}
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
            # ArviZ 0.23 sorts in place, which pandas 3.1 deprecates: its noise, not the user's
            warnings.filterwarnings("ignore", message=".*inplace.*")
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
    if table.columns.empty:
        raise BayesplugError(
            "compare found nothing to compare by: no fit has an evidence (method='nested') or "
            "posterior draws with a log-likelihood (for ELPD-LOO). Fit with 'nested' for "
            "evidences, or with 'nuts', 'svi' or 'flow_vi' for LOO."
        )
    if "rank" in table:
        table = table.sort_values("rank")
    elif "log_evidence" in table:
        table = table.sort_values("log_evidence", ascending=False)
    return table
