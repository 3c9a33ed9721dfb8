"""``report``: one self-contained HTML file (tables + ArviZ / matplotlib figures, embedded)."""

from __future__ import annotations

import base64
import html
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import output_path
from .diagnostics import PARETO_K_MAX
from .errors import IncompleteResultWarning, InputError, did_you_mean
from .fit import Fit, is_point_estimate

__all__ = [
    "categorical_figure",
    "figure_html",
    "importance_figure",
    "learning_figure",
    "nested_points_figure",
    "nested_run_figure",
    "optimisation_figure",
    "path_figure",
    "predictive_band_figure",
    "report",
]

_MAX_PLOTTED_SITES = 8
_TRAINING_DIMS = (("step",), ("epoch",))  # statistics recorded per optimisation step or epoch

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .9em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } .warn { color: #a33; } .ok { color: #262; }
img { max-width: 100%; } .meta { color: #666; font-size: .85em; }
"""


def figure_html(fig) -> str:
    """A matplotlib figure as an ``<img>`` tag with the PNG embedded (base64), and the figure
    closed: how the report embeds its figures, for pages of your own.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> figure_html(plt.figure()).startswith('<img alt="figure" src="data:image/png;base64,')
    True
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{encoded}">'


def _figure_of(axes):
    return np.asarray(axes).ravel()[0].figure


def _categorical_sites(fit: Fit) -> list[str]:
    """Sites that are discrete choices: a ``discrete_<site>`` table, or integer draws."""
    if "posterior" not in fit.idata.groups():
        return []  # no draws (PaRIS's functionals alone)
    post = fit.idata.posterior
    groups = set(fit.idata.groups())
    return [
        n
        for n in post.data_vars
        if f"discrete_{n}" in groups or np.issubdtype(post[n].dtype, np.integer)
    ]


def _plotted_sites(fit: Fit) -> list[str]:
    if "posterior" not in fit.idata.groups():
        return []  # no draws (PaRIS's functionals alone)
    post = fit.idata.posterior
    skip = set(_categorical_sites(fit)) | set(_path_sites(fit))  # drawn as bars and bands
    sites = [n for n in post.data_vars if post[n].ndim == 2 and n not in skip]  # scalars first
    sites += [n for n in post.data_vars if post[n].ndim > 2 and n not in skip]
    return sites[:_MAX_PLOTTED_SITES]


def categorical_figure(fit: Fit, site: str):
    """Posterior probability of each category of a discrete site, with its error where the
    method estimated one (nested sampling), as bars."""
    import matplotlib.pyplot as plt

    table = fit.discrete_posterior(site)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(table), 3))
    err = table["probability_err"] if "probability_err" in table else None
    ax.bar(table.index.astype(str), table["probability"], yerr=err, color="C0", capsize=3)
    ax.set_ylabel(f"posterior probability of {site}")
    ax.set_ylim(0, 1)
    return fig


