"""State-space models: the ``state_space`` protocol and three members.

A state-space model (SSM) with parameters θ is

    x_0 ~ χ_θ,    x_t | x_{t-1} ~ Q_θ(x_{t-1}, ·),    y_t | x_t ~ G_θ(x_t, ·),   t = 0 … T-1,

with states ``x_t`` in R^dx and observations ``y_t`` in R^dy. A model in this protocol gives the
three distributions as NumPyro distributions (event shape ``(dx,)`` or ``(dy,)``), for one time
step, as functions of θ:

- ``initial(theta)``, ``transition(theta, x_prev)``, ``emission(theta, x)``;
- optionally ``transition_log_bound(theta)``: an upper bound of log q_θ(x' | x) over x and x',
  which lets the particle methods draw backward indices by rejection (PaRIS, Olsson & Westerborn
  2017) instead of exactly in O(N²).

Each parameter is either a **fixed value** or a **prior** (a NumPyro distribution). The particle
backends (``paris``, ``ppg``) call the three functions with ``vmap`` over particles and
``lax.scan`` over time; the same model is also a NumPyro program (``model``: θ from the priors,
the whole path ``x`` (shape (T, dx)) as one site with the Markov prior, ``y`` observed), so NUTS
and flow VI fit it too on short series. Smoothed states are the posterior site ``x``.

Members: :class:`LinearGaussianSSM` (with an exact Kalman filter / RTS smoother used as the
reference in tests), :class:`StochasticVolatility`, and :class:`StateSpaceModel` itself, built
from three user functions.

Examples
--------
>>> import jax, numpyro.distributions as dist, bayesplug as bp
>>> ssm = bp.models.StochasticVolatility(phi=0.9, sigma=0.3, beta=0.7)
>>> sim = ssm.simulate(jax.random.PRNGKey(0), 50)
>>> sim["x"].shape, sim["y"].shape
((50, 1), (50, 1))
>>> custom = bp.models.StateSpaceModel(
...     initial=lambda th: dist.Normal(0.0, 1.0),
...     transition=lambda th, x: dist.Normal(th["a"] * x, 0.5),
...     emission=lambda th, x: dist.Normal(x, 1.0),
...     params={"a": dist.Uniform(-1, 1)},
... )
>>> custom.state_dim, custom.obs_dim
(1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from .._linalg import cholesky, solve_lower, solve_upper
from .._validation import as_array, as_data_mapping, check_unknown_keys
from ..errors import BayesplugError, InputError
from .base import ModelBase

__all__ = [
    "LinearGaussianSSM",
    "StateSpaceModel",
    "StochasticVolatility",
    "as_vector_distribution",
]


def as_vector_distribution(d: dist.Distribution, dim: int) -> dist.Distribution:
    """``d`` with event shape ``(dim,)``: a scalar distribution is expanded and made an event."""
    if d.event_shape == (dim,):
        return d
    if d.event_shape == ():
        if d.batch_shape != (dim,):
            d = d.expand((dim,))
        return d.to_event(1)
    raise BayesplugError(
        f"a state-space distribution has event shape {d.event_shape}; expected ({dim},) or a "
        "scalar distribution (for one-dimensional states or observations)."
    )


def _central_value(prior: dist.Distribution):
    """The prior's mean; its median where the mean is undefined or infinite (Cauchy, ...), and a
    fixed-seed draw for distributions that offer neither."""
    try:
        mean = prior.mean
        if bool(jnp.all(jnp.isfinite(mean))):
            return mean
    except NotImplementedError:
        pass
    try:
        return prior.icdf(jnp.full(prior.batch_shape + prior.event_shape, 0.5))
    except NotImplementedError:
        return prior.sample(jax.random.PRNGKey(0))


class _MarkovPath(dist.Distribution):
    """The prior of a whole path x_{0:T-1} (event shape (T, dx)) under an SSM at fixed θ."""

    support = constraints.independent(constraints.real, 2)

    def __init__(self, ssm: StateSpaceModel, theta, num_steps: int):
        self.ssm, self.theta, self.num_steps = ssm, theta, num_steps
        super().__init__(batch_shape=(), event_shape=(num_steps, ssm.state_dim))

    def sample(self, key, sample_shape=()):
        draw = lambda k: self.ssm._simulate_states(k, self.theta, self.num_steps)  # noqa: E731
        n = math.prod(sample_shape)
        keys = jax.random.split(key, max(n, 1))
        out = jax.vmap(draw)(keys)
        return out.reshape(sample_shape + self.event_shape)

    def log_prob(self, value):
        return self.ssm.path_log_prior(self.theta, value)


class _Emissions(dist.Distribution):
    """y_{0:T-1} | x_{0:T-1}: batch shape (T,), event (dy,); log_prob per time step."""

    support = constraints.independent(constraints.real, 1)

    def __init__(self, ssm: StateSpaceModel, theta, x):
        self.ssm, self.theta, self.x = ssm, theta, x
        super().__init__(batch_shape=(x.shape[0],), event_shape=(ssm.obs_dim,))

    def sample(self, key, sample_shape=()):
        keys = jax.random.split(key, self.x.shape[0])
        draw = jax.vmap(lambda k, x: self.ssm.emission_dist(self.theta, x).sample(k))
        out = draw(keys, self.x)
        return jnp.broadcast_to(out, sample_shape + out.shape)

    def log_prob(self, value):
        one = lambda x, y: self.ssm.emission_dist(self.theta, x).log_prob(y)  # noqa: E731
        return jax.vmap(one)(self.x, value)


class StateSpaceModel(ModelBase):
    """A state-space model from three functions returning NumPyro distributions.

    Parameters
    ----------
    initial, transition, emission
        ``initial(theta)``, ``transition(theta, x_prev)``, ``emission(theta, x)`` return NumPyro
        distributions over x_0, x_t and y_t (event shape ``(dx,)`` / ``(dy,)``; a scalar
        distribution is accepted for one-dimensional states or observations). ``theta`` is a dict
        of parameter values; ``x_prev`` and ``x`` have shape ``(dx,)``.
    params
        ``{name: value or Distribution}``: fixed values or priors.
    transition_log_bound
        Optional ``theta -> float``: an upper bound of the log transition density (enables the
        rejection sampler of backward indices, ``backward="rejection"``).

    Examples
    --------
    >>> import numpyro.distributions as dist, bayesplug as bp
    >>> ar1 = bp.models.StateSpaceModel(
    ...     initial=lambda th: dist.Normal(0.0, 1.0),
    ...     transition=lambda th, x: dist.Normal(0.9 * x, th["s"]),
    ...     emission=lambda th, x: dist.Normal(x, 0.5),
    ...     params={"s": 0.3},
    ... )
    >>> ar1.fixed
    {'s': array(0.3)}
    """

    name = "state_space"
    capabilities = frozenset({"continuous", "proper_prior", "state_space"})
    observed_sites = ("y",)
    precision = "float64"

    def __init__(
        self,
        initial: Callable | None = None,
        transition: Callable | None = None,
        emission: Callable | None = None,
        params: Mapping[str, Any] | None = None,
        transition_log_bound: Callable | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if type(self) is StateSpaceModel:
            for label, fn in (
                ("initial", initial),
                ("transition", transition),
                ("emission", emission),
            ):
                if not callable(fn):
                    raise InputError(
                        label,
                        "must be a function returning a NumPyro distribution.",
                        "e.g. initial=lambda theta: dist.Normal(0.0, 1.0).",
                    )
            self._initial, self._transition, self._emission = initial, transition, emission
            self._bound = transition_log_bound
        self.priors: dict[str, dist.Distribution] = {}
        self.fixed: dict[str, Any] = {}
        for key, value in dict(params or {}).items():
            if isinstance(value, dist.Distribution):
                self.priors[key] = value
            else:
                try:  # numpy float64: jax makes it float32 or float64 per the run's precision
                    self.fixed[key] = np.asarray(value, dtype=float)
                except (TypeError, ValueError):
                    raise InputError(
                        f"params[{key!r}]",
                        f"is a {type(value).__name__}: expected a number, an array or a NumPyro "
                        "distribution (a prior).",
                    ) from None
        probe = self.default_theta()
        x0 = self.initial(probe).sample(jax.random.PRNGKey(0))
        self.state_dim = int(np.size(x0)) if np.ndim(x0) <= 1 else int(np.shape(x0)[-1])
        y0 = self.emission(probe, jnp.atleast_1d(x0)).sample(jax.random.PRNGKey(1))
        self.obs_dim = int(np.size(y0)) if np.ndim(y0) <= 1 else int(np.shape(y0)[-1])

    # --- the protocol (override in subclasses) -------------------------------------------------
    def initial(self, theta) -> dist.Distribution:
        """Distribution of x_0."""
        return self._initial(theta)

    def transition(self, theta, x_prev) -> dist.Distribution:
        """Distribution of x_t given x_{t-1} = ``x_prev``."""
        return self._transition(theta, x_prev)

    def emission(self, theta, x) -> dist.Distribution:
        """Distribution of y_t given x_t = ``x``."""
        return self._emission(theta, x)

    def transition_log_bound(self, theta):
        """Upper bound of log q_θ(x' | x) over x, x' (None: unknown)."""
        return None if getattr(self, "_bound", None) is None else self._bound(theta)

    # --- derived, shape-normalised ------------------------------------------------------------
    def initial_dist(self, theta):
        return as_vector_distribution(self.initial(theta), self.state_dim)

    def transition_dist(self, theta, x_prev):
        return as_vector_distribution(self.transition(theta, x_prev), self.state_dim)

    def emission_dist(self, theta, x):
        return as_vector_distribution(self.emission(theta, x), self.obs_dim)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.fixed) + tuple(self.priors)

    def default_theta(self) -> dict[str, Any]:
        """Fixed values, and each prior's mean (its median where the mean is undefined)."""
        theta = dict(self.fixed)
        for key, prior in self.priors.items():
            theta[key] = _central_value(prior)
        return theta

    def theta_with(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """θ from the fixed values and ``values`` for the parameters with priors."""
        values = dict(values or {})
        missing = [k for k in self.priors if k not in values]
        if missing:
            raise InputError(
                "theta",
                f"gives no value for the parameter(s) {missing}, which have priors.",
                "Pass theta={name: value} for them, or fit them with method='ppg'.",
            )
        unknown = [k for k in values if k not in self.param_names]
        if unknown:
            raise InputError("theta", f"names unknown parameter(s) {unknown}.")
        return {**self.fixed, **{k: jnp.asarray(values[k]) for k in self.priors}}

    def path_log_prior(self, theta, x):
        """log p(x_{0:T-1} | θ) of a path ``x`` (T, dx)."""
        head = self.initial_dist(theta).log_prob(x[0])
        step = jax.vmap(lambda a, b: self.transition_dist(theta, a).log_prob(b))
        return head + jnp.sum(step(x[:-1], x[1:]))

    def joint_log_density(self, theta, x, y):
        """log p(x, y | θ) of a path ``x`` (T, dx) and observations ``y`` (T, dy)."""
        emit = jax.vmap(lambda a, b: self.emission_dist(theta, a).log_prob(b))
        return self.path_log_prior(theta, x) + jnp.sum(emit(x, y))

    def _simulate_states(self, key, theta, num_steps: int):
        k0, key = jax.random.split(key)
        x0 = self.initial_dist(theta).sample(k0)

        def step(x, k):
            new = self.transition_dist(theta, x).sample(k)
            return new, new

        _, rest = jax.lax.scan(step, x0, jax.random.split(key, num_steps - 1))
        return jnp.concatenate([x0[None], rest], axis=0)

    def simulate(self, rng_key, num_steps: int, theta: Mapping[str, Any] | None = None):
        """Simulate ``{"x": (T, dx), "y": (T, dy)}`` at θ (fixed values plus ``theta``).

        Parameters without a value in ``theta`` are drawn from their priors.
        """
        if int(num_steps) < 2:
            raise InputError("num_steps", f"is {num_steps}; simulate at least 2 time steps.")
        k_theta, k_x, k_y = jax.random.split(rng_key, 3)
        values = dict(theta or {})
        for i, (key, prior) in enumerate(self.priors.items()):
            if key not in values:
                values[key] = prior.sample(jax.random.fold_in(k_theta, i))
        th = self.theta_with(values)
        x = self._simulate_states(k_x, th, int(num_steps))
        y = _Emissions(self, th, x).sample(k_y)
        return {"x": x, "y": y, "theta": th}

    # --- the NumPyro program ------------------------------------------------------------------
    def sample_theta(self) -> dict[str, Any]:
        """θ inside a NumPyro program: one sample site per prior, fixed values as they are."""
        return {**self.fixed, **{k: numpyro.sample(k, p) for k, p in self.priors.items()}}

    def model(self, y=None, num_steps: int | None = None) -> None:
        """θ ~ priors; x (T, dx) ~ the Markov prior; y_t | x_t ~ emission (observed)."""
        theta = self.sample_theta()
        steps = y.shape[0] if y is not None else int(num_steps)
        x = numpyro.sample("x", _MarkovPath(self, theta, steps))
        with numpyro.plate("time", steps):
            numpyro.sample("y", _Emissions(self, theta, x), obs=y)

    # --- data ---------------------------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        data = as_data_mapping(data)
        check_unknown_keys(data, ("y",), self.name)
        y = as_array(data, "y", ndim=(1, 2))
        y = y[:, None] if y.ndim == 1 else y
        if y.shape[0] < 2:
            raise InputError("data['y']", "has fewer than 2 time steps.")
        if y.shape[1] != self.obs_dim:
            raise InputError(
                "data['y']",
                f"has {y.shape[1]} column(s) per time step; {self.name} emits {self.obs_dim}.",
                "Pass y with shape (T, dy) (a 1-D array for one-dimensional observations).",
            )
        return {"y": y}

    def pointwise_log_likelihood(self, samples, data) -> dict[str, Any]:
        """log p(y_t | x_t, θ) per draw and time step (over the steps the draws of x cover)."""
        if "x" not in samples:
            return {}
        x = jnp.asarray(samples["x"])
        chains, draws, steps = x.shape[:3]
        flat = {
            k: jnp.asarray(samples[k]).reshape((chains * draws,) + jnp.shape(samples[k])[2:])
            for k in self.priors
        }
        y = jnp.asarray(data["y"])[:steps]

        def one(path, values, y):  # y an argument: another data set reuses the compiled code
            theta = {**self.fixed, **values}
            return jax.vmap(lambda a, b: self.emission_dist(theta, a).log_prob(b))(path, y)

        paths = x.reshape((chains * draws,) + x.shape[2:])
        out = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))(paths, flat, y)
        return {"y": np.asarray(out).reshape(chains, draws, steps)}

    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """Forecast ``{"steps_ahead": h}`` steps past the data from each draw's last state.

        Returns draws ``{"x": (draws, h, dx), "y": (draws, h, dy)}``.
        """
        inputs = as_data_mapping(inputs, "inputs")
        check_unknown_keys(inputs, ("steps_ahead",), self.name, "inputs")
        h = int(inputs.get("steps_ahead", 0))
        if h < 1:
            raise InputError("inputs['steps_ahead']", "must be at least 1.")
        if "x" not in samples:
            raise InputError("samples", "hold no smoothed states 'x' to forecast from.")
        x_last = jnp.asarray(samples["x"])[:, -1]
        n = x_last.shape[0]
        thetas = {
            k: jnp.broadcast_to(
                jnp.asarray(samples[k]), (n,) + jnp.shape(jnp.asarray(samples[k]))[1:]
            )
            for k in self.priors
            if k in samples
        }

        def one(key, x, th):
            theta = self.theta_with(th)
            kx, ky = jax.random.split(key)

            def step(x, k):
                new = self.transition_dist(theta, x).sample(k)
                return new, new

            _, xs = jax.lax.scan(step, x, jax.random.split(kx, h))
            return xs, _Emissions(self, theta, xs).sample(ky)

        xs, ys = jax.vmap(one)(jax.random.split(rng_key, n), x_last, thetas)
        return {"x": xs, "y": ys}


