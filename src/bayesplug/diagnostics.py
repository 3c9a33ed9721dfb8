"""Convergence rules for MCMC draws (R-hat, ESS), in words a user can act on.

Thresholds of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC". Backend-specific
checks (divergences, Pareto k-hat, a diverged optimisation) are said by the backend itself
(``RawResult.messages``), not here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ESS_MIN", "PARETO_K_MAX", "RHAT_MAX", "mcmc_checks"]

RHAT_MAX = 1.01
ESS_MIN = 400
PARETO_K_MAX = 0.7  # Vehtari et al. (2024): above it, importance sampling is unreliable


def mcmc_checks(idata, chains: int) -> tuple[dict[str, Any], list[str]]:
    """R-hat (two chains or more) and bulk/tail ESS of every posterior site.

    Returns the worst figures (``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min``) and a message
    for each rule broken, saying what to do.
    """
    import arviz as az

    figures: dict[str, Any] = {}
    messages: list[str] = []
    worst_ess = _worst(az.ess(idata, method="bulk"), min)
    figures["ess_bulk_min"] = worst_ess[1]
    figures["ess_tail_min"] = _worst(az.ess(idata, method="tail"), min)[1]
    if chains >= 2:
        worst_rhat = _worst(az.rhat(idata), max)
        figures["r_hat_max"] = worst_rhat[1]
        if worst_rhat[1] > RHAT_MAX:
            messages.append(
                f"The chains disagree: R-hat reaches {worst_rhat[1]:.3f} for "
                f"{worst_rhat[0]!r} (should be below {RHAT_MAX}). Run longer "
                "(num_warmup, num_samples), and check for several modes."
            )
    else:
        messages.append("One chain only: R-hat is undefined. Run num_chains >= 2.")
    if worst_ess[1] < ESS_MIN:
        messages.append(
            f"Few effective draws: bulk ESS is {worst_ess[1]:.0f} for {worst_ess[0]!r} "
            f"(want at least {ESS_MIN}); means and intervals are imprecise. Draw more "
            "samples (num_samples) or more chains."
        )
    return figures, messages


def _worst(dataset, pick) -> tuple[str, float]:
    """(site, value) of the worst entry of an ArviZ per-site statistic."""
    best_name, best_value = "", math.nan
    for name in dataset.data_vars:
        values = np.asarray(dataset[name].values, dtype=float).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        value = float(pick(values))
        if math.isnan(best_value) or pick(value, best_value) == value:
            best_name, best_value = name, value
    return best_name, best_value
