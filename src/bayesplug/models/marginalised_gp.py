"""Model ``marginalised_gp``: GP regression marginalised over kernels, mean functions and noise.

Kroupa, Yallup, Handley & Hobson (MNRAS 2024), "Kernel-, mean- and noise-marginalised Gaussian
processes for exoplanet transits and H0 inference". Each discrete choice (kernel, mean function,
noise model) is embedded in a continuous coordinate ``<choice>_u ~ U(0, 1)`` mapped to the index
``floor(K u)`` (recorded as the deterministic site ``<choice>``), and the hyperparameters of
*every* candidate live in one fixed-size vector (the inactive ones follow their priors): the
paper's transdimensional construction, which nested sampling explores in a single run.
``fit.discrete_posterior("kernel")`` then gives each kernel's posterior probability and evidence.

Data ``{"x": (n,), "y": (n,), "yerr": (n,)}``. Default priors are the paper's uniform boxes, scaled
to the data (for the H(z) data they reproduce the paper's boxes): with s = max|y| and R = range(x),

* amplitudes (stationary kernels, the linear kernel's bias and slope scales): U(0, 2.5 s);
* lengthscales: U(0, 10 R); rational-quadratic alpha: U(0, 10); periods: U(0, R);
* constant mean: U(-5 s, 5 s); linear mean: intercept U(-5 s, 5 s), slope U(-5 s/R, 5 s/R);
* fitted noise: U(0, 2.5 s); jitter added to ``yerr``: U(0, max(yerr)).

Replace any prior with ``priors={"matern32_lengthscale": dist.Uniform(0, 5)}``. A user mean
function is a :class:`MeanFunction` (a callable ``f(x, params)`` with its own priors), e.g. a
flat-ΛCDM H(z).

``fit.predict({"x": x_new})`` is the model-marginalised predictive of f: the mixture over posterior
draws (each with its own kernel, mean and noise) of the conditioned Gaussians.

Examples
--------
>>> import bayesplug as bp
>>> model = bp.models.MarginalisedGP(kernels=["matern32", "linear"], means=["constant"])
>>> sorted(model.discrete_choices)
['kernel']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .._validation import (
    as_array,
    as_data_mapping,
    check_same_length,
    check_unknown_keys,
    check_varies,
    warn_if_exact_gp_is_large,
)
from ..errors import InputError, did_you_mean
from .base import ModelBase
from .gp import CovarianceNormal, conditional_over_draws, exact_loo_log_likelihood
from .kernels import CORRELATIONS, covariance_1d

__all__ = ["MarginalisedGP", "MeanFunction"]

_KERNEL_PARAMETERS = {
    **{k: ("amplitude", "lengthscale") for k in CORRELATIONS},
    "rational_quadratic": ("amplitude", "lengthscale", "alpha"),
    "periodic": ("amplitude", "lengthscale", "period"),
    "linear": ("bias", "slope"),
}
DEFAULT_KERNELS = ("matern32", "matern52", "matern72", "rbf", "linear")
_NOISES = ("yerr", "yerr+jitter", "fitted")


@dataclass(frozen=True)
class MeanFunction:
    """A parametric mean function ``fn(x, params) -> (n,)`` with the priors of its parameters."""

    name: str
    fn: Callable[[Any, Mapping[str, Any]], Any]
    priors: Mapping[str, dist.Distribution] = field(default_factory=dict)


def kernel_matrix(name: str, p: Mapping[str, Any], x1, x2, distance):
    """Covariance between x1 and x2 (1-D inputs) for one candidate kernel, by the catalogue's
    formulas (:func:`bayesplug.models.kernels.covariance_1d`). The paper's ``linear`` candidate
    is the catalogue's constant plus linear kernel: bias² + slope² x x'."""
    if name == "linear":
        return covariance_1d("constant", {"constant": p["bias"]}, x1, x2, distance) + (
            covariance_1d("linear", {"amplitude": p["slope"]}, x1, x2, distance)
        )
    return covariance_1d(name, p, x1, x2, distance)


class MarginalisedGP(ModelBase):
    """GP regression marginalised over kernels, means and noise models (see module docstring).

    Parameters
    ----------
    kernels
        Candidate kernels: names from ``rbf``, ``matern12``, ``matern32``, ``matern52``,
        ``matern72``, ``rational_quadratic``, ``periodic``, ``linear``.
    means
        Candidate means: ``"zero"``, ``"constant"``, ``"linear"`` or :class:`MeanFunction`.
    noises
        Candidate noise models: ``"yerr"``, ``"yerr+jitter"``, ``"fitted"``.
    priors
        ``{site: Distribution}`` replacing default priors.
    jitter
        Diagonal added for numerical stability, relative to (max|y|)².
    """

    name = "marginalised_gp"
    capabilities = frozenset({"continuous", "proper_prior", "discrete_choice"})
    observed_sites = ("y",)
    precision = "float64"

    def __init__(
        self,
        kernels: Sequence[str] = DEFAULT_KERNELS,
        means: Sequence[str | MeanFunction] = ("constant",),
        noises: Sequence[str] = ("yerr+jitter",),
        priors: Mapping[str, dist.Distribution] | None = None,
        jitter: float = 1e-10,
    ) -> None:
        self.kernels = self._names("kernels", kernels, _KERNEL_PARAMETERS)
        self.means = tuple(means)
        for mean in self.means:
            if not isinstance(mean, MeanFunction) and mean not in ("zero", "constant", "linear"):
                raise InputError(
                    "means",
                    f"unknown mean {mean!r}.",
                    did_you_mean(mean, ["zero", "constant", "linear"]),
                )
        if not self.means:
            raise InputError("means", "is empty; give at least one mean function.")
        self.noises = self._names("noises", noises, _NOISES)
        self.priors = dict(priors or {})
        self.jitter = float(jitter)
        for key, value in self.priors.items():
            if key not in self.site_names():
                raise InputError(
                    f"priors[{key!r}]",
                    "is not a parameter of this model.",
                    did_you_mean(key, self.site_names()),
                )
            if not isinstance(value, dist.Distribution):
                raise InputError(f"priors[{key!r}]", "expected a numpyro distribution.")
        self.discrete_choices = {
            site: labels
            for site, labels in [
                ("kernel", list(self.kernels)),
                ("mean", [m.name if isinstance(m, MeanFunction) else m for m in self.means]),
                ("noise", list(self.noises)),
            ]
            if len(labels) > 1
        }
        options = {
            "kernels": list(self.kernels),
            "noises": list(self.noises),
            "jitter": self.jitter,
        }
        if all(isinstance(m, str) for m in self.means):
            options["means"] = list(self.means)
        super().__init__(**options)

    @staticmethod
    def _names(argument, names, known) -> tuple[str, ...]:
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        if not names:
            raise InputError(argument, "is empty.")
        for name in names:
            if name not in known:
                raise InputError(argument, f"unknown name {name!r}.", did_you_mean(name, known))
        if len(set(names)) != len(names):
            raise InputError(argument, f"lists a name twice: {names}.")
        return names

    def site_names(self) -> list[str]:
        """Every sampled site of this configuration."""
        names = [f"{k}_{p}" for k in self.kernels for p in _KERNEL_PARAMETERS[k]]
        for mean in self.means:
            if isinstance(mean, MeanFunction):
                names += list(mean.priors)
            elif mean == "constant":
                names.append("mean_constant")
            elif mean == "linear":
                names += ["mean_intercept", "mean_slope"]
        names += [
            n for n, used in (("noise", "fitted"), ("jitter", "yerr+jitter")) if used in self.noises
        ]
        names += [f"{site}_u" for site in ("kernel", "mean", "noise")]
        return names

    # --- data ----------------------------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``x`` (1-D), ``y`` and ``yerr`` (required unless every noise model is fitted)."""
        data = as_data_mapping(data)
        check_unknown_keys(data, ("x", "y", "yerr"), "the marginalised_gp model")
        out = {"x": as_array(data, "x"), "y": as_array(data, "y")}
        needs_yerr = any(n != "fitted" for n in self.noises)
        if data.get("yerr") is not None:
            out["yerr"] = as_array(data, "yerr", positive=True)
        elif needs_yerr:
            raise InputError(
                "data['yerr']",
                f"is required by the noise models {self.noises}.",
                "Pass per-point standard deviations or use noises=['fitted'].",
            )
        check_same_length(out)
        if out["y"].shape[0] < 2 or np.ptp(out["x"]) == 0:
            raise InputError("data['x']", "needs at least 2 points with distinct x.")
        warn_if_exact_gp_is_large(out["y"].shape[0], self.name)
        check_varies(out["y"], "data['y']", "a GP has nothing to fit in a constant.")
        return out

    # --- the NumPyro program -------------------------------------------------------------------
    def _scales(self, x, y, yerr):
        s = jnp.max(jnp.abs(y))
        r = jnp.ptp(x)
        yerr_max = jnp.max(yerr) if yerr is not None else s
        return s, r, yerr_max

    def _default_prior(self, site: str, s, r, yerr_max):
        last = site.rsplit("_", 1)[-1]
        if last in ("amplitude", "bias", "slope") and not site.startswith("mean_"):
            return dist.Uniform(0.0, 2.5 * s)
        if last == "lengthscale":
            return dist.Uniform(0.0, 10.0 * r)
        if last == "alpha":
            return dist.Uniform(0.0, 10.0)
        if last == "period":
            return dist.Uniform(0.0, r)
        if site in ("mean_constant", "mean_intercept"):
            return dist.Uniform(-5.0 * s, 5.0 * s)
        if site == "mean_slope":
            return dist.Uniform(-5.0 * s / r, 5.0 * s / r)
        if site == "noise":
            return dist.Uniform(0.0, 2.5 * s)
        if site == "jitter":
            return dist.Uniform(0.0, yerr_max)
        raise KeyError(site)

    def _sample(self, site, s, r, yerr_max):
        prior = self.priors.get(site) or self._default_prior(site, s, r, yerr_max)
        return numpyro.sample(site, prior)

    def _choice(self, site: str, num: int):
        if num == 1:
            return jnp.zeros((), jnp.int32)
        u = numpyro.sample(f"{site}_u", dist.Uniform(0.0, 1.0))
        index = jnp.clip(jnp.floor(num * u), 0, num - 1).astype(jnp.int32)
        return numpyro.deterministic(site, index)

    def _parameters(self, x, y, yerr):
        """Sample (or substitute) every parameter; returns what the covariance needs."""
        s, r, yerr_max = self._scales(x, y, yerr)
        kernel = self._choice("kernel", len(self.kernels))
        kernel_params = {
            k: {p: self._sample(f"{k}_{p}", s, r, yerr_max) for p in _KERNEL_PARAMETERS[k]}
            for k in self.kernels
        }
        mean = self._choice("mean", len(self.means))
        mean_params = []
        for m in self.means:
            if isinstance(m, MeanFunction):
                mean_params.append({p: numpyro.sample(p, d) for p, d in m.priors.items()})
            elif m == "constant":
                mean_params.append({"constant": self._sample("mean_constant", s, r, yerr_max)})
            elif m == "linear":
                mean_params.append(
                    {
                        "intercept": self._sample("mean_intercept", s, r, yerr_max),
                        "slope": self._sample("mean_slope", s, r, yerr_max),
                    }
                )
            else:
                mean_params.append({})
        noise = self._choice("noise", len(self.noises))
        noise_params = {
            n: self._sample(n, s, r, yerr_max)
            for n, model in (("noise", "fitted"), ("jitter", "yerr+jitter"))
            if model in self.noises
        }
        return kernel, kernel_params, mean, mean_params, noise, noise_params, s

    def _mean_vector(self, x, mean, mean_params):
        values = []
        for m, p in zip(self.means, mean_params, strict=True):
            if isinstance(m, MeanFunction):
                values.append(jnp.broadcast_to(m.fn(x, p), x.shape))
            elif m == "constant":
                values.append(jnp.full(x.shape, p["constant"]))
            elif m == "linear":
                values.append(p["intercept"] + p["slope"] * x)
            else:
                values.append(jnp.zeros(x.shape))
        return jnp.stack(values)[mean]

    def _noise_variance(self, n, yerr, noise, noise_params):
        options = []
        for model in self.noises:
            if model == "yerr":
                options.append(yerr**2)
            elif model == "yerr+jitter":
                options.append(yerr**2 + noise_params["jitter"] ** 2)
            else:
                options.append(jnp.full(n, noise_params["noise"] ** 2))
        return jnp.stack(options)[noise]

    def _cross(self, kernel, kernel_params, x1, x2):
        distance = jnp.abs(x1[:, None] - x2[None, :])
        grams = [kernel_matrix(k, kernel_params[k], x1, x2, distance) for k in self.kernels]
        return jnp.stack(grams)[kernel]  # every candidate is cheap at this size; one is used

    def _covariance(self, x, yerr, params):
        kernel, kernel_params, _, _, noise, noise_params, s = params
        cov = self._cross(kernel, kernel_params, x, x)
        diag = self._noise_variance(x.shape[0], yerr, noise, noise_params) + self.jitter * s**2
        return cov + jnp.diag(diag)

    def model(self, x, y=None, yerr=None) -> None:
        """The NumPyro program (see the module docstring)."""
        if y is None:
            raise InputError("data['y']", "is required: the priors are scaled to the data.")
        params = self._parameters(x, y, yerr)
        cov = self._covariance(x, yerr, params)
        loc = self._mean_vector(x, params[2], params[3])
        numpyro.sample("y", CovarianceNormal(loc, cov), obs=y)

    # --- from posterior draws ------------------------------------------------------------------
    def _draw(self, sample, data):
        with numpyro.handlers.substitute(data=dict(sample)), numpyro.handlers.seed(rng_seed=0):
            return self._parameters(data["x"], data["y"], data.get("yerr"))

    def _conditional(self, sample, data, x_new):
        params = self._draw(sample, data)
        kernel, kernel_params, mean, mean_params, noise, noise_params, s = params
        x, y, yerr = data["x"], data["y"], data.get("yerr")
        factor = jax.scipy.linalg.cho_factor(self._covariance(x, yerr, params), lower=True)
        k_star = self._cross(kernel, kernel_params, x, x_new)
        resid = y - self._mean_vector(x, mean, mean_params)
        mu = self._mean_vector(x_new, mean, mean_params) + k_star.T @ jax.scipy.linalg.cho_solve(
            factor, resid
        )
        prior_var = jnp.diag(self._cross(kernel, kernel_params, x_new, x_new))
        var = prior_var - jnp.sum(k_star * jax.scipy.linalg.cho_solve(factor, k_star), axis=0)
        return mu, jnp.maximum(var, 0.0)

    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """Model-marginalised predictive of f at ``inputs["x"]`` (per-draw Gaussians)."""
        if isinstance(inputs, np.ndarray | list | tuple):
            inputs = {"x": inputs}
        inputs = as_data_mapping(inputs, "inputs")
        check_unknown_keys(inputs, ("x",), "marginalised_gp predictions", "inputs")
        x_new = jnp.asarray(as_array(inputs, "x", name="inputs"))
        data = {k: jnp.asarray(v) for k, v in data.items()}
        sites = set(self.site_names())
        draws = {k: jnp.asarray(v) for k, v in samples.items() if k in sites}
        mean, var = conditional_over_draws(lambda d: self._conditional(d, data, x_new), draws)
        return {"f": {"mean": mean, "std": jnp.sqrt(var)}}

    def pointwise_log_likelihood(self, samples, data) -> dict[str, Any]:
        """Exact LOO predictive log-densities log p(y_i | y_-i, θ) (Bürkner et al. 2021)."""
        return exact_loo_log_likelihood(self, samples, data)

    def _site_names(self) -> list[str]:
        return self.site_names()

    def _loo_parameters(self, sample, data):
        params = self._draw(sample, data)
        cov = self._covariance(data["x"], data.get("yerr"), params)
        return cov, self._mean_vector(data["x"], params[2], params[3])