# --- Gaussian pieces -----------------------------------------------------------------------------
def _as_square(value, dim: int, label: str):
    """A scalar (times I), a vector (diagonal) or a (dim, dim) matrix, as a matrix."""
    value = jnp.asarray(value)
    if value.ndim == 0:
        return value * jnp.eye(dim)
    if value.ndim == 1:
        return jnp.diag(value)
    if value.shape != (dim, dim):
        raise InputError(label, f"has shape {value.shape}; expected ({dim}, {dim}).")
    return value


def _gaussian(mean, cov_spec):
    """N(mean, cov): diagonal (scalar or vector spec) as independent Normals, else MVN."""
    cov_spec = jnp.asarray(cov_spec)
    if cov_spec.ndim < 2:
        scale = jnp.sqrt(jnp.broadcast_to(cov_spec, mean.shape))
        return dist.Normal(mean, scale).to_event(1)
    return dist.MultivariateNormal(mean, scale_tril=cholesky(cov_spec))


def _check_covariance(value, label: str) -> None:
    a = np.asarray(value, dtype=float)
    if a.ndim < 2:
        if np.any(a <= 0):
            raise InputError(label, "must be positive (a variance or a vector of variances).")
        return
    if not np.allclose(a, a.T, atol=1e-10 * max(1.0, np.abs(a).max())):
        raise InputError(label, "is not symmetric.", "Pass a symmetric covariance matrix.")
    if np.linalg.eigvalsh(a).min() <= 0:
        raise InputError(
            label,
            f"is not positive definite (smallest eigenvalue {np.linalg.eigvalsh(a).min():.3g}).",
            "A covariance must have positive eigenvalues; add a small multiple of the identity.",
        )


