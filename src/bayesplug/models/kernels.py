"""The kernel catalogue shared by every GP model: names -> formulas, gpjax 1.0 kernels, priors.

One naming scheme and one set of formulas: :func:`covariance_1d` writes each kernel's covariance
in closed form (the marginalised GP evaluates every candidate on one shared distance matrix with
it), and :func:`build_kernel` gives the gpjax kernel computing the same thing (``gp`` and the
sparse-within-sparse GP use those); ``tests/test_kernels.py`` checks that the two agree for every
entry. gpjax's ``Periodic`` uses exp(−½ sin²/ℓ²); the catalogue's periodic kernel is MacKay's
exp(−2 sin²/ℓ²) in both (gpjax gets ℓ/2), and Matérn-7/2, which gpjax lacks, is a small gpjax
kernel here.

Each entry says which hyperparameters a kernel has, how to build the gpjax kernel from their
values (sampled inside a NumPyro program, so kernels are immutable pytrees built on the fly), and
the default prior of each hyperparameter, **scaled to the data**:

=================  ===========================  ==================================================
hyperparameter     default prior                scale used
=================  ===========================  ==================================================
``amplitude``      HalfNormal(2 s_y)            s_y: spread of y about the mean function's centre
``lengthscale``    LogNormal(log R, 1)          R: range of x (per input dimension, mean over dims)
``alpha``          LogNormal(0, 1)              rational-quadratic shape
``period``         LogNormal(log(R/2), 0.5)     half the range of x
``amplitude`` of   HalfNormal(2 s_y / max|x|)   so that the linear trend spans about s_y
``linear``
``constant``       HalfNormal(2 s_y)            standard deviation of a constant offset
=================  ===========================  ==================================================

``amplitude`` is the standard deviation of f (the kernel variance is its square).

Examples
--------
>>> import jax.numpy as jnp
>>> k = build_kernel(["rbf"], [{"amplitude": 2.0, "lengthscale": 0.5}])
>>> float(k.gram(jnp.zeros((1, 1))).as_matrix()[0, 0])
4.0
>>> parse_kernel("matern52+linear")
('matern52', 'linear')
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist

from ..errors import InputError, did_you_mean

__all__ = [
    "CORRELATIONS",
    "KERNELS",
    "KernelSpec",
    "build_kernel",
    "covariance_1d",
    "default_prior",
    "parse_kernel",
]


@dataclass(frozen=True)
class KernelSpec:
    """One catalogue entry: hyperparameter names, a gpjax builder and a description."""

    name: str
    hyperparameters: tuple[str, ...]
    build: Callable[[Mapping[str, Any]], Any]
    description: str
    stationary: bool = True


SQRT3, SQRT5, SQRT7 = 3.0**0.5, 5.0**0.5, 7.0**0.5


def rbf_correlation(r):
    """Squared exponential: ρ(r) = exp(−r²/2), r = |x − x'| / ℓ."""
    return jnp.exp(-0.5 * r**2)


def matern12_correlation(r):
    """Matérn ν = 1/2 (exponential): ρ(r) = exp(−r)."""
    return jnp.exp(-r)


def matern32_correlation(r):
    """Matérn ν = 3/2: ρ(r) = (1 + √3 r) exp(−√3 r)."""
    return (1 + SQRT3 * r) * jnp.exp(-SQRT3 * r)


def matern52_correlation(r):
    """Matérn ν = 5/2: ρ(r) = (1 + √5 r + 5r²/3) exp(−√5 r)."""
    return (1 + SQRT5 * r + 5 * r**2 / 3) * jnp.exp(-SQRT5 * r)


def matern72_correlation(r):
    """Matérn ν = 7/2: ρ(r) = (1 + √7 r + 14r²/5 + 7√7 r³/15) exp(−√7 r)."""
    return (1 + SQRT7 * r + 14 * r**2 / 5 + 7 * SQRT7 * r**3 / 15) * jnp.exp(-SQRT7 * r)