def _nested_run_order(fit: Fit):
    """The nested points in the order they died (rising ln L), their expected ln X = -i /
    num_live and their posterior weights."""
    points = fit.idata["nested_samples"]
    log_l = np.asarray(points["log_likelihood"]).ravel()
    order = np.argsort(log_l, kind="stable")
    weight = np.exp(np.asarray(points["log_weight"]).ravel()[order])
    num_live = int(fit.idata.attrs.get("num_live", max(1, log_l.size // 10)))
    log_x = -np.arange(1, log_l.size + 1) / num_live
    return order, log_l, log_x, weight, num_live


def nested_run_figure(fit: Fit):
    """ln L of the dead and final live points against the expected ln X = -i / num_live (the
    prior volume left), with each point's posterior weight: where the posterior mass sits."""
    import matplotlib.pyplot as plt

    order, log_l, log_x, weight, num_live = _nested_run_order(fit)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(log_x, log_l[order], color="C0", lw=1)
    ax.set_xlabel("ln X (expected prior volume left, -i / num_live)")
    ax.set_ylabel("ln L", color="C0")
    top = log_l.max()
    ax.set_ylim(max(log_l.min(), top - 10 * max(1.0, np.ptp(log_l[order][-num_live:]))), top + 1)
    mass = ax.twinx()
    mass.fill_between(log_x, weight / weight.max(), color="C1", alpha=0.35, lw=0)
    mass.set_ylabel("posterior weight (scaled)", color="C1")
    mass.set_ylim(0, 1.05)
    return fig


def nested_points_figure(fit: Fit, sites: list[str]):
    """Where the live points were as the run shrank the prior volume: each scalar site's value at
    every dead point against its ln X, coloured by posterior weight (dynesty's trace plot). A
    run that converged narrows onto the posterior (dark points) well before its last ln X."""
    import matplotlib.pyplot as plt

    order, _, log_x, weight, _ = _nested_run_order(fit)
    points = fit.idata["nested_samples"]
    fig, axes = plt.subplots(len(sites), 1, figsize=(7, 1.9 * len(sites) + 0.6), squeeze=False)
    for ax, name in zip(axes[:, 0], sites, strict=True):
        values = np.asarray(points[name]).ravel()[order]
        dots = ax.scatter(log_x, values, c=weight / weight.max(), s=3, cmap="viridis_r", lw=0)
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("ln X (expected prior volume left)")
    fig.colorbar(dots, ax=axes[:, 0].tolist(), label="posterior weight (scaled)")
    return fig


def _nested_point_sites(fit: Fit) -> list[str]:
    """Scalar continuous sites recorded at every nested point (at most four)."""
    points = fit.idata["nested_samples"]
    skip = set(_categorical_sites(fit)) | {"log_weight", "log_likelihood", "log_likelihood_birth"}
    scalar = [n for n in points.data_vars if n not in skip and points[n].ndim == 1]
    return [n for n in scalar if np.issubdtype(points[n].dtype, np.floating)][:4]


def importance_figure(fit: Fit):
    """The flow's draws weighted against the posterior (``flow_vi``): the normalised importance
    weights, largest first, on log axes, with k̂, the importance ESS and the shift. A heavy tail
    (a few draws holding most of the weight; k̂ above 0.7) says the flow misses part of the
    posterior."""
    import matplotlib.pyplot as plt

    attrs = fit.idata.attrs
    stats = fit.idata.sample_stats
    # the flow's own draws (before importance resampling, which repeats the heavy ones)
    name = "flow_log_weight" if "flow_log_weight" in stats else "log_weight"
    log_w = np.asarray(stats[name]).ravel()
    log_w = log_w[np.isfinite(log_w)]
    w = np.sort(np.exp(log_w - log_w.max()))[::-1]
    w /= w.sum()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.loglog(np.arange(1, w.size + 1), w, lw=1)
    ax.axhline(1.0 / w.size, color="grey", ls="--", lw=0.8, label="equal weights")
    ax.set_ylim(max(w[w > 0].min(), 1e-4 / w.size) / 2, 2 * w[0])  # the tail, not underflow
    ax.set_xlabel("draw, by weight (largest first)")
    ax.set_ylabel("normalised importance weight")
    ax.set_title(
        f"k̂ = {attrs.get('pareto_k', np.nan):.2f}, importance ESS = "
        f"{attrs.get('importance_ess', np.nan):.0f} of {w.size}, shift = "
        f"{attrs.get('importance_shift', np.nan):.0%}",
        fontsize="medium",
    )
    ax.legend(loc="upper right", fontsize="small")
    return fig


def _importance_verdict(fit: Fit) -> str:
    k_hat = float(fit.idata.attrs.get("pareto_k", np.nan))
    if k_hat <= PARETO_K_MAX:
        return (
            f'<p class="ok">k̂ = {k_hat:.2f} (at most {PARETO_K_MAX}): the flow covers the '
            "posterior, and its draws can be trusted.</p>"
        )
    return (
        f'<p class="warn">k̂ = {k_hat:.2f} (above {PARETO_K_MAX}): the flow misses part of the '
        "posterior; do not trust its draws (see the messages above).</p>"
    )


def _path_sites(fit: Fit) -> list[str]:
    """Sites over an index of at least 10 with at most 3 components at each index (smoothed
    states over time, a function on a grid): drawn as bands, which show them better than
    per-element densities."""
    if "posterior" not in fit.idata.groups():
        return []  # no draws (PaRIS's functionals alone)
    post = fit.idata.posterior

    def is_path(shape) -> bool:
        extra = shape[2:]
        return len(extra) >= 1 and extra[0] >= 10 and int(np.prod(extra[1:])) <= 3

    return [n for n in post.data_vars if is_path(post[n].shape)][:2]


def path_figure(fit: Fit, sites: list[str]):
    """Posterior median and 50% / 90% bands of each component of each path site against its
    index."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sites), 1, figsize=(8, 2.6 * len(sites)), squeeze=False)
    for ax, name in zip(axes[:, 0], sites, strict=True):
        site = fit.idata.posterior[name]
        values = np.asarray(site)
        draws = values.reshape(-1, values.shape[2], int(np.prod(values.shape[3:])))
        q = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        index = np.arange(draws.shape[1])
        for c in range(draws.shape[2]):
            suffix = f"[{c}]" if draws.shape[2] > 1 else ""
            ax.fill_between(index, q[0, :, c], q[4, :, c], color=f"C{c}", alpha=0.2)
            ax.fill_between(index, q[1, :, c], q[3, :, c], color=f"C{c}", alpha=0.35)
            ax.plot(index, q[2, :, c], color=f"C{c}", lw=1, label=f"{name}{suffix} median")
        ax.set_xlabel(site.dims[2])
        ax.set_ylabel(f"{name} (50% and 90% bands)")
        ax.legend(loc="upper right", fontsize="small")
    return fig


def optimisation_figure(fit: Fit):
    """Every statistic recorded per optimisation step or epoch (the ELBO of ``svi`` /
    ``flow_vi``, the loss of ``map``, the training RMSE of ``cep``) against it."""
    import matplotlib.pyplot as plt

    stats = fit.idata.sample_stats
    names = [n for n in stats.data_vars if stats[n].dims in _TRAINING_DIMS]
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(stats[name])
        ax.plot(np.arange(values.size), values, lw=0.8)
        ax.set_xlabel(stats[name].dims[0])
        ax.set_ylabel(name)
        if name == "loss" and np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
    return fig


def learning_figure(fit: Fit):
    """Parameter learning (``ppg`` with ``learn=``): each learned parameter, and the filter's
    ln p̂(y), against the iteration, one line per chain. Chains that settle on one level have
    learned the same estimate; the point estimate averages the second half."""
    import matplotlib.pyplot as plt

    trace = fit.idata["learning_trace"]
    names = [n for n in trace.data_vars if int(np.prod(trace[n].shape[2:])) <= 4]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(trace[name])
        ax.plot(values.reshape(values.shape[0], values.shape[1], -1).transpose(1, 0, 2).reshape(
            values.shape[1], -1), lw=0.8)  # fmt: skip
        ax.set_xlabel("iteration")
        ax.set_ylabel(name)
    fig.tight_layout()
    return fig


def _has_stat(fit: Fit, name: str) -> bool:
    return "sample_stats" in fit.idata.groups() and name in fit.idata.sample_stats


def _has_step_statistics(fit: Fit) -> bool:
    if "sample_stats" not in fit.idata.groups():
        return False
    stats = fit.idata.sample_stats
    return any(stats[n].dims in _TRAINING_DIMS for n in stats.data_vars)


def _is_point_estimate(fit: Fit) -> bool:
    """A fit with one value per parameter (``method="map"``)."""
    return is_point_estimate(fit.idata)


def _shared_sites(fits: Mapping[str, Fit]) -> list[str]:
    """Scalar continuous sites every fit has, in the first fit's order (none when a fit kept
    no draws)."""
    if any("posterior" not in f.idata.groups() for f in fits.values()):
        return []
    first, *others = fits.values()
    return [
        n
        for n in _plotted_sites(first)
        if first.idata.posterior[n].ndim == 2
        and all(n in f.idata.posterior and f.idata.posterior[n].ndim == 2 for f in others)
    ]


def overlaid_posteriors_figure(fits: Mapping[str, Fit], sites: list[str]):
    """The marginal posterior of each shared site, one curve per fit; a point estimate
    (``method="map"``) as a dashed vertical line."""
    import arviz as az
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    dense = {n: f for n, f in fits.items() if not _is_point_estimate(f)}
    points = {n: f for n, f in fits.items() if n not in dense}
    if dense:
        axes = np.asarray(
            az.plot_density(
                [f.idata for f in dense.values()],
                data_labels=list(dense),
                var_names=sites,
                shade=0.1,
            )
        ).ravel()
    else:
        _, axes = plt.subplots(1, len(sites), figsize=(4 * len(sites), 3), squeeze=False)
        axes = axes.ravel()
        for ax, site in zip(axes, sites, strict=False):
            ax.set_title(site)
    by_title = {ax.get_title(): ax for ax in axes}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = [
        Line2D([], [], color=colours[j % len(colours)], label=n) for j, n in enumerate(dense)
    ]
    for i, (name, fit) in enumerate(points.items()):
        colour = colours[(len(dense) + i) % len(colours)]
        handles.append(Line2D([], [], ls="--", color=colour, label=f"{name} (point estimate)"))
        for site in sites:
            if site in by_title:
                value = float(fit.idata.posterior[site].values.ravel()[0])
                by_title[site].axvline(value, ls="--", color=colour)
    if points:  # one legend for all (plot_density labels its curves only for two or more fits)
        axes[0].legend(handles=handles, fontsize="small")
    return _figure_of(axes)


def _created(fit: Fit) -> str:
    """When the fit was made: its own stamp, else ArviZ's on the posterior (older files)."""
    post = fit.idata.posterior if "posterior" in fit.idata.groups() else None
    stamp = fit.idata.attrs.get("created") or (
        post.attrs.get("created_at") if post is not None else None
    )
    return str(stamp) if stamp else "(not recorded)"


def _settings_table(attrs: Mapping[str, Any]) -> str:
    """Every setting and run statistic the fit recorded, as one table."""
    skip = {"backend_messages"}
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td style='text-align:left'>"
        f"{html.escape(str(v))}</td></tr>"
        for k, v in sorted(attrs.items())
        if k not in skip and not k.startswith("version_")
    )
    return f"<details><summary>Settings and run statistics</summary><table>{rows}</table></details>"


def _check_labels(labels: Mapping[str, str] | None, fits) -> Mapping[str, str]:
    """``labels`` as given, refused if it names neither an axis of the predictive plot nor a
    column of a fit's data (a data set's ``labels`` name every column, ``yerr`` included)."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InputError(
            "labels", f"expected a mapping such as {{'x': 'redshift z'}}, got {labels!r}."
        )
    known = {"x", "y"}.union(*(map(str, getattr(fit, "data", None) or {}) for fit in fits))
    for key in labels:
        if key not in known:
            raise InputError(
                "labels",
                f"{key!r} is neither an axis of the predictive plot nor a data column.",
                did_you_mean(key, known),
            )
    return labels


def predictive_band_figure(
    fit: Fit, *, num_points: int = 200, labels: Mapping[str, str] | None = None, ax=None
):
    """Data with error bars, predictive mean and 68% / 95% bands, for 1-D regression fits
    (drawn on ``ax`` when given)."""
    import matplotlib.pyplot as plt

    x = np.asarray(fit.data["x"])
    y = np.asarray(fit.data["y"])
    lo, hi = x.min(), x.max()
    pad = 0.05 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, num_points)
    prediction = fit.predict(
        {"x": grid}, num_draws=min(500, next(iter(fit.samples.values())).shape[0])
    )
    q = prediction.quantile([0.025, 0.16, 0.84, 0.975])
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(grid, q[0], q[3], color="C0", alpha=0.2, label="95%")
    ax.fill_between(grid, q[1], q[2], color="C0", alpha=0.35, label="68%")
    ax.plot(grid, prediction.mean, color="C0", label="predictive mean")
    yerr = fit.data.get("yerr")
    ax.errorbar(x, y, yerr=yerr, fmt="o", color="k", ms=3, capsize=2, label="data")
    labels = _check_labels(labels, [fit])
    ax.set_xlabel(labels.get("x", "x"))
    ax.set_ylabel(labels.get("y", "y"))
    ax.legend(loc="best")
    return ax.figure


def predictive_checks_figure(fits: Mapping[str, Fit], labels: Mapping[str, str] | None = None):
    """The posterior predictive bands of several 1-D regression fits side by side, on shared
    axes, so their predictions can be compared at a glance."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(fits), figsize=(4.5 * len(fits), 3.5), sharex=True, sharey=True, squeeze=False
    )
    for ax, (name, fit) in zip(axes[0], fits.items(), strict=True):
        predictive_band_figure(fit, labels=labels, ax=ax)
        ax.set_title(name)
    return fig


