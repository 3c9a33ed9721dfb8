"""A PDE specification for :class:`~bayesplug.models.gp_pde.GPPDESolver`: box, grid, operator,
source, Dirichlet boundary values, and an optional exact solution.

The operator is a Python function of the solution ``u`` and a mapping ``d`` of its named partial
derivatives on the collocation grid; a derivative's name repeats a variable once per order
(``"xx"`` = ∂²u/∂x², ``"xy"`` = ∂²u/∂x∂y, ``"t"`` = ∂u/∂t), at most second order per variable.
The equation solved is ``operator(u, d) = source`` inside the box, ``u = boundary`` on its faces.

Built-ins: :func:`poisson`, :func:`allen_cahn`, :func:`advection`, and every case of the GP-HM
paper's benchmark (Fang et al., "Solving High Frequency and Multi-Scale PDEs with Gaussian
Processes", ICLR 2024) by name with :func:`case` (:data:`CASES`).

Examples
--------
>>> import jax.numpy as jnp
>>> from bayesplug.models import pde
>>> problem = pde.PDE(
...     operator=lambda u, d: d["xx"],
...     domain=[(0.0, 1.0)],
...     grid=[64],
...     source=lambda x: -(jnp.pi**2) * jnp.sin(jnp.pi * x),
...     boundary=lambda x: jnp.sin(jnp.pi * x),
...     exact=lambda x: jnp.sin(jnp.pi * x),
... )
>>> problem.derivatives
('xx',)
>>> sorted(problem.data())
['boundary_index', 'boundary_values', 'grid_0', 'source']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputError, did_you_mean

__all__ = ["CASES", "PDE", "advection", "allen_cahn", "case", "poisson"]

VARIABLES = ("x", "y", "t")
MAX_ORDER = 2  # per variable: the spectral-mixture kernels are twice differentiable


class _Derivatives(Mapping):
    """The ``d`` an operator receives while being probed: records the names it reads and refuses
    names that are not derivatives of this problem's variables."""

    def __init__(self, shape, variables):
        self.shape, self.variables, self.read = shape, variables, []

    def __getitem__(self, name):
        check_derivative_name(name, self.variables)
        if name not in self.read:
            self.read.append(name)
        return jnp.zeros(self.shape)

    def __iter__(self):
        return iter(self.read)

    def __len__(self):
        return len(self.read)


def check_derivative_name(name: Any, variables: Sequence[str]) -> dict[str, int]:
    """Order per variable of a derivative name (``"xxy"`` → {x: 2, y: 1}); InputError if bad."""
    if not isinstance(name, str) or not name:
        raise InputError("operator", f"reads d[{name!r}]: derivative names are strings like 'xx'.")
    unknown = [c for c in name if c not in variables]
    if unknown:
        raise InputError(
            "operator",
            f"reads the derivative d[{name!r}], but {unknown[0]!r} is not a variable of this "
            f"problem (variables: {', '.join(variables)}).",
            did_you_mean(name, [v * 2 for v in variables] + list(variables)),
        )
    orders = {v: name.count(v) for v in variables if v in name}
    if max(orders.values()) > MAX_ORDER:
        raise InputError(
            "operator",
            f"reads d[{name!r}]: at most order {MAX_ORDER} per variable is supported.",
        )
    return orders


def check_freq_scale(freq_scale, grid, domain, variables) -> tuple[float, ...]:
    """One positive freq_scale per dimension (a number serves all), each resolved by the grid
    (at least two points per cycle); InputError naming the argument otherwise."""
    dim = len(grid)
    scales = tuple(freq_scale) if isinstance(freq_scale, Sequence) else (freq_scale,) * dim
    if len(scales) != dim or not all(float(s) > 0 for s in scales):
        raise InputError("freq_scale", f"expected {dim} positive numbers, got {freq_scale!r}.")
    for k, (s, n, (lo, hi)) in enumerate(zip(scales, grid, domain, strict=True)):
        needed = math.ceil(2 * (hi - lo) * float(s)) + 1
        if n < needed:
            raise InputError(
                "grid",
                f"{n} points along {variables[k]!r} cannot resolve "
                f"freq_scale={float(s):g} cycles per unit over a length {hi - lo:g} "
                f"(at least two points per cycle: {needed}).",
                f"Use grid >= {needed} along that dimension, or a smaller freq_scale.",
            )
    return tuple(float(s) for s in scales)