#: Correlation profiles ρ(r) of the isotropic stationary kernels: k = amplitude² ρ(|x − x'| / ℓ).
CORRELATIONS: dict[str, Callable] = {
    "rbf": rbf_correlation,
    "matern12": matern12_correlation,
    "matern32": matern32_correlation,
    "matern52": matern52_correlation,
    "matern72": matern72_correlation,
}


def covariance_1d(name: str, p: Mapping[str, Any], x1, x2, distance=None):
    """The covariance matrix k(x1, x2) of the catalogue kernel ``name`` for 1-D inputs.

    The formulas every GP model uses (the gpjax kernels of :func:`build_kernel` compute the same;
    ``tests/test_kernels.py`` checks it), with d = |x − x'|:

    - stationary: amplitude² ρ(d / lengthscale), ρ from :data:`CORRELATIONS`;
    - ``rational_quadratic``: amplitude² (1 + d² / (2 alpha lengthscale²))^(−alpha);
    - ``periodic``: amplitude² exp(−2 sin²(π d / period) / lengthscale²) (MacKay 1998);
    - ``linear``: amplitude² x x'; ``constant``: constant².

    ``distance`` (|x1[:, None] − x2[None, :]|) may be passed when several kernels share it.
    """
    if distance is None:
        distance = jnp.abs(x1[:, None] - x2[None, :])
    if name in CORRELATIONS:
        return p["amplitude"] ** 2 * CORRELATIONS[name](distance / p["lengthscale"])
    if name == "rational_quadratic":
        base = 1 + distance**2 / (2 * p["alpha"] * p["lengthscale"] ** 2)
        return p["amplitude"] ** 2 * base ** (-p["alpha"])
    if name == "periodic":
        s = jnp.sin(jnp.pi * distance / p["period"]) / p["lengthscale"]
        return p["amplitude"] ** 2 * jnp.exp(-2 * s**2)
    if name == "linear":
        return p["amplitude"] ** 2 * x1[:, None] * x2[None, :]
    if name == "constant":
        return jnp.full(distance.shape, p["constant"] ** 2)
    raise InputError("kernel", f"unknown kernel {name!r}.", did_you_mean(name, KERNELS))


def _real(value):
    from gpjax.parameters import Real

    return Real(jnp.asarray(value))


def _stationary(cls_name: str, extra: tuple[str, ...] = ()):
    def build(p):
        import gpjax.kernels as gk

        kwargs = {"lengthscale": _real(p["lengthscale"]), "variance": _real(p["amplitude"] ** 2)}
        kwargs.update({name: _real(p[name]) for name in extra})
        return getattr(gk, cls_name)(**kwargs)

    return build


def _periodic(p):
    """MacKay's periodic kernel. gpjax's ``Periodic`` is exp(−½ Σ sin²(π τ / p) / ℓ²): with ℓ/2
    it is exp(−2 sin² / ℓ²), the catalogue's (and the marginalised GP's) definition."""
    import gpjax.kernels as gk

    return gk.Periodic(
        lengthscale=_real(p["lengthscale"] / 2),
        variance=_real(p["amplitude"] ** 2),
        period=_real(p["period"]),
    )


def _matern72(p):
    """Matérn ν = 7/2, which gpjax does not have: a gpjax stationary kernel with its formula."""
    return _matern72_class()(
        lengthscale=_real(p["lengthscale"]), variance=_real(p["amplitude"] ** 2)
    )


@functools.cache
def _matern72_class():
    from gpjax.kernels.base import val
    from gpjax.kernels.stationary.base import StationaryKernel
    from gpjax.kernels.stationary.utils import euclidean_distance

    class Matern72(StationaryKernel):
        """k(x, y) = σ² ρ(|x − y| / ℓ), ρ(r) = (1 + √7 r + 14r²/5 + 7√7 r³/15) exp(−√7 r)."""

        name = "Matérn72"

        def __call__(self, x, y):
            x = self.slice_input(x) / val(self.lengthscale)
            y = self.slice_input(y) / val(self.lengthscale)
            return (val(self.variance) * matern72_correlation(euclidean_distance(x, y))).squeeze()

    return Matern72


