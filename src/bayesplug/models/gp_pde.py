"""Model ``gp_pde``: a GP solver for high-frequency and multi-scale PDEs (GP-HM).

Fang, Cooley, Long, Li, Kirby & Zhe, "Solving High Frequency and Multi-Scale PDEs with Gaussian
Processes" (ICLR 2024). The solution's values ``u`` on a uniform collocation grid (a
:class:`~bayesplug.models.pde.PDE`) are parameters with a GP prior whose covariance is a product
over dimensions, K = K₁ ⊗ … ⊗ K_D, each factor a mixture of Q spectral components:

``student_t_mixture`` (GP-HM-StM, the default)
    k(τ) = Σ_q w_q (1 + a_q + a_q²/3) e^{−a_q} cos(2π μ_q τ),   a_q = √5 s_q |τ|
    (a Student-t bump in the spectrum: Matérn-5/2 envelope × cosine);
``gaussian_mixture`` (GP-HM-GM, the spectral mixture kernel)
    k(τ) = Σ_q w_q exp(−s_q τ²) cos(2π μ_q τ);
``matern52`` / ``rbf``
    the same sums without the cosine (the paper's GP baselines).

Sites per dimension k: ``log_weight_k`` (log w_q; a flat prior on log w, the paper's Jeffreys
argument, which prunes components), ``frequency_k`` (μ_q, cycles per unit; start spread over
[0, freq_scale]) and ``log_inverse_length_k`` (log s_q); then ``z``, the whitened grid values
(u = (L₁ ⊗ … ⊗ L_D) z, L_k the Cholesky factor of K_k; ``u`` is a deterministic site; with
``whiten=False`` the authors' ``u`` itself is the parameter) and the log precisions ``log_tau``
(boundary) and ``log_v`` (residual). All have flat (improper) priors, so
the posterior mode is what the ``map`` backend finds; sampling methods are refused. The log joint
is the authors' objective:

    log N(vec u | 0, K) + λ_b Σ_b log N(g_b | u_b, 1/τ) + Σ_grid log N(f | L[u], 1/v),

λ_b the boundary weight (200; 500 for advection), L[u] the operator applied to u and to its
derivatives, which are those of the GP conditional mean at the grid: ∂u/∂x = K₁' K₁⁻¹ u along
axis 1 (K₁' the kernel differentiated in its first argument, by autodiff). The Kronecker matrix
is never formed: the log-determinant and the quadratic form come from the per-dimension Cholesky
factors, so a step costs O(Σ N_k³ + N Σ N_k) for N = Π N_k grid points. On the uniform grid each
K_k is Toeplitz: the kernel and its derivatives are evaluated at the N_k distinct lags and
gathered (30× faster than pairwise evaluation, which the transcendental functions dominate).

``fit.predict({"x": points})`` gives ``u`` (mean and std) and, by default, the derivatives the
operator reads, at any points of the box. The std is the GP conditional's, given the grid values
and the kernel at the mode: it is the interpolation uncertainty between collocation points; it
does not account for the uncertainty of the grid values themselves, of the kernel's parameters,
or for how well the residual is satisfied.

Examples
--------
>>> import jax.numpy as jnp, bayesplug as bp
>>> from bayesplug.models import pde
>>> problem = pde.poisson(lambda x: jnp.sin(25 * x), [(0.0, 1.0)], 64, freq_scale=8.0)
>>> model = bp.models.GPPDESolver(problem, num_components=10)
>>> fit = bp.fit(model, problem.data(), method="map", num_steps=3000, progress=False)
>>> model.relative_error(fit) < 1e-2       # 3,000 steps; 10,000 reach ~1e-5
True
>>> u = fit.predict({"x": [[0.5]]})          # u(0.5) with its std, and u_xx
>>> abs(float(u.mean[0]) - float(jnp.sin(12.5))) < 0.01
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from .._validation import as_data_mapping, check_unknown_keys
from ..errors import InputError, did_you_mean
from . import pde as pde_module
from .base import ModelBase

__all__ = [
    "KERNELS",
    "GPPDESolver",
    "kernel_derivative",
    "kron_log_density",
    "lag_matrices",
    "spectral_kernel",
]

KERNELS = ("student_t_mixture", "gaussian_mixture", "matern52", "rbf")
_SQRT5 = math.sqrt(5.0)
PREDICT_BATCH = 512  # new points per batch: the kernel is evaluated on batch × N_k × Q values


def spectral_kernel(kind: str, params: Mapping[str, jax.Array], tau) -> jax.Array:
    """k(τ) of one dimension's mixture at a scalar lag τ (see the module docstring)."""
    w = jnp.exp(params["log_weight"])
    s = jnp.exp(params["log_inverse_length"])
    if kind in ("student_t_mixture", "matern52"):
        a = _SQRT5 * s * jnp.abs(tau)
        envelope = (1.0 + a + a**2 / 3.0) * jnp.exp(-a)
    else:
        envelope = jnp.exp(-s * tau**2)
    if kind in ("student_t_mixture", "gaussian_mixture"):
        envelope = envelope * jnp.cos(2 * jnp.pi * params["frequency"] * tau)
    return jnp.sum(w * envelope)


