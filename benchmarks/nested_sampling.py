"""Nested sampling: bayesplug ``nested`` against dynesty and a raw ``blackjax.nss`` loop.

Problems with known evidence, prior U(-5, 5)^D:

* ``gauss-D`` (D = 2, 5, 10): L = N(x | mu, I), ln Z from the normal CDF;
* ``rosenbrock-2``: L = exp(-[(1 - x)^2 + 100 (y - x^2)^2]), Z = (pi / 10) / 100 (the
  truncation to the box is negligible).

All use 500 live points and stop at ln(Z + Z_live) - ln Z < 0.01. dynesty as its users run
it: the likelihood in NumPy (no JAX call per point), the static ``NestedSampler`` at its
defaults (``sample="auto"``) and with ``sample="rslice"``; ln Z error from its own estimate.
(Before 2026-12-02 this script gave dynesty a jitted JAX likelihood converted to a float per
point and ``rwalk``: ~0.2 ms of overhead a call, which made bayesplug look 11.5x faster.)
``bayesplug (default)``: ``sampler`` unset, which on every problem here is the ellipsoid
(uniform priors on at most 10 parameters, or discrete choices: batched proposals from the live
points' bounding ellipsoid, slice steps where it bounds poorly; ``sampler`` in the attrs says
which ran); ``bayesplug (slice)``: the slice chains, the default for other models. raw
blackjax: ``blackjax.nss`` with the same settings as bayesplug, jitted step in a Python loop,
``utils.finalise`` + ``utils.log_weights`` (100 simulations) for ln Z ± error. Columns: ln Z,
reported error, true error, likelihood evaluations, and wall time split into compilation and
the rest.

Two real problems without a closed form, on the 31 cosmic chronometers H(z) (the package's copy):

* ``cc-gp-4``: a Matérn-3/2 GP with a constant mean, four parameters under uniform priors (mean
  U(0, 200), amplitude U(0, 2.5 s_y), lengthscale U(0.01, 10 range(z)), jitter added to the
  published errors U(0, max err)); dynesty's likelihood in NumPy/SciPy (``cho_factor``), ours
  in JAX with ``bp.models.CovarianceNormal`` (what a bayesplug user writes: no LAPACK, so the
  slice chains' evaluations are batched) and, as ``bayesplug (slice, LAPACK)``, with
  ``jnp.linalg.cholesky`` (evaluated one point at a time on CPU);
* ``cc-marginalised-13``: the 13-D kernel-marginalised GP (``bp.models.MarginalisedGP()``: five
  kernels chosen by floor(5 u), a constant mean, jitter on the published errors); dynesty's
  likelihood in NumPy/SciPy (``cc_marginalised_numpy``, checked against the model's own
  log-likelihood at 20 prior draws before the race).

Run: python benchmarks/nested_sampling.py   (about 10 minutes on 2 CPU cores; dynesty rows are
left out where dynesty is not installed, e.g. on the GPU machine)
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy import stats

import bayesplug as bp
from bayesplug.models.numpyro_model import NumPyroModel

NUM_LIVE, DLOGZ, HALF = 500, 0.01, 5.0


def gaussian(d):
    mu = np.linspace(-1.0, 1.0, d)
    mass = stats.norm.cdf(HALF - mu) - stats.norm.cdf(-HALF - mu)
    truth = float(np.sum(np.log(mass / (2 * HALF))))

    def log_l(x):
        return -0.5 * jnp.sum((x - mu) ** 2) - 0.5 * d * jnp.log(2 * jnp.pi)

    def log_l_numpy(x):  # what a dynesty user writes
        return -0.5 * np.sum((x - mu) ** 2) - 0.5 * d * np.log(2 * np.pi)

    return f"gauss-{d}", d, (log_l, log_l_numpy), truth


def rosenbrock():
    def log_l(x):
        return -((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)

    # the same formula serves NumPy arrays (no JAX call per point)
    return "rosenbrock-2", 2, (log_l, log_l), float(np.log(np.pi / 10) - np.log(100.0))


def cc_gp():
    """The 4-parameter Matérn-3/2 GP on the cosmic chronometers, in JAX and in NumPy/SciPy."""
    from scipy.linalg import cho_factor, cho_solve

    data = bp.datasets.load("cosmic_chronometers")
    z, y, err = (np.asarray(data[k], dtype=float) for k in ("x", "y", "yerr"))
    distance = np.abs(z[:, None] - z[None, :])
    lower = np.array([0.0, 0.0, 0.01, 0.0])
    upper = np.array([200.0, 2.5 * np.std(y), 10.0 * np.ptp(z), np.max(err)])

    def covariance(xp, amplitude, lengthscale, jitter):
        r = xp.sqrt(3.0) * distance / lengthscale
        return amplitude**2 * (1.0 + r) * xp.exp(-r) + xp.diag(err**2 + jitter**2)

    def log_l(theta):
        mean, amplitude, lengthscale, jitter = theta
        cov = covariance(jnp, amplitude, lengthscale, jitter)
        return bp.models.CovarianceNormal(jnp.full(len(y), mean), cov).log_prob(y)

    def log_l_lapack(theta):
        mean, amplitude, lengthscale, jitter = theta
        factor = jnp.linalg.cholesky(covariance(jnp, amplitude, lengthscale, jitter))
        white = jax.scipy.linalg.solve_triangular(factor, y - mean, lower=True)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(factor)))
        return -0.5 * (white @ white + log_det + len(y) * jnp.log(2 * jnp.pi))

    def log_l_numpy(theta):  # what a dynesty user writes
        mean, amplitude, lengthscale, jitter = theta
        factor = cho_factor(covariance(np, amplitude, lengthscale, jitter), lower=True)
        residual = y - mean
        log_det = 2.0 * np.sum(np.log(np.diag(factor[0])))
        quad = residual @ cho_solve(factor, residual)
        return -0.5 * (quad + log_det + len(y) * np.log(2 * np.pi))

    return "cc-gp-4", 4, (log_l, log_l_numpy, log_l_lapack), None, (lower, upper)


def cc_marginalised_numpy():
    """The 13-D kernel-marginalised GP (``bp.models.MarginalisedGP()`` on the cosmic
    chronometers) written for dynesty: the unit cube mapped to the model's uniform priors, the
    kernel picked by floor(5 u), a NumPy/SciPy Gaussian likelihood. Checked against the model's
    own log-likelihood at 20 prior draws before use (to 1e-6 relative)."""
    from scipy.linalg import cho_factor, cho_solve

    data = bp.datasets.load("cosmic_chronometers")
    z, y, err = (np.asarray(data[k], dtype=float) for k in ("x", "y", "yerr"))
    s, r = np.max(np.abs(y)), np.ptp(z)
    d = np.abs(z[:, None] - z[None, :])
    kernels = ("matern32", "matern52", "matern72", "rbf", "linear")
    # coordinates: kernel_u, (amplitude, lengthscale) x 4, linear bias and slope, mean, jitter
    names = ["kernel_u"] + [f"{k}_{p}" for k in kernels[:4] for p in ("amplitude", "lengthscale")]
    names += ["linear_bias", "linear_slope", "mean_constant", "jitter"]
    lower = np.array([0.0] + [0.0] * 8 + [0.0, 0.0, -5 * s, 0.0])
    upper = np.array([1.0] + [2.5 * s, 10 * r] * 4 + [2.5 * s, 2.5 * s, 5 * s, np.max(err)])
    sqrt3, sqrt5, sqrt7 = np.sqrt(3.0), np.sqrt(5.0), np.sqrt(7.0)
    correlation = {
        "matern32": lambda t: (1 + sqrt3 * t) * np.exp(-sqrt3 * t),
        "matern52": lambda t: (1 + sqrt5 * t + 5 * t**2 / 3) * np.exp(-sqrt5 * t),
        "matern72": lambda t: (
            (1 + sqrt7 * t + 14 * t**2 / 5 + 7 * sqrt7 * t**3 / 15) * np.exp(-sqrt7 * t)
        ),
        "rbf": lambda t: np.exp(-0.5 * t**2),
    }

    def log_l_numpy(theta):  # what a dynesty user writes
        k = min(int(5 * theta[0]), 4)
        if k < 4:
            amplitude, lengthscale = theta[1 + 2 * k], theta[2 + 2 * k]
            gram = amplitude**2 * correlation[kernels[k]](d / lengthscale)
        else:
            gram = theta[9] ** 2 + theta[10] ** 2 * np.outer(z, z)
        gram[np.diag_indices_from(gram)] += err**2 + theta[12] ** 2 + 1e-10 * s**2
        try:
            factor = cho_factor(gram, lower=True)
        except np.linalg.LinAlgError:
            return -1e300
        residual = y - theta[11]
        log_det = 2.0 * np.sum(np.log(np.diag(factor[0])))
        quad = residual @ cho_solve(factor, residual)
        return -0.5 * (quad + log_det + len(y) * np.log(2 * np.pi))

    _check_against_the_model(bp.models.MarginalisedGP(), data, names, lower, upper, log_l_numpy)
    return log_l_numpy, (lower, upper)


def _check_against_the_model(model, data, names, lower, upper, log_l_numpy):
    """The NumPy likelihood equals the model's at 20 prior draws (else the race is unfair)."""
    from numpyro.infer.util import log_likelihood

    rng = np.random.default_rng(1)
    thetas = lower + (upper - lower) * rng.uniform(size=(20, len(names)))
    samples = {name: jnp.asarray(thetas[:, i]) for i, name in enumerate(names)}
    with jax.enable_x64(True):
        ours = log_likelihood(model.model, samples, **model.validate(data))["y"]
    theirs = np.array([log_l_numpy(t) for t in thetas])
    np.testing.assert_allclose(theirs, np.asarray(ours), rtol=1e-6)  # ill-conditioned grams


