"""Fit: the result of :func:`bayesplug.fit` (``Prediction`` lives in :mod:`bayesplug.prediction`,
the convergence rules in :mod:`bayesplug.diagnostics`; no backend is named here)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np

from ._threads import one_at_a_time
from .diagnostics import mcmc_checks
from .errors import BayesplugError, IncompatibleMethodError, InputError, did_you_mean
from .prediction import Prediction

__all__ = ["Fit", "Prediction", "precision_context"]


def precision_context(model):
    """``jax.enable_x64(True)`` for float64 models, else a no-op (never flips it globally)."""
    if getattr(model, "precision", "float32") == "float64":
        import jax

        return jax.enable_x64(True)
    return nullcontext()


def is_point_estimate(idata) -> bool:
    """True for a fit with one value a parameter (``method="map"``: one draw in all)."""
    if str(idata.attrs.get("draws_are")) == "point":
        return True
    if "posterior" not in idata.groups():
        return False
    sizes = idata.posterior.sizes
    return sizes.get("chain", 1) * sizes.get("draw", 1) == 1


class Fit:
    """The result of :func:`bayesplug.fit`: ArviZ data plus what is needed to predict again.

    Attributes
    ----------
    idata
        ``arviz.InferenceData`` (posterior, sample_stats, log_likelihood, observed_data,
        constant_data, attrs).
    model
        The model plug-in that was fitted (None after :func:`bayesplug.load` when it cannot be
        rebuilt; pass ``model=`` to ``load`` then).
    data
        The validated data.
    state
        The backend's final state (in memory only).
    """

    def __init__(self, idata, model, data: Mapping[str, Any], state: Any = None) -> None:
        self.idata = idata
        self.model = model
        self.data = dict(data)
        self.state = state

    # --- views ----------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """Name of the backend that produced the fit."""
        return str(self.idata.attrs.get("method", ""))

    def _posterior(self):
        """The posterior group, or an error in words for a fit that kept no draws."""
        if "posterior" not in self.idata.groups():
            raise BayesplugError(
                f"this {self.method} fit kept no draws: it holds "
                f"{_what_it_holds(self.idata)}. {_how_to_keep_draws(self.method)}"
            )
        return self.idata.posterior

    @property
    def samples(self) -> dict[str, Any]:
        """Equal-weight draws ``{site: jax.Array (chain * draw, ...)}``."""
        import jax.numpy as jnp

        post = self._posterior()
        return {
            name: jnp.asarray(post[name].values.reshape((-1,) + post[name].shape[2:]))
            for name in post.data_vars
        }

    @property
    def point_estimate(self) -> dict[str, Any]:
        """Quantities the method optimised rather than sampled ``{name: jax.Array}`` (variational
        parameters, learned inducing inputs, maximum-likelihood estimates); empty if none."""
        import jax.numpy as jnp

        if "point_estimate" not in self.idata.groups():
            return {}
        group = self.idata.point_estimate
        return {name: jnp.asarray(group[name].values) for name in group.data_vars}

    @property
    def log_evidence(self) -> tuple[float, float] | None:
        """``(ln Z, standard error)`` when the method estimates the evidence, else None."""
        attrs = self.idata.attrs
        if "log_evidence" not in attrs:
            return None
        return float(attrs["log_evidence"]), float(attrs["log_evidence_err"])

    # --- prediction ------------------------------------------------------------------------
    @one_at_a_time
    def predict(
        self, inputs: Mapping[str, Any], *, seed: int = 0, num_draws: int | None = None
    ) -> Prediction:
        """Posterior predictive at new ``inputs`` (a mapping like the data, without ``y``).

        Parameters
        ----------
        inputs
            e.g. ``{"x": x_new}``.
        seed
            Seeds the predictive draws and the choice of posterior draws.
        num_draws
            Use this many posterior draws (chosen at random without replacement); all by default.
        """
        import jax

        if self.model is None:
            fitted = self.idata.attrs.get("model_function") or self.idata.attrs.get("model")
            raise BayesplugError(
                "this fit was loaded without its model, so it cannot predict (a saved file "
                "never brings code back with it): call bp.load(path, model=...) with the model "
                f"or NumPyro function that was fitted (the file says {str(fitted)!r})."
            )
        seed = _check_seed(seed)
        if num_draws is not None and (
            isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1
        ):
            raise InputError("num_draws", f"expected a positive integer, got {num_draws!r}.")
        with precision_context(self.model):  # float64 models keep their draws in float64
            samples = self.samples
            total = next(iter(samples.values())).shape[0]
            rng_key = jax.random.PRNGKey(seed)
            if num_draws is not None:
                if num_draws > total:
                    raise InputError(
                        "num_draws", f"is {num_draws} but the fit has only {total} draws."
                    )
                rng_key, key = jax.random.split(rng_key)
                index = jax.random.choice(key, total, (num_draws,), replace=False)
                samples = {k: v[np.sort(np.asarray(index))] for k, v in samples.items()}
            # Optimised quantities (no draw axis) travel with the draws; draws take precedence.
            samples = {**self.point_estimate, **samples}
            output = self.model.predict(samples, self.data, inputs, rng_key)
            return Prediction.from_model_output(output, rng_key)

    # --- discrete choices -----------------------------------------------------------------------
    def discrete_posterior(self, site: str):
        """Posterior of a discrete choice site (e.g. ``"kernel"``), one row per category.

        Columns: ``probability``, ``probability_err``, and ``log_evidence``, ``log_evidence_err``
        where the method estimated per-category evidences.
        """
        import pandas as pd

        post = self._posterior()
        if site not in post:
            raise InputError(
                "site", f"{site!r} is not a posterior site.", did_you_mean(site, post.data_vars)
            )
        group = f"discrete_{site}"
        if group in self.idata.groups():
            table = self.idata[group].to_dataframe()
            table.index = [str(i) for i in table.index]
            return table
        values = post[site].values.ravel()
        if not np.allclose(values, np.round(values)):
            raise IncompatibleMethodError(
                self.model.name if self.model else "model", self.method, {"discrete_choice"}, ()
            )
        labels, counts = np.unique(values.astype(int), return_counts=True)
        p = counts / counts.sum()
        err = np.sqrt(p * (1 - p) / counts.sum())
        return pd.DataFrame(
            {"probability": p, "probability_err": err}, index=[str(v) for v in labels]
        )

    # --- diagnostics --------------------------------------------------------------------------
    def summary(self, **kwargs: Any):
        """ArviZ summary (mean, sd, HDI, MCSE, ESS, R-hat) of the posterior sites.

        For resampled draws (nested sampling) only the statistics are shown: MCMC diagnostics
        do not apply to them. A point estimate (``method="map"``: one draw) has one column,
        ``value`` (no spread, interval or diagnostics to show). A PaRIS fit without draws
        (``num_paths=0``) gives its smoothed functionals: ``estimate`` (the mean over the
        independent runs), ``se`` (their standard error) and ``runs``.
        """
        import warnings

        import arviz as az

        if "posterior" not in self.idata.groups() and "smoothed_functionals" in self.idata.groups():
            return _functionals_table(self)
        _check_var_names(self._posterior(), kwargs)
        if str(self.idata.attrs.get("draws_are", "mcmc")) != "mcmc":
            kwargs.setdefault("kind", "stats")
        if not is_point_estimate(self.idata):
            return az.summary(self.idata, **kwargs)
        kwargs.setdefault("round_to", "none")  # the value itself, not 3 decimals of it
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # the sd of one draw
            table = az.summary(self.idata, **kwargs)
        return table[["mean"]].rename(columns={"mean": "value"})

    def diagnostics(self) -> dict[str, Any]:
        """Convergence checks with plain-language messages.

        Returns a dict with ``ok`` (bool), ``messages`` (list of sentences saying what is wrong
        and what to do), and the figures checked: ``r_hat_max``, ``ess_bulk_min``,
        ``ess_tail_min``, ``divergences``, ``num_chains``, ``num_draws``.
        """

        if "posterior" in self.idata.groups():
            post = self.idata.posterior
            chains, draws = post.sizes["chain"], post.sizes["draw"]
        else:  # e.g. a PaRIS run that kept no trajectories: functionals and evidence only
            chains, draws = 0, 0
        out: dict[str, Any] = {"num_chains": int(chains), "num_draws": int(draws), "messages": []}
        messages = out["messages"]
        if int(self.idata.attrs.get("interrupted", 0)):
            messages.append(
                "The run was interrupted and holds only part of the draws asked for; "
                "treat its estimates as provisional."
            )
        if self.log_evidence is not None and not all(map(math.isfinite, self.log_evidence)):
            value, error = self.log_evidence
            messages.append(
                f"The evidence estimate is not a number (ln Z = {value:g} ± {error:g}): the "
                "likelihood under- or overflowed in floating point, so ln Z and its error cannot "
                "be used. Rescale the data (or the model's units) so that likelihood values stay "
                "moderate, or check the model for impossible values."
            )
        if "sample_stats" in self.idata.groups() and "diverging" in self.idata.sample_stats:
            out["divergences"] = int(self.idata.sample_stats["diverging"].values.sum())
        for figure in ("pareto_k", "importance_shift"):  # a backend's own checked figures
            if figure in self.idata.attrs:
                out[figure] = float(self.idata.attrs[figure])
        # what the backend said of its result, in words (RawResult.messages)
        messages.extend(json.loads(str(self.idata.attrs.get("backend_messages", "[]"))))
        if str(self.idata.attrs.get("draws_are", "mcmc")) == "mcmc" and draws >= 4:
            figures, found = mcmc_checks(self.idata, chains)
            out.update(figures)
            messages.extend(found)
        out["ok"] = not messages
        return out

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the fit to NetCDF (parent folders are created); :func:`bayesplug.load` reads it
        back."""
        from ._validation import output_path

        self.idata.to_netcdf(str(output_path(path)))

    def __repr__(self) -> str:
        head = f"Fit(model={self.idata.attrs.get('model')!r}, method={self.method!r}, "
        if "posterior" not in self.idata.groups():
            return head + f"no draws: {_what_it_holds(self.idata)})"
        post = self.idata.posterior
        return head + (
            f"chains={post.sizes['chain']}, draws={post.sizes['draw']}, "
            f"sites={list(post.data_vars)})"
        )