def kernel_derivative(kind: str, params, order: int) -> Callable:
    """τ ↦ ∂^order k(x, x')/∂x^order at τ = x − x' (autodiff; JAX's |τ|' = 1 at 0 gives the
    right k''(0) because the envelopes are flat there)."""

    def fn(tau):
        return spectral_kernel(kind, params, tau)

    for _ in range(order):
        fn = jax.grad(fn)
    return fn


def lag_matrices(kind: str, params, spacing, n: int, orders: Sequence[int]) -> dict[int, jax.Array]:
    """The n × n matrices [∂^o k(x_i, x_j)] on a uniform grid, from the n distinct lags (Toeplitz).

    Even orders are symmetric in i − j, odd orders antisymmetric.
    """
    lags = jnp.arange(n) * spacing
    index = jnp.arange(n)
    diff = index[:, None] - index[None, :]
    out = {}
    for o in orders:
        values = jax.vmap(kernel_derivative(kind, params, o))(lags)[jnp.abs(diff)]
        out[o] = values * jnp.sign(diff) if o % 2 else values
    return out


def _along(fn, array, axis):
    """Apply ``fn`` (acting on the leading axis of a 2-D array) along ``axis`` of ``array``."""
    moved = jnp.moveaxis(array, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    return jnp.moveaxis(fn(flat).reshape(moved.shape), 0, axis)


def kron_log_density(
    u: jax.Array | None, chols: Sequence[jax.Array], whitened: jax.Array | None = None
) -> jax.Array:
    """log N(vec u | 0, K₁ ⊗ … ⊗ K_D) from the Cholesky factors L_k of the K_k, never forming
    the product: log|K| = Σ_k (N / N_k) log|K_k|, and the quadratic form is ‖A‖² with A = u
    solved by L_k along each axis k — or A = ``whitened`` given, for u = (⊗ L_k) A."""
    a = u if whitened is None else whitened
    n = a.size
    log_det = 0.0
    for axis, chol in enumerate(chols):
        if whitened is None:
            a = _along(
                lambda m, c=chol: jax.scipy.linalg.solve_triangular(c, m, lower=True), a, axis
            )
        log_det = log_det + (n / chol.shape[0]) * 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
    return -0.5 * (jnp.sum(a**2) + log_det + n * jnp.log(2 * jnp.pi))


def _orders(name: str, variables: Sequence[str]) -> list[int]:
    return [name.count(v) for v in variables]


class GPPDESolver(ModelBase):
    """GP-HM: a spectral-mixture GP solver for a :class:`~bayesplug.models.pde.PDE`.

    Parameters
    ----------
    pde
        A :class:`~bayesplug.models.pde.PDE`, or the name of a built-in case
        (:data:`bayesplug.models.pde.CASES`).
    kernel
        ``"student_t_mixture"`` (default), ``"gaussian_mixture"``, ``"matern52"`` or ``"rbf"``.
    num_components
        Q, components per dimension (30 in the paper).
    freq_scale
        Highest frequency (cycles per unit) the start spreads the frequencies over; by default the
        PDE's, else a quarter of the grid's Nyquist frequency.
    boundary_weight
        λ_b, the weight of the boundary term (the case's, else 200).
    jitter
        Added to each K_k's diagonal (the authors' 1e-6), in absolute units of u²: it bounds the
        GP prior's density, which a jitter relative to k(0) would not (shrinking every weight
        then makes the prior density grow without limit and the fit ignore the PDE).
    grid
        With a case name: its grid instead of the paper's.
    whiten
        Parameterise the grid values as u = (L₁ ⊗ … ⊗ L_D) z, L_k the Cholesky factor of K_k,
        and optimise z rather than u itself (the authors' choice). The objective and its optimum
        are the same — the log joint is evaluated at u(z) with nothing added — but the GP
        prior's quadratic form, whose Hessian in u is K⁻¹ (eigenvalues up to 1/jitter), becomes
        ‖z‖², and each z moves u globally (the "whitening" of variational GP inference: Hensman,
        Matthews & Ghahramani 2015). By default (None) the PDE decides: whitened when its source
        is zero everywhere (a homogeneous equation such as advection, whose solution only the
        boundary values determine: with u itself, their information spreads inwards one grid
        step's coupling at a time), the authors' u otherwise (whitening couples u to the
        kernel's frequencies, which then move slowly). Measured (``docs/benchmarks.md``):
        advection sin(x − 200t) 8e-4 after 12,000 steps whitened, 0.96 after 15,600 steps with
        u; Poisson sin(100x) stuck at 2e-2 whitened where u reaches 1e-6.
    Notes
    -----
    Fits with ``method="map"``; ``fit.point_estimate["u"]`` is the solution on the grid.
    """

    name: ClassVar[str] = "gp_pde"
    capabilities: ClassVar[frozenset[str]] = frozenset({"continuous"})
    observed_sites: ClassVar[tuple[str, ...]] = ("boundary", "source")
    precision: ClassVar[str] = "float64"

    def __init__(
        self,
        pde: pde_module.PDE | str | None = None,
        kernel: str = "student_t_mixture",
        num_components: int = 30,
        freq_scale: float | Sequence[float] | None = None,
        boundary_weight: float | None = None,
        jitter: float = 1e-6,
        grid: int | Sequence[int] | None = None,
        whiten: bool | None = None,
    ) -> None:
        case_name = pde if isinstance(pde, str) else None
        if case_name is not None:
            pde = pde_module.case(case_name, grid)
        elif pde is not None and not isinstance(pde, pde_module.PDE):
            raise InputError("pde", f"expected a PDE or a case name, got {type(pde).__name__}.")
        if kernel not in KERNELS:
            raise InputError("kernel", f"unknown kernel {kernel!r}.", did_you_mean(kernel, KERNELS))
        if isinstance(num_components, bool) or not isinstance(num_components, int):
            raise InputError("num_components", f"expected an integer, got {num_components!r}.")
        if num_components < 1:
            raise InputError("num_components", f"must be at least 1, got {num_components}.")
        if whiten is not None and not isinstance(whiten, bool):
            raise InputError("whiten", f"expected True, False or None, got {whiten!r}.")
        if whiten is None:
            whiten = pde is not None and pde.homogeneous
        if not (isinstance(jitter, int | float) and jitter > 0):
            raise InputError("jitter", f"expected a positive number, got {jitter!r}.")
        if boundary_weight is None:
            boundary_weight = pde_module.boundary_weight(case_name) if case_name else 200.0
        if not (isinstance(boundary_weight, int | float) and boundary_weight > 0):
            raise InputError(
                "boundary_weight", f"expected a positive number, got {boundary_weight!r}."
            )
        self.pde = pde
        self.kernel = kernel
        self.num_components = num_components
        self.jitter = float(jitter)
        self.whiten = whiten
        self.boundary_weight = float(boundary_weight)
        self.freq_scale = self._freq_scale(freq_scale)
        super().__init__(
            pde=case_name,
            grid=list(pde.grid) if pde is not None and case_name else None,
            kernel=kernel,
            num_components=num_components,
            freq_scale=list(self.freq_scale) if self.freq_scale is not None else None,
            boundary_weight=self.boundary_weight,
            jitter=self.jitter,
            whiten=whiten,
        )

    def _freq_scale(self, freq_scale):
        if self.pde is None:
            return tuple(freq_scale) if isinstance(freq_scale, Sequence) else freq_scale
        if freq_scale is None:
            freq_scale = self.pde.freq_scale
        if freq_scale is None:  # a quarter of the Nyquist frequency (n - 1) / (2 L)
            sizes = zip(self.pde.grid, self.pde.domain, strict=True)
            return tuple((n - 1) / (8 * (hi - lo)) for n, (lo, hi) in sizes)
        return pde_module.check_freq_scale(
            freq_scale, self.pde.grid, self.pde.domain, self.pde.variables
        )

    # --- data -----------------------------------------------------------------------------
    def _require_pde(self, what: str) -> pde_module.PDE:
        if self.pde is None:
            raise InputError(
                "pde",
                f"this model has no PDE operator, so it cannot {what}: a fit loaded from a file "
                "keeps only built-in cases' operators (a file never carries code).",
                "Build the model again with GPPDESolver(your_pde) to refit.",
            )
        return self.pde

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check the arrays of ``pde.data()`` against the PDE (grid sizes, finite values)."""
        data = as_data_mapping(data)
        if self.pde is None:  # a loaded fit of a custom PDE: its arrays, for predictions only
            if not {"source", "boundary_index", "boundary_values"} <= set(data):
                raise InputError(
                    "pde",
                    "the gp_pde model was built without a PDE, and the data are not a PDE's "
                    f"grid, source and boundary (keys: {sorted(data)}).",
                    "Build it with one and fit to its data: model = bp.models.GPPDESolver("
                    "'poisson_1d-single_sin'); bp.fit(model, model.pde.data(), method='map').",
                )
            return {key: np.asarray(value) for key, value in data.items()}
        problem = self.pde
        keys = [f"grid_{k}" for k in range(problem.dim)]
        keys += ["source", "boundary_index", "boundary_values"]
        check_unknown_keys(data, tuple(keys), "the gp_pde model")
        for key in keys:
            if data.get(key) is None:
                raise InputError(f"data[{key!r}]", "is missing.", "Pass pde.data().")
        out = {key: np.asarray(data[key]) for key in keys}
        for k, n in enumerate(problem.grid):
            grid = out[f"grid_{k}"].astype(float)
            if grid.shape != (n,) or not np.allclose(np.diff(grid), np.diff(grid)[0], rtol=1e-6):
                raise InputError(f"data['grid_{k}']", f"must be the PDE's uniform grid of {n}.")
            out[f"grid_{k}"] = grid
        if out["source"].shape != problem.grid:
            raise InputError("data['source']", f"has shape {out['source'].shape}, not the grid's.")
        for key in ("source", "boundary_values"):
            out[key] = out[key].astype(float)
            if not np.all(np.isfinite(out[key])):
                raise InputError(f"data[{key!r}]", "has NaN or infinite values.")
        out["boundary_index"] = out["boundary_index"].astype(np.int64)
        if out["boundary_index"].shape != out["boundary_values"].shape:
            raise InputError("data['boundary_values']", "must match boundary_index in length.")
        return out

    def initial_values(self, data: Mapping[str, Any]) -> dict[str, jax.Array]:
        """The authors' start: w_q = 1/Q, μ_q = linspace(0, 1, Q) · freq_scale, s_q = 1, u = 0
        (z = 0 whitened), τ = v = 1 (the ``map`` backend starts here; flat priors have no
        median)."""
        q = self.num_components
        values = {}
        for k, scale in enumerate(self.freq_scale):
            values[f"log_weight_{k}"] = jnp.full(q, -math.log(q))
            values[f"frequency_{k}"] = jnp.linspace(0.0, 1.0, q) * scale
            values[f"log_inverse_length_{k}"] = jnp.zeros(q)
        values["z" if self.whiten else "u"] = jnp.zeros(self.pde.grid)
        values["log_tau"] = jnp.zeros(())
        values["log_v"] = jnp.zeros(())
        return values

    # --- the NumPyro program --------------------------------------------------------------
    def _kernel_params(self, dim: int) -> list[dict[str, jax.Array]]:
        flat = dist.ImproperUniform(constraints.real, (), event_shape=(self.num_components,))
        return [
            {
                name: numpyro.sample(f"{name}_{k}", flat)
                for name in ("log_weight", "frequency", "log_inverse_length")
            }
            for k in range(dim)
        ]

    def _factors(self, params, grids, orders_needed):
        """Per dimension: the Cholesky factor of K_k + jitter and the derivative matrices."""
        chols, derivs = [], []
        for p, grid, orders in zip(params, grids, orders_needed, strict=True):
            mats = lag_matrices(self.kernel, p, grid[1] - grid[0], grid.shape[0], {0, *orders})
            gram = mats[0] + self.jitter * jnp.eye(grid.shape[0])
            chols.append(jnp.linalg.cholesky(gram))
            derivs.append(mats)
        return chols, derivs

    def _derivatives(self, u, chols, derivs, names, variables, z=None):
        """d[name] = the GP conditional mean's derivative at the grid: K_k^(o) K_k⁻¹ applied along
        each differentiated axis k (the per-axis maps commute; undifferentiated axes keep u).
        Whitened (``z`` given, u = (⊗ L_k) z): K_k⁻¹ u along axis k is L_kᵀ⁻¹ z there, one
        triangular solve, and an undifferentiated axis applies L_k to z."""
        out = {}
        for name in names:
            value = u if z is None else z
            for axis, order in enumerate(_orders(name, variables)):
                chol = chols[axis]
                if z is not None and not order:
                    value = _along(lambda m, c=chol: c @ m, value, axis)
                elif z is not None:
                    mat = derivs[axis][order]
                    value = _along(
                        lambda m, c=chol, a=mat: (
                            a @ jax.scipy.linalg.solve_triangular(c, m, lower=True, trans=1)
                        ),
                        value,
                        axis,
                    )
                elif order:
                    mat = derivs[axis][order]
                    value = _along(
                        lambda m, c=chol, a=mat: a @ jax.scipy.linalg.cho_solve((c, True), m),
                        value,
                        axis,
                    )
            out[name] = value
        return out

    def model(self, source, boundary_index, boundary_values, **grids) -> None:
        """The NumPyro program (flat priors; the GP prior and the two likelihoods)."""
        problem = self._require_pde("be fitted")
        grids = [grids[f"grid_{k}"] for k in range(problem.dim)]
        names = problem.derivatives
        orders_needed = [
            sorted({_orders(n, problem.variables)[k] for n in names} - {0})
            for k in range(problem.dim)
        ]
        params = self._kernel_params(problem.dim)
        values = numpyro.sample(
            "z" if self.whiten else "u",
            dist.ImproperUniform(constraints.real, (), event_shape=problem.grid),
        )
        flat = dist.ImproperUniform(constraints.real, (), event_shape=())
        log_tau = numpyro.sample("log_tau", flat)
        log_v = numpyro.sample("log_v", flat)
        chols, derivs = self._factors(params, grids, orders_needed)
        if self.whiten:
            z = values
            u = z
            for axis, chol in enumerate(chols):
                u = _along(lambda m, c=chol: c @ m, u, axis)
            u = numpyro.deterministic("u", u)
            numpyro.factor("gp_prior", kron_log_density(None, chols, whitened=z))
        else:
            z, u = None, values
            numpyro.factor("gp_prior", kron_log_density(u, chols))
        with numpyro.handlers.scale(scale=self.boundary_weight):
            numpyro.sample(
                "boundary",
                dist.Normal(u.ravel()[boundary_index], jnp.exp(-0.5 * log_tau)),
                obs=boundary_values,
            )
        d = self._derivatives(u, chols, derivs, names, problem.variables, z=z)
        residual = problem.operator(u, d)
        numpyro.sample(
            "source",
            dist.Normal(residual, jnp.exp(-0.5 * log_v)).to_event(problem.dim),
            obs=source,
        )

    # --- prediction -----------------------------------------------------------------------
    def validate_inputs(self, inputs, data) -> dict[str, Any]:
        """``{"x": (n, dim) points, "derivatives": names (optional)}``."""
        if isinstance(inputs, np.ndarray | list | tuple):
            inputs = {"x": inputs}
        if not isinstance(inputs, Mapping):
            raise InputError("inputs", "expected {'x': points}.")
        check_unknown_keys(inputs, ("x", "derivatives"), "gp_pde predictions", "inputs")
        dim = sum(1 for k in data if k.startswith("grid_"))
        x = np.asarray(inputs.get("x"), dtype=float)
        if x.ndim == 1 and dim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != dim:
            raise InputError("inputs['x']", f"expected (n, {dim}) points, got shape {x.shape}.")
        if not np.all(np.isfinite(x)):
            raise InputError("inputs['x']", "has NaN or infinite coordinates.")
        for k in range(dim):
            grid = np.asarray(data[f"grid_{k}"])
            lo, hi = grid[0], grid[-1]
            if np.any((x[:, k] < lo - 1e-9 * (hi - lo)) | (x[:, k] > hi + 1e-9 * (hi - lo))):
                raise InputError(
                    "inputs['x']", f"column {k} leaves the domain [{lo:g}, {hi:g}] of the PDE."
                )
        variables = self.pde.variables if self.pde is not None else pde_module.VARIABLES[:dim]
        names = inputs.get("derivatives")
        if names is None:
            names = self.pde.derivatives if self.pde is not None else ()
        names = (names,) if isinstance(names, str) else tuple(names)
        for name in names:
            pde_module.check_derivative_name(name, variables)
        return {"x": x, "derivatives": names, "variables": tuple(variables)}

    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """u (mean, std of the GP conditional) and the requested derivatives at new points."""
        inputs = self.validate_inputs(inputs, data)
        dim = inputs["x"].shape[1]
        grids = [jnp.asarray(data[f"grid_{k}"]) for k in range(dim)]
        x = jnp.asarray(inputs["x"])
        names = inputs["derivatives"]

        def one(sample):
            params = [
                {n: sample[f"{n}_{k}"] for n in ("log_weight", "frequency", "log_inverse_length")}
                for k in range(dim)
            ]
            chols, _ = self._factors(params, grids, [[] for _ in range(dim)])
            alpha = sample["u"]
            for axis, chol in enumerate(chols):
                alpha = _along(
                    lambda m, c=chol: jax.scipy.linalg.cho_solve((c, True), m), alpha, axis
                )

            def batch(points):
                out = {}
                cross = {}
                for k in range(dim):
                    for order in {0, *[_orders(n, inputs["variables"])[k] for n in names]}:
                        fn = jax.vmap(
                            jax.vmap(kernel_derivative(self.kernel, params[k], order), (0,)),
                            (0,),
                        )
                        cross[k, order] = fn(points[:, k][:, None] - grids[k][None, :])

                def contract(orders):
                    value = alpha
                    for k in range(dim):  # sum over grid axis k, keeping the point axis first
                        c = cross[k, orders[k]]
                        value = c @ value if k == 0 else jnp.einsum("pi,pi...->p...", c, value)
                    return value

                out["u"] = contract([0] * dim)
                quad = 1.0
                prior = 1.0
                for k in range(dim):
                    c = cross[k, 0]
                    solved = jax.scipy.linalg.cho_solve((chols[k], True), c.T)
                    quad = quad * jnp.sum(c.T * solved, axis=0)
                    prior = prior * spectral_kernel(self.kernel, params[k], 0.0)
                out["u_std"] = jnp.sqrt(jnp.maximum(prior - quad, 0.0))
                for name in names:
                    out[f"u_{name}"] = contract(_orders(name, inputs["variables"]))
                return out

            n = x.shape[0]
            size = min(PREDICT_BATCH, n)
            pad = (-n) % size
            padded = jnp.concatenate([x, jnp.repeat(x[-1:], pad, 0)])
            out = jax.lax.map(batch, padded.reshape(-1, size, dim))
            return jax.tree.map(lambda v: v.reshape(-1)[:n], out)

        keys = [
            f"{n}_{k}"
            for k in range(dim)
            for n in ("log_weight", "frequency", "log_inverse_length")
        ]
        draws = {k: jnp.asarray(samples[k]) for k in [*keys, "u"]}
        out = jax.lax.map(jax.jit(one), draws)
        result = {"u": {"mean": out["u"], "std": out["u_std"]}}
        for name in names:
            result[f"u_{name}"] = out[f"u_{name}"]
        return result

    def relative_error(self, fit, num_points: int = 300, iterate: str = "best") -> float:
        """‖û − u‖ / ‖u‖ on ``num_points`` uniform points per dimension (the paper's metric),
        for the best iterate by training loss (``"best"``) or the last one (``"final"``)."""
        problem = self._require_pde("be scored")
        points = problem.test_points(num_points)
        truth = problem.exact_values(points)
        if iterate == "final":
            group = fit.idata["final_iterate"]
            sample = {k: np.asarray(group[k].values)[None] for k in group.data_vars}
        elif iterate == "best":
            sample = {k: np.asarray(v)[None] for k, v in fit.point_estimate.items()}
        else:
            raise InputError("iterate", f"expected 'best' or 'final', got {iterate!r}.")
        with jax.enable_x64(True):
            out = self.predict(sample, fit.data, {"x": points, "derivatives": ()}, None)
        pred = np.asarray(out["u"]["mean"])[0]
        return float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))
