"""Prediction: the predictive distribution at new inputs (the result of ``Fit.predict``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InputError, did_you_mean

__all__ = ["Prediction"]


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

    def __contains__(self, site: object) -> bool:
        return site in self.sites

    def __iter__(self):
        """The predicted sites' names, as a mapping's keys (``for site in prediction``)."""
        return iter(self.sites)

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
