"""Any NumPyro function as a model plug-in: how a user brings their own model.

``bp.fit(fn, {"x": x, "y": y})`` calls ``fn(x=x, y=y)``; sample sites given ``obs=`` are the
observed data, and ``fit.predict({"x": x_new})`` calls ``fn(x=x_new)`` and returns the predictive
of those observed sites. Python ``int``, ``str``, ``bool`` and ``None`` values in the data are
passed through unchanged as static arguments (sizes, switches); everything else becomes an array.

Examples
--------
>>> import numpyro, numpyro.distributions as dist
>>> def line(x, y=None):
...     a = numpyro.sample("a", dist.Normal(0, 1))
...     numpyro.sample("y", dist.Normal(a * x, 0.1), obs=y)
>>> m = NumPyroModel(line)
>>> data = m.validate({"x": [0.0, 1.0], "y": [0.0, 0.9]})
>>> m.observed_sites, sorted(m.capabilities)
(('y',), ['continuous', 'proper_prior'])
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpyro.primitives import Messenger

from .._validation import as_data_mapping
from ..errors import InputError, did_you_mean
from .base import ModelBase

_STATIC_TYPES = (int, str, bool, type(None))


class NumPyroModel(ModelBase):
    """Wrap a NumPyro program ``fn(**data)`` as a bayesplug model.

    Parameters
    ----------
    fn
        The NumPyro program. Its keyword arguments are the data keys.
    name
        Display name (default: the function's name).
    precision
        ``"float32"`` (default) or ``"float64"``: the fit then runs inside
        ``jax.enable_x64(True)`` (covariates of very different scales, say income in dollars
        beside a 0/1 indicator, can exhaust float32's 7 digits in NUTS's leapfrog steps).

    Examples
    --------
    >>> import bayesplug as bp, numpyro, numpyro.distributions as dist
    >>> def model(y=None):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 1e4))
    ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> fit = bp.fit(bp.models.NumPyroModel(model, precision="float64"), {"y": [1e4 + 1, 1e4 - 1]},
    ...              method="map", progress=False)
    >>> str(fit.idata.posterior["mu"].dtype)
    'float64'
    """

    precision = "float32"

    def __init__(self, fn: Callable, name: str | None = None, precision: str = "float32") -> None:
        if not callable(fn):
            raise InputError("model", f"expected a NumPyro function, got {type(fn).__name__}.")
        if precision not in ("float32", "float64"):
            raise InputError("precision", f"is {precision!r}.", "Use 'float32' or 'float64'.")
        self.precision = precision
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "numpyro_model")
        self.options = {}
        self.static: dict[str, Any] = {}
        self.observed_sites: tuple[str, ...] = ()
        self.capabilities: frozenset[str] = frozenset()
        self.info = None
        try:
            self._parameters = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            self._parameters = {}

    @property
    def function_name(self) -> str:
        """``module:qualname`` of the function, recorded in saved fits for people to read.

        :func:`bayesplug.load` never imports it: a results file is data.
        """
        module = getattr(self.fn, "__module__", None) or "?"
        return f"{module}:{getattr(self.fn, '__qualname__', self.name)}"

    def _accepts_any_keyword(self) -> bool:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self._parameters.values())

    def _check_keys(self, values: Mapping[str, Any], argument: str) -> None:
        if not self._parameters or self._accepts_any_keyword():
            return
        for key in values:
            if key not in self._parameters:
                raise InputError(
                    f"{argument}[{key!r}]",
                    f"is not an argument of {self.name}{inspect.signature(self.fn)}.",
                    did_you_mean(key, self._parameters),
                )

    def _split(self, values: Mapping[str, Any], argument: str) -> tuple[dict, dict]:
        arrays, static = {}, {}
        for key, value in values.items():
            if isinstance(value, _STATIC_TYPES) and not isinstance(value, float):
                static[key] = value
                continue
            try:
                array = np.asarray(value)
            except Exception as exc:  # ragged lists and the like
                raise InputError(
                    f"{argument}[{key!r}]", f"could not be read as an array ({exc})."
                ) from None
            if array.dtype.kind not in "biuf":
                raise InputError(
                    f"{argument}[{key!r}]",
                    f"has dtype {array.dtype}; expected numbers.",
                    "Convert it to a numeric array, or pass a Python int/str for a static setting.",
                )
            if array.size == 0:
                raise InputError(f"{argument}[{key!r}]", "is empty.")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = int((~np.isfinite(array)).sum())
                raise InputError(
                    f"{argument}[{key!r}]",
                    f"contains {bad} NaN or infinite value(s).",
                    "Remove or impute them before fitting.",
                )
            arrays[key] = array
        return arrays, static

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check the keys against ``fn``'s signature and the values; find the observed sites."""
        from ..bridge import trace_model

        data = as_data_mapping(data, allow_empty=True)  # a likelihood may be a numpyro.factor
        self._check_keys(data, "data")
        arrays, self.static = self._split(data, "data")
        try:
            info = trace_model(self.model, arrays)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                "model",
                f"running {self.name}(**data) failed with {type(exc).__name__}: {exc}",
                "Check that the data keys and shapes are what the function expects.",
            ) from exc
        for plate, (size, subsample_size) in info.subsampled_plates.items():
            raise InputError(
                "model",
                f"numpyro.plate({plate!r}, {size}, subsample_size={subsample_size}) in "
                f"{self.name} subsamples inside the program: every backend would then see a "
                "different (or, compiled, one frozen) random subset of the data, a wrong "
                "posterior.",
                "Remove subsample_size and let the backend mini-batch: method='sgld', 'sghmc' "
                "or 'svi' with batch_size=... (the plate over the data is enough).",
            )
        if not info.observed_sites and not info.factor_sites:
            self._refuse_forgotten_observations(data)
        if not info.latent_sites:
            raise InputError("model", f"{self.name} has no latent sample site: nothing to infer.")
        for site in info.observed_sites:
            given, drawn = info.shapes[site], info.distribution_shapes.get(site, info.shapes[site])
            try:  # a distribution may broadcast up to the observations, never past them
                ok = np.broadcast_shapes(given, drawn) == given
            except ValueError:
                ok = False
            if not ok:
                raise InputError(
                    "data",
                    f"the values observed at site {site!r} of {self.name} have shape {given}, "
                    f"but the site's distribution draws shape {drawn}: NumPyro would broadcast "
                    "them into a wrong likelihood (or fail).",
                    "Reshape the observations (e.g. y.ravel()) or check the lengths of the "
                    "data arrays.",
                )
        self.info = info
        self.observed_sites = info.observed_sites
        capabilities = set()
        if not info.discrete_sites:
            capabilities.add("continuous")
        if not info.improper_sites:
            capabilities.add("proper_prior")
        if info.data_plate_size is not None:
            capabilities.add("minibatch")
        self.capabilities = frozenset(capabilities)
        return arrays

    def _refuse_forgotten_observations(self, data: Mapping[str, Any]) -> None:
        """A program that observes nothing is a density to sample (NumPyro's funnel), unless an
        argument defaulting to ``None`` was left out: that is how observations are passed
        (``obs=y``), so sampling would silently return the prior instead of the posterior."""
        unset = [
            name
            for name, p in self._parameters.items()
            if p.default is None and name not in data and p.kind is not p.VAR_KEYWORD
        ]
        if unset:
            raise InputError(
                "data",
                f"no sample site of {self.name} received observed data (obs=...) and it has no "
                f"numpyro.factor, and its argument(s) {', '.join(map(repr, unset))} (default "
                "None) were not given: fitting would return the prior, not a posterior.",
                f"Pass the observations, e.g. data[{unset[0]!r}] = ... . (A program that "
                "observes nothing, like NumPyro's funnel, is sampled as it is when no argument "
                "defaulting to None is left out.)",
            )

    @property
    def program_key(self) -> tuple:
        """What the program depends on besides the data's values: the function and the static
        settings. Two wrappers with equal keys trace the same program, so backends reuse what
        they compiled for one in a fit of the other (a new wrapper is made on every ``bp.fit``
        of a plain function)."""
        return (NumPyroModel, self.fn, tuple(sorted(self.static.items())))

    def model(self, **data: Any) -> None:
        """Call the wrapped function with the data and the static settings."""
        return self.fn(**self.static, **data)

    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """Posterior predictive of the observed sites at ``inputs`` (``fn(**inputs)``)."""
        from numpyro.infer import Predictive

        if not isinstance(inputs, Mapping):
            raise InputError(
                "inputs",
                f"expected a mapping like the data, got {type(inputs).__name__}.",
                f"Pass e.g. {{{next(iter(data), 'x')!r}: values}}.",
            )
        inputs = dict(inputs)
        self._check_keys(inputs, "inputs")
        arrays, static = self._split(inputs, "inputs")
        for key, value in arrays.items():
            if key in data and np.ndim(value) != np.ndim(data[key]):
                raise InputError(
                    f"inputs[{key!r}]",
                    f"has {np.ndim(value)} dimension(s) but data[{key!r}] had "
                    f"{np.ndim(data[key])} (shape {np.shape(data[key])}).",
                    "Give new values with the data's dimensions (any length).",
                )
        # values given for an observed site (a function that reads its length from y) shape the
        # call, but the site is drawn: Predictive would otherwise return them as the prediction
        fn = _Unobserved(
            functools.partial(self.fn, **{**self.static, **static}), set(self.observed_sites)
        )
        predictive = Predictive(
            fn, posterior_samples=dict(samples), return_sites=list(self.observed_sites)
        )
        try:
            return dict(predictive(rng_key, **arrays))
        except Exception as exc:
            raise InputError(
                "inputs",
                f"running {self.name}(**inputs) failed with {type(exc).__name__}: {exc}",
                "Give the inputs with the data's shapes (the function is called with them).",
            ) from None


class _Unobserved(Messenger):
    """Draw the given sample sites even where the program passes ``obs=``."""

    def __init__(self, fn: Callable, sites: set[str]) -> None:
        self.sites = sites
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites and msg["is_observed"]:
            msg["value"] = None
            msg["is_observed"] = False
