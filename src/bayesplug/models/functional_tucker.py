"""Model ``functional_tucker``: functional Bayesian Tucker decomposition of continuous-indexed data.

Fang, Yu, Wang, Li, Kirby & Zhe, "Functional Bayesian Tucker Decomposition for Continuous-indexed
Tensor Data" (FunBaT, ICLR 2024). Data ``{"index": (N, K) coordinates, "y": (N,)}``: entry n
sits at continuous coordinates (i¹_n, …, i^K_n), e.g. (day of year, hour of day). The model:

    y_n = ȳ + s_y · vec(W)ᵀ (u¹(i¹_n) ⊗ … ⊗ u^K(i^K_n)) + ε_n,   ε_n ~ N(0, s_y² / τ)

where each mode k has R_k latent functions u^k = (u^k_1, …, u^k_{R_k}), independent Matérn GPs
over that mode's coordinate (min-max scaled to [0, 1], as in the paper), ȳ and s_y are the
training mean and standard deviation of y, and τ ~ Gamma(a0, b0) is the noise precision on that
standardised scale. Each GP is written as its linear SDE (:mod:`bayesplug.models.matern_sde`) and
discretised exactly between the mode's sorted unique training coordinates, so its prior is a
Gauss–Markov chain: O(U_k) to evaluate instead of O(U_k³). The chain is non-centred: the latent
sites are standard normals ``innovations_k`` (U_k, R_k, d) and the states are
s_0 = chol(P∞) ε_0, s_j = A_j s_{j-1} + chol(Q_j) ε_j; the factor values at the training
coordinates are the deterministic site ``factor_k`` (U_k, R_k).

The Tucker core W (R_1 × … × R_K) has a Gaussian prior N(0, ``core_scale``²) on every entry (the
authors' code has no prior on it; the scale of W and of the factors trade off, and a unit scale
with unit-variance factors puts ``f`` on the standardised scale of y). ``cp=True`` is the CP
special case: all R_k equal to R and a diagonal core (``core`` is then the R diagonal entries).

Lengthscale and variance per mode are fixed values (one for all modes, or one per mode) or
NumPyro distributions (sites ``lengthscale_k``, ``variance_k``). The defaults (lengthscale 0.1 on
the scaled coordinates, variance 1, Matérn-3/2) are the authors' shipped settings, up to the
kernel order.

``fit.predict({"index": new})`` gives ``f`` and ``y`` at coordinates never seen in training: per
posterior draw, each new coordinate's state is drawn from its conditional given the neighbouring
training states (a two-sided bridge between neighbours, a one-sided stationary conditional before
the first or after the last), which is exact for a Gauss–Markov chain and positive semi-definite
on both sides (:func:`bayesplug.models.matern_sde.stationary_bridge`).

Examples
--------
>>> import numpy as np, bayesplug as bp
>>> rng = np.random.default_rng(0)
>>> index = rng.uniform(0, 1, (60, 2))
>>> y = np.sin(3 * index[:, 0]) * np.cos(2 * index[:, 1]) + rng.normal(0, 0.05, 60)
>>> model = bp.models.FunctionalTucker(ranks=1, kernel="matern32", lengthscale=0.5)
>>> fit = bp.fit(model, {"index": index, "y": y}, num_warmup=150, num_samples=150,
...              num_chains=1, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .._validation import as_array, as_data_mapping, check_unknown_keys
from ..errors import InputError, did_you_mean
from .base import ModelBase
from .kalman import sqrt_psd
from .matern_sde import MATERN_SDE_KERNELS, MaternSDE, discretise, matern_sde, stationary_bridge

__all__ = ["FunctionalTucker", "tucker_contract"]

_JITTER = 1e-9  # relative to the stationary variance: the process noise of very short gaps


# Many small LAPACK calls batched together (expm, solve, eigh over ~10^4 new coordinates) stalled
# XLA on CPU here: no progress, no CPU use (jax 0.10.2, 2 cores; 1,752 points ran, 8,784 hung) —
# jaxlib's batched LAPACK kernels deadlocking the thread pool (see bayesplug._linalg). They run
# in sequential batches of this size instead.
LAPACK_BATCH = 256


class ModeChain(NamedTuple):
    """One mode's chain at one hyperparameter setting: the SDE, transitions ``A`` and process
    noise ``Q`` (U, d, d) over the sorted unique scaled coordinates, and the Cholesky factors
    ``chol_q`` (of Q + jitter) and ``chol_p`` (of P∞ + jitter) of the non-centred chain."""

    sde: MaternSDE
    A: jax.Array
    Q: jax.Array
    chol_q: jax.Array
    chol_p: jax.Array


def tucker_contract(core, factors: Sequence[jax.Array]) -> jax.Array:
    """f_n = Σ W[r_1, …, r_K] Π_k U_k[n, r_k] for factor rows ``U_k`` (N, R_k); a diagonal core
    given as a vector (R,) is the CP model f_n = Σ_r w_r Π_k U_k[n, r]."""
    if core.ndim == 1:
        return jnp.sum(core * jnp.prod(jnp.stack(factors), axis=0), axis=-1)
    letters = string.ascii_letters[: len(factors)]
    spec = ",".join(f"n{c}" for c in letters) + "," + letters + "->n"
    return jnp.einsum(spec, *factors, core)


def _per_mode(value, num_modes: int, argument: str) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != num_modes:
            raise InputError(
                argument,
                f"has {len(value)} entries but the data have {num_modes} modes.",
                f"Give one value for all modes or one per mode ({num_modes}).",
            )
        return list(value)
    return [value] * num_modes


def _positive_number(value) -> bool:
    numeric = isinstance(value, int | float | np.floating | np.integer)
    return numeric and not isinstance(value, bool) and np.isfinite(value) and value > 0


def _check_hyper(value, argument: str) -> None:
    if not isinstance(value, dist.Distribution) and not _positive_number(value):
        raise InputError(argument, f"expected a positive number or a distribution, got {value!r}.")


class FunctionalTucker(ModelBase):
    """Functional Bayesian Tucker decomposition (Fang et al., ICLR 2024); see the module docs.

    Parameters
    ----------
    ranks
        R_k per mode: an int for all modes or a sequence with one per mode.
    kernel
        ``"matern12"``, ``"matern32"`` (default) or ``"matern52"``.
    lengthscale, variance
        Each mode's GP hyperparameters on the [0, 1]-scaled coordinate: a positive number (for all
        modes), a sequence (one per mode), or a NumPyro distribution (a prior, sampled).
    cp
        The CP special case: equal ranks and a diagonal core.
    core_scale
        Prior standard deviation of the core's entries.
    noise_prior
        ``(a0, b0)`` of the Gamma prior on the noise precision τ (of standardised y). The
        default (10⁻³, 10⁻³) is vague: b0 counts as half the squared residuals of 2·a0 prior
        pseudo-entries, and Gamma(1, 1) (the earlier default) outweighed the data whenever the
        fit explained more than 1 − 2/N of the variance (N = 7,007, R = 8 on
        ``sf_temperature``: noise sd 2.5× the residuals, 90% intervals covering 99.9%).
    """

    name = "functional_tucker"
    capabilities = frozenset({"continuous", "proper_prior", "tucker"})
    observed_sites = ("y",)
    precision = "float64"

    def __init__(
        self,
        ranks: int | Sequence[int] = 2,
        kernel: str = "matern32",
        lengthscale: Any = 0.1,
        variance: Any = 1.0,
        cp: bool = False,
        core_scale: float = 1.0,
        noise_prior: Sequence[float] = (1e-3, 1e-3),
    ) -> None:
        if kernel not in MATERN_SDE_KERNELS:
            raise InputError(
                "kernel", f"unknown kernel {kernel!r}.", did_you_mean(kernel, MATERN_SDE_KERNELS)
            )
        for r in ranks if isinstance(ranks, Sequence) else [ranks]:
            if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1:
                raise InputError("ranks", f"expected positive integers, got {ranks!r}.")
        for argument, value in (("lengthscale", lengthscale), ("variance", variance)):
            for v in value if isinstance(value, Sequence) else [value]:
                _check_hyper(v, argument)
        if not _positive_number(core_scale):
            raise InputError("core_scale", f"expected a positive number, got {core_scale!r}.")
        a0_b0 = tuple(noise_prior) if isinstance(noise_prior, Sequence) else ()
        if len(a0_b0) != 2 or not all(_positive_number(v) for v in a0_b0):
            raise InputError("noise_prior", f"expected (a0, b0) > 0, got {noise_prior!r}.")
        if cp and isinstance(ranks, Sequence) and len(set(ranks)) > 1:
            raise InputError("ranks", f"cp=True needs one rank for every mode, got {ranks!r}.")
        self.ranks = ranks
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.variance = variance
        self.cp = bool(cp)
        self.core_scale = float(core_scale)
        self.noise_prior = (float(a0_b0[0]), float(a0_b0[1]))
        options = {
            "ranks": [int(r) for r in ranks] if isinstance(ranks, Sequence) else int(ranks),
            "kernel": kernel,
            "cp": self.cp,
            "core_scale": self.core_scale,
            "noise_prior": list(self.noise_prior),
        }
        # fixed hyperparameters travel with a saved fit; prior distributions do not (the draws
        # already carry their effect), as in the gp model
        for argument, value in (("lengthscale", lengthscale), ("variance", variance)):
            values = list(value) if isinstance(value, Sequence) else [value]
            if not any(isinstance(v, dist.Distribution) for v in values):
                fixed = [float(v) for v in values]
                options[argument] = fixed if isinstance(value, Sequence) else fixed[0]
        super().__init__(**options)

    # --- data ------------------------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``index`` (N, K) and ``y`` (N,); add each mode's sorted unique coordinates
        ``coords_k`` and the position of every entry's coordinate among them ``where_k``."""
        data = as_data_mapping(data)
        derived = [k for k in data if k.startswith(("coords_", "where_"))]
        check_unknown_keys(
            {k: v for k, v in data.items() if k not in derived},
            ("index", "y"),
            "the functional_tucker model",
        )
        index = as_array(data, "index", ndim=(2,))
        y = as_array(data, "y", ndim=(1,))
        if index.shape[0] != y.shape[0]:
            raise InputError(
                "data",
                f"'index' has {index.shape[0]} rows but 'y' has {y.shape[0]} entries.",
                "Give one row of coordinates per entry of y.",
            )
        num_modes = index.shape[1]
        self.mode_ranks(num_modes)  # one rank per mode
        if y.shape[0] < 2 or np.std(y) == 0:
            raise InputError("data['y']", "needs at least two distinct values.")
        out = {"index": index, "y": y}
        for k in range(num_modes):
            coords, where = np.unique(index[:, k], return_inverse=True)
            if coords.size < 2:
                raise InputError(
                    "data['index']",
                    f"mode {k} has a single coordinate ({coords[0]!r}): nothing to learn there.",
                    "Drop that column, or give entries at two or more coordinates.",
                )
            out[f"coords_{k}"] = coords
            out[f"where_{k}"] = where.astype(np.int32)
        return out

    def mode_ranks(self, num_modes: int) -> list[int]:
        """R_k for each of ``num_modes`` modes (checked against the number of modes)."""
        return [int(r) for r in _per_mode(self.ranks, num_modes, "ranks")]

    @staticmethod
    def num_modes(data: Mapping[str, Any]) -> int:
        return int(np.shape(data["index"])[1])

    # --- the NumPyro program ----------------------------------------------------------------
    def _hyper(self, value, site: str):
        if isinstance(value, dist.Distribution):
            return numpyro.sample(site, value)
        return jnp.asarray(float(value))

    def _mode_sde(self, k: int, num_modes: int):
        ell = _per_mode(self.lengthscale, num_modes, "lengthscale")[k]
        var = _per_mode(self.variance, num_modes, "variance")[k]
        return matern_sde(
            self.kernel, self._hyper(ell, f"lengthscale_{k}"), self._hyper(var, f"variance_{k}")
        )

    def _priors(self, num_modes: int, k: int) -> list[str]:
        """The hyperparameters of mode k given as priors (sampled) rather than numbers."""
        return [
            argument
            for argument in ("lengthscale", "variance")
            if isinstance(
                _per_mode(getattr(self, argument), num_modes, argument)[k], dist.Distribution
            )
        ]

    @staticmethod
    def _scaled(coords, values):
        """Min-max scaling of a mode by its training coordinates (sorted ``coords``)."""
        return (values - coords[0]) / (coords[-1] - coords[0])

    def _mode_chain(self, sde, coords) -> ModeChain:
        """The chain of one mode at one hyperparameter setting (the LAPACK work, done once)."""
        t = self._scaled(coords, coords)
        A, Q = discretise(sde, jnp.diff(t, prepend=t[0]))
        jitter = _JITTER * jnp.diag(sde.P_inf).max() * jnp.eye(sde.P_inf.shape[0])
        chol_q = jnp.linalg.cholesky(Q + jitter)
        chol_p = jnp.linalg.cholesky(sde.P_inf + jitter)
        return ModeChain(sde, A, Q, chol_q, chol_p)

    @staticmethod
    def _run_chain(chain: ModeChain, innovations):
        """States (U, R, d) from standard-normal ``innovations`` (U, R, d): matrix products only,
        s_0 = chol(P∞) ε_0, s_j = A_j s_{j-1} + chol(Q_j) ε_j."""

        def step(state, inputs):
            A_j, L_j, eps_j = inputs
            new = state @ A_j.T + eps_j @ L_j.T
            return new, new

        first = innovations[0] @ chain.chol_p.T
        _, rest = jax.lax.scan(step, first, (chain.A[1:], chain.chol_q[1:], innovations[1:]))
        return jnp.concatenate([first[None], rest], axis=0)

    def _states(self, sde, coords, innovations):
        """The chain's states (U, R, d) from standard-normal ``innovations`` (U, R, d)."""
        return self._run_chain(self._mode_chain(sde, coords), innovations)

    def chain(self, k: int, data: Mapping[str, Any]) -> ModeChain:
        """Mode k's chain over its sorted unique scaled coordinates, for fixed hyperparameters
        (what message passing needs): the SDE, ``A``, ``Q`` and their Cholesky factors."""
        num_modes = self.num_modes(data)
        for argument in self._priors(num_modes, k):
            raise InputError(
                argument,
                "is a prior; message passing (method='cep') needs fixed values.",
                "Give a number per mode, or fit with method='nuts' to sample it.",
            )
        return self._mode_chain(self._mode_sde(k, num_modes), data[f"coords_{k}"])

    @staticmethod
    def innovations(chain: ModeChain, states):
        """The standard-normal ``innovations_k`` (U, R, d) that give ``states`` (U, R, d): the
        inverse of the non-centred chain of :meth:`model` (triangular solves only)."""
        step = states[1:] - jnp.einsum("uij,urj->uri", chain.A[1:], states[:-1])
        solve = jax.scipy.linalg.solve_triangular
        rest = jax.vmap(lambda L, r: solve(L, r.T, lower=True).T)(chain.chol_q[1:], step)
        first = solve(chain.chol_p, states[0].T, lower=True).T
        return jnp.concatenate([first[None], rest], axis=0)

    def _core(self, ranks):
        if self.cp:
            shape = (ranks[0],)
        else:
            shape = tuple(ranks)
        return numpyro.sample("core", dist.Normal(0.0, self.core_scale).expand(shape).to_event())

    def model(self, index, y=None, **derived) -> None:
        """The FunBaT program (module docstring); ``derived``: ``coords_k``, ``where_k``."""
        num_modes = index.shape[1]
        ranks = self.mode_ranks(num_modes)
        rows = []
        for k in range(num_modes):
            coords = derived[f"coords_{k}"]
            sde = self._mode_sde(k, num_modes)
            d = sde.F.shape[0]
            eps = numpyro.sample(
                f"innovations_{k}",
                dist.Normal(0.0, 1.0).expand((coords.shape[0], ranks[k], d)).to_event(3),
            )
            states = self._states(sde, coords, eps)
            factor = numpyro.deterministic(f"factor_{k}", states[..., 0])
            rows.append(factor[derived[f"where_{k}"]])
        core = self._core(ranks)
        tau = numpyro.sample("tau", dist.Gamma(*self.noise_prior))
        offset, scale = jnp.mean(y), jnp.std(y)  # the training y (the program needs y)
        f = tucker_contract(core, rows)
        with numpyro.plate("data", index.shape[0]):
            numpyro.sample("y", dist.Normal(offset + scale * f, scale / jnp.sqrt(tau)), obs=y)

    # --- prediction ------------------------------------------------------------------------
    def validate_inputs(self, inputs: Mapping[str, Any], data: Mapping[str, Any]) -> np.ndarray:
        """New coordinates ``{"index": (M, K)}`` with the training data's K."""
        if isinstance(inputs, np.ndarray | list | tuple):
            inputs = {"index": inputs}
        inputs = as_data_mapping(inputs, "inputs")
        check_unknown_keys(inputs, ("index",), "functional_tucker predictions", "inputs")
        index = as_array(inputs, "index", ndim=(1, 2), name="inputs")
        num_modes = self.num_modes(data)
        if index.ndim == 1 and index.shape[0] == num_modes:
            index = index[None, :]
        if index.ndim != 2 or index.shape[1] != num_modes:
            raise InputError(
                "inputs['index']",
                f"has shape {index.shape}; expected (M, {num_modes}) like the training index.",
            )
        return index

    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """Draws of ``f`` (the noise-free tensor value) and ``y`` at new coordinates.

        With fixed hyperparameters the chains and the bridges to the new coordinates are built
        once and each draw costs matrix products only; with sampled ones they are rebuilt per
        draw, one draw at a time.
        """
        new = jnp.asarray(self.validate_inputs(inputs, data))
        data = {k: jnp.asarray(v) for k, v in data.items()}
        num_modes = self.num_modes(data)
        num_draws = next(iter(samples.values())).shape[0]
        fixed = not any(self._priors(num_modes, k) for k in range(num_modes))

        def pieces(sample):
            out = []
            for k in range(num_modes):
                with numpyro.handlers.substitute(data=sample or {}):
                    sde = self._mode_sde(k, num_modes)
                coords = data[f"coords_{k}"]
                out.append((self._mode_chain(sde, coords), self._bridge(sde, coords, new[:, k])))
            return out

        def one(key, sample, built):
            keys = jax.random.split(key, num_modes + 1)
            rows = []
            for k, (chain, bridge) in enumerate(built if fixed else pieces(sample)):
                states = self._run_chain(chain, sample[f"innovations_{k}"])
                rows.append(self._apply_bridge(bridge, states, keys[k]))
            f = tucker_contract(sample["core"], rows)
            offset, scale = jnp.mean(data["y"]), jnp.std(data["y"])
            noise = scale / jnp.sqrt(sample["tau"]) * jax.random.normal(keys[-1], f.shape)
            return offset + scale * f, offset + scale * f + noise

        chain_sites = ("innovations_", "lengthscale_", "variance_")
        sites = ("core", "tau") + tuple(name for name in samples if name.startswith(chain_sites))
        draws = {name: jnp.asarray(samples[name]) for name in sites}
        keys = jax.random.split(rng_key, num_draws)
        if fixed:
            built = jax.jit(lambda: pieces(None))()
            f, y = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))(keys, draws, built)
        else:  # per-draw LAPACK work, one draw at a time (see LAPACK_BATCH)
            f, y = jax.jit(lambda ks, ds: jax.lax.map(lambda a: one(*a, None), (ks, ds)))(
                keys, draws
            )
        return {"f": f, "y": y}

    def _bridge(self, sde, coords, values):
        """For each new coordinate: its neighbours' indices and the bridge from their states,
        ``(left, right, W_left, W_right, root)`` with root rootᵀ the conditional covariance."""
        t = self._scaled(coords, coords)
        x = self._scaled(coords, values)
        last = t.shape[0] - 1
        right = jnp.searchsorted(t, x)  # first training coordinate >= x
        left = right - 1
        gap_l = jnp.where(left >= 0, x - t[jnp.clip(left, 0)], jnp.inf)
        gap_r = jnp.where(right <= last, t[jnp.clip(right, 0, last)] - x, jnp.inf)

        def one(gaps):
            W_l, W_r, cov = stationary_bridge(sde, *gaps)
            # a square root that tolerates the zero covariance at a training coordinate
            return W_l, W_r, sqrt_psd(cov)

        W_l, W_r, root = jax.lax.map(one, (gap_l, gap_r), batch_size=LAPACK_BATCH)
        return jnp.clip(left, 0), jnp.clip(right, 0, last), W_l, W_r, root

    @staticmethod
    def _apply_bridge(bridge, states, key):
        """u at the new coordinates (M, R): a draw of each state given its neighbours' states
        (weight 0 for a missing neighbour), read off its first component."""
        left, right, W_l, W_r, root = bridge
        mean = jnp.einsum("mij,mrj->mri", W_l, states[left])
        mean = mean + jnp.einsum("mij,mrj->mri", W_r, states[right])
        z = jax.random.normal(key, mean.shape, dtype=mean.dtype)
        return (mean + jnp.einsum("mij,mrj->mri", root, z))[..., 0]
