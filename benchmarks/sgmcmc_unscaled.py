"""SG-MCMC at its defaults on unscaled data, against NUTS on the same model (issue 20).

Two problems with covariates on very different scales, simulated here (seeded):

* ``interaction``: the textbook child-test-score regression (Gelman & Hill 2007, ch. 3):
  N = 434, a binary covariate, one around 100 (sd 15), their interaction (up to ~140), outcome sd
  ~20; y = -11 + 51 hs + 0.97 iq - 0.48 hs*iq + N(0, 18^2); priors N(0, 100^2) on the four
  coefficients, HalfNormal(50) on sigma.
* ``logistic``: N = 1,000, features age ~ N(50, 10), income ~ N(30, 8) (thousands) and a
  binary one; logit p = -6 + 0.06 age + 0.1 income + 0.8 b; priors N(0, 10^2).

Each backend runs at its defaults (batch 100, 1,000 burn-in, 1,000 draws, 4 chains: nothing set
by hand) beside NUTS (1,000 + 1,000, 4 chains) at its defaults (the reference) and with
``dense_mass=True`` (its best documented setting for correlated coefficients: the peer at its
best for the wall-time comparison). The table gives, per backend, the largest
|mean - NUTS mean| / NUTS sd and the largest |sd / NUTS sd - 1| over the parameters, the
smallest bulk ESS and the wall time of ``bp.fit`` (compilation included).

Run: ``python benchmarks/sgmcmc_unscaled.py [--seed 0] [--problems interaction logistic]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesplug as bp

METHODS = ("sgld", "sghmc", "structured_sgmcmc")


def interaction_data(seed: int = 0, n: int = 434) -> dict:
    rng = np.random.default_rng(seed)
    hs = (rng.random(n) < 0.79).astype(float)
    iq = rng.normal(100.0, 15.0, n)
    x = np.column_stack([np.ones(n), hs, iq, hs * iq])
    y = x @ np.array([-11.0, 51.0, 0.97, -0.48]) + rng.normal(0.0, 18.0, n)
    return {"x": x, "y": y}


def linear_regression(x, y=None):
    """y ~ N(x beta, sigma^2), broad priors."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 100.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(50.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)


def logistic_data(seed: int = 0, n: int = 1000) -> dict:
    rng = np.random.default_rng(seed)
    age = rng.normal(50.0, 10.0, n)
    income = rng.normal(30.0, 8.0, n)  # thousands
    b = (rng.random(n) < 0.4).astype(float)
    x = np.column_stack([np.ones(n), age, income, b])
    logit = x @ np.array([-6.0, 0.06, 0.1, 0.8])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(float)
    return {"x": x, "y": y}


def logistic_regression(x, y=None):
    """y ~ Bernoulli(logit^-1(x beta)), beta ~ N(0, 10^2)."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)


PROBLEMS = {
    "interaction": (linear_regression, interaction_data),
    "logistic": (logistic_regression, logistic_data),
}


def flat_draws(fit) -> np.ndarray:
    post = fit.idata.posterior
    parts = [post[k].values.reshape(post.sizes["chain"] * post.sizes["draw"], -1) for k in post]
    return np.concatenate(parts, axis=1)


def compare(fit, reference) -> tuple[float, float]:
    """(max |mean - ref mean| / ref sd, max |sd / ref sd - 1|) over every scalar parameter."""
    ours, ref = flat_draws(fit), flat_draws(reference)
    sd = ref.std(0)
    return (
        float(np.max(np.abs(ours.mean(0) - ref.mean(0)) / sd)),
        float(np.max(np.abs(ours.std(0) / sd - 1.0))),
    )


def timed_fit(model, data, method, seed, **options):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bp.fit(model, data, method=method, seed=seed, progress=False, **options)
    return fit, time.perf_counter() - start, [str(w.message)[:80] for w in caught]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--no-adapt", action="store_true", help="adapt=False (the old defaults)")
    args = parser.parse_args()
    print(
        "| problem | method | max mean err (NUTS sd) | max sd err | min bulk ESS | step size "
        "| wall s | warnings |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.problems:
        model, make = PROBLEMS[name]
        data = make(args.seed)
        nuts, seconds, _ = timed_fit(model, data, "nuts", args.seed)
        ess = float(nuts.summary()["ess_bulk"].min())
        print(f"| {name} | nuts | 0 | 0 | {ess:.0f} | - | {seconds:.1f} | |", flush=True)
        # The peer at its best documented setting for correlated, unscaled coefficients.
        dense, seconds, _ = timed_fit(model, data, "nuts", args.seed, dense_mass=True)
        mean_err, sd_err = compare(dense, nuts)
        ess = float(dense.summary()["ess_bulk"].min())
        print(
            f"| {name} | nuts, dense_mass=True | {mean_err:.3f} | {sd_err:.3f} | {ess:.0f} | - "
            f"| {seconds:.1f} | |",
            flush=True,
        )
        for method in args.methods:
            options = {"adapt": False} if args.no_adapt else {}
            try:
                fit, seconds, caught = timed_fit(model, data, method, args.seed, **options)
            except bp.errors.BayesplugError as exc:
                print(f"| {name} | {method} | failed | | | | | {str(exc)[:80]} |", flush=True)
                continue
            mean_err, sd_err = compare(fit, nuts)
            ess = float(fit.summary()["ess_bulk"].min())
            step = fit.idata.attrs.get("step_size", float("nan"))
            print(
                f"| {name} | {method} | {mean_err:.3f} | {sd_err:.3f} | {ess:.0f} | {step:.3g} "
                f"| {seconds:.1f} | {'; '.join(caught)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