def _linear(p):
    import gpjax.kernels as gk

    return gk.Linear(variance=_real(p["amplitude"] ** 2))


def _constant(p):
    import gpjax.kernels as gk

    return gk.Constant(constant=_real(p["constant"] ** 2))


KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in [
        KernelSpec("rbf", ("amplitude", "lengthscale"), _stationary("RBF"), "squared exponential"),
        KernelSpec(
            "matern12", ("amplitude", "lengthscale"), _stationary("Matern12"), "Matérn ν=1/2"
        ),
        KernelSpec(
            "matern32", ("amplitude", "lengthscale"), _stationary("Matern32"), "Matérn ν=3/2"
        ),
        KernelSpec(
            "matern52", ("amplitude", "lengthscale"), _stationary("Matern52"), "Matérn ν=5/2"
        ),
        KernelSpec("matern72", ("amplitude", "lengthscale"), _matern72, "Matérn ν=7/2"),
        KernelSpec(
            "rational_quadratic",
            ("amplitude", "lengthscale", "alpha"),
            _stationary("RationalQuadratic", ("alpha",)),
            "rational quadratic (scale mixture of RBFs)",
        ),
        KernelSpec(
            "periodic",
            ("amplitude", "lengthscale", "period"),
            _periodic,
            "periodic (MacKay): exp(−2 sin²(π d / period) / lengthscale²)",
        ),
        KernelSpec("linear", ("amplitude",), _linear, "linear: amplitude² x·x'", False),
        KernelSpec("constant", ("constant",), _constant, "constant offset: constant²"),
    ]
}


def parse_kernel(kernel: str | Sequence[str]) -> tuple[str, ...]:
    """Kernel names from ``"rbf"``, ``"rbf+linear"`` or ``["rbf", "linear"]``, checked."""
    if isinstance(kernel, str):
        names = tuple(part.strip().lower() for part in kernel.split("+"))
    elif isinstance(kernel, Sequence) and all(isinstance(k, str) for k in kernel):
        names = tuple(k.strip().lower() for k in kernel)
    else:
        raise InputError("kernel", f"expected a kernel name or a list of names, got {kernel!r}.")
    if not names or any(not n for n in names):
        raise InputError("kernel", f"{kernel!r} names no kernel.", did_you_mean("", KERNELS))
    for name in names:
        if name not in KERNELS:
            raise InputError("kernel", f"unknown kernel {name!r}.", did_you_mean(name, KERNELS))
    return names


def build_kernel(names: Sequence[str], values: Sequence[Mapping[str, Any]]):
    """The gpjax kernel sum of ``names`` with hyperparameter ``values`` (one mapping per term)."""
    kernel = None
    for name, params in zip(names, values, strict=True):
        term = KERNELS[name].build(params)
        kernel = term if kernel is None else kernel + term
    return kernel


def default_prior(hyperparameter: str, kernel: str, x_range, x_max_abs, y_scale):
    """Default prior of one hyperparameter, scaled to the data (see the module docstring)."""
    if hyperparameter == "amplitude":
        if kernel == "linear":
            return dist.HalfNormal(2.0 * y_scale / x_max_abs)
        return dist.HalfNormal(2.0 * y_scale)
    if hyperparameter == "lengthscale":
        return dist.LogNormal(jnp.log(x_range), 1.0)
    if hyperparameter == "alpha":
        return dist.LogNormal(0.0, 1.0)
    if hyperparameter == "period":
        return dist.LogNormal(jnp.log(x_range / 2.0), 0.5)
    if hyperparameter == "constant":
        return dist.HalfNormal(2.0 * y_scale)
    raise KeyError(hyperparameter)