def _what_it_holds(idata) -> str:
    """Words for what a fit without draws carries (PaRIS with ``num_paths=0``)."""
    parts = []
    if "smoothed_functionals" in idata.groups():
        names = [n for n in idata.smoothed_functionals.data_vars if n != "log_likelihood"]
        parts.append(f"the smoothed functionals {names} (fit.summary())")
    if "log_evidence" in idata.attrs:
        parts.append("the log evidence (fit.log_evidence)")
    return " and ".join(parts) or "no results"


def _how_to_keep_draws(method: str) -> str:
    if method == "paris":
        return "Fit with num_paths > 0 to keep smoothed trajectories as draws."
    return "Fit again with a method that draws from the posterior."


def _check_var_names(posterior, kwargs: dict[str, Any]) -> None:
    """Refuse ``var_names`` naming no posterior site (ArviZ says only ``KeyError``)."""
    names = kwargs.get("var_names")
    if names is None or kwargs.get("filter_vars") is not None:
        return  # "like" / "regex" filters match patterns, not names
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if str(n).lstrip("~") not in posterior.data_vars]
    if unknown:
        raise InputError(
            "var_names",
            f"no posterior site is called {', '.join(map(repr, unknown))}.",
            did_you_mean(str(unknown[0]).lstrip("~"), map(str, posterior.data_vars)),
        )
    excluded = {str(n)[1:] for n in names if str(n).startswith("~")}
    if len(excluded) == len(names) and excluded >= set(map(str, posterior.data_vars)):
        raise InputError("var_names", f"{names} leaves no posterior site to summarise.")


