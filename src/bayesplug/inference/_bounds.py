"""Bounding regions of nested sampling's live points, in w = sigmoid(z) (``inference._ellipsoid``).

:func:`single_ellipsoid` is the live points' enlarged bounding ellipsoid E = {w : (w - m)ᵀ C⁻¹
(w - m) ≤ r² f}: m and C their mean and covariance, r² the largest Mahalanobis distance among
them and f = enlarge^(2/D) (``enlarge`` the volume factor; Mukherjee, Parkinson & Liddle 2006,
dynesty's ``bound="single"``, Speagle 2020).

:func:`category_bounds` is a union of disjoint bounds, one per category of a model's discrete
choices. A model such as :class:`~bayesplug.models.MarginalisedGP` embeds each choice in a
coordinate ``<choice>_u ~ U(0, 1)`` mapped to the category ``floor(K u)``; its likelihood contour
is a union of slabs, one per combination of categories, each tight in the parameters its
category uses and filling the cube in the rest (a kernel's hyperparameters do not enter the
likelihood while another kernel is chosen). One ellipsoid around them all is many times the
cube's volume (the 13-D marginalised GP: acceptance ≤ 2%). Category c's bound B_c is the box
[0, 1] in the parameters its live points fill (variance over ``_FREE_VARIANCE``, 60% of a
uniform's 1/12), the category's interval in each choice coordinate, and the enlarged bounding
ellipsoid of those points in the rest. This is the decomposition dynesty's ``bound="multi"``
searches for by clustering (Feroz, Hobson & Bridges 2009), given here by the model; the slabs
are disjoint, so no overlap correction is needed.

:func:`uniform_in_union` draws uniformly in the union ∩ (0, 1)^D: a region c with probability
proportional to its volume, a point uniform in it, both drawn again while the point is outside
the cube. A category with a single live point has a bound of zero volume and is not proposed
(it is dying: as in every bounding-region sampler, a part of the contour with no live point is
lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._linalg import cholesky, solve_lower

__all__ = ["Bounds", "category_bounds", "category_of", "single_ellipsoid", "uniform_in_union"]

_FREE_VARIANCE = 0.6 / 12.0  # a coordinate of a category spread over more: boxed to [0, 1]
_CANDIDATES = 8  # rounds of draws per proposal, to find one inside the cube


class Bounds(NamedTuple):
    """C disjoint regions, each an ellipsoid (in the coordinates not ``boxed``) times a box
    [``lower``, ``upper``] (in those ``boxed``). Arrays over regions (leading axis C)."""

    mean: jax.Array  # (C, D)
    factor: jax.Array  # (C, D, D): Cholesky factor of the ellipsoid's shape, identity where boxed
    radius2: jax.Array  # (C,)
    boxed: jax.Array  # (C, D) bool
    lower: jax.Array  # (C, D)
    upper: jax.Array  # (C, D)
    log_volume: jax.Array  # (C,): -inf for a region not to propose in


def category_of(w, choices: Sequence[tuple[int, int]]):
    """The category of the squashed point(s) ``w`` (..., D): the mixed-radix number of the
    choices' indices ``floor(K w[index])``, for each ``(index, K)`` of ``choices``."""
    category = jnp.zeros(w.shape[:-1], jnp.int32)
    for index, k in choices:
        digit = jnp.clip(jnp.floor(k * w[..., index]), 0, k - 1).astype(jnp.int32)
        category = category * k + digit
    return category


def _ellipsoid(w, members, boxed, enlarge: float):
    """Mean, Cholesky factor (identity in ``boxed`` coordinates), squared radius and log volume
    of the enlarged bounding ellipsoid of the points of ``w`` (N, D) weighted by ``members``."""
    count = members.sum()
    weight = members / jnp.maximum(count, 1.0)
    mean = weight @ w
    centred = w - mean
    covariance = (centred * weight[:, None]).T @ centred
    kept = ~boxed
    covariance = jnp.where(kept[:, None] & kept[None, :], covariance, 0.0)
    # jitter: a collapsed direction (all points equal in it) stays factorisable
    jitter = jnp.where(kept, 1e-6 * jnp.diag(covariance) + 1e-12, 1.0)
    factor = cholesky(covariance + jnp.diag(jitter))  # plain JAX (``_linalg``)
    whitened = solve_lower(factor, (centred * kept).T)
    distance2 = jnp.where(members > 0, jnp.sum(whitened**2, axis=0), 0.0)
    dim = kept.sum()
    radius2 = jnp.max(distance2) * enlarge ** (2.0 / jnp.maximum(dim, 1))
    half = dim / 2.0
    log_volume = (
        half * jnp.log(jnp.pi)
        - jax.lax.lgamma(half + 1.0)
        + half * jnp.log(radius2)
        + jnp.sum(jnp.where(kept, jnp.log(jnp.diag(factor)), 0.0))
    )
    log_volume = jnp.where(dim > 0, log_volume, 0.0)
    return mean, factor, radius2, jnp.where(count >= 2, log_volume, -jnp.inf)


