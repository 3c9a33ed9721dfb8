"""Chains split over devices against one device (issue 19): wall time and agreement.

On a CPU the devices are XLA host devices (``--xla_force_host_platform_device_count``, set here
before JAX starts): they share the machine's cores, so the ratio measures the driver's overhead
and XLA's threading, not new hardware. On a multi-GPU host the same script splits the chains
over the GPUs.

Model: Bayesian logistic regression, N = 5,000, D = 10. Each method runs with 8 chains on all
devices and on one, same seed; the table gives the sampling time (compilation excluded), the
largest |difference| between the two runs' draws in posterior sds, and the devices used.

Run: python benchmarks/devices.py [--host-devices 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-devices", type=int, default=4)
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
    runs = {
        "nuts": {"num_warmup": 500, "num_samples": 1000, "num_chains": 8},
        "sgld": {"num_warmup": 1000, "num_samples": 2000, "num_chains": 8, "batch_size": 250},
    }
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} devices"
    )
    print("| method | devices | sampling (s) | speed-up | max draw difference (sd) |")
    print("|---|---|---|---|---|")
    for method, options in runs.items():
        fits = {}
        for devices in (1, None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits[devices] = bp.fit(
                    logistic, data, method=method, seed=0, progress=False, devices=devices,
                    **options,
                )  # fmt: skip
        one, many = fits[1], fits[None]
        a, b = (f.idata.posterior["w"].values for f in (one, many))
        difference = float(np.max(np.abs(a - b)) / np.std(a))
        base = one.idata.attrs["sampling_time"]
        for fit in (one, many):
            seconds = fit.idata.attrs["sampling_time"]
            print(
                f"| {method} | {fit.idata.attrs['num_devices']} | {seconds:.2f} | "
                f"{base / seconds:.2f} | {difference if fit is many else 0:.2g} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
