"""Nested sampling: is ln Z ± error calibrated on shapes that are hard for a bounding ellipsoid?

Both samplers of the ``nested`` backend (``sampler="ellipsoid"``, the default for uniform priors
on at most 10 parameters, and ``sampler="slice"``) at their defaults over many seeds, on
problems with a known evidence, every prior U(-1, 1)^D:

* ``box-D-p``: a rounded box L = exp(-Σ |x / 0.3|^p) (corners an ellipsoid may cut off);
* ``shell-D``: a thin Gaussian shell, radius 0.5, width 0.02 (a hollow contour);
* ``modes-D``: two Gaussian modes (sd 0.05) at ±0.5 along x₀, weights 0.3 and 0.7; also the
  lighter mode's share of the posterior draws (0.3 if each mode gets its share).

Printed per problem and sampler: z = (ln Z - truth) / reported error over the seeds (mean, sd,
share within 2), and for ``modes-D`` the mean and spread of the lighter mode's share.
Calibrated: mean z near 0, sd near 1 (the sd of a sample sd over n seeds is ~1/√(2n)).

Run: python benchmarks/nested_calibration.py   (about 6 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from scipy import integrate, special

import bayesplug as bp
from bayesplug.models.numpyro_model import NumPyroModel


def rounded_box(d: int, p: float, scale: float = 0.3):
    def model():
        x = numpyro.sample("x", dist.Uniform(-1.0, 1.0).expand([d]).to_event(1))
        numpyro.factor("likelihood", -jnp.sum((jnp.abs(x) / scale) ** p))

    return model, d * math.log(scale * math.gamma(1 + 1 / p))


def shell(d: int, radius: float = 0.5, width: float = 0.02):
    norm = width * math.sqrt(2 * math.pi)

    def model():
        x = numpyro.sample("x", dist.Uniform(-1.0, 1.0).expand([d]).to_event(1))
        r = jnp.sqrt(jnp.sum(x**2))
        numpyro.factor("likelihood", -0.5 * ((r - radius) / width) ** 2 - math.log(norm))

    area = 2 * math.pi ** (d / 2) / special.gamma(d / 2)
    radial = integrate.quad(
        lambda r: r ** (d - 1) * math.exp(-0.5 * ((r - radius) / width) ** 2) / norm, 0, 1
    )[0]
    return model, math.log(area * radial) - d * math.log(2.0)


def two_modes(d: int, sd: float = 0.05, light: float = 0.3):
    centre = jnp.zeros(d).at[0].set(0.5)

    def model():
        x = numpyro.sample("x", dist.Uniform(-1.0, 1.0).expand([d]).to_event(1))
        near = dist.Normal(centre, sd).log_prob(x).sum() + math.log(light)
        far = dist.Normal(-centre, sd).log_prob(x).sum() + math.log(1 - light)
        numpyro.factor("likelihood", logsumexp(jnp.stack([near, far])))

    return model, -d * math.log(2.0)


PROBLEMS = {
    "box-3-20": lambda: rounded_box(3, 20.0),
    "box-5-8": lambda: rounded_box(5, 8.0),
    "box-8-20": lambda: rounded_box(8, 20.0),
    "shell-2": lambda: shell(2),
    "shell-5": lambda: shell(5),
    "modes-3": lambda: two_modes(3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=30, help="seeds per problem and sampler")
    args = parser.parse_args()
    print(f"jax {jax.__version__} · {jax.devices()[0].platform} · {args.seeds} seeds each")
    print("| problem | sampler | mean z | sd z | within 2 | lighter mode's share |")
    print("|---|---|---|---|---|---|")
    for name in args.problems:
        program, truth = PROBLEMS[name]()
        model = NumPyroModel(program)
        for sampler in ("ellipsoid", "slice"):
            z, share = [], []
            for seed in range(args.seeds):
                fit = bp.fit(model, {}, method="nested", sampler=sampler, seed=seed, progress=False)
                log_z, err = fit.log_evidence
                z.append((log_z - truth) / err)
                share.append(float(np.mean(np.asarray(fit.samples["x"])[:, 0] > 0)))
            z = np.array(z)
            modes = (
                f"{np.mean(share):.3f} ± {np.std(share):.3f}" if name.startswith("modes") else ""
            )
            print(
                f"| {name} | {sampler} | {z.mean():+.2f} | {z.std(ddof=1):.2f} | "
                f"{np.mean(np.abs(z) < 2):.2f} | {modes} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