def _free_variance(count):
    """The variance over which a category's coordinate is boxed, given its ``count`` points:
    60% of a uniform's 1/12, lowered to 3 standard deviations below 1/12 for few points (the
    variance of n uniform draws has variance (1/80 - 1/144) / n), not under 0.01. A free
    coordinate taken for a bounded one would squeeze the category's bound: fewer new points
    there, a smaller bound still, and the category starves (measured on a 5-D two-category
    problem before this rule: one seed in 60 lost the category holding 75% of the posterior)."""
    spread = 3.0 * jnp.sqrt((1.0 / 80.0 - 1.0 / 144.0) / count)
    return jnp.clip(1.0 / 12.0 - spread, 0.01, _FREE_VARIANCE)


def single_ellipsoid(w, alive, enlarge: float) -> Bounds:
    """The enlarged bounding ellipsoid of the ``alive`` points of ``w`` (N, D), as one region."""
    dim = w.shape[-1]
    boxed = jnp.zeros(dim, bool)
    mean, factor, radius2, _ = _ellipsoid(w, alive, boxed, enlarge)
    ones = jnp.ones((1, dim), w.dtype)
    return Bounds(
        mean[None], factor[None], radius2[None], boxed[None], 0 * ones, ones, jnp.zeros(1, w.dtype)
    )


def category_bounds(w, alive, choices: Sequence[tuple[int, int]], enlarge: float) -> Bounds:
    """One bound per category of ``choices`` (``(index, K)`` of each choice coordinate) around
    the ``alive`` points of ``w`` (N, D) in it (module docstring)."""
    dim = w.shape[-1]
    num_categories = 1
    for _, k in choices:
        num_categories *= k
    category = category_of(w, choices)
    members = alive * (category == jnp.arange(num_categories)[:, None])  # (C, N)
    lower = jnp.zeros((num_categories, dim), w.dtype)
    upper = jnp.ones((num_categories, dim), w.dtype)
    is_choice = jnp.zeros(dim, bool)
    c, stride = jnp.arange(num_categories), 1
    for index, k in reversed(tuple(choices)):
        digit = (c // stride) % k
        lower = lower.at[:, index].set(digit / k)
        upper = upper.at[:, index].set((digit + 1) / k)
        is_choice = is_choice.at[index].set(True)
        stride *= k

    def one(members):
        count = jnp.maximum(members.sum(), 1.0)
        mean = (members / count) @ w
        variance = (members / count) @ (w - mean) ** 2
        boxed = is_choice | (variance > _free_variance(count))
        return (*_ellipsoid(w, members, boxed, enlarge), boxed)

    mean, factor, radius2, log_volume, boxed = jax.vmap(one)(members)
    return Bounds(mean, factor, radius2, boxed, lower, upper, log_volume)


def uniform_in_union(key, bounds: Bounds, num: int):
    """``num`` points uniform in the union of ``bounds`` ∩ (0, 1)^D, and whether each was found
    (at most ``_CANDIDATES`` rounds of draws; a point not found counts as a rejected proposal,
    a move made with a probability that does not depend on the chain)."""
    dim = bounds.mean.shape[-1]
    dtype = bounds.mean.dtype
    ellipsoid_dim = jnp.maximum((~bounds.boxed).sum(axis=-1), 1).astype(dtype)

    def draw(key):
        k_region, k_dir, k_rad, k_box = jax.random.split(key, 4)
        region = jax.random.categorical(k_region, bounds.log_volume, shape=(num,))
        boxed = bounds.boxed[region]
        z = jnp.where(boxed, 0.0, jax.random.normal(k_dir, (num, dim), dtype))
        norm = jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-30)
        r = jax.random.uniform(k_rad, (num,), dtype) ** (1.0 / ellipsoid_dim[region])
        step = (jnp.sqrt(bounds.radius2[region]) * r)[:, None] * z / norm
        w = bounds.mean[region] + jnp.einsum("nij,nj->ni", bounds.factor[region], step)
        lower, upper = bounds.lower[region], bounds.upper[region]
        in_box = lower + (upper - lower) * jax.random.uniform(k_box, (num, dim), dtype)
        w = jnp.where(boxed, in_box, w)
        return w, jnp.all((w > 0.0) & (w < 1.0), axis=-1)

    def redraw(carry):
        w, found, key, rounds = carry
        key, sub = jax.random.split(key)
        new, inside = draw(sub)
        take = ~found & inside
        return jnp.where(take[:, None], new, w), found | inside, key, rounds + 1

    def some_outside(carry):
        return ~jnp.all(carry[1]) & (carry[3] < _CANDIDATES)

    key, sub = jax.random.split(key)
    w, found = draw(sub)
    w, found, _, _ = jax.lax.while_loop(some_outside, redraw, (w, found, key, 1))
    return w, found