def _functionals_table(fit):
    """Each smoothed functional's estimate (mean over the independent runs) and its standard
    error (:func:`bayesplug.inference.paris.functional_summary`), one row per element."""
    import pandas as pd

    from .inference.paris import functional_summary

    runs = fit.idata.smoothed_functionals.sizes.get("chain", 1)
    rows = {}
    for name, (mean, se) in functional_summary(fit).items():
        if name == "log_likelihood":  # each run's ln Z estimate: fit.log_evidence combines them
            continue
        mean, se = np.atleast_1d(mean).ravel(), np.atleast_1d(se).ravel()
        shape = np.shape(fit.idata.smoothed_functionals[name].values)[1:]
        for i in range(mean.size):
            index = ",".join(map(str, np.unravel_index(i, shape))) if shape else ""
            label = name if mean.size == 1 else f"{name}[{index}]"
            rows[label] = {"estimate": float(mean[i]), "se": float(se[i]), "runs": runs}
    return pd.DataFrame.from_dict(rows, orient="index")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", f"expected a non-negative integer, got {seed!r}.")
    if seed >= 2**63:  # JAX keys are built from a 64-bit integer
        raise InputError("seed", f"must be below 2**63, got {seed!r}.")
    return int(seed)


def data_from_idata(idata) -> dict[str, np.ndarray]:
    """The data a fit was made on, from its ``constant_data`` group."""
    keys = json.loads(idata.attrs.get("data_keys", "[]"))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("attribute 'data_keys' is not a list of names")
    if not keys:
        return {}
    if "constant_data" not in idata.groups():
        raise KeyError(f"the data {keys} are named but the file has no constant_data group")
    constant = idata.constant_data
    return {k: constant[f"data_{k}"].values for k in keys}
