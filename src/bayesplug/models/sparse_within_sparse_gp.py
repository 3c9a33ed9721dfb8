"""Model ``sparse_within_sparse_gp``: a sparse GP whose data points each see H of M inducing points.

Implements Tran, Milios, Michiardi & Filippone, "Sparse within Sparse Gaussian Processes using
Neighbor Information" (ICML 2021). M inducing inputs Z carry inducing values u = f(Z); a
hierarchical prior makes only the H inducing inputs nearest to x_i active for data point i
(the set A_i, recomputed from the current Z whenever Z moves), so every per-point quantity is an
H-dimensional computation and M can be large (tens of thousands) at a cost per mini-batch of
O(B H³ + B M D) instead of SVGP's O(B M² + M³).

**Variational fit** (``method="svi"``, the paper's bound). q(u) = N(m, S) over all M inducing
values; point i sees its marginal q(u_A) = N(m_A, S_AA), the *true* marginal of S (not the
sub-block of a global Cholesky factor). S = L Lᵀ with a banded triangular L: the inducing
inputs are put in a space-filling order at initialisation (sorted for 1-D inputs, the Morton
Z-order curve for D >= 2: :func:`space_filling_order`), and row j holds its diagonal and
``covariance_neighbours - 1`` = K - 1 entries at the inducing inputs just before j in that order.
S is then banded too, computed once a step in O(M K²), and each S_AA is read from its band:
the training step is 1.4-1.9× faster than with per-point matching of L's rows (a Vecchia
pattern of nearest earlier inputs, used before 2026-12; :func:`subset_covariance` still reads
such factors), and in 4-D 1.3-1.5× faster at the same ELBO, test RMSE and NLPD over seeds
(docs/benchmarks.md).
The bound on a batch B of N data is

    (N/|B|) Σ_{i∈B} E_{q(f_i)}[log p(y_i | f_i)] − (1/|B|) Σ_{i∈B} KL(q(u_{A_i}) ‖ p(u_{A_i}))
    + log p(θ),

with q(f_i) = N(k_iA K_AA⁻¹ m_A, k_ii − k_iA K_AA⁻¹ k_Ai + k_iA K_AA⁻¹ S_AA K_AA⁻¹ k_Ai); the
hyperparameters θ are MAP point estimates and Z is learned (``learn_inducing=True``). With
H = M every A_i is all of Z and the bound is exactly the SVGP bound (Hensman et al. 2013).

**The NumPyro program** (what ``sgld``, ``sghmc`` and ``structured_sgmcmc`` sample, Z fixed at its
initialisation): θ ~ priors; u has the hierarchical prior Π_i N(u_{A_i}; 0, K_{A_iA_i})^{1/N}
(the MCMC counterpart of the averaged per-point KL); f_i is integrated out given u_{A_i}, so
y_i | u, θ ~ N(k_iA K_AA⁻¹ u_A, k_ii − q_ii + σ²) (Gaussian) or Bernoulli(Φ(μ_i / √(1 + v_i)))
(probit). Both terms sit in the data plate, so mini-batches estimate them without bias.

Data ``{"x": (N,) or (N, D), "y": (N,)}``; ``likelihood="bernoulli"`` needs y in {0, 1}.
``fit.predict({"x": x_new})`` gives ``f`` (mean, std; per draw, mixed exactly) from each new
point's H nearest inducing inputs, ``y`` with the noise (Gaussian) or ``p`` = P(y = 1)
(Bernoulli). Joint predictive covariances are not available (the paper's limitation too).

Precision: float32 by default (H x H Cholesky factors with a relative jitter of 1e-5 are well
within its range, and it is about three times faster); ``precision="float64"`` on request.
The H x H factorisations are plain-JAX loops, not LAPACK calls, differentiated in closed form
(``bayesplug._linalg.cholesky_inverse``: why, there).

Examples
--------
>>> import numpy as np, bayesplug as bp
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-3, 3, 2000); y = np.sin(2 * x) + 0.1 * rng.normal(size=2000)
>>> gp = bp.models.SparseWithinSparseGP(num_inducing=64, num_neighbours=8)
>>> fit = bp.fit(gp, {"x": x, "y": y}, method="svi", num_steps=1500, progress=False)
>>> pred = fit.predict({"x": np.array([0.5])})
>>> bool(abs(pred["f"].mean[0] - np.sin(1.0)) < 0.1)
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr, ndtr
from numpyro.distributions import constraints

from .._linalg import cholesky_inverse
from .._validation import (
    as_array,
    as_data_mapping,
    check_same_length,
    check_unknown_keys,
    check_varies,
)
from ..errors import InputError, did_you_mean
from .base import ModelBase
from .kernels import KERNELS, build_kernel

__all__ = [
    "SparseWithinSparseGP",
    "band_covariance",
    "band_order",
    "banded_rows",
    "banded_subset_covariance",
    "bitonic_argsort",
    "nearest_inducing",
    "space_filling_order",
    "subset_covariance",
    "swsgp_bound",
]

_LIKELIHOODS = ("gaussian", "bernoulli")
_INITS = ("kmeans", "grid", "random")
_STATIONARY = ("rbf", "matern12", "matern32", "matern52")
_HERMITE = np.polynomial.hermite.hermgauss(20)
_MAX_LOG_LIKELIHOOD_ENTRIES = 20_000_000  # draws x data kept for ArviZ's LOO


# --- small dense linear algebra in plain JAX ---------------------------------------------------
# The H x H factorisations are plain-JAX loops (bayesplug._linalg), not LAPACK custom calls: on
# CPU, jaxlib 0.10's batched LAPACK kernels deadlock XLA's thread pool when two run side by side
# (diagnosed with gdb; see bayesplug._linalg). cholesky_inverse differentiates them in closed form.
# --- the pure pieces ---------------------------------------------------------------------------
def nearest_inducing(x, z, num_neighbours: int):
    """Indices ``(n, H)`` of the ``num_neighbours`` inducing inputs nearest each row of ``x``.

    Squared Euclidean distances; ``lax.top_k`` over M, so O(n M D). For 1-D inputs the inducing
    inputs are sorted instead and each point searches the 2H of them around its place in that
    order (the H nearest on a line are contiguous, so this is exact): O(M log M + n log M + n H),
    4× faster at M = 1,024 (see docs/benchmarks.md), and free of the rounding of the expanded
    distance |x|² - 2xz + |z|², which picks a farther neighbour now and then in float32. From
    4,096 inducing inputs the sort is :func:`bitonic_argsort` (most of the search there). No
    gradient flows through the choice (indices are integers); it is recomputed whenever ``z``
    changes.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[0.0], [3.0], [1.0], [2.0]])
    >>> nearest_inducing(jnp.array([[2.2], [-1.0]]), z, 2).tolist()
    [[3, 1], [0, 2]]
    """
    x, z = jax.lax.stop_gradient(x), jax.lax.stop_gradient(z)
    m = z.shape[0]
    if z.shape[-1] == 1 and m >= 2 * num_neighbours:
        return _nearest_on_a_line(x[:, 0], z[:, 0], num_neighbours)
    d2 = jnp.sum(x**2, -1)[:, None] - 2.0 * x @ z.T + jnp.sum(z**2, -1)[None, :]
    return jax.lax.top_k(-d2, num_neighbours)[1]


def _nearest_on_a_line(x, z, num_neighbours: int):
    """Exact H nearest of 1-D ``z`` (M,) to each of ``x`` (n,): a window of 2H in sorted order."""
    order = bitonic_argsort(z) if z.shape[0] >= _BITONIC_FROM else jnp.argsort(z)
    ordered = z[order]
    place = jnp.searchsorted(ordered, x)
    start = jnp.clip(place - num_neighbours, 0, z.shape[0] - 2 * num_neighbours)
    window = start[:, None] + jnp.arange(2 * num_neighbours)
    nearest = jax.lax.top_k(-((x[:, None] - ordered[window]) ** 2), num_neighbours)[1]
    return order[jnp.take_along_axis(window, nearest, 1)]


_BITONIC_FROM = 4096  # from here the sorting network saves more than its compilation (~2 s)


def bitonic_argsort(values):
    """Indices that sort the 1-D ``values`` (ascending; ties in any order), by Batcher's bitonic
    sorting network (Batcher, "Sorting networks and their applications", AFIPS 1968).

    log₂n (log₂n + 1) / 2 stages of compare-and-swap over all n / 2 pairs at once (n: the
    length padded to a power of two with +inf), so every stage is a few vectorised operations.
    On CPU, 1.8-1.9x faster than ``jnp.argsort`` (XLA's comparison sort) at 4,096-16,384
    values: 0.38 against 0.73 ms and 1.8 against 3.3 ms. The sparse GP's neighbour search sorts
    its inducing inputs every step. Needs n below 2³¹ and no NaN.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> bitonic_argsort(jnp.array([0.3, -1.0, 2.0, 0.1, 0.2])).tolist()
    [1, 3, 4, 0, 2]
    """
    m = values.shape[0]
    n = 1 << max(m - 1, 1).bit_length()
    value = jnp.concatenate([values, jnp.full(n - m, jnp.inf, values.dtype)])
    index = jnp.arange(n, dtype=jnp.int32)
    size = 2
    while size <= n:  # merge bitonic runs of this size, ascending and descending in turn
        gap = size // 2
        while gap >= 1:  # compare element i with i + gap within blocks of 2 gap
            v, i = value.reshape(-1, 2, gap), index.reshape(-1, 2, gap)
            block = np.arange(n // (2 * gap))
            ascending = jnp.asarray((block * 2 * gap) & size == 0)[:, None]
            swap = jnp.where(ascending, v[:, 0] > v[:, 1], v[:, 0] < v[:, 1])
            value = jnp.stack(
                [jnp.where(swap, v[:, 1], v[:, 0]), jnp.where(swap, v[:, 0], v[:, 1])], 1
            )
            index = jnp.stack(
                [jnp.where(swap, i[:, 1], i[:, 0]), jnp.where(swap, i[:, 0], i[:, 1])], 1
            )
            value, index = value.reshape(n), index.reshape(n)
            gap //= 2
        size *= 2
    return index[:m]


def subset_covariance(rows, values, subset):
    """S_AA = L_A L_Aᵀ for the sparse triangular factor L of S, at the inducing set A.

    ``rows[j]`` holds the column indices of row j of L and ``values[j]`` its entries (K each;
    padding entries have value 0). Entry (a, b) sums ``values[a, k] * values[b, l]`` over the
    pairs with ``rows[a, k] == rows[b, l]``: the exact marginal covariance of u_A in
    O(H² K²), never touching the other M - H rows. Only the H (H - 1) / 2 pairs a < b are
    matched (S_AA is symmetric, and a row's columns are distinct, so its diagonal entry is the
    row's sum of squares): 25% faster under ``grad`` than matching all H² pairs (B = 256,
    H = 16, K = 8). When K² exceeds M (a dense factor), the rows are scattered into dense
    (H, M) form instead: O(H² M).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> rows = jnp.array([[0, 0], [1, 0], [2, 1]])  # L = [[1, 0, 0], [2, 3, 0], [0, 4, 5]]
    >>> values = jnp.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    >>> subset_covariance(rows, values, jnp.array([2, 1])).tolist()  # rows 2, 1 of L Lᵀ
    [[41.0, 12.0], [12.0, 13.0]]
    """
    r, v = rows[subset], values[subset]  # (H, K)
    m, k = rows.shape
    h = r.shape[0]
    if k * k > m:
        dense = jnp.zeros((h, m), v.dtype).at[jnp.arange(h)[:, None], r].add(v)
        return dense @ dense.T
    upper_a, upper_b = np.triu_indices(h, 1)
    match = (r[upper_a][:, :, None] == r[upper_b][:, None, :]).astype(v.dtype)  # (P, K, K)
    # two contractions, not one three-operand einsum: faster under grad (B = 256, H = 16)
    off = jnp.einsum("pk,pk->p", v[upper_a], jnp.einsum("pl,pkl->pk", v[upper_b], match))
    entry = np.diag(np.arange(h))  # where S_AA[a, b] sits in [diagonal, off-diagonal pairs]
    entry[upper_a, upper_b] = entry[upper_b, upper_a] = h + np.arange(len(upper_a))
    return jnp.concatenate([jnp.sum(v * v, -1), off])[entry]


def factor_values(rows, diag, offdiag):
    """Entries of the sparse factor L in the layout of ``rows``: the diagonal, then the
    off-diagonal entries, with padding entries (``rows[j, k] == j`` beyond the first) zeroed."""
    values = jnp.concatenate([diag[:, None], offdiag], axis=1)
    return values * (rows != jnp.arange(rows.shape[0])[:, None]).at[:, 0].set(True)


def _cholesky_rows(z, num_entries: int) -> np.ndarray:
    """Column pattern of L: banded in :func:`space_filling_order` of ``z``, K entries a row.

    Row j = [j, the K - 1 inducing inputs just before j in that order] (:func:`banded_rows`),
    so L is triangular in that order (S = L Lᵀ is positive definite for any positive diagonal)
    and S_AA comes from the band of S (:func:`band_covariance`) instead of per-pair column
    matching: S_AA's value + grad 2.2 -> 0.4 ms a step (B = 256, H = 16, K = 8).
    """
    return banded_rows(space_filling_order(z), min(num_entries, np.shape(z)[0]))


def space_filling_order(z, bits: int = 16) -> np.ndarray:
    """An order of the rows of ``z`` (M, D) in which near points tend to be near in the order.

    1-D: sorted. D >= 2: the Morton (Z-order) curve (Morton, "A computer oriented geodetic data
    base and a new technique in file sequencing", IBM 1966): each coordinate is scaled to
    ``bits``-bit integers over its range and the points are sorted by their interleaved bits,
    most significant first. A band of the factor L in this order couples each inducing value
    to near ones, as a Vecchia pattern does, and lets S_AA be read from a band of S.

    Examples
    --------
    >>> space_filling_order(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])).tolist()
    [0, 2, 3, 1]
    """
    z = np.asarray(z, dtype=float)
    if z.shape[1] == 1:
        return np.argsort(z[:, 0], kind="stable")
    span = np.ptp(z, axis=0)
    scaled = (z - z.min(axis=0)) / np.where(span > 0, span, 1.0)
    q = np.round(scaled * (2**bits - 1)).astype(np.int64)
    planes = [(q[:, j] >> b) & 1 for b in range(bits - 1, -1, -1) for j in range(z.shape[1])]
    return np.lexsort(planes[::-1])  # lexsort's last key is its primary key


def banded_rows(order: np.ndarray, num_entries: int) -> np.ndarray:
    """Rows of a factor L that is banded in the order ``order`` (a permutation of range(M)).

    The row of inducing input ``order[r]`` is ``[order[r], order[r - 1], ..., order[r - K + 1]]``
    (entries before the start padded with ``order[r]``): entry k of a row sits k places to its
    left in that order.

    Examples
    --------
    >>> banded_rows(np.array([2, 0, 1]), 2).tolist()  # order 2, 0, 1: 0 follows 2, 1 follows 0
    [[0, 2], [1, 0], [2, 2]]
    """
    order = np.asarray(order)
    m = order.shape[0]
    position = np.arange(m)[:, None] - np.arange(min(num_entries, m))[None, :]
    by_position = np.where(position >= 0, order[np.maximum(position, 0)], order[:, None])
    rows = np.empty_like(by_position)
    rows[order] = by_position
    return rows


def band_order(rows: np.ndarray) -> np.ndarray | None:
    """The order in which ``rows`` is banded (:func:`banded_rows`), or None when it is not.

    Examples
    --------
    >>> band_order(banded_rows(np.array([2, 0, 1]), 2)).tolist()
    [2, 0, 1]
    >>> band_order(np.array([[0, 0], [1, 0], [2, 0]])) is None  # 1 and 2 both follow 0
    True
    """
    rows = np.asarray(rows)
    m, k = rows.shape
    if k == 1:
        return np.arange(m)
    before = rows[:, 1]
    first = np.flatnonzero(before == np.arange(m))
    if len(first) != 1:
        return None
    follows = np.flatnonzero(before != np.arange(m))
    after = np.full(m, -1)
    after[before[follows]] = follows  # where two rows follow one, the checks below fail
    order = np.empty(m, dtype=rows.dtype)
    order[0] = first[0]
    for r in range(1, m):
        order[r] = after[order[r - 1]]
        if order[r] < 0:
            return None
    if not np.array_equal(np.sort(order), np.arange(m)):
        return None
    return order if np.array_equal(banded_rows(order, k), rows) else None


def band_covariance(values):
    """The band of S = L Lᵀ for L banded in its own order, from its rows ``values`` (M, K).

    ``values[r, k]`` is L[r, r - k]. Returns (M, K + 1) with S[r, r - d] at [r, d] for
    d < K and a zero column K (the entries |r - s| >= K, which are 0). O(M K²), once per step.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> band_covariance(jnp.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])).tolist()
    [[1.0, 0.0, 0.0], [13.0, 2.0, 0.0], [41.0, 12.0, 0.0]]
    """
    m, k = values.shape
    columns = [jnp.sum(values * values, -1)]
    for d in range(1, k):
        left = jnp.concatenate([jnp.zeros((d, k - d), values.dtype), values[:-d, : k - d]], 0)
        columns.append(jnp.sum(values[:, d:] * left, -1))  # sum_k L[r, r-k] L[r-d, r-k]
    columns.append(jnp.zeros(m, values.dtype))
    return jnp.stack(columns, 1)


def banded_subset_covariance(band, positions):
    """S_AA at the places ``positions`` (..., H) in the band's order, from :func:`band_covariance`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> band = band_covariance(jnp.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]))
    >>> banded_subset_covariance(band, jnp.array([2, 1])).tolist()
    [[41.0, 12.0], [12.0, 13.0]]
    """
    width = band.shape[1]
    a, b = positions[..., :, None], positions[..., None, :]
    place = jnp.maximum(a, b) * width + jnp.minimum(jnp.abs(a - b), width - 1)
    return band.reshape(-1)[place]


def _kernel(name: str, amplitude, lengthscale):
    return build_kernel([name], [{"amplitude": amplitude, "lengthscale": lengthscale}])


def _conditional(kernel, amplitude, jitter, z, x, subsets):
    """Per point of ``x`` (n, D) with inducing subset A (n, H): L⁻¹ and log det of K_AA, the
    projection K_AA⁻¹ k_A and k_ii - q_ii, batched (n, ...).

    ``cholesky_inverse`` differentiates in closed form (no loops under ``grad``) and runs on the
    whole (n, H, H) batch: the training step is twice as fast as with per-point triangular
    solves (see docs/benchmarks.md).
    """
    eye = jnp.eye(subsets.shape[-1], dtype=z.dtype)

    def covariances(x_i, subset):
        za = z[subset]
        k_aa = kernel.cross_covariance(za, za) + jitter * amplitude**2 * eye
        return k_aa, kernel.cross_covariance(za, x_i[None, :])[:, 0]

    k_aa, k_a = jax.vmap(covariances)(x, subsets)
    inverse, log_det = cholesky_inverse(k_aa)
    w = jnp.einsum("nij,nj->ni", inverse, k_a)
    alpha = jnp.einsum("nji,nj->ni", inverse, w)
    residual = jnp.maximum(amplitude**2 - jnp.sum(w * w, -1), 1e-12 * amplitude**2)
    return inverse, log_det, alpha, residual


def _expected_log_lik(likelihood: str, y, mean, var, noise):
    """E_{N(f; mean, var)}[log p(y | f)]: closed form (Gaussian), Gauss-Hermite (probit)."""
    if likelihood == "gaussian":
        return -0.5 * jnp.log(2 * jnp.pi * noise**2) - 0.5 * ((y - mean) ** 2 + var) / noise**2
    t, w = (jnp.asarray(a, dtype=mean.dtype) for a in _HERMITE)
    f = mean[..., None] + jnp.sqrt(2.0 * var)[..., None] * t
    sign = (2.0 * y - 1.0)[..., None]
    return jnp.sum(w * log_ndtr(sign * f), -1) / jnp.sqrt(jnp.pi)


def swsgp_bound(
    params: Mapping[str, Any],
    x,
    y,
    *,
    num_data: int,
    kernel: str,
    likelihood: str,
    num_neighbours: int,
    rows,
    jitter: float,
    order: np.ndarray | None = None,
):
    """The SWSGP evidence lower bound on a batch (without log p(θ)); see the module docstring.

    ``params`` holds ``amplitude``, ``lengthscale``, ``noise`` (Gaussian), ``q_mean`` (M,),
    ``q_diag`` (M,) positive, ``q_offdiag`` (M, K-1) and ``inducing_inputs`` (M, D). ``order``:
    where ``rows`` is banded (:func:`band_order`), that order, for the fast S_AA.
    """
    amplitude, lengthscale = params["amplitude"], params["lengthscale"]
    z = params["inducing_inputs"]
    k = _kernel(kernel, amplitude, lengthscale)
    values = factor_values(rows, params["q_diag"], params["q_offdiag"])
    subsets = nearest_inducing(x, z, num_neighbours)
    h = num_neighbours

    inverse, log_det_k, alpha, residual = _conditional(k, amplitude, jitter, z, x, subsets)
    if order is None:
        s_aa = jax.vmap(lambda subset: subset_covariance(rows, values, subset))(subsets)
    else:
        position = jnp.asarray(np.argsort(order))
        s_aa = banded_subset_covariance(band_covariance(values[order]), position[subsets])
    tiny = 1e-6 * jnp.trace(s_aa, axis1=-2, axis2=-1) / h  # rounding guard; S_AA is PD already
    _, log_det_s = cholesky_inverse(s_aa + tiny[:, None, None] * jnp.eye(h, dtype=s_aa.dtype))
    m_a = params["q_mean"][subsets]
    mean = jnp.sum(alpha * m_a, -1)
    var = residual + jnp.einsum("ni,nij,nj->n", alpha, s_aa, alpha)
    trace = jnp.sum((jnp.swapaxes(inverse, -1, -2) @ inverse) * s_aa, (-2, -1))  # tr(K⁻¹ S)
    maha = jnp.sum(jnp.einsum("nij,nj->ni", inverse, m_a) ** 2, -1)
    kl = 0.5 * (trace + maha - h + log_det_k - log_det_s)
    expected = _expected_log_lik(likelihood, y, mean, var, params.get("noise"))
    batch = x.shape[0]
    return num_data / batch * jnp.sum(expected) - jnp.sum(kl) / batch


# --- the model ---------------------------------------------------------------------------------
class SparseWithinSparseGP(ModelBase):
    """Sparse-within-sparse GP (see the module docstring for the model and its bound).

    Parameters
    ----------
    num_inducing
        M, the number of inducing inputs (at most the number of data).
    num_neighbours
        H, the inducing inputs each point sees (at most M). H = M is the standard SVGP.
    kernel
        A stationary catalogue kernel: ``"rbf"``, ``"matern12"``, ``"matern32"``, ``"matern52"``.
    likelihood
        ``"gaussian"`` or ``"bernoulli"`` (probit link).
    init
        Inducing inputs from ``"kmeans"`` (10 Lloyd iterations), a ``"grid"`` over the data's
        range (M must be a whole power of the input dimension) or a ``"random"`` subset of x.
    learn_inducing
        Learn Z with the variational parameters (``method="svi"``); SG-MCMC keeps Z fixed.
    covariance_neighbours
        K, entries per row of the banded Cholesky factor of S (diagonal + the K - 1 inducing
        inputs before it in :func:`space_filling_order`); K = M gives a dense S.
    priors
        ``{"amplitude" | "lengthscale" | "noise": Distribution}`` replacing the defaults
        (HalfNormal(2 sd(y)) or HalfNormal(2) for Bernoulli, LogNormal(log(range/10), 1),
        HalfNormal(sd(y))).
    jitter
        Added to K_AA's diagonal, relative to amplitude².
    init_seed
        Seeds the k-means / random initialisation (a saved fit rebuilds the same Z).
    precision
        ``"float32"`` (default) or ``"float64"`` (see the module docstring).
    """

    name = "sparse_within_sparse_gp"
    log_likelihood_uses_point_estimate = True  # learned inducing inputs (SVI fits)
    capabilities = frozenset({"continuous", "minibatch"})
    observed_sites = ("y",)

    def __init__(
        self,
        num_inducing: int = 256,
        num_neighbours: int = 16,
        kernel: str = "rbf",
        likelihood: str = "gaussian",
        init: str = "kmeans",
        learn_inducing: bool = True,
        covariance_neighbours: int = 8,
        priors: Mapping[str, Any] | None = None,
        jitter: float = 1e-5,
        init_seed: int = 0,
        precision: str = "float32",
    ) -> None:
        for arg, value in (
            ("num_inducing", num_inducing),
            ("num_neighbours", num_neighbours),
            ("covariance_neighbours", covariance_neighbours),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(arg, f"expected a positive integer, got {value!r}.")
        if num_neighbours > num_inducing:
            raise InputError(
                "num_neighbours",
                f"is {num_neighbours} but there are only num_inducing={num_inducing} inducing "
                "inputs to choose from.",
                f"Use num_neighbours <= {num_inducing} (num_neighbours = num_inducing is SVGP).",
            )
        if kernel not in _STATIONARY:
            hint = did_you_mean(kernel, _STATIONARY) if kernel not in KERNELS else ""
            raise InputError(
                "kernel",
                f"{kernel!r} is not a kernel this model supports ({', '.join(_STATIONARY)}).",
                hint,
            )
        if likelihood not in _LIKELIHOODS:
            raise InputError(
                "likelihood",
                f"unknown likelihood {likelihood!r}.",
                did_you_mean(likelihood, _LIKELIHOODS),
            )
        if init not in _INITS:
            raise InputError(
                "init", f"unknown initialisation {init!r}.", did_you_mean(init, _INITS)
            )
        if not isinstance(jitter, int | float) or isinstance(jitter, bool) or jitter < 0:
            raise InputError("jitter", f"expected a non-negative number, got {jitter!r}.")
        if precision not in ("float32", "float64"):
            raise InputError("precision", f"expected 'float32' or 'float64', got {precision!r}.")
        self.precision = precision
        self.priors = dict(priors or {})
        for key in self.priors:
            if key not in ("amplitude", "lengthscale", "noise"):
                raise InputError(
                    f"priors[{key!r}]",
                    "is not a hyperparameter of this model.",
                    did_you_mean(key, ("amplitude", "lengthscale", "noise")),
                )
        super().__init__(
            num_inducing=num_inducing,
            num_neighbours=num_neighbours,
            kernel=kernel,
            likelihood=likelihood,
            init=init,
            learn_inducing=bool(learn_inducing),
            covariance_neighbours=covariance_neighbours,
            jitter=float(jitter),
            init_seed=int(init_seed),
            precision=precision,
        )
        self.num_inducing, self.num_neighbours = num_inducing, num_neighbours
        self.kernel, self.likelihood, self.init = kernel, likelihood, init
        self.learn_inducing = bool(learn_inducing)
        self.covariance_neighbours = min(covariance_neighbours, num_inducing)
        self.jitter, self.init_seed = float(jitter), int(init_seed)
        self.inducing_init = None
        self.rows = None
        self.band_order = None
        self.num_data = None

    # --- data ------------------------------------------------------------------------------
    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check x and y, then place the inducing inputs and the covariance pattern."""
        data = as_data_mapping(data)
        check_unknown_keys(data, ("x", "y"), self.name)
        x = as_array(data, "x", ndim=(1, 2))
        y = as_array(data, "y", ndim=(1,))
        x2 = x[:, None] if x.ndim == 1 else x
        check_same_length({"x": x2, "y": y})
        if self.likelihood == "gaussian":
            check_varies(y, "data['y']", "the default priors scale with sd(y) (here 0).")
        if self.likelihood == "bernoulli" and not np.isin(y, (0.0, 1.0)).all():
            raise InputError(
                "y", "must be 0 or 1 for likelihood='bernoulli'.", "Encode the classes as 0/1."
            )
        n = x2.shape[0]
        if self.num_inducing > n:
            raise InputError(
                "num_inducing",
                f"is {self.num_inducing} but there are only {n} data points.",
                f"Use num_inducing <= {n}; with few data an exact GP (model 'gp') is better.",
            )
        self.num_data, self.input_dim = n, x2.shape[1]
        self.y_scale = float(np.std(y)) if self.likelihood == "gaussian" else 1.0
        self.x_range = float(np.mean(np.ptp(x2, axis=0))) or 1.0
        self.inducing_init = self._initial_inducing(x2)
        self.rows = _cholesky_rows(self.inducing_init, self.covariance_neighbours)
        self.band_order = band_order(self.rows)
        return {"x": x2, "y": y}

    def _initial_inducing(self, x: np.ndarray) -> np.ndarray:
        m, d = self.num_inducing, x.shape[1]
        rng = np.random.default_rng(self.init_seed)
        if self.init == "grid":
            per_dim = round(m ** (1.0 / d))
            if per_dim**d != m:
                raise InputError(
                    "init",
                    f"'grid' needs num_inducing to be a whole power of the input dimension {d} "
                    f"(got {m}).",
                    f"Use num_inducing={per_dim**d} or init='kmeans'.",
                )
            axes = [np.linspace(x[:, j].min(), x[:, j].max(), per_dim) for j in range(d)]
            return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(m, d)
        start = x[rng.choice(x.shape[0], m, replace=False)]
        if self.init == "random":
            return start
        return _kmeans(x, start)

    # --- hyperparameters -----------------------------------------------------------------------
    def _prior(self, name: str):
        if name in self.priors:
            return self.priors[name]
        if name == "amplitude":
            return dist.HalfNormal(2.0 * self.y_scale)
        if name == "lengthscale":
            return dist.LogNormal(math.log(self.x_range / 10.0), 1.0)
        return dist.HalfNormal(self.y_scale)

    def hyperparameter_names(self) -> tuple[str, ...]:
        base = ("amplitude", "lengthscale")
        return base + ("noise",) if self.likelihood == "gaussian" else base

    # --- the NumPyro program (for SG-MCMC) -----------------------------------------------------
    def model(self, x, y=None) -> None:
        """θ ~ priors; u with the hierarchical neighbour prior; y_i | u_{A_i}, θ, f_i integrated."""
        theta = {n: numpyro.sample(n, self._prior(n)) for n in self.hyperparameter_names()}
        m = self.num_inducing
        u = numpyro.sample("u", dist.ImproperUniform(constraints.real_vector, (), (m,)))
        z = jnp.asarray(self.inducing_init, dtype=x.dtype)
        mean, var, log_prior_u = self._given_u(theta, z, x, u)
        with numpyro.plate("data", x.shape[0]):
            numpyro.factor("u_prior", log_prior_u / self.num_data)
            numpyro.sample("y", self._observation(mean, var, theta), obs=y)

    def _given_u(self, theta, z, x, u):
        """Per point: mean and variance of f_i | u_A, and log N(u_A; 0, K_AA)."""
        k = _kernel(self.kernel, theta["amplitude"], theta["lengthscale"])
        subsets = nearest_inducing(x, z, self.num_neighbours)

        inverse, log_det, alpha, residual = _conditional(
            k, theta["amplitude"], self.jitter, z, x, subsets
        )
        u_a = u[subsets]
        white = jnp.einsum("nij,nj->ni", inverse, u_a)
        h = subsets.shape[-1]
        log_p = -0.5 * (jnp.sum(white**2, -1) + log_det + h * jnp.log(2 * jnp.pi))
        return jnp.sum(alpha * u_a, -1), residual, log_p

    def _observation(self, mean, var, theta):
        if self.likelihood == "gaussian":
            return dist.Normal(mean, jnp.sqrt(var + theta["noise"] ** 2))
        eps = jnp.finfo(mean.dtype).eps
        return dist.Bernoulli(probs=jnp.clip(ndtr(mean / jnp.sqrt(1.0 + var)), eps, 1 - eps))

    # --- the variational family (method="svi") -------------------------------------------------
    def guide(self, x, y=None) -> None:
        """Parameters of q(u) = N(m, L Lᵀ), MAP hyperparameters and (optionally) learned Z."""
        m, k = self.num_inducing, self.covariance_neighbours
        inits = {
            "amplitude": self.y_scale,
            "lengthscale": self.x_range / 10.0,
            "noise": 0.3 * self.y_scale,
        }
        for name in self.hyperparameter_names():
            value = numpyro.param(
                f"{name}_map", jnp.asarray(inits[name], x.dtype), constraint=constraints.positive
            )
            numpyro.sample(name, dist.Delta(value))
        numpyro.param("q_mean", jnp.zeros(m, x.dtype))
        numpyro.param(
            "q_diag", jnp.full(m, 0.1 * self.y_scale, x.dtype), constraint=constraints.positive
        )
        numpyro.param("q_offdiag", jnp.zeros((m, k - 1), x.dtype))
        if self.learn_inducing:
            numpyro.param("inducing_inputs", jnp.asarray(self.inducing_init, x.dtype))

    def svi_loss(self):
        """The NumPyro ELBO object for ``method="svi"``: minus the bound above, plus the prior."""
        return _SWSGPBound(self)

    def _bound_params(self, params: Mapping[str, Any], dtype) -> dict[str, Any]:
        out = {n: params[f"{n}_map"] for n in self.hyperparameter_names()}
        out.update({k: params[k] for k in ("q_mean", "q_diag", "q_offdiag")})
        z = params.get("inducing_inputs")
        out["inducing_inputs"] = jnp.asarray(self.inducing_init, dtype) if z is None else z
        return out

    def bound(self, params: Mapping[str, Any], x, y):
        """SWSGP bound plus log p(θ) on the batch (x, y) at the guide's parameters ``params``."""
        theta = self._bound_params(params, x.dtype)
        value = swsgp_bound(
            theta,
            x,
            y,
            num_data=self.num_data,
            kernel=self.kernel,
            likelihood=self.likelihood,
            num_neighbours=self.num_neighbours,
            rows=jnp.asarray(self.rows),
            jitter=self.jitter,
            order=self.band_order,
        )
        log_prior = sum(self._prior(n).log_prob(theta[n]) for n in self.hyperparameter_names())
        return value + log_prior

    def draw_from_guide(self, params, rng_key, num_draws: int, data):
        """Draws of θ (its MAP value) and u ~ q(u), and the point estimates that define q."""
        theta = self._bound_params(params, data["x"].dtype)
        rows = jnp.asarray(self.rows)
        values = factor_values(rows, theta["q_diag"], theta["q_offdiag"])
        eps = jax.random.normal(rng_key, (num_draws, self.num_inducing), values.dtype)
        u = theta["q_mean"] + jnp.sum(values * eps[:, rows], axis=-1)
        samples = {n: jnp.full((num_draws,), theta[n]) for n in self.hyperparameter_names()}
        samples["u"] = u
        point = {
            "q_mean": theta["q_mean"],
            "q_chol_values": values,
            "q_chol_rows": rows,
            "inducing_inputs": theta["inducing_inputs"],
        }
        return samples, point

    # --- prediction --------------------------------------------------------------------------
    def predict(self, samples, data, inputs, rng_key) -> dict[str, Any]:
        """Gaussian predictive of f per draw; ``y`` (Gaussian noise) or ``p`` = P(y=1)."""
        inputs = as_data_mapping(inputs, "inputs")
        check_unknown_keys(inputs, ("x",), self.name, "inputs")
        x_new = as_array(inputs, "x", ndim=(1, 2), name="inputs")
        x_new = jnp.asarray(x_new[:, None] if x_new.ndim == 1 else x_new)
        if x_new.shape[1] != self.input_dim:
            raise InputError(
                "inputs['x']",
                f"has {x_new.shape[1]} input dimension(s); the model was fitted on "
                f"{self.input_dim}.",
            )
        z = jnp.asarray(samples.get("inducing_inputs", self.inducing_init), x_new.dtype)
        names = self.hyperparameter_names()
        theta = {n: jnp.atleast_1d(jnp.asarray(samples[n])) for n in names}
        if "q_mean" in samples:  # a variational fit: the exact q(f*) of the fitted q(u)
            one = {n: v[0] for n, v in theta.items()}
            mean, var = self._variational_predictive(one, samples, z, x_new)
            mean, var = mean[None], var[None]
            theta = {n: v[:1] for n, v in theta.items()}
        else:
            mean, var = self._predictive_over_draws(theta, samples["u"], z, x_new)
        out = {"f": {"mean": mean, "std": jnp.sqrt(var)}}
        if self.likelihood == "gaussian":
            noise_var = theta["noise"][:, None] ** 2
            out["y"] = {"mean": mean, "std": jnp.sqrt(var + noise_var)}
        else:
            out["p"] = ndtr(mean / jnp.sqrt(1.0 + var))
        return out

    def _variational_predictive(self, theta, point, z, x_new):
        k = _kernel(self.kernel, theta["amplitude"], theta["lengthscale"])
        rows, values = jnp.asarray(point["q_chol_rows"]), jnp.asarray(point["q_chol_values"])
        q_mean = jnp.asarray(point["q_mean"])
        subsets = nearest_inducing(x_new, z, self.num_neighbours)

        def one(x_i, subset):
            alpha, residual = _conditional(
                k, theta["amplitude"], self.jitter, z, x_i[None], subset[None]
            )[2:]
            alpha, residual = alpha[0], residual[0]
            s_aa = subset_covariance(rows, values, subset)
            return alpha @ q_mean[subset], residual + alpha @ s_aa @ alpha

        return jax.lax.map(lambda a: one(*a), (x_new, subsets), batch_size=4096)

    def _predictive_over_draws(self, theta, u, z, x_new):
        subsets = nearest_inducing(x_new, z, self.num_neighbours)
        same = all(bool(jnp.all(v == v[0])) for v in theta.values())

        def projections(t):
            k = _kernel(self.kernel, t["amplitude"], t["lengthscale"])
            return _conditional(k, t["amplitude"], self.jitter, z, x_new, subsets)[2:]

        if same:  # one projection serves every draw
            alpha, residual = projections({n: v[0] for n, v in theta.items()})
            mean = jnp.einsum("nh,dnh->dn", alpha, u[:, subsets])
            return mean, jnp.broadcast_to(residual, mean.shape)

        def per_draw(args):
            t, u_d = args
            alpha, residual = projections(t)
            return jnp.sum(alpha * u_d[subsets], -1), residual

        return jax.lax.map(per_draw, (theta, u), batch_size=16)

    # --- ArviZ ---------------------------------------------------------------------------------
    def pointwise_log_likelihood(self, samples, data) -> dict[str, Any]:
        """log p(y_i | u_{A_i}, θ) per draw (f_i integrated); skipped, with a warning, when
        draws x data exceed 2e7 entries."""
        u = np.asarray(samples["u"])
        chains, draws = u.shape[:2]
        n = data["y"].shape[0]
        if chains * draws * n > _MAX_LOG_LIKELIHOOD_ENTRIES:
            warnings.warn(
                f"the pointwise log-likelihood ({chains * draws} draws x {n} data) is too large "
                "to store, so it is left out (ArviZ's LOO and bp.compare are unavailable for "
                "this fit). Use fewer draws (num_draws / num_samples) to keep it.",
                stacklevel=3,
            )
            return {}
        x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
        # learned inducing inputs (SVI fits carry them as a point estimate), else the initial ones
        z = jnp.asarray(samples.get("inducing_inputs", self.inducing_init), x.dtype)
        names = self.hyperparameter_names()
        flat = {
            k: jnp.asarray(samples[k]).reshape((chains * draws,) + samples[k].shape[2:])
            for k in (*names, "u")
        }

        # x, y, z are arguments, not closed-over constants: XLA would otherwise constant-fold
        # the nearest-neighbour sort over all N x M pairs at compile time (minutes at N = 16,000)
        # an SVI fit's hyperparameters are one point: project every datum once, not per draw
        # (20,000 points x 1,000 draws: 73 s -> a few seconds)
        same = all(bool(np.all(np.asarray(flat[k]) == np.asarray(flat[k])[0])) for k in names)

        @jax.jit
        def all_draws(flat, x, y, z):
            subsets = nearest_inducing(x, z, self.num_neighbours)
            if same:
                first = {k: flat[k][0] for k in names}
                k = _kernel(self.kernel, first["amplitude"], first["lengthscale"])
                alpha, residual = _conditional(k, first["amplitude"], self.jitter, z, x, subsets)[
                    2:
                ]

            def one(s):
                theta = {k: s[k] for k in names}
                if same:
                    mean, var = jnp.sum(alpha * s["u"][subsets], -1), residual
                else:
                    mean, var, _ = self._given_u(theta, z, x, s["u"])
                return self._observation(mean, var, theta).log_prob(y)

            return jax.lax.map(one, flat, batch_size=8)

        values = all_draws(flat, x, y, z)
        return {"y": np.asarray(values).reshape(chains, draws, n)}


class _SWSGPBound(numpyro.infer.elbo.ELBO):
    """NumPyro ELBO whose loss is minus :meth:`SparseWithinSparseGP.bound` on the batch."""

    def __init__(self, gp: SparseWithinSparseGP):
        super().__init__(num_particles=1)
        self.gp = gp

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        return {"loss": -self.gp.bound(param_map, kwargs["x"], kwargs["y"]), "mutable_state": None}


def _kmeans(x: np.ndarray, start: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Lloyd's k-means from ``start``; an empty cluster keeps its centre."""
    x = jnp.asarray(x)

    @jax.jit
    def step(centres):
        norms = jnp.sum(centres**2, -1)
        assign = jax.lax.map(
            lambda x_i: jnp.argmin(norms - 2.0 * centres @ x_i), x, batch_size=2048
        )
        m = centres.shape[0]
        sums = jax.ops.segment_sum(x, assign, num_segments=m)
        counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), assign, num_segments=m)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centres)

    centres = jnp.asarray(start)
    for _ in range(iterations):
        centres = step(centres)
    return np.asarray(centres)