def as_numpyro(d, log_l, bounds=None):
    lower, upper = bounds if bounds is not None else (-HALF * np.ones(d), HALF * np.ones(d))

    def model():
        x = numpyro.sample("x", dist.Uniform(lower, upper).to_event(1))
        numpyro.factor("log_l", log_l(x))

    return model


def run_bayesplug(d, log_l, bounds=None, sampler=None):
    model = NumPyroModel(as_numpyro(d, log_l, bounds))
    start = time.perf_counter()
    fit = bp.fit(
        model,
        {},
        method="nested",
        num_live=NUM_LIVE,
        dlogz=DLOGZ,
        sampler=sampler,
        progress=False,
    )
    wall = time.perf_counter() - start
    a = fit.idata.attrs
    assert a["sampler"] == (sampler or "ellipsoid"), a["sampler"]  # what the label says ran
    return (
        fit.log_evidence,
        a["likelihood_evaluations"],
        a["compile_time"],
        wall - a["compile_time"],
    )


def run_dynesty(d, log_l_numpy, sample="auto", bounds=None):
    """dynesty as its users run it: the likelihood in NumPy, the static sampler at its defaults
    (``sample="auto"``, its choice by dimension) or with ``"rslice"`` (advised in its docs for
    moderate dimension)."""
    import dynesty

    lower, upper = bounds if bounds is not None else (-HALF * np.ones(d), HALF * np.ones(d))

    def transform(u):
        return lower + (upper - lower) * u

    start = time.perf_counter()
    sampler = dynesty.NestedSampler(
        log_l_numpy, transform, d, nlive=NUM_LIVE, rstate=np.random.default_rng(0), sample=sample
    )
    sampler.run_nested(dlogz=DLOGZ, print_progress=False)
    wall = time.perf_counter() - start
    res = sampler.results
    return (float(res.logz[-1]), float(res.logzerr[-1])), int(np.sum(res.ncall)), 0.0, wall