def _grid_values(value, coords, name, shape):
    """A callable of the coordinates, an array of the grid's shape, or a number → grid array."""
    if callable(value):
        out = jnp.asarray(value(*coords), dtype=float)
    else:
        out = jnp.asarray(value, dtype=float)
    try:
        out = jnp.broadcast_to(out, shape)
    except ValueError:
        raise InputError(name, f"gives values of shape {out.shape}, the grid is {shape}.") from None
    if not bool(jnp.all(jnp.isfinite(out))):
        raise InputError(name, "has NaN or infinite values on the grid.")
    return out


@dataclass(frozen=True)
class PDE:
    """A PDE on a box with Dirichlet data on its faces.

    Parameters
    ----------
    operator
        ``operator(u, d) -> residual``: ``u`` the solution on the grid, ``d`` its named partial
        derivatives there (``d["xx"]``); must be written with ``jax.numpy``.
    domain
        One ``(low, high)`` per dimension (1, 2 or 3).
    grid
        Collocation points per dimension (a uniform grid including both ends).
    source
        Right-hand side: a callable of the coordinate arrays, an array on the grid, or a number.
    boundary
        Dirichlet values on the faces: a callable of the coordinates (required). For a time-like
        dimension these are the initial values on its lower face, and the other faces' values.
    exact
        The exact solution (a callable of the coordinates), for error reporting only.
    freq_scale
        The highest frequency (cycles per unit) the solution may contain, per dimension or one for
        all: the kernels' frequencies start spread over [0, freq_scale]. The grid must resolve it
        (at least two points per cycle).
    variables
        Names of the coordinates, ``("x",)``, ``("x", "y")`` (default by dimension), or e.g.
        ``("x", "t")``.
    name
        A label.
    """

    operator: Callable
    domain: Sequence[tuple[float, float]]
    grid: Sequence[int]
    source: Any = 0.0
    boundary: Callable | None = None
    exact: Callable | None = None
    freq_scale: float | Sequence[float] | None = None
    variables: Sequence[str] | None = None
    name: str = "custom"
    derivatives: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        domain = self._check_domain()
        dim = len(domain)
        grid = self._check_grid(dim)
        variables = tuple(self.variables) if self.variables is not None else VARIABLES[:dim]
        if len(variables) != dim or len(set(variables)) != dim:
            raise InputError("variables", f"expected {dim} distinct names, got {variables!r}.")
        if any(len(v) != 1 for v in variables):
            raise InputError("variables", "each variable is one letter, e.g. ('x', 't').")
        if not callable(self.operator):
            raise InputError("operator", "expected a function operator(u, d) -> residual.")
        if self.boundary is None:
            raise InputError(
                "boundary",
                "is missing: a PDE needs Dirichlet values on the faces of its box.",
                "Pass boundary=lambda x: ... (the exact solution, when known).",
            )
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "freq_scale", self._check_freq_scale(dim))
        object.__setattr__(self, "derivatives", self._probe_operator())

    # --- checks -----------------------------------------------------------------------------
    def _check_domain(self):
        try:
            domain = tuple((float(lo), float(hi)) for lo, hi in self.domain)
        except (TypeError, ValueError):
            raise InputError("domain", "expected one (low, high) pair per dimension.") from None
        if not 1 <= len(domain) <= 3:
            raise InputError("domain", f"has {len(domain)} dimensions; 1, 2 or 3 are supported.")
        for lo, hi in domain:
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise InputError(
                    "domain", f"({lo}, {hi}) is not a finite interval with low < high."
                )
        return domain

    def _check_grid(self, dim):
        grid = tuple(self.grid) if isinstance(self.grid, Sequence) else (self.grid,) * dim
        if len(grid) != dim:
            raise InputError("grid", f"gives {len(grid)} sizes for a {dim}-D domain.")
        for n in grid:
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 5:
                raise InputError("grid", f"sizes must be integers >= 5, got {n!r}.")
        return tuple(int(n) for n in grid)

    def _check_freq_scale(self, dim):
        if self.freq_scale is None:
            return None
        variables = tuple(self.variables) if self.variables is not None else VARIABLES[:dim]
        return check_freq_scale(self.freq_scale, self.grid, self.domain, variables)

    def _probe_operator(self):
        d = _Derivatives(self.grid, self.variables)
        try:
            out = jax.eval_shape(
                lambda u: self.operator(u, d), jax.ShapeDtypeStruct(self.grid, float)
            )
        except InputError:
            raise
        except Exception as error:
            raise InputError(
                "operator",
                f"failed when called as operator(u, d) on the grid: "
                f"{type(error).__name__}: {error}",
                "Write it with jax.numpy and read derivatives as d['xx'].",
            ) from None
        if tuple(out.shape) != self.grid:
            raise InputError(
                "operator", f"returned shape {tuple(out.shape)}; the grid is {self.grid}."
            )
        return tuple(d.read)

    # --- grid data ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self.domain)

    def axes(self) -> list[np.ndarray]:
        """The uniform collocation coordinates of each dimension."""
        return [np.linspace(lo, hi, n) for (lo, hi), n in zip(self.domain, self.grid, strict=True)]

    def boundary_mask(self) -> np.ndarray:
        """True at grid points on a face of the box."""
        mask = np.zeros(self.grid, dtype=bool)
        for k in range(self.dim):
            index = [slice(None)] * self.dim
            for side in (0, -1):
                index[k] = side
                mask[tuple(index)] = True
        return mask

    def data(self) -> dict[str, np.ndarray]:
        """The arrays a fit needs: ``grid_k``, ``source`` on the grid, the flat indices of the
        boundary points and their values."""
        axes = self.axes()
        with jax.enable_x64(True):
            coords = jnp.meshgrid(*[jnp.asarray(a) for a in axes], indexing="ij")
            source = _grid_values(self.source, coords, "source", self.grid)
            boundary = _grid_values(self.boundary, coords, "boundary", self.grid)
        index = np.flatnonzero(self.boundary_mask())
        out = {f"grid_{k}": a for k, a in enumerate(axes)}
        out["source"] = np.asarray(source)
        out["boundary_index"] = index
        out["boundary_values"] = np.asarray(boundary).ravel()[index]
        return out

    @property
    def homogeneous(self) -> bool:
        """True when the source is zero on the grid (to 1e-9 of the boundary values' scale):
        then the boundary values alone determine the solution."""
        if isinstance(self.source, int | float) and not isinstance(self.source, bool):
            return self.source == 0
        data = self.data()
        scale = max(1.0, float(np.max(np.abs(data["boundary_values"]), initial=0.0)))
        return bool(np.max(np.abs(data["source"])) <= 1e-9 * scale)

    def test_points(self, num: int = 300) -> np.ndarray:
        """``num`` uniform points per dimension over the box, as an (n, dim) array (the paper's
        test grid is 300 or 300 × 300)."""
        axes = [np.linspace(lo, hi, num) for lo, hi in self.domain]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, self.dim)

    def exact_values(self, points) -> np.ndarray:
        """The exact solution at (n, dim) points."""
        if self.exact is None:
            raise InputError("exact", "this PDE has no exact solution to compare with.")
        points = np.asarray(points, dtype=float)
        with jax.enable_x64(True):
            return np.asarray(self.exact(*[jnp.asarray(points[:, k]) for k in range(self.dim)]))


