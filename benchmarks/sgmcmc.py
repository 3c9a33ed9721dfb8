"""SG-MCMC backends on Bayesian logistic regression (N = 10,000, D = 20) against a NUTS reference.

Columns: the largest error of a posterior mean over the 20 coefficients (in posterior standard
deviations of the NUTS reference), the ratio of posterior variances (median over coefficients),
the smallest bulk ESS, ESS per second of sampling (compilation excluded), and the sampling time.
All SG runs: 4 vectorised chains, batch 500, 2,000 burn-in + 4,000 kept steps; "hand-set" rows
are the stage-1 configurations (``adapt=False``, fixed step sizes), "defaults" rows the adapted
samplers of issue 20 with nothing set by hand. ESS per second counts sampling plus the
adaptation (mode search, Laplace scale, gradient-noise probe). The reference: NUTS, 4 chains x
2,000 draws.

Overhead: bayesplug ``sgld`` against a bare loop of blackjax's ``sgld`` kernel (blackjax's own
``grad_estimator`` on the per-datum log-likelihood, mini-batches drawn in a jitted ``lax.scan``,
4 chains vmapped), same steps, batch and step size, timed after compilation.

Run: python benchmarks/sgmcmc.py   (about 5 minutes on 2 CPU cores)
"""

from __future__ import annotations

import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import bayesplug as bp

N, D, BATCH, STEP = 10_000, 20, 500, 1e-4
WARMUP, SAMPLES, CHAINS = 2000, 4000, 4


def logistic(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)) / np.sqrt(D) * 2
    w = rng.normal(size=D)
    y = rng.binomial(1, 1 / (1 + np.exp(-x @ w))).astype(float)
    return {"x": x, "y": y}


def quiet_fit(method, data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bp.fit(logistic, data, method=method, progress=False, seed=0, **options)


def bare_blackjax_sgld(data, num_steps):
    import blackjax
    from blackjax.sgmcmc.gradients import grad_estimator

    def log_prior(w):
        return jnp.sum(dist.Normal(0.0, 1.0).log_prob(w))

    def log_lik(w, datum):
        x, y = datum
        return dist.Bernoulli(logits=x @ w).log_prob(y)

    kernel = blackjax.sgld(grad_estimator(log_prior, log_lik, N))
    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])

    def chain(key, w):
        def step(w, key):
            batch_key, step_key = jax.random.split(key)
            index = jax.random.randint(batch_key, (BATCH,), 0, N)
            w = kernel.step(step_key, w, (x[index], y[index]), STEP)
            return w, w

        return jax.lax.scan(step, w, jax.random.split(key, num_steps))[1]

    run = jax.jit(jax.vmap(chain))
    keys = jax.random.split(jax.random.PRNGKey(0), CHAINS)
    start = jnp.zeros((CHAINS, D))
    compiled = run.lower(keys, start).compile()
    t = time.perf_counter()
    jax.block_until_ready(compiled(keys, start))
    return time.perf_counter() - t


def main() -> None:
    data = make_data()
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}",
        flush=True,
    )
    ref = quiet_fit("nuts", data, num_samples=2000, num_warmup=1000)
    w_ref = ref.idata.posterior["w"].values.reshape(-1, D)
    mean, sd = w_ref.mean(0), w_ref.std(0)
    print(
        f"NUTS reference: sampling {ref.idata.attrs['sampling_time']:.1f} s, "
        f"min bulk ESS {float(ref.summary()['ess_bulk'].min()):.0f}",
        flush=True,
    )
    # Rows "hand-set" are the stage-1 configurations (adapt=False, fixed step sizes), kept to
    # show the figures hold; rows "defaults" are issue 20's adapted samplers, nothing set.
    hand = {"adapt": False, "step_size": STEP}
    runs = {
        "sgld, hand-set step 1e-4": ("sgld", hand),
        "sgld + control variates, hand-set": ("sgld", {**hand, "control_variates": True}),
        "psgld, hand-set step 1e-3": (
            "sgld",
            {"adapt": False, "preconditioning": True, "step_size": 1e-3},
        ),
        "sghmc + control variates, hand-set": (
            "sghmc",
            {
                "adapt": False,
                "control_variates": True,
                "step_size": 2e-3,
                "num_integration_steps": 10,
            },
        ),
        "structured (one group per site), hand-set": (
            "structured_sgmcmc",
            {**hand, "groups": "coordinates"},
        ),
        "structured, dropout p=0.5, hand-set": (
            "structured_sgmcmc",
            {**hand, "groups": "coordinates", "dropout_p": 0.5, "vi_batch": 2},
        ),
        "sgld, defaults": ("sgld", {}),
        "psgld, defaults": ("sgld", {"preconditioning": True}),
        "sghmc, defaults": ("sghmc", {}),
        "structured (one group per site), defaults": (
            "structured_sgmcmc",
            {"groups": "coordinates"},
        ),
        "NUTS (4 x 1000)": ("nuts", {}),
    }
    print(
        "| method | max mean error (sd) | variance ratio (median) | min bulk ESS | "
        "ESS / s | sampling (s) | adaptation (s) |"
    )
    print("|" + "---|" * 7)
    for label, (method, extra) in runs.items():
        if method == "nuts":
            fit = quiet_fit("nuts", data)
        else:
            options = {
                "batch_size": BATCH,
                "num_warmup": WARMUP,
                "num_samples": SAMPLES,
                "num_chains": CHAINS,
                **extra,
            }
            fit = quiet_fit(method, data, **options)
        w = fit.idata.posterior["w"].values.reshape(-1, D)
        ess = float(fit.summary()["ess_bulk"].min())
        seconds = fit.idata.attrs["sampling_time"]
        adapting = fit.idata.attrs.get("adaptation_time", 0.0)
        print(
            f"| {label} | {np.max(np.abs(w.mean(0) - mean) / sd):.3f} | "
            f"{np.median(w.var(0) / sd**2):.2f} | {ess:.0f} | "
            f"{ess / (seconds + adapting):.0f} | {seconds:.1f} | {adapting:.1f} |",
            flush=True,
        )
    ours = quiet_fit(
        "sgld",
        data,
        adapt=False,
        step_size=STEP,
        batch_size=BATCH,
        num_warmup=WARMUP,
        num_samples=SAMPLES,
        num_chains=CHAINS,
    ).idata.attrs["sampling_time"]
    bare = bare_blackjax_sgld(data, WARMUP + SAMPLES)
    print(
        f"\nOverhead: bayesplug sgld {ours:.2f} s vs bare blackjax loop {bare:.2f} s "
        f"({ours / bare - 1:+.0%}), {WARMUP + SAMPLES} steps x {CHAINS} chains"
    )


if __name__ == "__main__":
    main()
