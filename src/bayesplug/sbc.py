"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman, 2018, "Validating
Bayesian inference algorithms with simulation-based calibration", arXiv:1804.06788).

For i = 1…M: draw θ̃ from the prior and ỹ from the model given θ̃ (the program run with its
observed sites drawn), fit ỹ with the method under test, and record where θ̃ falls among the
posterior draws, thinned to about independent draws by their bulk ESS. If the method returns
the true posterior, every such rank is uniform; a method that is too narrow piles ranks at both
ends (∪), one too wide at the middle (∩), a biased one at one end.

Ranks are turned into randomised PIT values u = (#{draws < θ̃} + V (#{draws = θ̃} + 1)) /
(L + 1), V ~ U(0, 1), which are exactly U(0, 1) under calibration whatever the number L of
thinned draws (it varies with the ESS). Uniformity is tested per parameter by Pearson's
χ² on B = min(20, ⌊M/5⌋) equal bins of u (Talts et al.'s histogram, at least 5 expected per
bin): for posteriors too narrow or too wide (∪, ∩) it is far more powerful than
Kolmogorov–Smirnov (measured: u ~ Beta(0.6, 0.6), M = 200, rejection at 1% in 92% of trials
against 44% for KS, 53% for Cramér–von Mises). The KS p-value is reported too, and the plot
shows the histogram of u with a pointwise 99% binomial band and the ECDF of u minus the
identity with the simultaneous band ±d, d the (1 − α) quantile of the KS statistic for M
values (the curve leaves the band exactly when the KS test rejects at α).

Examples
--------
>>> import bayesplug as bp, numpyro, numpyro.distributions as dist
>>> def model(y):
...     mu = numpyro.sample("mu", dist.Normal(0, 2))
...     with numpyro.plate("data", y.shape[0]):
...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
>>> result = bp.sbc(model, {"y": [0.0, 0.0, 0.0]}, "nuts", num_simulations=20, seed=0,
...                 num_warmup=200, num_samples=200, num_chains=1)
>>> result.u["mu"].shape, result.table().shape[0]
((20,), 1)
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._threads import one_at_a_time
from .errors import BayesplugError, InputError, did_you_mean

__all__ = ["SBCResult", "sbc"]


class _Job(NamedTuple):
    model: Any
    data: Mapping[str, Any]
    method: Any
    options: Mapping[str, Any]
    seed: int
    index: int
    sites: tuple[str, ...] | None = None


def _seeds(seed: int, index: int) -> tuple[int, int]:
    """(simulation seed, fit seed) of simulation ``index``: independent streams per index."""
    state = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(state[0] % 2**31), int(state[1] % 2**31)


def _scalar_names(name: str, shape: tuple[int, ...]) -> list[tuple[str, tuple]]:
    if not shape:
        return [(name, ())]
    return [(f"{name}[{','.join(map(str, i))}]", i) for i in np.ndindex(*shape)]


def _observed_keys(model, data: Mapping[str, Any], trace) -> dict[str, str]:
    """The data key each observed site's values came from (matched by value)."""
    keys = {}
    for site in model.observed_sites:
        value = np.asarray(trace[site]["value"])
        # the key named like the site first: x and y may hold equal values (y = x)
        ordered = sorted(data.items(), key=lambda item: item[0] != site)
        for key, given in ordered:
            given = np.asarray(given) if not isinstance(given, int | str) else None
            if (  # validation may reshape, e.g. (T,) to (T, 1)
                given is not None
                and given.size == value.size
                and np.allclose(given.ravel(), value.ravel())
            ):
                keys[site] = key
                break
        else:
            raise InputError(
                "model",
                f"the values observed at site {site!r} are not one of the data arrays as given "
                "(they are transformed inside the program), so sbc cannot put simulated values "
                "in their place.",
                "Pass the observations straight to obs=, e.g. obs=y.",
            )
    return keys


@one_at_a_time
def _simulate(model, data: Mapping[str, Any], seed: int):
    """(true latent values, simulated data): one draw from the prior predictive."""
    import jax
    import jax.numpy as jnp
    from numpyro import handlers

    from .fit import precision_context
    from .models.numpyro_model import _Unobserved

    checked = model.validate(data)
    info = getattr(model, "info", None)
    if info is not None and info.factor_sites:
        raise InputError(
            "model",
            f"has numpyro.factor sites {info.factor_sites}: a likelihood given as a factor "
            "cannot be simulated from, so sbc cannot draw data sets.",
        )
    key = jax.random.PRNGKey(seed)
    with precision_context(model):
        arrays = {k: jnp.asarray(v) for k, v in checked.items()}
        given = handlers.trace(handlers.seed(model.model, key)).get_trace(**arrays)
        keys = _observed_keys(model, data, given)
        program = _Unobserved(model.model, set(model.observed_sites))
        trace = handlers.trace(handlers.seed(program, key)).get_trace(**arrays)
    truth = {
        name: np.asarray(site["value"])
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"] and name not in keys
    }
    simulated = dict(data)
    for site, data_key in keys.items():
        shape = np.shape(data[data_key])
        simulated[data_key] = np.asarray(trace[site]["value"]).reshape(shape)
    return truth, simulated


def _thinned(draws: np.ndarray) -> np.ndarray:
    """(chains, draws) → about independent draws: every ⌈n / ESS_bulk⌉-th draw of each chain."""
    import arviz as az

    n = draws.size
    ess = float(az.ess(draws, method="bulk"))
    step = draws.shape[-1] if not np.isfinite(ess) or ess < 1 else max(1, math.ceil(n / ess))
    return draws[..., ::step].ravel()


def simulate_and_rank(job: _Job) -> dict[str, Any]:
    """One SBC replicate: simulate, fit, and the rank of each true value among the draws."""
    import warnings

    from .api import _resolve_model, fit

    model = _resolve_model(job.model, job.data)
    sim_seed, fit_seed = _seeds(job.seed, job.index)
    truth, simulated = _simulate(model, job.data, sim_seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(job.model, simulated, job.method, seed=fit_seed, progress=False, **job.options)
    posterior = result.idata.posterior
    rng = np.random.default_rng([job.seed, job.index, 1])
    out = {"truth": {}, "rank": {}, "num_draws": {}, "u": {}}
    for site, value in truth.items():
        if site not in posterior or (job.sites is not None and site not in job.sites):
            continue
        draws = np.asarray(posterior[site])  # (chains, draws, *shape)
        for name, where in _scalar_names(site, value.shape):
            kept = _thinned(draws[(slice(None), slice(None), *where)])
            true = float(value[where])
            below, ties = int(np.sum(kept < true)), int(np.sum(kept == true))
            out["truth"][name] = true
            out["rank"][name] = below
            out["num_draws"][name] = kept.size
            out["u"][name] = (below + rng.uniform() * (ties + 1)) / (kept.size + 1)
    out["warnings"] = sorted({str(w.message).split(":")[0] for w in caught})
    return out


class SBCResult:
    """Ranks, PIT values and the uniformity test of one SBC run.

    Attributes
    ----------
    method
        The method under test.
    truth, rank, num_draws, u
        Per scalar parameter (``"mu"``, ``"beta[1]"``), one value per successful simulation:
        the true value, its rank among the thinned posterior draws, their number, and the
        randomised PIT value in (0, 1).
    failures
        ``(simulation index, message)`` for simulations whose fit failed (not counted).
    """

    def __init__(self, method: str, replicates: list, seed: int) -> None:
        self.method = str(method)
        self.seed = seed
        good = [r for r in replicates if not isinstance(r, BaseException)]
        self.failures = [
            (i, f"{type(r).__name__}: {r}")
            for i, r in enumerate(replicates)
            if isinstance(r, BaseException)
        ]
        names = list(good[0]["u"]) if good else []
        self.truth = {n: np.array([r["truth"][n] for r in good]) for n in names}
        self.rank = {n: np.array([r["rank"][n] for r in good]) for n in names}
        self.num_draws = {n: np.array([r["num_draws"][n] for r in good]) for n in names}
        self.u = {n: np.array([r["u"][n] for r in good]) for n in names}
        self.fit_warnings = sorted({w for r in good for w in r["warnings"]})

    @property
    def num_simulations(self) -> int:
        """Successful simulations (the failures are not counted)."""
        return len(next(iter(self.u.values()))) if self.u else 0

    def _bins(self) -> int:
        return max(2, min(20, self.num_simulations // 5))

    def p_values(self, test: str = "chi2") -> dict[str, float]:
        """Uniformity p-value of u per parameter: ``"chi2"`` (Pearson, equal bins) or ``"ks"``."""
        from scipy import stats

        if test == "ks":
            return {n: float(stats.kstest(u, "uniform").pvalue) for n, u in self.u.items()}
        if test != "chi2":
            raise InputError("test", f"expected 'chi2' or 'ks', got {test!r}.")
        bins = self._bins()
        return {
            n: float(stats.chisquare(np.histogram(u, bins=bins, range=(0, 1))[0]).pvalue)
            for n, u in self.u.items()
        }

    def passed(self, alpha: float = 0.01) -> bool:
        """Every parameter passes the χ² test at ``alpha``, Bonferroni-corrected over them."""
        p = self.p_values()
        return bool(p) and min(p.values()) > alpha / len(p)

    def table(self, alpha: float = 0.01):
        """A DataFrame, one row per parameter: simulations, median thinned draws, χ² and KS
        p-values, pass/fail of the χ² test at ``alpha`` (per parameter), mean and sd of u (0.5
        and 0.289 under calibration; an sd above 0.289 means too-narrow posteriors, below
        too-wide, a mean off 0.5 a bias)."""
        import pandas as pd

        chi2, ks = self.p_values("chi2"), self.p_values("ks")
        rows = []
        for name, u in self.u.items():
            rows.append(
                {
                    "parameter": name,
                    "simulations": u.size,
                    "median draws": int(np.median(self.num_draws[name])),
                    "chi2 p": chi2[name],
                    "KS p": ks[name],
                    "passes": bool(chi2[name] > alpha),
                    "mean u": float(u.mean()),
                    "sd u": float(u.std(ddof=1)) if u.size > 1 else float("nan"),
                }
            )
        return pd.DataFrame(rows)

    def plot(self, alpha: float = 0.01, max_parameters: int = 8):
        """Per parameter: the histogram of u with a pointwise 99% binomial band (top), and the
        ECDF of u minus the identity with the simultaneous (1 − α) KS band (bottom)."""
        import matplotlib.pyplot as plt
        from scipy import stats

        names = list(self.u)[:max_parameters]
        cols = max(1, len(names))
        fig, axes = plt.subplots(2, cols, figsize=(3.0 * cols, 4.6), squeeze=False)
        grid = np.linspace(0, 1, 201)
        bins = self._bins()
        for j, name in enumerate(names):
            u = np.sort(self.u[name])
            top, bottom = axes[0, j], axes[1, j]
            low, high = stats.binom(u.size, 1 / bins).ppf([0.005, 0.995])
            top.axhspan(low, high, color="0.85")
            top.hist(u, bins=bins, range=(0, 1), color="C0", alpha=0.8)
            top.set_title(name, fontsize=9)
            ecdf = np.searchsorted(u, grid, side="right") / u.size
            band = stats.kstwo.ppf(1 - alpha, u.size)
            bottom.fill_between(grid, -band, band, color="0.85")
            bottom.plot(grid, ecdf - grid, color="C0")
            bottom.axhline(0, color="0.4", lw=0.6)
            bottom.set_xlabel("u")
        axes[0, 0].set_ylabel("simulations per bin")
        axes[1, 0].set_ylabel("ECDF(u) − u")
        fig.suptitle(f"SBC, {self.method}: {self.num_simulations} simulations", fontsize=10)
        fig.tight_layout()
        return fig

    def report(self, path, alpha: float = 0.01) -> None:
        """A self-contained HTML page: the table, the ECDF-difference plot, failures."""
        from ._validation import output_path
        from .report import _STYLE, figure_html

        target = output_path(path, "path")
        parts = [
            f"<html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>",
            f"<h1>Simulation-based calibration: {html.escape(self.method)}</h1>",
            f"<p>{self.num_simulations} simulations (seed {self.seed}); "
            f"{'passes' if self.passed(alpha) else '<b>fails</b>'} the χ² uniformity test at "
            f"{alpha:g}, Bonferroni-corrected over {len(self.u)} parameter(s).</p>",
            self.table(alpha).to_html(index=False, float_format=lambda v: f"{v:.3g}"),
            figure_html(self.plot(alpha)),
        ]
        if self.failures:
            items = "".join(f"<li>{i}: {html.escape(m)}</li>" for i, m in self.failures[:50])
            parts.append(f"<h2>Failed simulations ({len(self.failures)})</h2><ul>{items}</ul>")
        if self.fit_warnings:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in self.fit_warnings)
            parts.append(f"<h2>Warnings raised by the fits</h2><ul>{items}</ul>")
        parts.append("</body></html>")
        target.write_text("\n".join(parts), encoding="utf-8")

    def __repr__(self) -> str:
        p = self.p_values()
        worst = min(p, key=p.get) if p else "-"
        return (
            f"SBCResult(method={self.method!r}, simulations={self.num_simulations}, "
            f"failures={len(self.failures)}, lowest p={p.get(worst, float('nan')):.3g} "
            f"({worst}))"
        )


def sbc(
    model: Any,
    data: Mapping[str, Any],
    method: Any = "nuts",
    *,
    num_simulations: int = 100,
    seed: int = 0,
    cluster: Any = None,
    sites: Sequence[str] | None = None,
    progress: bool | None = None,
    **options: Any,
) -> SBCResult:
    """Simulation-based calibration of ``method`` on ``model``.

    Parameters
    ----------
    model
        A model with a proper prior whose observed sites take the data arrays as given
        (a plain NumPyro function with ``obs=y``, or a registered model).
    data
        The design: inputs (``x``) and observed arrays whose values are replaced by simulated
        ones (only their shapes matter).
    method
        The backend under test, with its ``**options``.
    num_simulations
        Number of simulated data sets M (Talts et al. use hundreds).
    seed
        Simulation i uses seeds derived from (seed, i): the same result in-process and on any
        cluster.
    cluster
        ``None``, ``"local"``, a ``distributed.Client`` or an address (see
        :func:`bayesplug.fit_many`).
    sites
        The latent sites to check (default: all; e.g. ``["A"]`` for a state-space model's
        parameter without its T latent states).
    progress
        A bar counting simulations; by default when standard error is a terminal.

    Returns
    -------
    SBCResult
        ``.table()``, ``.passed(alpha)``, ``.plot()``, ``.report(path)``.
    """
    import sys

    from .api import _check_options, _resolve_backend, _resolve_model
    from .fit import _check_seed
    from .many import map_tasks

    seed = _check_seed(seed)
    if isinstance(num_simulations, bool) or not isinstance(num_simulations, int | np.integer):
        raise InputError("num_simulations", f"expected an integer, got {num_simulations!r}.")
    if num_simulations < 2:
        raise InputError("num_simulations", f"must be at least 2, got {num_simulations}.")
    resolved = _resolve_model(model, data)
    _check_options(_resolve_backend(method), options)
    resolved.validate(data)
    if "proper_prior" not in resolved.capabilities:
        raise InputError(
            "model",
            "has an improper prior: sbc draws the true parameters from the prior.",
            "Give every latent site a proper prior.",
        )
    truth, _ = _simulate(resolved, data, seed)  # fails here, once, if sbc cannot simulate
    if sites is not None:
        sites = tuple(sites)
        for site in sites:
            if site not in truth:
                raise InputError(
                    "sites", f"{site!r} is not a latent site.", did_you_mean(site, truth)
                )
    if progress is None:
        progress = sys.stderr.isatty()
    jobs = [
        _Job(model, dict(data), method, dict(options), seed, i, sites)
        for i in range(num_simulations)
    ]
    replicates = map_tasks(
        simulate_and_rank, jobs, cluster=cluster, progress=progress, description="sbc"
    )
    result = SBCResult(getattr(method, "name", method), replicates, seed)
    if result.num_simulations == 0:
        raise BayesplugError(
            f"every one of the {num_simulations} simulations failed; the first: "
            f"{result.failures[0][1]}"
        )
    return result