def _source_of(operator, exact, variables):
    """The source f = operator(u, d) at the exact solution, derivatives by autodiff."""

    def source(*coords):
        def scalar(*point):
            return exact(*point)

        def derivative(name):
            f = scalar
            for v in name:
                f = jax.grad(f, argnums=variables.index(v))
            return f

        shape = jnp.broadcast_shapes(*[c.shape for c in coords])
        flat = [jnp.broadcast_to(c, shape).ravel() for c in coords]

        class Lazy(Mapping):
            def __getitem__(self, name):
                return jax.vmap(derivative(name))(*flat).reshape(shape)

            def __iter__(self):
                return iter(())

            def __len__(self):
                return 0

        return operator(exact(*coords), Lazy())

    return source


def _make(name, operator, exact, domain, grid, freq_scale, variables=None):
    variables = tuple(variables) if variables is not None else VARIABLES[: len(domain)]
    return PDE(
        operator=operator,
        domain=domain,
        grid=grid,
        source=_source_of(operator, exact, variables),
        boundary=exact,
        exact=exact,
        freq_scale=freq_scale,
        variables=variables,
        name=name,
    )


def _laplacian(d, dim):
    return sum(d[v * 2] for v in VARIABLES[:dim])


def poisson(exact, domain, grid, freq_scale=None, name="poisson") -> PDE:
    """Δu = f, with f and the boundary values computed from the ``exact`` solution."""
    dim = len(domain)
    return _make(name, lambda u, d: _laplacian(d, dim), exact, domain, grid, freq_scale)


