"""The bridge from a NumPyro program to the pure functions every backend needs.

From a model and its data this module gives, on the **unconstrained, flattened** parameter
vector ``u`` (one 1-D array: what samplers move):

* :func:`split_log_density` -> ``(log_prior(u), log_likelihood(u))``, where the log-prior includes
  the change-of-variables term ``log|det J|`` of the map ``u -> theta`` and the log-likelihood is
  the sum over the observed sites, so ``log_prior + log_likelihood = -potential_energy``;
* ``constrain`` / ``unconstrain`` between ``u`` and the dict of constrained site values;
* prior draws of ``u`` (:meth:`Bridge.sample_prior`);
* per-observation log-likelihoods for ArviZ (:func:`pointwise_log_likelihood`).

Data are always an *argument* of these functions, never a constant baked into them, so one
compiled function serves every data set of the same shapes.

Examples
--------
>>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
>>> bridge = Bridge.from_model(model, {"y": jnp.array([0.5])})
>>> bridge.dim
1
>>> lp, ll = bridge.split_log_density(jnp.zeros(1), {"y": jnp.array([0.5])})
>>> round(float(ll), 4)  # log N(0.5 | 0, 1)
-1.0439
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import sum_rightmost
from numpyro.infer import Predictive
from numpyro.infer.util import constrain_fn, unconstrain_fn
from numpyro.infer.util import log_likelihood as _numpyro_log_likelihood

__all__ = ["Bridge", "ModelInfo", "pointwise_log_likelihood", "program_key", "trace_model"]

_LOG_DET_PREFIX = "_bayesplug_log_det_"


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about a NumPyro program, found by tracing it once with the data.

    Attributes
    ----------
    latent_sites
        Sample sites without ``obs=``, in trace order.
    observed_sites
        Sample sites with ``obs=``, other than ``numpyro.factor`` sites.
    factor_sites
        ``numpyro.factor`` sites: counted in the log-likelihood, not observations.
    deterministic_sites
        ``numpyro.deterministic`` sites.
    discrete_sites
        Latent sites whose distribution is discrete.
    improper_sites
        Latent sites whose prior is improper (``ImproperUniform``), which rules out prior draws.
    shapes
        Shape of every site's value.
    data_plate_size
        N when every observed and factor site's leading axis is a ``numpyro.plate`` of size N
        (the likelihood factorises over N data, so mini-batches can estimate it), else None.
    distribution_shapes
        For each observed site, the shape its distribution draws (batch + event, plates
        included): the shape the observed values must have, or NumPyro broadcasts them.
    subsampled_plates
        ``{name: (size, subsample_size)}`` of every ``numpyro.plate`` that subsamples inside
        the program (``subsample_size`` below its size).
    """

    latent_sites: tuple[str, ...]
    observed_sites: tuple[str, ...]
    factor_sites: tuple[str, ...]
    deterministic_sites: tuple[str, ...]
    discrete_sites: tuple[str, ...]
    improper_sites: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    data_plate_size: int | None = None
    distribution_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    subsampled_plates: dict[str, tuple[int, int]] = field(default_factory=dict)


def _base_distribution(fn):
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def program_key(model_fn: Callable) -> Any:
    """What the program of ``model_fn`` depends on besides the data, for caches of compiled
    functions: a ``NumPyroModel``'s ``program_key`` when ``model_fn`` is its ``model`` method
    (equal for two wrappers of one function with the same static settings, as ``bp.fit`` makes
    on every call), else ``model_fn`` itself.

    Examples
    --------
    >>> import bayesplug as bp
    >>> def f(y=None):
    ...     pass
    >>> program_key(bp.models.NumPyroModel(f).model) == program_key(bp.models.NumPyroModel(f).model)
    True
    """
    owner = getattr(model_fn, "__self__", None)
    if getattr(model_fn, "__name__", None) == "model" and hasattr(owner, "program_key"):
        return owner.program_key
    return model_fn


