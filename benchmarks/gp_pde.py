"""GP-HM (``gp_pde`` by ``map``) against a PINN (DeepXDE) and a classical spectral solver.

For each case of the GP-HM benchmark (``bayesplug.models.pde.CASES``), in the same run:

- ``gp-hm``: ``GPPDESolver(case)`` (Student-t mixture, Q = 30, the authors' start, boundary weight
  and learning rate 1e-2) fitted by ``map`` with a cosine-decayed Adam. The step count fills the
  time budget: a 200-step calibration fit measures the time per step first. Relative L2 error on
  the paper's test grid (300 or 300 × 300 points) of the final iterate, and separately of the best
  iterate by the *training* loss (never chosen by test error);
- ``pinn``: DeepXDE's physics-informed network (JAX backend; its documented Poisson example's
  settings: FNN 3 × 50 tanh, Glorot-uniform, Adam lr 1e-3, as many random residual points as our
  grid has, at most 16,384 — the usual PINN scale —, Dirichlet data at 100 points per face)
  trained for the same wall time as ours;
- ``chebyshev``: Chebyshev spectral collocation (Trefethen 2000, "Spectral Methods in MATLAB":
  ``cheb``) with as many points per dimension as our grid, and with twice as many (Chebyshev
  nodes are sparsest mid-interval, π / 2 times the uniform spacing, so at equal counts they
  resolve less of a high frequency); Dirichlet rows; Poisson 2-D by the Sylvester equation
  (Bartels-Stewart); Allen-Cahn by Newton's method; advection from its initial and inflow
  values only (the well-posed data), by the Sylvester equation too. Not written for the 2-D
  Allen-Cahn case (said in the table).

Prints one table. Needs the ``bench`` extra (DeepXDE, flax for its JAX backend).

Run: python benchmarks/gp_pde.py [--cases NAME ...] [--budget-1d 300] [--budget-2d 1200]
     [--grid-2d N] [--no-pinn] [--figures docs/img]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import bayesplug as bp
from bayesplug.models import pde

TARGETS = [
    "poisson_1d-single_sin",
    "allencahn_1d-single_sin",
    "poisson_2d-sin_sin",
    "advection-sin",
]


def relative_l2(pred, truth):
    return float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))


# --- ours -----------------------------------------------------------------------------------------
def run_gp_hm(problem, weight, budget):
    model = bp.models.GPPDESolver(problem, boundary_weight=weight)
    data = problem.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = bp.fit(model, data, method="map", num_steps=200, progress=False)
    per_step = calib.idata.attrs["training_time"] / 200
    steps = max(200, int((budget - calib.idata.attrs["compile_time"]) / per_step))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bp.fit(model, data, method="map", num_steps=steps, progress=False)
    seconds = time.perf_counter() - start
    final = model.relative_error(fit, iterate="final")
    best = model.relative_error(fit, iterate="best")
    return final, best, seconds, fit.idata.attrs["num_steps_run"], fit


def draw(problem, fit, path):
    """Solution and pointwise error of the best iterate (1-D: curves; 2-D: maps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = problem.test_points(300 if problem.dim == 2 else 3000)
    pred = fit.predict({"x": points, "derivatives": []})
    truth = problem.exact_values(points)
    if problem.dim == 1:
        fig, axes = plt.subplots(2, 1, figsize=(8, 5), constrained_layout=True)
        x = points[:, 0]
        window = x < x.min() + 0.08 * np.ptp(x)
        axes[0].plot(x[window], truth[window], "k-", lw=3, alpha=0.3, label="exact")
        axes[0].plot(x[window], pred.mean[window], "C0-", lw=1, label="GP-HM")
        axes[0].set(title=f"{problem.name}: solution (first 8% of the domain)", xlabel="x")
        axes[0].legend(fontsize=8)
        axes[1].semilogy(x, np.abs(pred.mean - truth) + 1e-16, "C3-", lw=0.6)
        axes[1].set(title="absolute error", xlabel="x")
    else:
        shape = (300, 300)
        extent = [*problem.domain[1], *problem.domain[0]]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
        image = axes[0].imshow(pred.mean.reshape(shape), origin="lower", extent=extent)
        fig.colorbar(image, ax=axes[0])
        axes[0].set(title=f"{problem.name}: GP-HM solution", xlabel=problem.variables[1])
        axes[0].set_ylabel(problem.variables[0])
        error = np.abs(pred.mean - truth).reshape(shape)
        image = axes[1].imshow(error, origin="lower", extent=extent, cmap="magma")
        fig.colorbar(image, ax=axes[1])
        axes[1].set(title="absolute error", xlabel=problem.variables[1])
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- a PINN (DeepXDE) --------------------------------------------------------------------------
def run_pinn(problem, name, budget, num_points):
    os.environ.setdefault("DDE_BACKEND", "jax")
    import deepxde as dde
    import jax.numpy as jnp

    dim = problem.dim
    lows = [lo for lo, _ in problem.domain]
    highs = [hi for _, hi in problem.domain]
    geom = (
        dde.geometry.Interval(lows[0], highs[0])
        if dim == 1
        else dde.geometry.Rectangle(lows, highs)
    )
    exact = problem.exact

    def exact_np(x):
        with_cols = [jnp.asarray(x[:, k]) for k in range(dim)]
        return exact(*with_cols)[:, None]

    def source(x):
        return problem.source(*[x[:, k : k + 1] for k in range(dim)])

    def residual(x, y):
        d = {}
        for k, v in enumerate(problem.variables):
            d[v] = dde.grad.jacobian(y, x, i=0, j=k)
            d[v * 2] = dde.grad.hessian(y, x, i=k, j=k)
        u = y[0] if isinstance(y, tuple) else y
        d = {key: (value[0] if isinstance(value, tuple) else value) for key, value in d.items()}
        return problem.operator(u, d) - source(x)

    bc = dde.icbc.DirichletBC(geom, exact_np, lambda _, on_boundary: on_boundary)
    data = dde.data.PDE(geom, residual, [bc], num_domain=num_points, num_boundary=2 * dim * 100)
    net = dde.nn.FNN([dim] + [50] * 3 + [1], "tanh", "Glorot uniform")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)

    class Deadline(dde.callbacks.Callback):
        def __init__(self, seconds):
            super().__init__()
            self.end = time.perf_counter() + seconds
            self.steps = 0

        def on_epoch_end(self):
            self.steps += 1
            if time.perf_counter() > self.end:
                self.model.stop_training = True

    deadline = Deadline(budget)
    start = time.perf_counter()
    model.train(iterations=10_000_000, callbacks=[deadline], display_every=10**9, verbose=0)
    seconds = time.perf_counter() - start
    points = problem.test_points(300)
    pred = np.asarray(model.predict(points))[:, 0]
    return relative_l2(pred, problem.exact_values(points)), seconds, deadline.steps