def _is_1d_regression(fit: Fit) -> bool:
    if "posterior" not in fit.idata.groups():
        return False
    x = fit.data.get("x")
    return fit.model is not None and x is not None and np.ndim(x) == 1 and "y" in fit.data


def _fit_section(name: str, fit: Fit, labels, extra_figures) -> str:
    import arviz as az

    parts = [f"<h2>{html.escape(name)}</h2>"]
    attrs = fit.idata.attrs
    parts.append(
        f'<p class="meta">model <b>{html.escape(str(attrs.get("model")))}</b>, method '
        f"<b>{html.escape(fit.method)}</b>, seed {attrs.get('seed')}, created "
        f"{html.escape(_created(fit))}; bayesplug "
        f"{html.escape(str(attrs.get('version_bayesplug', '')))}, numpyro "
        f"{html.escape(str(attrs.get('version_numpyro', '')))}, jax "
        f"{html.escape(str(attrs.get('version_jax', '')))}</p>"
    )
    diagnostics = fit.diagnostics()
    if diagnostics["ok"]:
        parts.append('<p class="ok">Convergence checks passed.</p>')
    else:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in diagnostics["messages"])
        parts.append(f'<ul class="warn">{items}</ul>')
    if fit.log_evidence is not None:
        log_z, err = fit.log_evidence
        parts.append(f"<p>ln Z = {log_z:.3f} ± {err:.3f}</p>")
    point = _is_point_estimate(fit)
    if point:  # one value a parameter: no spread, no interval, nothing to plot as a density
        parts.append("<h3>Point estimate</h3>")
    elif "posterior" not in fit.idata.groups():
        parts.append("<h3>Smoothed functionals</h3>")
        parts.append(
            '<p class="meta">No draws were kept (num_paths=0): the estimate of each additive '
            "functional is the mean over the independent runs, se their standard error.</p>"
        )
    else:
        parts.append("<h3>Posterior summary</h3>")
    parts.append(fit.summary().to_html(float_format=lambda v: f"{v:.4g}"))
    for title, figure in (extra_figures or {}).items():
        parts.append(f"<h3>{html.escape(title)}</h3>{figure_html(figure)}")
    if _is_1d_regression(fit):
        parts.append("<h3>Posterior predictive</h3>")
        parts.append(figure_html(predictive_band_figure(fit, labels=labels)))
    parts.append(_settings_table(attrs))
    for site in _categorical_sites(fit):
        parts.append(f"<h3>Discrete choice: {html.escape(site)}</h3>")
        parts.append(
            fit.discrete_posterior(site).to_html(float_format=lambda v: f"{v:.4g}", na_rep="")
        )
        parts.append(figure_html(categorical_figure(fit, site)))
    if "nested_samples" in fit.idata.groups():
        parts.append("<h3>Nested sampling run</h3>")
        parts.append(figure_html(nested_run_figure(fit)))
        point_sites = _nested_point_sites(fit)
        if point_sites:
            parts.append("<h3>Live points over the run</h3>")
            parts.append(figure_html(nested_points_figure(fit, point_sites)))
    if "pareto_k" in attrs and _has_stat(fit, "log_weight"):
        parts.append("<h3>The flow against the posterior (importance weights)</h3>")
        parts.append(_importance_verdict(fit))
        parts.append(figure_html(importance_figure(fit)))
    paths = _path_sites(fit)
    if paths:
        parts.append("<h3>Paths</h3>")
        parts.append(figure_html(path_figure(fit, paths)))
    if _has_step_statistics(fit):
        parts.append("<h3>Optimisation</h3>")
        parts.append(figure_html(optimisation_figure(fit)))
    sites = [] if point else _plotted_sites(fit)
    if point:
        parts.append(
            f'<p class="meta">A point estimate (method {html.escape(fit.method)!r}): one value a '
            "parameter, no posterior distribution to plot. Fit with 'nuts', 'svi' or "
            "'flow_vi' for one.</p>"
        )
    if sites:
        parts.append("<h3>Posterior distributions</h3>")
        parts.append(figure_html(_figure_of(az.plot_posterior(fit.idata, var_names=sites))))
    draws_are = str(attrs.get("draws_are", "mcmc"))
    if "learning_trace" in fit.idata.groups():
        parts.append("<h3>Parameter learning</h3>")
        parts.append(figure_html(learning_figure(fit)))
    if sites and draws_are == "mcmc":
        parts.append("<h3>Trace</h3>")
        parts.append(
            figure_html(_figure_of(az.plot_trace(fit.idata, var_names=sites, compact=True)))
        )
        if draws_are == "mcmc" and fit.idata.posterior.sizes.get("draw", 0) >= 20:
            parts.append("<h3>Rank plots</h3>")
            parts.append(figure_html(_figure_of(az.plot_rank(fit.idata, var_names=sites[:4]))))
    elif sites:
        parts.append(
            f'<p class="meta">The draws are {html.escape(draws_are)}, not a Markov chain: no '
            "trace or rank plot.</p>"
        )
    return "\n".join(parts)