TRACING_ERRORS = (  # JAX's errors for Python that needs an array's value while it is traced
    jax.errors.ConcretizationTypeError,  # float(x), if x > 0 (TracerBoolConversionError)
    jax.errors.TracerArrayConversionError,  # np.asarray(x)
    jax.errors.TracerIntegerConversionError,  # range(x), list[x]
    jax.errors.NonConcreteBooleanIndexError,  # x[x > 0]
)


def trace_model(model_fn: Callable, data: Mapping[str, Any], rng_key=None) -> ModelInfo:
    """Run ``model_fn(**data)`` once under a trace and classify its sites.

    The program runs on abstract values (``jax.eval_shape``), so nothing is computed or compiled;
    a program whose Python control flow needs concrete data values is traced eagerly instead.
    """
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    found = {}

    def classify(data):
        model = handlers.substitute(handlers.seed(model_fn, rng_key), substitute_fn=_improper_value)
        trace = handlers.trace(model).get_trace(**data)
        found["info"] = _classify(trace)

    try:
        jax.eval_shape(classify, dict(data))
    except TRACING_ERRORS:
        classify(data)
    return found["info"]


def _improper_value(site: dict):
    """A valid placeholder for improper latent sites, which cannot be sampled."""
    fn = site.get("fn")
    if (
        site["type"] != "sample"
        or site["is_observed"]
        or not isinstance(_base_distribution(fn), numpyro.distributions.ImproperUniform)
    ):
        return None
    return biject_to(fn.support)(jnp.zeros(fn.shape()))


def _classify(trace) -> ModelInfo:
    latent, observed, factors, deterministic, discrete, improper = [], [], [], [], [], []
    shapes, plate_sizes, distribution_shapes, subsampled = {}, set(), {}, {}
    for name, site in trace.items():
        if site["type"] == "plate":
            size, subsample_size = site["args"]
            if subsample_size is not None and int(subsample_size) < int(size):
                subsampled[name] = (int(size), int(subsample_size))
        elif site["type"] == "deterministic":
            deterministic.append(name)
            shapes[name] = tuple(jnp.shape(site["value"]))
        elif site["type"] == "sample":
            shapes[name] = tuple(jnp.shape(site["value"]))
            if site["is_observed"]:
                is_factor = isinstance(site["fn"], numpyro.distributions.distribution.Unit)
                (factors if is_factor else observed).append(name)
                if not is_factor:
                    fn = site["fn"]
                    distribution_shapes[name] = tuple(fn.batch_shape) + tuple(fn.event_shape)
                # a factor inside the data plate (one term per datum) subsamples like the data
                plate_sizes.add(_leading_plate_size(site))
                continue
            latent.append(name)
            if site["fn"].is_discrete:
                discrete.append(name)
            if isinstance(_base_distribution(site["fn"]), numpyro.distributions.ImproperUniform):
                improper.append(name)
    return ModelInfo(
        tuple(latent),
        tuple(observed),
        tuple(factors),
        tuple(deterministic),
        tuple(discrete),
        tuple(improper),
        shapes,
        plate_sizes.pop() if len(plate_sizes) == 1 else None,
        distribution_shapes,
        subsampled,
    )


def _leading_plate_size(site: dict) -> int | None:
    """Size of the plate over the observed value's leading axis (None if there is none)."""
    batch_ndim = len(jnp.shape(site["value"])) - site["fn"].event_dim
    if batch_ndim < 1:
        return None
    for frame in site["cond_indep_stack"]:
        if frame.dim == -batch_ndim and frame.size == jnp.shape(site["value"])[0]:
            return int(frame.size)
    return None


def _reparametrise_from_unconstrained(params: Mapping[str, Any], site: dict):
    """substitute_fn: the constrained value of a latent site, recording log|det J| as a factor."""
    name = site["name"]
    if site["type"] != "sample" or name not in params or site["is_observed"]:
        return None
    u = params[name]
    transform = biject_to(site["fn"].support)
    value = transform(u)
    log_det = transform.log_abs_det_jacobian(u, value)
    log_det = sum_rightmost(
        log_det, jnp.ndim(log_det) - jnp.ndim(value) + len(site["fn"].event_shape)
    )
    if site["scale"] is not None:
        log_det = site["scale"] * log_det
    numpyro.factor(_LOG_DET_PREFIX + name, log_det)
    return value


