"""Model ``gp``: exact Gaussian-process regression with kernels from the shared catalogue.

Data ``{"x": (n,) or (n, d), "y": (n,), "yerr": (n,) optional}``. The program samples the kernel
hyperparameters, the mean-function parameters and the noise, then observes
``y ~ N(m(x), K(x, x) + diag(noise²) + jitter I)`` with f marginalised exactly (Rasmussen &
Williams 2006, ch. 2). Linear algebra runs in float64.

Noise models (``noise=``):

``"auto"`` (default)
    the given ``yerr`` when present, else a fitted homoscedastic ``noise``;
``"yerr"``
    the given per-point standard deviations only (``yerr`` required);
``"yerr+jitter"``
    ``yerr² + jitter²`` with a fitted ``jitter`` ~ HalfNormal(median(yerr));
``"fitted"``
    one fitted standard deviation ``noise`` ~ HalfNormal(s_y), ignoring ``yerr``.

Mean functions (``mean=``): ``"zero"`` (default), ``"constant"`` (``mean`` ~ N(ȳ, 2 sd(y))),
``"linear"`` (``intercept`` ~ N(ȳ, 2 sd(y)), ``slope`` ~ N(0, 2 sd(y) / range(x)); 1-D x).

Hyperparameter priors default to the data-scaled choices of :mod:`bayesplug.models.kernels`
(s_y = root-mean-square of y for the zero mean, sd(y) otherwise). ``priors={"lengthscale":
dist.LogNormal(0, 1), "amplitude": 10.0}`` replaces a prior with another distribution or fixes the
hyperparameter to a value. With a sum of kernels, hyperparameters are named ``<kernel>_<name>``
(``rbf_lengthscale``, ``linear_amplitude``).

``fit.predict({"x": x_new})`` gives the posterior predictive of the latent function ``f`` at
``x_new``: a mixture over posterior draws of the conditioned Gaussians (mean, std and quantiles of
the mixture are exact). Passing ``"yerr"`` for the new points adds the predictive ``y`` with noise.

For ArviZ's LOO the pointwise log-likelihood is the exact leave-one-out predictive density
log p(y_i | y_-i, θ) of the joint Gaussian (Bürkner, Gabry & Vehtari 2021, "Efficient
leave-one-out cross-validation for Bayesian non-factorized normal and Student-t models").

Examples
--------
>>> import bayesplug as bp
>>> cc = bp.datasets.load("cosmic_chronometers")
>>> # a short run, so it warns of few effective draws; the defaults (4 chains x 1,000) do not
>>> fit = bp.fit(bp.models.GP(kernel="rbf"), cc, num_warmup=100, num_samples=100,
...              num_chains=1, progress=False)
>>> h0 = fit.predict({"x": [0.0]})
>>> 55 < float(h0.mean[0]) < 80
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .._linalg import cholesky, gaussian_log_density
from .._validation import (
    as_array,
    as_data_mapping,
    check_same_length,
    check_unknown_keys,
    check_varies,
    warn_if_exact_gp_is_large,
)
from ..errors import ConvergenceWarning, InputError, did_you_mean
from .base import ModelBase
from .kernels import KERNELS, build_kernel, default_prior, parse_kernel

__all__ = ["GP", "CovarianceNormal"]

_MEANS = ("zero", "constant", "linear")


class CovarianceNormal(dist.Distribution):
    """N(loc, covariance), a NumPyro distribution whose log-density and draws call no LAPACK.

    For GP likelihoods in your own programs (``numpyro.sample("y", CovarianceNormal(m, K),
    obs=y)``), as the package's GP models do. NumPyro's ``MultivariateNormal`` factorises with
    LAPACK, which on CPU cannot be batched safely (jaxlib 0.10 deadlocks; see
    ``bayesplug._linalg``), so nested sampling evaluates such a likelihood one live point at a
    time. This one uses a plain-JAX Cholesky factorisation (NaN, hence outside every contour,
    where K is not positive definite) with a closed-form derivative: a batch of evaluations
    vectorises (the 13-D kernel-marginalised GP's nested run 1.5x faster) and NUTS
    differentiates it without unrolling loops. O(n³) like LAPACK; meant for n up to a few
    hundred.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import bayesplug as bp
    >>> d = bp.models.CovarianceNormal(jnp.zeros(2), 2.0 * jnp.eye(2))
    >>> round(float(d.log_prob(jnp.array([1.0, 0.0]))), 4)
    -2.781
    """

    arg_constraints = {"loc": dist.constraints.real_vector}
    support = dist.constraints.real_vector
    reparametrized_params = ["loc"]

    def __init__(self, loc, covariance, *, validate_args=None):
        covariance = jnp.asarray(covariance)
        if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
            raise InputError(
                "covariance",
                f"must be one square (n, n) matrix, got shape {covariance.shape}.",
                "Batches of covariances are not supported: vmap over them instead.",
            )
        n = covariance.shape[0]
        loc = jnp.asarray(loc, covariance.dtype)
        if loc.ndim > 1 or (loc.ndim == 1 and loc.shape[0] != n):
            raise InputError(
                "loc",
                f"has shape {loc.shape} but the covariance is {n} x {n}.",
                f"Give a scalar or a vector of length {n}.",
            )
        self.loc, self.covariance = jnp.broadcast_to(loc, (n,)), covariance
        super().__init__(batch_shape=(), event_shape=(n,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        noise = jax.random.normal(key, (*sample_shape, *self.event_shape), self.loc.dtype)
        return self.loc + noise @ cholesky(self.covariance).T

    def log_prob(self, value):
        value = jnp.asarray(value)
        if value.shape[-1:] != self.event_shape:
            raise InputError(
                "value",
                f"has shape {value.shape}; its last axis must have length {self.event_shape[0]}.",
            )
        flat = value.reshape(-1, self.event_shape[0]) - self.loc
        density = jax.vmap(gaussian_log_density, (0, None))(flat, self.covariance)
        return density.reshape(value.shape[:-1])


_NOISES = ("auto", "yerr", "yerr+jitter", "fitted")


def _site_names(kernels: Sequence[str]) -> list[dict[str, str]]:
    """Site name of each hyperparameter of each kernel term."""
    if len(kernels) == 1:
        return [{p: p for p in KERNELS[kernels[0]].hyperparameters}]
    names = []
    for i, k in enumerate(kernels):
        prefix = k if kernels.count(k) == 1 else f"{k}{i}"
        names.append({p: f"{prefix}_{p}" for p in KERNELS[k].hyperparameters})
    return names


def _as_2d(x):
    return x[:, None] if x.ndim == 1 else x


class GP(ModelBase):
    """Exact GP regression (see the module docstring for the model, noise and priors).

    Parameters
    ----------
    kernel
        A catalogue name, a sum ``"rbf+linear"``, or a list of names.
    mean
        ``"zero"``, ``"constant"`` or ``"linear"``.
    noise
        ``"auto"``, ``"yerr"``, ``"yerr+jitter"`` or ``"fitted"``.
    priors
        ``{hyperparameter: Distribution | float}``: replaces a default prior or fixes a value.
    jitter
        Added to the covariance diagonal for numerical stability (relative to the amplitude²
        scale of the data: the absolute jitter is ``jitter * s_y²``).
    """

    name = "gp"
    capabilities = frozenset({"continuous", "proper_prior"})
    observed_sites = ("y",)
    precision = "float64"

    def __init__(
        self,
        kernel: str | Sequence[str] = "rbf",
        mean: str = "zero",
        noise: str = "auto",
        priors: Mapping[str, Any] | None = None,
        jitter: float = 1e-8,
    ) -> None:
        kernels = parse_kernel(kernel)
        if mean not in _MEANS:
            raise InputError("mean", f"unknown mean function {mean!r}.", did_you_mean(mean, _MEANS))
        if noise not in _NOISES:
            raise InputError(
                "noise", f"unknown noise model {noise!r}.", did_you_mean(noise, _NOISES)
            )
        if not isinstance(jitter, int | float) or isinstance(jitter, bool) or jitter < 0:
            raise InputError("jitter", f"expected a non-negative number, got {jitter!r}.")
        self.kernel = "+".join(kernels)
        self.kernels = kernels
        self.mean = mean
        self.noise = noise
        self.jitter = float(jitter)
        self.priors = dict(priors or {})
        self._check_priors()
        options = {"kernel": self.kernel, "mean": mean, "noise": noise, "jitter": self.jitter}
        # Fixed values are saved with a fit so that a loaded fit predicts the same; replaced
        # prior distributions are not (the posterior draws already carry their effect).
        fixed = {k: float(v) for k, v in self.priors.items() if isinstance(v, int | float)}
        if fixed:
            options["priors"] = fixed
        super().__init__(**options)

    # --- configuration ---------------------------------------------------------------------
    def hyperparameter_names(self, noise_model: str | None = None) -> list[str]:
        """Every site name this configuration may sample."""
        names = [n for term in _site_names(self.kernels) for n in term.values()]
        names += {"zero": [], "constant": ["mean"], "linear": ["intercept", "slope"]}[self.mean]
        names += ["noise", "jitter"]
        return names

    def _check_priors(self) -> None:
        known = self.hyperparameter_names()
        for key, value in self.priors.items():
            if key not in known:
                raise InputError(
                    f"priors[{key!r}]",
                    "is not a hyperparameter of this GP.",
                    did_you_mean(key, known),
                )
            if isinstance(value, bool) or not isinstance(value, int | float | dist.Distribution):
                raise InputError(
                    f"priors[{key!r}]",
                    "expected a numpyro distribution or a fixed number, "
                    f"got {type(value).__name__}.",
                )

    def _noise_model(self, has_yerr: bool) -> str:
        if self.noise == "auto":
            return "yerr" if has_yerr else "fitted"
        return self.noise

    # --- data -----------------------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``x``, ``y`` and optional ``yerr``; returns float arrays."""
        data = as_data_mapping(data)
        check_unknown_keys(data, ("x", "y", "yerr"), "the gp model")
        out = {"x": as_array(data, "x", ndim=(1, 2)), "y": as_array(data, "y", ndim=(1,))}
        if data.get("yerr") is not None:
            out["yerr"] = as_array(data, "yerr", ndim=(1,), positive=True)
        check_same_length(out)
        if out["y"].shape[0] < 2:
            raise InputError("data['y']", "has fewer than 2 points: a GP needs at least 2.")
        noise = self._noise_model("yerr" in out)
        if noise in ("yerr", "yerr+jitter") and "yerr" not in out:
            raise InputError(
                "data['yerr']",
                f"is required by noise={noise!r} but was not given.",
                "Pass per-point standard deviations, or use noise='fitted'.",
            )
        if self.mean == "linear" and out["x"].ndim != 1:
            raise InputError("mean", "'linear' needs 1-D x.", "Use mean='constant' for d > 1.")
        if np.ptp(out["x"], axis=0).min() == 0:
            raise InputError("data['x']", "has zero range (all inputs equal) in some dimension.")
        warn_if_exact_gp_is_large(out["y"].shape[0], self.name)
        check_varies(
            out["y"],
            "data['y']",
            "a GP's default priors scale with the spread of y (here 0): nothing to fit.",
        )
        return out

    # --- the NumPyro program ----------------------------------------------------------------
    def _scales(self, x, y):
        X = _as_2d(x)
        x_range = jnp.mean(jnp.ptp(X, axis=0))
        x_max_abs = jnp.max(jnp.abs(X))
        if self.mean == "zero":
            y_scale = jnp.sqrt(jnp.mean(y**2))
        else:
            y_scale = jnp.std(y)
        return x_range, x_max_abs, y_scale

    def _hyper(self, site: str, default):
        value = self.priors.get(site, default)
        if isinstance(value, dist.Distribution):
            return numpyro.sample(site, value)
        return jnp.asarray(value, dtype=float)

    def _parameters(self, x, y, has_yerr, yerr_median):
        x_range, x_max_abs, y_scale = self._scales(x, y)
        values = []
        for kernel, names in zip(self.kernels, _site_names(self.kernels), strict=True):
            values.append(
                {
                    p: self._hyper(site, default_prior(p, kernel, x_range, x_max_abs, y_scale))
                    for p, site in names.items()
                }
            )
        mean_params = {}
        y_mean, y_sd = jnp.mean(y), jnp.std(y)
        if self.mean == "constant":
            mean_params["mean"] = self._hyper("mean", dist.Normal(y_mean, 2 * y_sd))
        elif self.mean == "linear":
            mean_params["intercept"] = self._hyper("intercept", dist.Normal(y_mean, 2 * y_sd))
            mean_params["slope"] = self._hyper("slope", dist.Normal(0.0, 2 * y_sd / x_range))
        noise_model = self._noise_model(has_yerr)
        noise = {}
        if noise_model == "fitted":
            noise["noise"] = self._hyper("noise", dist.HalfNormal(jnp.std(y)))
        elif noise_model == "yerr+jitter":
            noise["jitter"] = self._hyper("jitter", dist.HalfNormal(yerr_median))
        return values, mean_params, noise, y_scale

    def _mean(self, x, mean_params):
        n = x.shape[0]
        if self.mean == "constant":
            return jnp.full(n, mean_params["mean"])
        if self.mean == "linear":
            return mean_params["intercept"] + mean_params["slope"] * x
        return jnp.zeros(n)

    def _noise_var(self, n, yerr, noise, has_yerr):
        model = self._noise_model(has_yerr)
        if model == "fitted":
            return jnp.full(n, noise["noise"] ** 2)
        if model == "yerr+jitter":
            return yerr**2 + noise["jitter"] ** 2
        return yerr**2

    def _covariance(self, x, yerr, values, noise, y_scale):
        X = _as_2d(x)
        n = X.shape[0]
        K = build_kernel(self.kernels, values).gram(X).as_matrix()
        diag = self._noise_var(n, yerr, noise, yerr is not None) + self.jitter * y_scale**2
        return K + jnp.diag(diag)

    def model(self, x, y=None, yerr=None) -> None:
        """The NumPyro program: hyperparameters, then y ~ N(m(x), K + noise)."""
        if y is None:
            raise InputError("data['y']", "is required: the GP's priors are scaled to the data.")
        yerr_median = jnp.median(yerr) if yerr is not None else None
        values, mean_params, noise, y_scale = self._parameters(x, y, yerr is not None, yerr_median)
        cov = self._covariance(x, yerr, values, noise, y_scale)
        loc = self._mean(x, mean_params)
        numpyro.sample("y", CovarianceNormal(loc, cov), obs=y)

    # --- from posterior draws ----------------------------------------------------------------
    def _draw_parameters(self, sample: Mapping[str, Any], data: Mapping[str, Any]):
        """Substitute one posterior draw into the program's parameter block."""
        x, y, yerr = data["x"], data["y"], data.get("yerr")
        yerr_median = jnp.median(yerr) if yerr is not None else None
        with numpyro.handlers.substitute(data=dict(sample)):
            with numpyro.handlers.seed(rng_seed=0):
                return self._parameters(x, y, yerr is not None, yerr_median)

    def _conditional(self, sample, data, x_new):
        """Mean and variance of f(x_new) | y, θ for one draw (Rasmussen & Williams eq. 2.25-26)."""
        values, mean_params, noise, y_scale = self._draw_parameters(sample, data)
        x, y, yerr = data["x"], data["y"], data.get("yerr")
        cov = self._covariance(x, yerr, values, noise, y_scale)
        factor = jax.scipy.linalg.cho_factor(cov, lower=True)
        kernel = build_kernel(self.kernels, values)
        K_star = kernel.cross_covariance(_as_2d(x), _as_2d(x_new))
        alpha = jax.scipy.linalg.cho_solve(factor, y - self._mean(x, mean_params))
        mean = self._mean(x_new, mean_params) + K_star.T @ alpha
        k_diag = jax.vmap(lambda a: kernel(a, a))(_as_2d(x_new))
        var = k_diag - jnp.sum(K_star * jax.scipy.linalg.cho_solve(factor, K_star), axis=0)
        noise_var = noise["noise"] ** 2 if "noise" in noise else 0.0
        jitter_var = noise["jitter"] ** 2 if "jitter" in noise else 0.0
        return mean, jnp.maximum(var, 0.0), noise_var + jitter_var

    def validate_inputs(self, inputs: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
        """Check prediction inputs ``{"x": x_new, "yerr": optional}`` against the training x."""
        if isinstance(inputs, np.ndarray | list | tuple):
            inputs = {"x": inputs}
        inputs = as_data_mapping(inputs, "inputs")
        check_unknown_keys(inputs, ("x", "yerr"), "gp predictions", "inputs")
        out = {"x": as_array(inputs, "x", ndim=(1, 2), name="inputs")}
        train_dims = 1 if data["x"].ndim == 1 else data["x"].shape[1]
        new_dims = 1 if out["x"].ndim == 1 else out["x"].shape[1]
        if new_dims != train_dims or (out["x"].ndim == 2 and data["x"].ndim == 1 and new_dims != 1):
            raise InputError(
                "inputs['x']",
                f"has {new_dims} input dimension(s) but the model was fitted on {train_dims}.",
            )
        if out["x"].ndim != data["x"].ndim:
            out["x"] = out["x"].reshape((-1,) + data["x"].shape[1:])
        if inputs.get("yerr") is not None:
            out["yerr"] = as_array(inputs, "yerr", ndim=(1,), positive=True, name="inputs")
            check_same_length(out, "inputs")
        return out

    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """Per-draw Gaussian predictive of f (and of y when ``inputs`` has ``yerr``)."""
        inputs = self.validate_inputs(inputs, data)
        data = {k: jnp.asarray(v) for k, v in data.items()}
        x_new = jnp.asarray(inputs["x"])
        hyper = {k: jnp.asarray(v) for k, v in samples.items() if k in self.hyperparameter_names()}
        mean, var, noise_var = conditional_over_draws(
            lambda s: self._conditional(s, data, x_new), hyper
        )
        out = {"f": {"mean": mean, "std": jnp.sqrt(var)}}
        if "yerr" in inputs:
            y_var = var + noise_var[:, None] + jnp.asarray(inputs["yerr"]) ** 2
            out["y"] = {"mean": mean, "std": jnp.sqrt(y_var)}
        return out

    def _site_names(self) -> list[str]:
        return self.hyperparameter_names()

    def _loo_parameters(self, sample, data):
        values, mean_params, noise, y_scale = self._draw_parameters(sample, data)
        cov = self._covariance(data["x"], data.get("yerr"), values, noise, y_scale)
        return cov, self._mean(data["x"], mean_params)

    def pointwise_log_likelihood(self, samples, data) -> dict[str, Any]:
        """Exact LOO predictive log-densities log p(y_i | y_-i, θ) (Bürkner et al. 2021)."""
        return exact_loo_log_likelihood(self, samples, data)


def conditional_over_draws(conditional, draws: Mapping[str, Any]) -> tuple:
    """``conditional(draw) -> (mean, var, ...)`` over every posterior draw (jitted, in batches).

    Draws whose covariance was not positive definite (a failed Cholesky: NaN mean or variance)
    are dropped with a warning that says how many and what to do, never silently mixed in.
    """
    outputs = jax.lax.map(jax.jit(conditional), dict(draws), batch_size=256)
    mean, var = outputs[0], outputs[1]
    bad = ~jnp.all(jnp.isfinite(mean), axis=-1) | ~jnp.all(jnp.isfinite(var), axis=-1)
    if bool(jnp.any(bad)):
        import warnings

        warnings.warn(
            f"the GP covariance was not positive definite (Cholesky failed) for "
            f"{int(bad.sum())} of {bad.shape[0]} posterior draws; they are left out of the "
            "prediction. Increase the model's `jitter` (e.g. jitter=1e-6) or tighten the priors.",
            ConvergenceWarning,
            stacklevel=4,
        )
        keep = ~np.asarray(bad)
        outputs = tuple(o[keep] for o in outputs)
    return outputs


def exact_loo_log_likelihood(model, samples, data) -> dict[str, Any]:
    """``{"y": (chain, draw, n)}`` of log p(y_i | y_-i, θ) for a Gaussian-likelihood GP.

    With C the covariance of y and Q = C^-1, g = Q (y - m): the LOO predictive of y_i is
    N(y_i - g_i / Q_ii, 1 / Q_ii) (Bürkner, Gabry & Vehtari 2021), so ArviZ's PSIS-LOO applies
    to GP models whose likelihood does not factorise over observations. ``model`` provides
    ``_site_names()`` and ``_loo_parameters(sample, data) -> (C, m)``.
    """
    data = {k: jnp.asarray(v) for k, v in data.items()}
    names = set(model._site_names())
    hyper = {k: jnp.asarray(v) for k, v in samples.items() if k in names}
    chains, draws = next(iter(samples.values())).shape[:2]
    flat = jax.tree.map(lambda v: v.reshape((chains * draws,) + v.shape[2:]), hyper)

    def loo(sample):
        cov, mean = model._loo_parameters(sample, data)
        precision = jnp.linalg.inv(cov)
        g = precision @ (data["y"] - mean)
        q = jnp.diag(precision)
        return -0.5 * jnp.log(2 * jnp.pi) + 0.5 * jnp.log(q) - 0.5 * g**2 / q

    values = jax.lax.map(jax.jit(loo), flat, batch_size=256)
    return {"y": np.asarray(values).reshape(chains, draws, -1)}
