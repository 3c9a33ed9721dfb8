"""``report``: one self-contained HTML file (tables + ArviZ / matplotlib figures, embedded)."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import output_path
from .errors import InputError
from .fit import Fit

__all__ = ["report"]

_MAX_PLOTTED_SITES = 8

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .9em; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } .warn { color: #a33; } .ok { color: #262; }
img { max-width: 100%; } .meta { color: #666; font-size: .85em; }
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{encoded}">'


def _figure_of(axes):
    return np.asarray(axes).ravel()[0].figure


def _plotted_sites(fit: Fit) -> list[str]:
    post = fit.idata.posterior
    sites = [n for n in post.data_vars if post[n].ndim == 2]  # scalar sites first
    sites += [n for n in post.data_vars if post[n].ndim > 2]
    return sites[:_MAX_PLOTTED_SITES]


def predictive_band_figure(
    fit: Fit, *, num_points: int = 200, labels: Mapping[str, str] | None = None
):
    """Data with error bars, predictive mean and 68% / 95% bands, for 1-D regression fits."""
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
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(grid, q[0], q[3], color="C0", alpha=0.2, label="95%")
    ax.fill_between(grid, q[1], q[2], color="C0", alpha=0.35, label="68%")
    ax.plot(grid, prediction.mean, color="C0", label="predictive mean")
    yerr = fit.data.get("yerr")
    ax.errorbar(x, y, yerr=yerr, fmt="o", color="k", ms=3, capsize=2, label="data")
    labels = labels or {}
    ax.set_xlabel(labels.get("x", "x"))
    ax.set_ylabel(labels.get("y", "y"))
    ax.legend(loc="best")
    return fig


def _is_1d_regression(fit: Fit) -> bool:
    x = fit.data.get("x")
    return fit.model is not None and x is not None and np.ndim(x) == 1 and "y" in fit.data


def _fit_section(name: str, fit: Fit, labels, extra_figures) -> str:
    import arviz as az

    parts = [f"<h2>{html.escape(name)}</h2>"]
    attrs = fit.idata.attrs
    parts.append(
        f'<p class="meta">model <b>{html.escape(str(attrs.get("model")))}</b>, method '
        f"<b>{html.escape(fit.method)}</b>, seed {attrs.get('seed')}, created "
        f"{html.escape(str(attrs.get('created_at', '')))}; bayesplug "
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
    parts.append("<h3>Posterior summary</h3>")
    parts.append(fit.summary().to_html(float_format=lambda v: f"{v:.4g}"))
    for title, figure in (extra_figures or {}).items():
        parts.append(f"<h3>{html.escape(title)}</h3>{_png(figure)}")
    if _is_1d_regression(fit):
        parts.append("<h3>Posterior predictive</h3>")
        parts.append(_png(predictive_band_figure(fit, labels=labels)))
    sites = _plotted_sites(fit)
    parts.append("<h3>Posterior distributions</h3>")
    parts.append(_png(_figure_of(az.plot_posterior(fit.idata, var_names=sites))))
    parts.append("<h3>Trace</h3>")
    parts.append(_png(_figure_of(az.plot_trace(fit.idata, var_names=sites, compact=True))))
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
    path = output_path(path)  # checked before the figures are drawn
    body = [f"<h1>{html.escape(title)}</h1>"]
    if len(fits) > 1:
        body.append("<h2>Model comparison</h2>")
        body.append(compare(fits).to_html(float_format=lambda v: f"{v:.4g}"))
    for i, (name, fit) in enumerate(fits.items()):
        body.append(_fit_section(name, fit, labels, extra_figures if i == 0 else None))
    document = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    path.write_text(document, encoding="utf-8")
    return path