class LinearGaussianSSM(StateSpaceModel):
    """x_t = A x_{t-1} + N(0, Q),  y_t = C x_t + N(0, R),  x_0 ~ N(m0, P0).

    Each argument is a value or a NumPyro prior. ``A`` and ``C`` are matrices (a scalar means a
    multiple of the identity, for ``dx == dy``); ``Q``, ``R`` and ``P0`` are variances: a scalar
    (times I), a vector (diagonal) or a full matrix; ``m0`` a vector (or scalar). ``state_dim``
    and ``obs_dim`` are read from the shapes (``C`` is dy × dx).

    The exact answers (:meth:`kalman_filter`, :meth:`rts_smoother`, :meth:`log_likelihood`) are
    the reference the particle methods are tested against.

    Examples
    --------
    >>> import jax, bayesplug as bp
    >>> lg = bp.models.LinearGaussianSSM(A=0.9, Q=0.5, C=1.0, R=1.0)
    >>> y = lg.simulate(jax.random.PRNGKey(0), 100)["y"]
    >>> float(lg.log_likelihood(y)) < 0
    True
    """

    name = "linear_gaussian_ssm"

    def __init__(self, A=0.9, Q=1.0, C=1.0, R=1.0, m0=0.0, P0=1.0) -> None:
        params = {"A": A, "Q": Q, "C": C, "R": R, "m0": m0, "P0": P0}
        shapes = {}
        for key, value in params.items():
            if isinstance(value, dist.Distribution):
                shapes[key] = value.batch_shape + value.event_shape
            else:
                try:
                    arr = np.asarray(value, dtype=float)
                except (TypeError, ValueError):
                    raise InputError(
                        key,
                        f"expected a number, an array or a NumPyro distribution, got {value!r}.",
                    ) from None
                if not np.all(np.isfinite(arr)):
                    raise InputError(key, "contains NaN or infinite values.")
                shapes[key] = arr.shape
        c_shape = shapes["C"]
        a_shape = shapes["A"]
        dx = a_shape[0] if len(a_shape) == 2 else (c_shape[1] if len(c_shape) == 2 else None)
        if dx is None:
            dx = max([s[0] for k, s in shapes.items() if k in ("Q", "m0", "P0") and s] or [1])
        dy = c_shape[0] if len(c_shape) == 2 else (dx if not shapes["R"] else shapes["R"][0])
        if len(c_shape) < 2 and dy != dx:
            raise InputError(
                "C",
                f"is a scalar but the observation ({dy}) and state ({dx}) dimensions differ.",
                "Pass C as a (dy, dx) matrix.",
            )
        self._dims = (dx, dy)
        for key, want in (("A", (dx, dx)), ("C", (dy, dx))):
            if len(shapes[key]) == 2 and shapes[key] != want:
                raise InputError(key, f"has shape {shapes[key]}; expected {want}.")
        for key, d in (("Q", dx), ("P0", dx), ("R", dy), ("m0", dx)):
            if len(shapes[key]) >= 1 and shapes[key][0] != d:
                raise InputError(key, f"has shape {shapes[key]}; expected its size to be {d}.")
            if key != "m0" and not isinstance(params[key], dist.Distribution):
                _check_covariance(params[key], key)
        fixed_json = {
            k: np.asarray(v).tolist()
            for k, v in params.items()
            if not isinstance(v, dist.Distribution)
        }
        super().__init__(params=params, **fixed_json)

    def _matrices(self, theta):
        dx, dy = self._dims
        a = _as_square(theta["A"], dx, "A")
        c = theta["C"]
        c = jnp.asarray(c) * jnp.eye(dy, dx) if jnp.ndim(c) < 2 else jnp.asarray(c)
        m0 = jnp.broadcast_to(jnp.asarray(theta["m0"], dtype=a.dtype), (dx,))
        return a, c, m0

    def initial(self, theta):
        _, _, m0 = self._matrices(theta)
        return _gaussian(m0, theta["P0"])

    def transition(self, theta, x_prev):
        a, _, _ = self._matrices(theta)
        return _gaussian(a @ x_prev, theta["Q"])

    def emission(self, theta, x):
        _, c, _ = self._matrices(theta)
        return _gaussian(c @ x, theta["R"])

    def transition_log_bound(self, theta):
        q = _as_square(theta["Q"], self._dims[0], "Q")
        chol = cholesky(q)
        return -0.5 * q.shape[0] * jnp.log(2 * jnp.pi) - jnp.sum(jnp.log(jnp.diag(chol)))

    # --- exact answers -------------------------------------------------------------------------
    def _theta(self, theta):
        """θ for the exact answers: ``theta`` may also override fixed values (for gradients)."""
        theta = dict(theta or {})
        out = self.theta_with({k: v for k, v in theta.items() if k in self.priors})
        out.update({k: jnp.asarray(v) for k, v in theta.items() if k in self.fixed})
        return out

    def kalman_filter(self, y, theta: Mapping[str, Any] | None = None):
        """Filtered means (T, dx), covariances (T, dx, dx) and log p(y_{0:T-1} | θ).

        Plain-JAX factorisations inside the ``lax.scan`` (see :mod:`bayesplug._linalg`).
        """
        th = self._theta(theta)
        dx, dy = self._dims
        a, c, m0 = self._matrices(th)
        q = _as_square(th["Q"], dx, "Q")
        r = _as_square(th["R"], dy, "R")
        p0 = _as_square(th["P0"], dx, "P0")
        y = jnp.asarray(y).reshape(-1, dy)

        def update(m, p, y_t):
            s = c @ p @ c.T + r
            chol = cholesky(s)
            resid = y_t - c @ m
            white = solve_lower(chol, resid)
            log_lik = (
                -0.5 * white @ white
                - jnp.sum(jnp.log(jnp.diag(chol)))
                - 0.5 * dy * jnp.log(2 * jnp.pi)
            )
            gain = solve_upper(chol, solve_lower(chol, c @ p)).T  # P Cᵀ S⁻¹
            m = m + gain @ resid
            p = p - gain @ s @ gain.T
            return m, 0.5 * (p + p.T), log_lik

        m, p, ll0 = update(m0, p0, y[0])

        def step(carry, y_t):
            m, p = carry
            m_pred, p_pred = a @ m, a @ p @ a.T + q
            m, p, ll = update(m_pred, p_pred, y_t)
            return (m, p), (m, p, ll)

        _, (ms, ps, lls) = jax.lax.scan(step, (m, p), y[1:])
        means = jnp.concatenate([m[None], ms])
        covs = jnp.concatenate([p[None], ps])
        return means, covs, ll0 + jnp.sum(lls)

    def log_likelihood(self, y, theta: Mapping[str, Any] | None = None):
        """Exact log p(y | θ) by the Kalman filter (differentiable in ``theta``)."""
        return self.kalman_filter(y, theta)[2]

    def rts_smoother(self, y, theta: Mapping[str, Any] | None = None):
        """Smoothed means (T, dx) and covariances (T, dx, dx) (Rauch–Tung–Striebel)."""
        th = self._theta(theta)
        dx = self._dims[0]
        a, _, _ = self._matrices(th)
        q = _as_square(th["Q"], dx, "Q")
        means, covs, _ = self.kalman_filter(y, theta)

        def back(carry, filtered):
            m_next, p_next = carry
            m, p = filtered
            p_pred = a @ p @ a.T + q
            chol = cholesky(p_pred)
            gain = solve_upper(chol, solve_lower(chol, a @ p)).T  # P Aᵀ P_pred⁻¹
            m_s = m + gain @ (m_next - a @ m)
            p_s = p + gain @ (p_next - p_pred) @ gain.T
            return (m_s, p_s), (m_s, p_s)

        _, (ms, ps) = jax.lax.scan(
            back, (means[-1], covs[-1]), (means[:-1], covs[:-1]), reverse=True
        )
        return jnp.concatenate([ms, means[-1:]]), jnp.concatenate([ps, covs[-1:]])


