"""The one path from a backend's :class:`~bayesplug.protocols.RawResult` to ArviZ.

Every backend's output goes through :func:`to_inference_data`, so every fit carries the same
groups: ``posterior`` (equal-weight draws, chain x draw), ``sample_stats``, ``log_likelihood``
(named like the observed sites, so ``az.loo`` / ``az.compare`` work for every backend),
``observed_data``, ``constant_data`` (every data array, so a saved fit can predict again),
``point_estimate`` (optimised quantities, when the method has any), any backend-specific
groups, and ``attrs`` with the method, seed, options, versions and evidence.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from .protocols import RawResult

__all__ = ["package_versions", "to_inference_data"]

_PACKAGES = ("bayesplug", "jax", "numpyro", "arviz", "blackjax", "gpjax")


def package_versions() -> dict[str, str]:
    """Installed versions of bayesplug and the libraries its results depend on."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, sort_keys=True)


def to_inference_data(
    raw: RawResult,
    model,
    data: Mapping[str, Any],
    *,
    method: str,
    seed: int,
    options: Mapping[str, Any],
):
    """Build the ``arviz.InferenceData`` of a fit.

    Parameters
    ----------
    raw
        The backend's result (constrained draws shaped (chain, draw, ...)).
    model
        The model plug-in (for observed sites, options and the pointwise log-likelihood).
    data
        The validated data the model was fitted to.
    method, seed, options
        Recorded in ``attrs`` for provenance.
    """
    import arviz as az
    import xarray as xr

    posterior = {k: np.asarray(v) for k, v in raw.samples.items()}
    observed = _observed_values(model, data, posterior)
    # a model whose likelihood depends on optimised quantities (learned inducing inputs) says
    # so; the default NumPyro path needs every value to carry the (chain, draw) axes
    point = {}
    if getattr(model, "log_likelihood_uses_point_estimate", False):
        point = {k: np.asarray(v) for k, v in (raw.point_estimate or {}).items()}
    log_likelihood = {
        k: np.asarray(v)
        for k, v in model.pointwise_log_likelihood({**point, **posterior}, data).items()
    }
    dims = {name: _dims(name, value) for name, value in observed.items()}
    attrs = _attrs(raw, model, data, method, seed, options)
    idata = az.from_dict(
        posterior=posterior,
        sample_stats={
            k: np.asarray(v) for k, v in raw.sample_stats.items() if not isinstance(v, xr.DataArray)
        }
        or None,
        log_likelihood=log_likelihood or None,
        observed_data=observed,
        constant_data={f"data_{k}": np.asarray(v) for k, v in data.items()},
        dims=dims,
        attrs=attrs,
    )
    # Statistics on other axes than (chain, draw), e.g. an optimiser's trace over steps.
    for name, value in raw.sample_stats.items():
        if isinstance(value, xr.DataArray):
            if "sample_stats" not in idata.groups():
                idata.add_groups({"sample_stats": xr.Dataset({name: value})})
            else:
                idata.sample_stats[name] = value
    if raw.point_estimate:
        idata.add_groups(
            {
                "point_estimate": xr.Dataset(
                    {k: (_dims(k, v), np.asarray(v)) for k, v in raw.point_estimate.items()}
                )
            }
        )
    for group, values in raw.extra_groups.items():
        if not isinstance(values, xr.Dataset):
            values = xr.Dataset({k: (_dims(k, v), np.asarray(v)) for k, v in values.items()})
        idata.add_groups({group: values})
    return idata


def _attrs(raw: RawResult, model, data, method: str, seed: int, options) -> dict[str, Any]:
    """Provenance and the backend's figures, as the file's top-level attributes (JSON text for
    anything that is not a number or a string)."""
    attrs = {
        "method": method,
        "seed": int(seed),
        "options": _json(dict(options)),
        "model": model.name,
        "model_options": _json(getattr(model, "options", {})),
        "data_keys": _json(list(data)),
        "interrupted": int(raw.interrupted),
        "backend_messages": _json(list(raw.messages)),
        # "created_at" would be dropped: ArviZ keeps that name for its own per-group stamp
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **{f"version_{k}": v for k, v in package_versions().items()},
    }
    function = getattr(model, "function_name", None)
    if function:  # provenance for people: bp.load never imports it
        attrs["model_function"] = function
    static = getattr(model, "static", None)
    if static:
        attrs["model_static"] = _json(static)
    if raw.log_evidence is not None:
        attrs["log_evidence"] = float(raw.log_evidence[0])
        attrs["log_evidence_err"] = float(raw.log_evidence[1])
    for key, value in raw.attrs.items():
        attrs[key] = value if isinstance(value, int | float | str) else _json(value)
    return attrs


def _dims(name: str, value) -> list[str]:
    return [f"{name}_dim_{i}" for i in range(np.ndim(value))]


def _observed_values(model, data, posterior) -> dict[str, np.ndarray]:
    """Values of the observed sites: the data array of the same name, else read from a trace of
    the program with the latent sites set to the first posterior draw (never a prior draw: an
    improper prior has none, and sampling after the run must not be able to fail it)."""
    if all(site in data for site in model.observed_sites):
        return {site: np.asarray(data[site]) for site in model.observed_sites}
    import jax
    from numpyro import handlers

    first = {k: np.asarray(v)[(0,) * min(2, np.ndim(v))] for k, v in posterior.items()}
    program = handlers.substitute(handlers.seed(model.model, jax.random.PRNGKey(0)), data=first)
    trace = handlers.trace(program).get_trace(**data)
    return {s: np.asarray(trace[s]["value"]) for s in model.observed_sites}
