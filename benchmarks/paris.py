"""PaRIS: bayesplug (JAX) against Chopin's ``particles`` (NumPy), then our scaling in N and T.

1. **Against particles** on a 1-D linear-Gaussian SSM (x_t = 0.8 x_{t-1} + N(0, 0.5),
   y_t = x_t + N(0, 1), T = 500), N = 100 and 500, Ñ = 2, the smoothed additive functional
   Σ_t x_t: wall time of one run (ours after compile) and root-mean-square error against the
   exact RTS value over replicates. ``particles`` pins numpy<2, so it runs in its own venv::

       python -m venv .particles-venv && .particles-venv/bin/pip install particles

   (or point ``PARTICLES_PYTHON`` at another interpreter that has it).
2. **Scaling** of ours: particle-steps per second for N = 100 … 10,000 (T = 1,000) and
   T = 100 … 100,000 (N = 100), with the bounded-trials rejection sampler for backward draws.

Run: ``python benchmarks/paris.py`` (``--quick`` for a smoke run). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import bayesplug as bp
from bayesplug.inference._particles import builtin_functional, particle_pass

ROOT = Path(__file__).resolve().parents[1]
THETA = dict(A=0.8, Q=0.5, C=1.0, R=1.0, m0=0.0, P0=1.0)

PARTICLES_SCRIPT = r"""
import json, sys, time
import numpy as np
import particles
import particles.state_space_models as ssms
from particles import collectors as col
from particles.kalman import LinearGauss

y_path, n, reps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
y = [np.array([v]) for v in np.load(y_path)]

class LG(LinearGauss):
    def upper_bound_log_pt(self, t):
        return -0.5 * np.log(2 * np.pi) - np.log(self.sigmaX)
    def add_func(self, t, xp, x):
        return x

out = []
for r in range(reps):
    np.random.seed(seed + r)
    fk = ssms.Bootstrap(ssm=LG(rho=0.8, sigmaX=np.sqrt(0.5), sigmaY=1.0, sigma0=1.0), data=y)
    pf = particles.SMC(fk=fk, N=n, collect=[col.Paris(Nparis=2)])
    start = time.perf_counter()
    pf.run()
    out.append({"seconds": time.perf_counter() - start,
                "estimate": float(np.squeeze(pf.summaries.paris[-1]))})
print(json.dumps(out))
"""


def particles_python() -> str | None:
    candidate = os.environ.get("PARTICLES_PYTHON", str(ROOT / ".particles-venv" / "bin" / "python"))
    if not Path(candidate).exists():
        return None
    check = subprocess.run([candidate, "-c", "import particles"], capture_output=True)
    return candidate if check.returncode == 0 else None


def run_particles(python: str, y: np.ndarray, n: int, reps: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "y.npy"
        np.save(path, y[:, 0])
        script = Path(tmp) / "run.py"
        script.write_text(PARTICLES_SCRIPT)
        done = subprocess.run(
            [python, str(script), str(path), str(n), str(reps), "0"],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(model, y, n, backward, reps, functional="state_sum"):
    """(seconds per run after compile, estimates over ``reps`` replicates, compile seconds)."""
    theta = dict(model.fixed)
    f = builtin_functional(functional, model, theta, y) if functional else None

    def one(key):
        result = particle_pass(
            key,
            model,
            theta,
            y,
            num_particles=n,
            num_backward=2,
            functional=f,
            backward=backward,
            max_trials=32,
        )
        return result.estimate, result.log_likelihood

    run = jax.jit(one)
    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - start
    estimates, times = [], []
    for r in range(reps):
        start = time.perf_counter()
        est, _ = jax.block_until_ready(run(jax.random.PRNGKey(r + 1)))
        times.append(time.perf_counter() - start)
        estimates.append(float(np.squeeze(est)) if functional else 0.0)
    return float(np.median(times)), np.array(estimates), compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--particles-reps", type=int, default=2)
    parser.add_argument("--ours-reps", type=int, default=50)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--ns", type=int, nargs="*", default=[100, 500], help="N compared")
    parser.add_argument(
        "--peer-ns",
        type=int,
        nargs="*",
        default=[100, 500],
        help="N at which particles also runs (about N seconds per run)",
    )
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.processor()} jax {jax.__version__} {jax.devices()[0]}")
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores")
    with jax.enable_x64(True):
        model = bp.models.LinearGaussianSSM(**THETA)
        steps = 100 if args.quick else 500
        y = np.asarray(model.simulate(jax.random.PRNGKey(42), steps)["y"])
        means, _ = model.rts_smoother(y)
        exact = float(np.sum(means))
        print(f"\n## Σ x_t on a 1-D linear-Gaussian SSM, T = {steps}, Ñ = 2 (exact {exact:.3f})")
        print("| method | N | backward | s / run | RMSE vs Kalman | replicates | speed-up |")
        print("|---|---|---|---|---|---|---|")
        python = None if args.no_peer else particles_python()
        if python is None and not args.no_peer:
            print("| particles | — | — | (not installed: see the docstring) | | | |")
        for n in (100,) if args.quick else args.ns:
            theirs_s = None
            if python is not None and n in args.peer_ns:
                reps = 1 if n > 100 else args.particles_reps
                res = run_particles(python, y, n, reps)
                theirs_s = float(np.median([r["seconds"] for r in res]))
                err = np.sqrt(np.mean((np.array([r["estimate"] for r in res]) - exact) ** 2))
                print(
                    f"| particles (Paris) | {n} | hybrid rejection | {theirs_s:.2f} | {err:.3f} "
                    f"| {reps} | 1× |",
                    flush=True,
                )
            for backward in ("exact", "rejection"):
                s, est, _ = ours(model, y, n, backward, args.ours_reps)
                err = np.sqrt(np.mean((est - exact) ** 2))
                speed = f"{theirs_s / s:.0f}×" if theirs_s else "—"
                print(
                    f"| bayesplug paris | {n} | {backward} | {s:.4f} | {err:.3f} | "
                    f"{args.ours_reps} | {speed} |",
                    flush=True,
                )

        if args.no_scaling:
            return
        print("\n## Scaling (rejection backward sampler, max_trials 32, functional Σ x_t)")
        print("| N | T | s / run (after compile) | compile s | particle-steps / s |")
        print("|---|---|---|---|---|")
        grid = [
            (100, 1000),
            (1000, 1000),
            (10_000, 1000),
            (100, 100),
            (100, 10_000),
            (100, 100_000),
        ]
        if args.quick:
            grid = [(100, 1000), (1000, 1000)]
        for n, steps in grid:
            y = np.asarray(model.simulate(jax.random.PRNGKey(7), steps)["y"])
            # with a functional: without one the backward draws are dead code and XLA drops them
            s, _, c = ours(model, y, n, "rejection", 3)
            print(f"| {n:,} | {steps:,} | {s:.3f} | {c:.1f} | {n * steps / s:,.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