class StochasticVolatility(StateSpaceModel):
    """Stochastic volatility: x_t = φ x_{t-1} + σ ε_t,  y_t = β exp(x_t / 2) η_t.

    x_0 ~ N(0, σ² / (1 − φ²)) (the stationary law). Each of ``phi`` (|φ| < 1), ``sigma`` and
    ``beta`` (> 0) is a value or a prior.

    Examples
    --------
    >>> import jax, numpyro.distributions as dist, bayesplug as bp
    >>> sv = bp.models.StochasticVolatility(phi=dist.Uniform(-1, 1), sigma=0.2, beta=0.7)
    >>> sorted(sv.priors)
    ['phi']
    """

    name = "stochastic_volatility"

    def __init__(self, phi=0.95, sigma=0.25, beta=0.7) -> None:
        params = {"phi": phi, "sigma": sigma, "beta": beta}
        for key, value in params.items():
            if isinstance(value, dist.Distribution):
                continue
            v = float(np.asarray(value))
            if not np.isfinite(v):
                raise InputError(key, "is not finite.")
            if key == "phi" and not -1 < v < 1:
                raise InputError("phi", f"is {v}; a stationary volatility needs |phi| < 1.")
            if key != "phi" and v <= 0:
                raise InputError(key, f"is {v}; it must be positive.")
        fixed_json = {
            k: float(np.asarray(v))
            for k, v in params.items()
            if not isinstance(v, dist.Distribution)
        }
        super().__init__(params=params, **fixed_json)

    def initial(self, theta):
        sd = theta["sigma"] / jnp.sqrt(1 - theta["phi"] ** 2)
        return dist.Normal(jnp.zeros(1), sd).to_event(1)

    def transition(self, theta, x_prev):
        return dist.Normal(theta["phi"] * x_prev, theta["sigma"]).to_event(1)

    def emission(self, theta, x):
        return dist.Normal(0.0, theta["beta"] * jnp.exp(x / 2)).to_event(1)

    def transition_log_bound(self, theta):
        return -0.5 * jnp.log(2 * jnp.pi) - jnp.log(theta["sigma"])