# --- a classical solver: Chebyshev collocation -------------------------------------------------
def cheb(n, lo, hi):
    """Differentiation matrix and nodes on [lo, hi] with n points (Trefethen's cheb)."""
    m = n - 1
    x = np.cos(np.pi * np.arange(n) / m)
    c = np.hstack([2.0, np.ones(m - 1), 2.0]) * (-1.0) ** np.arange(n)
    dx = x[:, None] - x[None, :]
    d = np.outer(c, 1 / c) / (dx + np.eye(n))
    d -= np.diag(d.sum(axis=1))
    scale = 2.0 / (hi - lo)
    return d * scale, lo + (hi - lo) * (1 - x) / 2  # nodes increasing


def interpolate(nodes, values, points):
    """Barycentric interpolation from Chebyshev points with their closed-form weights
    w_j = (-1)^j, halved at the ends (Berrut & Trefethen 2004); the generic product formula
    over- or underflows for hundreds of nodes."""
    n = nodes.size
    weights = (-1.0) ** np.arange(n)
    weights[[0, -1]] *= 0.5
    diff = points[:, None] - nodes[None, :]
    exact = diff == 0
    diff[exact] = 1.0
    ratio = weights / diff
    out = (ratio @ values) / ratio.sum(axis=1)
    hit = exact.any(axis=1)
    out[hit] = values[exact.argmax(axis=1)[hit]]
    return out


def run_chebyshev(problem, name, factor=1):
    """Relative L2 error and seconds with ``factor`` times the grid's points per dimension."""
    import jax

    with jax.enable_x64(True):  # the source in float64: float32 sin(100 x) alone costs 3e-2
        return _chebyshev(problem, name, factor)


def _chebyshev(problem, name, factor):
    import jax.numpy as jnp

    if factor != 1:
        problem = pde.case(name, grid=[factor * n for n in problem.grid])
    start = time.perf_counter()
    points = problem.test_points(300)
    truth = problem.exact_values(points)
    if problem.dim == 1 and name.startswith(("poisson", "allencahn")):
        (lo, hi), n = problem.domain[0], problem.grid[0]
        d, x = cheb(n, lo, hi)
        d2 = d @ d
        f = np.asarray(problem.source(jnp.asarray(x)))
        g = np.asarray(problem.boundary(jnp.asarray(x)))
        a = d2.copy()
        a[[0, -1]] = 0.0
        a[0, 0] = a[-1, -1] = 1.0
        rhs = f.copy()
        rhs[[0, -1]] = g[[0, -1]]
        u = np.linalg.solve(a, rhs)
        if name.startswith("allencahn"):
            for _ in range(50):  # Newton on u'' + u (u^2 - 1) = f
                r = d2 @ u + u * (u**2 - 1) - f
                r[[0, -1]] = u[[0, -1]] - g[[0, -1]]
                jac = d2 + np.diag(3 * u**2 - 1)
                jac[[0, -1]] = 0.0
                jac[0, 0] = jac[-1, -1] = 1.0
                step = np.linalg.solve(jac, r)
                u -= step
                if np.max(np.abs(step)) < 1e-13:
                    break
        pred = interpolate(x, u, points[:, 0])
    elif problem.dim == 2 and name.startswith("poisson"):
        import scipy.linalg

        (lx, hx), (ly, hy) = problem.domain
        dx, x = cheb(problem.grid[0], lx, hx)
        dy, y = cheb(problem.grid[1], ly, hy)
        X, Y = np.meshgrid(x, y, indexing="ij")
        f = np.asarray(problem.source(jnp.asarray(X), jnp.asarray(Y)))
        g = np.asarray(problem.boundary(jnp.asarray(X), jnp.asarray(Y)))
        ax, ay = dx @ dx, dy @ dy
        lift = np.zeros_like(g)
        lift[[0, -1], :] = g[[0, -1], :]
        lift[:, [0, -1]] = g[:, [0, -1]]
        rhs = f - ax @ lift - lift @ ay.T  # move the boundary values to the right-hand side
        inner = scipy.linalg.solve_sylvester(ax[1:-1, 1:-1], ay[1:-1, 1:-1].T, rhs[1:-1, 1:-1])
        u = lift.copy()
        u[1:-1, 1:-1] = inner
        # tensor barycentric interpolation to the test grid
        test = np.linspace(lx, hx, 300), np.linspace(ly, hy, 300)
        along_x = np.stack([interpolate(x, u[:, j], test[0]) for j in range(u.shape[1])], 1)
        pred = np.stack([interpolate(y, along_x[i], test[1]) for i in range(300)]).ravel()
    elif name.startswith("advection"):
        pred = _chebyshev_advection(problem, points)
    else:
        return np.nan, np.nan
    return relative_l2(pred, truth), time.perf_counter() - start


