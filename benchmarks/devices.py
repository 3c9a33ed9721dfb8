"""Chains split over devices against one device (issue 19): wall time and agreement.

On a CPU the devices are XLA host devices (``--xla_force_host_platform_device_count``, set here
before JAX starts): they share the machine's cores, so the ratio measures the driver's overhead
and XLA's threading, not new hardware. On a multi-GPU host the same script splits the chains
over the GPUs.

Model: Bayesian logistic regression, N = 5,000, D = 10 (NUTS and SGLD with 8 chains split over
the devices; SVI's mini-batches, nested sampling's live points and flow VI's draws split) and a
500-step linear-Gaussian state-space model (PaRIS, its 4,000 particles split). Each method runs
on all devices and on one, same seed; the table gives the sampling time (compilation
excluded), the largest |difference| between the two runs' draws in posterior sds, and the
devices used.

nested sampling's path amplifies float rounding (like NUTS's warm-up), so its column compares
ln Z, in units of its estimated error.

Run: python benchmarks/devices.py [--host-devices 4] [--methods nested paris]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

# what each method's "sampling (s)" column times (compilation excluded): what is split
TIMED = {"svi": "training_time", "flow_vi": "drawing_time"}
SPLIT = {
    "nuts": "8 chains",
    "sgld": "8 chains",
    "svi": "mini-batch of 1,000",
    "nested": "400 live points, 40 slice chains",
    "paris": "4,000 particles, 1 chain",
    "flow_vi": "40,000 draws",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-devices", type=int, default=4)
    parser.add_argument("--methods", nargs="*", help="only these (default: all)")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={args.host_devices}"
    )
    import jax
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    import bayesplug as bp

    def logistic(x, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 10)) / np.sqrt(10) * 2
    y = rng.binomial(1, 1 / (1 + np.exp(-x @ rng.normal(size=10)))).astype(float)
    data = {"x": x, "y": y}
    lg = bp.models.LinearGaussianSSM(A=0.8, Q=0.5, C=1.0, R=1.0)
    series = {"y": np.asarray(lg.simulate(jax.random.PRNGKey(0), 500)["y"])}
    runs = {  # method: (model, data, options, site compared)
        # chains split
        "nuts": (logistic, data, {"num_warmup": 500, "num_samples": 1000, "num_chains": 8}, "w"),
        "sgld": (
            logistic,
            data,
            {"num_warmup": 1000, "num_samples": 2000, "num_chains": 8, "batch_size": 250},
            "w",
        ),
        # a mini-batch split (data-parallel gradients)
        "svi": (logistic, data, {"num_steps": 3000, "batch_size": 1000}, "w"),
        # live points and the slice chains' evaluations split
        "nested": (logistic, data, {"num_live": 400, "num_delete": 40}, "w"),
        # particles split (one chain: the particles are the only parallel axis)
        "paris": (lg, series, {"num_particles": 4000, "num_chains": 1, "num_paths": 100}, "x"),
        # draws from the trained flow split
        "flow_vi": (logistic, data, {"num_steps": 1000, "num_draws": 40000}, "w"),
    }
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} devices"
    )
    print("| method | what is split | devices | run (s) | speed-up | max draw difference (sd) |")
    print("|---|---|---|---|---|---|")
    chosen = {m: r for m, r in runs.items() if not args.methods or m in args.methods}
    for method, (model, fit_data, options, site) in chosen.items():
        fits = {}
        for devices in (1, None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[devices] = bp.fit(
                    model, fit_data, method=method, seed=0, progress=False, devices=devices,
                    **options,
                )  # fmt: skip
        one, many = fits[1], fits[None]
        if method == "nested":  # its path amplifies rounding: compare ln Z, in its error
            (a, sd), (b, _) = one.log_evidence, many.log_evidence
        else:
            a, b = (f.idata.posterior[site].values for f in (one, many))
            sd = np.std(a)
        difference = float(np.max(np.abs(a - b)) / sd)
        timed = TIMED.get(method, "sampling_time")
        base = one.idata.attrs[timed]
        for fit in (one, many):
            seconds = fit.idata.attrs[timed]
            print(
                f"| {method} | {SPLIT[method]} | {fit.idata.attrs['num_devices']} | "
                f"{seconds:.2f} | "
                f"{base / seconds:.2f} | {difference if fit is many else 0:.2g} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