def run_raw_blackjax(d, log_l, bounds=None):
    import blackjax
    from blackjax.ns import utils

    lower, upper = bounds if bounds is not None else (-HALF * np.ones(d), HALF * np.ones(d))

    def log_prior(x):
        inside = jnp.all((x >= lower) & (x <= upper))
        return jnp.where(inside, -jnp.sum(jnp.log(upper - lower)), -jnp.inf)

    algo = blackjax.nss(log_prior, log_l, num_inner_steps=max(5, 2 * d), num_delete=NUM_LIVE // 10)
    key = jax.random.PRNGKey(0)
    positions = jax.random.uniform(key, (NUM_LIVE, d), minval=lower, maxval=upper)
    start = time.perf_counter()
    state = algo.init(positions)
    step = jax.jit(algo.step)
    dead, evaluations, compile_time = [], 0, 0.0
    while True:
        key, sub = jax.random.split(key)
        t = time.perf_counter()
        state, info = step(sub, state)
        jax.block_until_ready(state)
        if not dead:
            compile_time = time.perf_counter() - t
        dead.append(info)
        evaluations += int(
            jnp.sum(info.update_info.num_expansions) + jnp.sum(info.update_info.num_shrink)
        )
        remaining = jnp.logaddexp(state.integrator.logZ, state.integrator.logZ_live)
        if remaining - state.integrator.logZ < DLOGZ:
            break
    final = utils.finalise(state, dead)
    log_z = jax.scipy.special.logsumexp(utils.log_weights(key, final, shape=100), axis=0)
    wall = time.perf_counter() - start
    return (float(log_z.mean()), float(log_z.std())), evaluations, compile_time, wall - compile_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems",
        nargs="*",
        help="names to run (gauss-2 gauss-5 gauss-10 rosenbrock-2 cc-gp-4 cc-marginalised-13)",
    )
    args = parser.parse_args()
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}; {NUM_LIVE} live points, dlogz {DLOGZ}",
        flush=True,
    )
    print(
        "| problem | sampler | ln Z | reported error | true error | likelihood evaluations "
        "| compile (s) | run (s) |",
        flush=True,
    )
    print("|" + "---|" * 8, flush=True)
    problems = [p + (None,) for p in (gaussian(2), gaussian(5), gaussian(10), rosenbrock())]
    problems.append(cc_gp())
    if args.problems:
        problems = [p for p in problems if p[0] in args.problems]
    runners = {
        "bayesplug (slice)": lambda d, f, b: run_bayesplug(d, f[0], b, "slice"),
        "bayesplug (default)": lambda d, f, b: run_bayesplug(d, f[0], b),
        "bayesplug (slice, LAPACK)": lambda d, f, b: (
            run_bayesplug(d, f[2], b, "slice") if len(f) > 2 else None
        ),
        "raw blackjax.nss": lambda d, f, b: run_raw_blackjax(d, f[0], b),
    }
    if importlib.util.find_spec("dynesty") is not None:
        runners["dynesty (defaults, NumPy)"] = lambda d, f, b: run_dynesty(d, f[1], bounds=b)
        runners["dynesty (rslice, NumPy)"] = lambda d, f, b: run_dynesty(d, f[1], "rslice", b)
    else:
        print("| (dynesty not installed: pip install -e '.[bench]') |" + " |" * 7, flush=True)
    for name, d, log_l, truth, bounds in problems:
        for label, runner in runners.items():
            result = runner(d, log_l, bounds)
            if result is None:  # no such variant of this problem
                continue
            (log_z, err), calls, compile_time, run = result
            title = name if truth is None else f"{name} (ln Z = {truth:.3f})"
            off = "n/a" if truth is None else f"{log_z - truth:+.3f}"
            print(
                f"| {title} | {label} | {log_z:.3f} | {err:.3f} | {off} | {calls:,} | "
                f"{compile_time:.1f} | {run:.1f} |",
                flush=True,
            )
    if args.problems and "cc-marginalised-13" not in args.problems:
        return
    title = "CC kernel-marginalised GP (13-D)"
    for label, sampler in (("bayesplug (slice)", "slice"), ("bayesplug (default)", None)):
        start = time.perf_counter()
        fit = bp.fit(
            bp.models.MarginalisedGP(),
            bp.datasets.load("cosmic_chronometers"),
            method="nested",
            num_live=NUM_LIVE,
            dlogz=DLOGZ,
            sampler=sampler,
            progress=False,
        )
        a = fit.idata.attrs
        print(
            f"| {title} | {label} | {fit.log_evidence[0]:.3f} | "
            f"{fit.log_evidence[1]:.3f} | n/a | {a['likelihood_evaluations']:,} | "
            f"{a['compile_time']:.1f} | {time.perf_counter() - start - a['compile_time']:.1f} |",
            flush=True,
        )
    if importlib.util.find_spec("dynesty") is None:
        return
    log_l_numpy, bounds = cc_marginalised_numpy()
    for label, sample in (
        ("dynesty (defaults, NumPy)", "auto"),
        ("dynesty (rslice, NumPy)", "rslice"),
    ):
        (log_z, err), calls, _, run = run_dynesty(13, log_l_numpy, sample, bounds)
        print(
            f"| {title} | {label} | {log_z:.3f} | {err:.3f} | n/a | {calls:,} | 0.0 | {run:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