def _chebyshev_advection(problem, points):
    """β u_x + u_t = 0 with the well-posed data only (initial values at t = 0, inflow at
    x = 0; β > 0): U = lift + V, and β Dx V + V Dtᵀ = −(β Dx lift + lift Dtᵀ) on the nodes off
    those two edges, a Sylvester equation (Bartels-Stewart)."""
    import jax.numpy as jnp
    import scipy.linalg

    beta = 200.0
    (lx, hx), (lt, ht) = problem.domain
    dx, x = cheb(problem.grid[0], lx, hx)
    dt, t = cheb(problem.grid[1], lt, ht)
    X, T = np.meshgrid(x, t, indexing="ij")
    g = np.asarray(problem.boundary(jnp.asarray(X), jnp.asarray(T)))
    lift = np.zeros_like(g)
    lift[0, :], lift[:, 0] = g[0, :], g[:, 0]
    rhs = -(beta * dx @ lift + lift @ dt.T)
    inner = scipy.linalg.solve_sylvester(beta * dx[1:, 1:], dt[1:, 1:].T, rhs[1:, 1:])
    u = lift.copy()
    u[1:, 1:] = inner
    test = np.unique(points[:, 0]), np.unique(points[:, 1])
    along_x = np.stack([interpolate(x, u[:, j], test[0]) for j in range(u.shape[1])], 1)
    return np.stack([interpolate(t, along_x[i], test[1]) for i in range(test[0].size)]).ravel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=TARGETS, help="names, or 'all'")
    parser.add_argument("--budget-1d", type=float, default=300.0, help="seconds per 1-D case")
    parser.add_argument("--budget-2d", type=float, default=1200.0, help="seconds per 2-D case")
    parser.add_argument(
        "--grid-2d", type=int, default=None, help="points per dimension in 2-D (else the paper's)"
    )
    parser.add_argument("--no-pinn", action="store_true")
    parser.add_argument("--figures", default=None, help="a folder for solution/error figures")
    args = parser.parse_args()
    cases = list(pde.CASES) if args.cases == ["all"] else args.cases
    print(
        "| case | grid | budget (s) | gp-hm final | gp-hm best by loss | time (s) | steps "
        "| pinn | pinn time (s) | pinn steps | chebyshev | time (s) | chebyshev, 2x points "
        "| time (s) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in cases:
        two_d = "_2d" in name or name.startswith("advection")
        problem = pde.case(name, grid=args.grid_2d if two_d and args.grid_2d else None)
        budget = args.budget_2d if two_d else args.budget_1d
        final, best, seconds, steps, fit = run_gp_hm(problem, pde.boundary_weight(name), budget)
        if args.figures:
            os.makedirs(args.figures, exist_ok=True)
            draw(problem, fit, os.path.join(args.figures, f"gp_pde_{name}.png"))
        pinn = ("", "", "")
        if not args.no_pinn:
            error, pinn_seconds, pinn_steps = run_pinn(
                problem, name, seconds, min(int(np.prod(problem.grid)), 16_384)
            )
            pinn = (f"{error:.2e}", f"{pinn_seconds:.0f}", f"{pinn_steps}")
        cheb_cells = []
        for factor in (1, 2):
            cheb_error, cheb_seconds = run_chebyshev(problem, name, factor)
            cheb_cells += (
                ["not written", ""]
                if np.isnan(cheb_error)
                else [f"{cheb_error:.2e}", f"{cheb_seconds:.2f}"]
            )
        print(
            f"| {name} | {' x '.join(map(str, problem.grid))} | {budget:.0f} | {final:.2e} | "
            f"{best:.2e} | {seconds:.0f} | {steps} | {' | '.join(pinn)} | "
            f"{' | '.join(cheb_cells)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
