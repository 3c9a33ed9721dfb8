"""The kernel catalogue shared by every GP model: names -> gpjax 1.0 kernels + default priors.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist

from ..errors import InputError, did_you_mean

__all__ = ["KERNELS", "KernelSpec", "build_kernel", "default_prior", "parse_kernel"]


@dataclass(frozen=True)
class KernelSpec:
    """One catalogue entry: hyperparameter names, a gpjax builder and a description."""

    name: str
    hyperparameters: tuple[str, ...]
    build: Callable[[Mapping[str, Any]], Any]
    description: str
    stationary: bool = True


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
        KernelSpec(
            "rational_quadratic",
            ("amplitude", "lengthscale", "alpha"),
            _stationary("RationalQuadratic", ("alpha",)),
            "rational quadratic (scale mixture of RBFs)",
        ),
        KernelSpec(
            "periodic",
            ("amplitude", "lengthscale", "period"),
            _stationary("Periodic", ("period",)),
            "periodic (MacKay)",
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