def _site_log_prob_sum(site: dict):
    log_prob = site["fn"].log_prob(site["value"])
    if site["scale"] is not None:
        log_prob = site["scale"] * log_prob
    return jnp.sum(log_prob)


@dataclass(frozen=True)
class Bridge:
    """Pure functions of the unconstrained, flattened parameter vector of one NumPyro program.

    Build it with :meth:`from_model`. Every method is a pure function of its arguments and can be
    ``jit``-ed, ``vmap``-ed and differentiated; data are passed explicitly.

    Attributes
    ----------
    model_fn
        The NumPyro program, called as ``model_fn(**data)``.
    info
        :class:`ModelInfo` from tracing it.
    unravel
        Maps a flat vector back to ``{latent site: unconstrained value}``.
    dim
        Length of the flat vector.
    """

    model_fn: Callable
    info: ModelInfo
    unravel: Callable
    dim: int

    @classmethod
    def from_model(cls, model_fn: Callable, data: Mapping[str, Any], rng_key=None) -> Bridge:
        """Trace ``model_fn(**data)`` and build its bridge."""
        rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
        info = trace_model(model_fn, data, rng_key)

        def unconstrained_example(data):
            # Prior draws may put an observed site's parameters out of range (a NaN
            # likelihood): backends handle that, so NumPyro's argument checks must not raise.
            with numpyro.validation_enabled(False):
                model = handlers.substitute(
                    handlers.seed(model_fn, rng_key), substitute_fn=_improper_value
                )
                trace = handlers.trace(model).get_trace(**data)
                example = {k: trace[k]["value"] for k in info.latent_sites}
                return unconstrain_fn(model_fn, (), dict(data), example)

        # only the shapes are needed: on abstract values nothing is computed or compiled (run
        # eagerly, a GP's Cholesky loops compiled op by op: ~6 s of a 4-parameter GP's first fit)
        try:
            shapes = jax.eval_shape(unconstrained_example, dict(data))
        except TRACING_ERRORS:
            shapes = unconstrained_example(dict(data))
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        flat, unravel = ravel_pytree(zeros)
        return cls(model_fn, info, unravel, int(flat.shape[0]))

    # --- maps between spaces -------------------------------------------------------------
    def constrain(self, u, data: Mapping[str, Any]) -> dict[str, Any]:
        """Constrained latent values ``{site: value}`` at the flat unconstrained vector ``u``."""
        trace = self._trace(u, data)
        return {name: trace[name]["value"] for name in self.info.latent_sites}

    def constrain_with_deterministic(self, u, data: Mapping[str, Any]) -> dict[str, Any]:
        """Constrained latent *and deterministic* sites at one flat vector ``u`` (jittable)."""
        return constrain_fn(self.model_fn, (), data, self.unravel(u), return_deterministic=True)

    def constrain_many(self, us, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Constrained latent *and deterministic* sites at each row of ``us`` (numpy arrays)."""

        def one(u):
            return self.constrain_with_deterministic(u, data)

        sites = jax.jit(lambda us: jax.lax.map(one, us, batch_size=512))(jnp.asarray(us))
        return {k: np.asarray(v) for k, v in sites.items()}

    def unconstrain(self, params: Mapping[str, Any], data: Mapping[str, Any]):
        """Flat unconstrained vector of the constrained latent values ``params``."""
        flat, _ = ravel_pytree(unconstrain_fn(self.model_fn, (), dict(data), dict(params)))
        return flat

    # --- densities ------------------------------------------------------------------------
    def _trace(self, u, data):
        params = self.unravel(u)
        model = handlers.substitute(
            handlers.seed(self.model_fn, jax.random.PRNGKey(0)),
            substitute_fn=partial(_reparametrise_from_unconstrained, params),
        )
        # block: when the bridge runs inside another NumPyro program (a VI target, say), the
        # model's own sites must not leak into that program's trace.
        with handlers.block():
            return handlers.trace(model).get_trace(**data)

    def split_log_density(self, u, data: Mapping[str, Any]):
        """``(log_prior(u), log_likelihood(u))`` on the unconstrained space.

        The log-prior is the prior density of ``u`` (prior of the constrained value times the
        Jacobian of the constraining map), so that ``exp(log_prior)`` integrates to one over ``u``
        for proper priors: nested sampling and importance sampling rely on this.
        """
        trace = self._trace(u, data)
        observed = set(self.info.observed_sites) | set(self.info.factor_sites)
        log_prior = jnp.zeros(())
        log_likelihood = jnp.zeros(())
        for name, site in trace.items():
            if site["type"] != "sample":
                continue
            if name in observed:
                log_likelihood = log_likelihood + _site_log_prob_sum(site)
            else:  # latent sites and their log|det J| factors
                log_prior = log_prior + _site_log_prob_sum(site)
        return log_prior, log_likelihood

    def log_prior(self, u, data: Mapping[str, Any]):
        """Log prior density of the flat unconstrained vector, Jacobian included."""
        return self.split_log_density(u, data)[0]

    def log_likelihood(self, u, data: Mapping[str, Any]):
        """Sum of the observed sites' log-probabilities at the flat unconstrained vector."""
        return self.split_log_density(u, data)[1]

    def log_density(self, u, data: Mapping[str, Any]):
        """Log joint density (= minus NumPyro's potential energy)."""
        log_prior, log_likelihood = self.split_log_density(u, data)
        return log_prior + log_likelihood

    def initial_point(self, rng_key, data: Mapping[str, Any]):
        """A starting point: the prior median of ``u`` (else the best of 200 prior draws; else 0).

        Models with improper priors have no prior draws and start at the origin.
        """
        zero = jnp.zeros(self.dim)
        try:
            draws = self.sample_prior(rng_key, 200, data)
        except NotImplementedError:  # improper priors cannot be sampled
            return zero
        median = jnp.median(draws, axis=0)
        if jnp.isfinite(self.log_density(median, data)):
            return median
        values = jax.vmap(lambda u: self.log_density(u, data))(draws)
        values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
        return draws[jnp.argmax(values)] if jnp.isfinite(jnp.max(values)) else zero

    # --- prior draws ------------------------------------------------------------------------
    def prior_draws(self, num_samples: int) -> Callable:
        """``(rng_key, data) -> (num_samples, dim)``: the pure function behind
        :meth:`sample_prior`, to be traced inside a caller's own ``jit``."""

        def draw(rng_key, data):
            with numpyro.validation_enabled(False):
                draws = Predictive(
                    self.model_fn,
                    num_samples=num_samples,
                    return_sites=list(self.info.latent_sites),
                )(rng_key, **data)
            return jax.vmap(lambda p: self.unconstrain(p, data))(draws)

        return draw

    def sample_prior(self, rng_key, num_samples: int, data: Mapping[str, Any]):
        """``(num_samples, dim)`` prior draws of the flat unconstrained vector.

        One compiled program (run eagerly, the batched model compiled each operation on its own:
        ~4 s of the demo's first fit); eagerly where the model's Python needs concrete data."""

        draw = self.prior_draws(num_samples)
        try:
            return jax.jit(draw)(rng_key, dict(data))
        except TypeError:  # a concrete value needed (ConcretizationTypeError) or not an array
            return draw(rng_key, data)


def pointwise_log_likelihood(
    model_fn: Callable, samples: Mapping[str, Any], data: Mapping[str, Any], batch_ndims: int = 2
) -> dict[str, Any]:
    """Per-observation log-likelihood of every observed site at each draw.

    ``samples`` are constrained draws with ``batch_ndims`` leading axes (chain, draw). Returns
    ``{site: (chain, draw, *site_shape)}`` as NumPyro's ``log_likelihood`` computes it.
    """
    return _numpyro_log_likelihood(model_fn, dict(samples), batch_ndims=batch_ndims, **data)


def is_proper(info: ModelInfo) -> bool:
    """True when no latent site has an improper prior."""
    return not info.improper_sites
