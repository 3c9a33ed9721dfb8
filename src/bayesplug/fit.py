"""Fit (the result of :func:`bayesplug.fit`) and Prediction (the result of ``Fit.predict``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np

from ._threads import one_at_a_time
from .errors import BayesplugError, IncompatibleMethodError, InputError, did_you_mean

__all__ = ["Fit", "Prediction", "precision_context"]

# Convergence thresholds of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-
# normalization, folding, and localization: an improved R-hat".
RHAT_MAX = 1.01
ESS_MIN = 400
PARETO_K_MAX = 0.7  # Vehtari et al. (2024): above it, importance sampling is unreliable
IMPORTANCE_SHIFT_MAX = 0.2  # flow_vi: weights moving a mean (in sds) or a std by more than 20%


def precision_context(model):
    """``jax.enable_x64(True)`` for float64 models, else a no-op (never flips it globally)."""
    if getattr(model, "precision", "float32") == "float64":
        import jax

        return jax.enable_x64(True)
    return nullcontext()


def _norm_cdf(z):
    from scipy.special import ndtr

    return ndtr(z)


class Prediction:
    """Predictive distribution at new inputs, for one site (others reachable by name).

    Built from per-draw predictive draws, or from per-draw Gaussians (``component_mean``,
    ``component_std``), in which case ``mean``, ``std`` and ``quantile`` are those of the exact
    Gaussian mixture over posterior draws, and ``draws`` holds one draw per component.

    Attributes
    ----------
    site
        Name of the predicted site (``"f"`` for a GP's latent function, ``"y"`` for data).
    draws
        ``(num_draws, ...)`` predictive draws.
    """

    def __init__(
        self,
        site: str,
        draws: np.ndarray,
        component_mean: np.ndarray | None = None,
        component_std: np.ndarray | None = None,
        others: Mapping[str, Prediction] | None = None,
    ) -> None:
        self.site = site
        self.draws = np.asarray(draws)
        self.component_mean = None if component_mean is None else np.asarray(component_mean)
        self.component_std = None if component_std is None else np.asarray(component_std)
        self._others = dict(others or {})

    @classmethod
    def from_model_output(cls, output: Mapping[str, Any], rng_key) -> Prediction:
        """From a model's ``predict`` output: ``{site: draws}`` or ``{site: {"mean", "std"}}``."""
        import jax

        predictions = {}
        for site, value in output.items():
            rng_key, key = jax.random.split(rng_key)
            if isinstance(value, Mapping):
                mean, std = np.asarray(value["mean"]), np.asarray(value["std"])
                noise = np.asarray(jax.random.normal(key, mean.shape))
                predictions[site] = cls(site, mean + std * noise, mean, std)
            else:
                predictions[site] = cls(site, np.asarray(value))
        first, *rest = predictions
        main = predictions[first]
        main._others = {name: predictions[name] for name in rest}
        return main

    @property
    def sites(self) -> list[str]:
        """Every predicted site, this one first."""
        return [self.site, *self._others]

    def __getitem__(self, site: str) -> Prediction:
        if site == self.site:
            return self
        if site not in self._others:
            raise InputError("site", f"{site!r} was not predicted.", did_you_mean(site, self.sites))
        return self._others[site]

    @property
    def mean(self) -> np.ndarray:
        """Predictive mean at each input."""
        if self.component_mean is not None:
            return self.component_mean.mean(axis=0)
        return self.draws.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Predictive standard deviation (mixture: mean of variances + variance of means)."""
        if self.component_mean is not None:
            var = (self.component_std**2).mean(axis=0) + self.component_mean.var(axis=0)
            return np.sqrt(var)
        return self.draws.std(axis=0)

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """Predictive quantile(s) for ``q`` in [0, 1]: a number, or an array (leading axis)."""
        q_arr = np.asarray(q, dtype=float)
        if np.any(~((q_arr >= 0) & (q_arr <= 1))):  # NaN fails both comparisons
            raise InputError("q", f"quantiles must lie in [0, 1], got {q!r}.")
        if self.component_mean is None:
            return np.quantile(self.draws, q_arr, axis=0)
        return np.stack([self._mixture_quantile(p) for p in q_arr.ravel()]).reshape(
            q_arr.shape + self.mean.shape
        )

    def _mixture_quantile(self, p: float) -> np.ndarray:
        m, s = self.component_mean, np.maximum(self.component_std, 1e-300)
        lo = (m - 40 * s).min(axis=0)
        hi = (m + 40 * s).max(axis=0)
        for _ in range(100):  # bisection on the mixture CDF; 100 halvings reach float precision
            mid = 0.5 * (lo + hi)
            below = _norm_cdf((mid - m) / s).mean(axis=0) < p
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def to_idata(self):
        """The draws of every site as an ArviZ ``InferenceData`` with a ``predictions`` group."""
        import arviz as az

        draws = {name: self[name].draws[None] for name in self.sites}
        return az.from_dict(predictions=draws)

    def __repr__(self) -> str:
        return f"Prediction(site={self.site!r}, draws={self.draws.shape})"


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

    @property
    def samples(self) -> dict[str, Any]:
        """Equal-weight draws ``{site: jax.Array (chain * draw, ...)}``."""
        import jax.numpy as jnp

        post = self.idata.posterior
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

        post = self.idata.posterior
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
        do not apply to them.
        """
        import arviz as az

        if str(self.idata.attrs.get("draws_are", "mcmc")) != "mcmc":
            kwargs.setdefault("kind", "stats")
        return az.summary(self.idata, **kwargs)

    def diagnostics(self) -> dict[str, Any]:
        """Convergence checks with plain-language messages.

        Returns a dict with ``ok`` (bool), ``messages`` (list of sentences saying what is wrong
        and what to do), and the figures checked: ``r_hat_max``, ``ess_bulk_min``,
        ``ess_tail_min``, ``divergences``, ``num_chains``, ``num_draws``.
        """
        import arviz as az

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
            n_div = int(self.idata.sample_stats["diverging"].values.sum())
            out["divergences"] = n_div
            if n_div:
                messages.append(
                    f"{n_div} divergent transition(s) ({n_div / (chains * draws):.1%} of draws): "
                    "the sampler could not follow the posterior's curvature, so the draws may be "
                    "biased. Raise target_accept (e.g. 0.95) or reparametrise the model."
                )
        if "pareto_k" in self.idata.attrs:
            k_hat = float(self.idata.attrs["pareto_k"])
            out["pareto_k"] = k_hat
            if k_hat > PARETO_K_MAX:
                messages.append(
                    f"Do not trust this approximation: the importance weights of its draws against "
                    f"the posterior have Pareto k-hat = {k_hat:.2f} (above {PARETO_K_MAX}), so "
                    "the flow misses part of the posterior and its means, spreads and evidence "
                    "can be badly off, even with importance=True. Use a more flexible flow "
                    "(flow='nsf' or 'maf', more num_flows), train longer, or fit with "
                    "method='nuts'."
                )
        if "importance_shift" in self.idata.attrs:
            shift = float(self.idata.attrs["importance_shift"])
            out["importance_shift"] = shift
            if shift > IMPORTANCE_SHIFT_MAX:
                messages.append(
                    f"The variational draws are off: weighting them against the posterior moves "
                    f"a mean or a spread by {shift:.0%} (more than "
                    f"{IMPORTANCE_SHIFT_MAX:.0%}), so the flow differs from the posterior. "
                    "importance=True corrects this only where the flow has draws; prefer a more "
                    "flexible flow, longer training, or method='nuts'."
                )
        if int(self.idata.attrs.get("diverged", 0)):
            messages.append(
                "The optimisation diverged (NaN ELBO) and was stopped at its last good state; "
                "lower learning_rate or init_scale and fit again."
            )
        mcmc = str(self.idata.attrs.get("draws_are", "mcmc")) == "mcmc"
        if mcmc and draws >= 4:
            rhat = az.rhat(self.idata) if chains >= 2 else None
            ess_bulk = az.ess(self.idata, method="bulk")
            ess_tail = az.ess(self.idata, method="tail")
            worst_ess = _worst(ess_bulk, min)
            out["ess_bulk_min"] = worst_ess[1]
            out["ess_tail_min"] = _worst(ess_tail, min)[1]
            if rhat is not None:
                worst_rhat = _worst(rhat, max)
                out["r_hat_max"] = worst_rhat[1]
                if worst_rhat[1] > RHAT_MAX:
                    messages.append(
                        f"The chains disagree: R-hat reaches {worst_rhat[1]:.3f} for "
                        f"{worst_rhat[0]!r} (should be below {RHAT_MAX}). Run longer "
                        "(num_warmup, num_samples), and check for several modes."
                    )
            else:
                messages.append("One chain only: R-hat is undefined. Run num_chains >= 2.")
            if worst_ess[1] < ESS_MIN:
                messages.append(
                    f"Few effective draws: bulk ESS is {worst_ess[1]:.0f} for {worst_ess[0]!r} "
                    f"(want at least {ESS_MIN}); means and intervals are imprecise. Draw more "
                    "samples (num_samples) or more chains."
                )
        out["ok"] = not messages
        return out

    # --- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the fit to NetCDF (parent folders are created); :func:`bayesplug.load` reads it
        back."""
        from ._validation import output_path

        self.idata.to_netcdf(str(output_path(path)))

    def __repr__(self) -> str:
        post = self.idata.posterior
        return (
            f"Fit(model={self.idata.attrs.get('model')!r}, method={self.method!r}, "
            f"chains={post.sizes['chain']}, draws={post.sizes['draw']}, "
            f"sites={list(post.data_vars)})"
        )


def _worst(dataset, pick) -> tuple[str, float]:
    """(site, value) of the worst entry of an ArviZ per-site statistic."""
    best_name, best_value = "", math.nan
    for name in dataset.data_vars:
        values = np.asarray(dataset[name].values, dtype=float).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        value = float(pick(values))
        if math.isnan(best_value) or pick(value, best_value) == value:
            best_name, best_value = name, value
    return best_name, best_value


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