def allen_cahn(exact, domain, grid, freq_scale=None, name="allen_cahn") -> PDE:
    """Δu + u(u² − 1) = f (the paper's form), f and boundary values from ``exact``."""
    dim = len(domain)

    def operator(u, d):
        return _laplacian(d, dim) + u * (u**2 - 1)

    return _make(name, operator, exact, domain, grid, freq_scale)


def advection(exact, domain, grid, beta=200.0, freq_scale=None, name="advection") -> PDE:
    """β u_x + u_t = 0 on (x, t), with Dirichlet values from ``exact`` on all four edges (the
    authors' setting: initial values alone gave ~100% error)."""
    return _make(
        name, lambda u, d: beta * d["x"] + d["t"], exact, domain, grid, freq_scale, ("x", "t")
    )


TWO_PI = 2 * math.pi
s = jnp.sin
c = jnp.cos

#: The GP-HM benchmark cases (``../shared/data/gphm/test_cases.csv``): constructor, exact
#: solution, side length, grid points per dimension, freq_scale, boundary weight.
CASES: dict[str, tuple] = {
    "poisson_1d-single_sin": (poisson, lambda x: s(100 * x), TWO_PI, 400, 20, 200.0),
    "poisson_1d-x_time_sinx": (poisson, lambda x: x * s(200 * x), TWO_PI, 900, 50, 200.0),
    "poisson_1d-sin_cos": (poisson, lambda x: s(6 * x) * c(100 * x), TWO_PI, 400, 20, 200.0),
    "poisson_1d-mix_sin": (
        poisson,
        lambda x: s(x) + 0.1 * s(20 * x) + 0.05 * s(100 * x),
        1.0,
        900,
        30,
        200.0,
    ),
    "poisson_1d-x2_add_sinx": (
        poisson,
        lambda x: s(500 * x) - 2 * (x - 0.5) ** 2,
        1.0,
        400,
        100,
        200.0,
    ),
    "allencahn_1d-single_sin": (allen_cahn, lambda x: s(100 * x), TWO_PI, 400, 20, 200.0),
    "allencahn_1d-sin_cos": (allen_cahn, lambda x: s(6 * x) * c(100 * x), TWO_PI, 400, 20, 200.0),
    "poisson_2d-sin_sin": (
        poisson,
        lambda x, y: s(100 * x) * s(100 * y),
        TWO_PI,
        400,
        20,
        200.0,
    ),
    # the authors' freq_scale 20 exceeds this grid's Nyquist frequency (199 / 4π = 15.8 cycles per
    # unit, so the check refuses it); the solution's highest is 26 / 2π = 4.1: 15 is used
    "poisson_2d-sin_add_cos": (
        poisson,
        lambda x, y: s(6 * x) * c(20 * x) + s(6 * y) * c(20 * y),
        TWO_PI,
        200,
        15,
        200.0,
    ),
    "allencahn_2d-mix-sincos": (
        allen_cahn,
        lambda x, y: (s(x) + 0.1 * s(20 * x) + c(100 * x)) * (s(y) + 0.1 * s(20 * y) + c(100 * y)),
        1.0,
        400,
        30,
        200.0,
    ),
    "advection-sin": (advection, lambda x, t: s(x - 200 * t), 1.0, 200, 40, 500.0),
}


def case(name: str, grid: int | Sequence[int] | None = None) -> PDE:
    """A GP-HM benchmark case by name, on the paper's grid unless ``grid`` is given.

    The boundary weight the authors used is :func:`boundary_weight` of the name.
    """
    if name not in CASES:
        raise InputError("name", f"unknown PDE case {name!r}.", did_you_mean(name, list(CASES)))
    make, exact, length, points, freq_scale, _ = CASES[name]
    dim = 2 if ("_2d" in name or name.startswith("advection")) else 1
    grid = points if grid is None else grid
    return make(exact, [(0.0, length)] * dim, grid, freq_scale=freq_scale, name=name)


def boundary_weight(name: str) -> float:
    """The weight of the boundary term the authors used for a case (200; 500 for advection)."""
    if name not in CASES:
        raise InputError("name", f"unknown PDE case {name!r}.", did_you_mean(name, list(CASES)))
    return CASES[name][5]