def report(
    fit_or_fits: Fit | Mapping[str, Fit],
    path: str | os.PathLike,
    *,
    title: str = "bayesplug report",
    labels: Mapping[str, str] | None = None,
    extra_figures: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-contained HTML report (no server, images embedded) and return its path.

    Parameters
    ----------
    fit_or_fits
        One fit, or ``{name: fit}`` (adds the :func:`bayesplug.compare` table).
    path
        Where to write the ``.html`` file.
    title
        Page title.
    labels
        Axis labels for the predictive plot, e.g. ``{"x": "redshift z", "y": "H(z)"}``.
    extra_figures
        ``{caption: matplotlib Figure}`` added to the (first) fit's section.
    """
    from .api import compare

    if isinstance(fit_or_fits, Fit):
        fits = {"fit": fit_or_fits}
    elif (
        isinstance(fit_or_fits, Mapping)
        and fit_or_fits
        and all(isinstance(f, Fit) for f in fit_or_fits.values())
    ):
        fits = dict(fit_or_fits)
    else:
        raise InputError("fit_or_fits", "expected a Fit or a non-empty mapping {name: Fit}.")
    _check_labels(labels, fits.values())
    path = output_path(path)  # checked before the figures are drawn
    body = [f"<h1>{html.escape(title)}</h1>"]
    if len(fits) > 1:
        body.append("<h2>Model comparison</h2>")
        points = [n for n, f in fits.items() if _is_point_estimate(f)]
        with warnings.catch_warnings():  # said on the page, under the table
            warnings.filterwarnings("ignore", category=IncompleteResultWarning)
            table = compare(fits)
        body.append(table.to_html(float_format=lambda v: f"{v:.4g}"))
        if points:
            body.append(
                f'<p class="meta">{html.escape(", ".join(points))}: a point estimate (one '
                "draw), so no ELPD-LOO, which needs posterior draws.</p>"
            )
        shared = _shared_sites(fits)
        if shared:
            body.append("<h3>Shared parameters</h3>")
            body.append(figure_html(overlaid_posteriors_figure(fits, shared)))
        regressions = {n: f for n, f in fits.items() if _is_1d_regression(f)}
        if len(regressions) > 1:
            body.append("<h3>Posterior predictive, side by side</h3>")
            body.append(figure_html(predictive_checks_figure(regressions, labels)))
    for i, (name, fit) in enumerate(fits.items()):
        body.append(_fit_section(name, fit, labels, extra_figures if i == 0 else None))
    document = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path.write_text(document, encoding="utf-8")
    return path
