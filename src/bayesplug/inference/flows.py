"""Variational families for ``flow_vi``: the paper's planar and radial flows, and the others.

Rezende & Mohamed, "Variational Inference with Normalizing Flows" (ICML 2015), section 4.1:

* planar ``f(z) = z + û h(wᵀz + b)``, ``h = tanh``, ``log|det J| = log|1 + ûᵀ h'(wᵀz + b) w|``,
  invertible because ``û = u + [m(wᵀu) − wᵀu] w / ‖w‖²`` with ``m(x) = −1 + softplus(x)`` keeps
  ``wᵀû ≥ −1`` (appendix A.1);
* radial ``f(z) = z + β h(α, r)(z − z₀)``, ``h = 1 / (α + r)``, ``r = ‖z − z₀‖``,
  ``log|det J| = (d − 1) log(1 + βh) + log(1 + βh + βh'r)``, invertible because
  ``β = −α + softplus(β̂)`` keeps ``β ≥ −α`` (appendix A.2).

Both are written as NumPyro transforms (no closed-form inverse is needed: the guide's sample
records the log-determinant as an intermediate). Every family here is a *guide builder*: a
function ``(dim, init_scale, key) -> guide(inputs)`` over one flat site ``"v"`` of length ``dim``,
for :mod:`bayesplug.inference.flow_vi`. ``iaf`` and ``bnaf`` are NumPyro's autoguides;
``maf`` and ``nsf`` (masked affine autoregressive, and rational-quadratic neural spline coupling)
are flowjax flows, sampled with their ``sample_and_log_prob`` so no inverse pass is needed, and
end in an elementwise affine map, preceded with ``tails=True`` by a learned sinh-arcsinh tail
layer (:mod:`bayesplug.inference._tails`).

Examples
--------
>>> import jax, jax.numpy as jnp
>>> t = PlanarTransform(jnp.ones(2), jnp.array([1.0, 0.0]), jnp.zeros(()))
>>> y, log_det = t.call_with_intermediates(jnp.zeros(2))
>>> round(float(log_det), 4)  # log|1 + wᵀû h'(0)|, wᵀû = -1 + softplus(wᵀu) = 0.3133
0.2725
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

__all__ = ["FLOWS", "PlanarTransform", "RadialTransform", "make_guide"]

SITE = "v"
GUIDE_CONSTANTS = 3  # where a guide finds its constants in its argument (data, shift, scale, c)

#: Names accepted by ``flow=``, with a one-line description each.
FLOWS: dict[str, str] = {
    "planar": "planar flows (Rezende & Mohamed 2015), num_flows deep",
    "radial": "radial flows (Rezende & Mohamed 2015), num_flows deep",
    "iaf": "inverse autoregressive flow (NumPyro's AutoIAFNormal)",
    "bnaf": "block neural autoregressive flow (NumPyro's AutoBNAFNormal)",
    "maf": "masked affine autoregressive flow (flowjax), sampled in the fast direction",
    "nsf": "rational-quadratic neural spline coupling flow (flowjax)",
    "diagonal": "diagonal Gaussian (mean-field baseline)",
    "full_rank": "full-rank Gaussian (baseline)",
}

#: Families that need at least two dimensions (a one-dimensional target gets a padding dimension).
NEEDS_TWO_DIMS = frozenset({"iaf", "bnaf", "maf", "nsf"})
TAILED = frozenset({"maf", "nsf"})  # the families that take the optional tail layer


class _ForwardOnlyTransform(Transform):
    """A flow layer used only forwards: the log-determinant travels as the intermediate.

    Subclasses set ``params`` (attribute names, in constructor order) and define
    ``call_with_intermediates(x) -> (y, log|det J|)``; no inverse is ever needed.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    params: tuple[str, ...] = ()

    def __init__(self, *values):
        for name, value in zip(self.params, values, strict=True):
            setattr(self, name, value)

    def __call__(self, x):
        return self.call_with_intermediates(x)[0]

    def _inverse(self, y):
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form inverse; the guide never needs one"
        )

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        if intermediates is None:
            return self.call_with_intermediates(x)[1]
        return intermediates

    def tree_flatten(self):
        return tuple(getattr(self, n) for n in self.params), ()

    @classmethod
    def tree_unflatten(cls, aux, values):
        return cls(*values)


class PlanarTransform(_ForwardOnlyTransform):
    """Planar flow ``z + û tanh(wᵀz + b)`` with the invertibility fix of Rezende & Mohamed."""

    params = ("u", "w", "b")

    def _u_hat(self):
        wu = jnp.dot(self.w, self.u)
        m = -1.0 + jax.nn.softplus(wu)
        return self.u + (m - wu) * self.w / (jnp.sum(self.w**2) + 1e-12)

    def call_with_intermediates(self, x):
        u_hat = self._u_hat()
        h = jnp.tanh(x @ self.w + self.b)
        y = x + h[..., None] * u_hat
        log_det = jnp.log(jnp.abs(1.0 + (1.0 - h**2) * jnp.dot(self.w, u_hat)))
        return y, log_det


class RadialTransform(_ForwardOnlyTransform):
    """Radial flow ``z + β (z − z₀) / (α + ‖z − z₀‖)`` with ``α > 0``, ``β ≥ −α``."""

    params = ("z0", "alpha_raw", "beta_raw")

    def call_with_intermediates(self, x):
        alpha = jax.nn.softplus(self.alpha_raw)
        beta = -alpha + jax.nn.softplus(self.beta_raw)
        diff = x - self.z0
        r = jnp.sqrt(jnp.sum(diff**2, axis=-1) + 1e-12)
        h = 1.0 / (alpha + r)
        bh = beta * h
        y = x + bh[..., None] * diff
        d = x.shape[-1]
        log_det = (d - 1) * jnp.log1p(bh) + jnp.log1p(bh - beta * h**2 * r)
        return y, log_det


def _base_params(dim: int, init_scale: float):
    loc = numpyro.param("loc", jnp.zeros(dim))
    scale = numpyro.param(
        "scale", jnp.full(dim, init_scale), constraint=constraints.softplus_positive
    )
    return loc, scale


def _paper_flow_guide(kind: str, dim: int, num_flows: int, init_scale: float, key):
    """Diagonal Gaussian base, then ``num_flows`` planar or radial layers (small random init)."""
    keys = jax.random.split(key, 3)
    shape = (num_flows, dim)
    init = {
        "planar": (
            0.01 * jax.random.normal(keys[0], shape),
            0.01 * jax.random.normal(keys[1], shape),
            jnp.zeros(num_flows),
        ),
        "radial": (
            0.1 * jax.random.normal(keys[0], shape),
            jnp.zeros(num_flows),  # alpha = softplus(0) = log 2
            0.01 * jax.random.normal(keys[1], (num_flows,)),  # beta = -log 2 + softplus(~0) ~ 0
        ),
    }[kind]
    names = {"planar": ("u", "w", "b"), "radial": ("z0", "alpha_raw", "beta_raw")}[kind]
    layer = {"planar": PlanarTransform, "radial": RadialTransform}[kind]

    def guide(inputs=None):  # the target's inputs (data, shift, scale, constants): unused
        loc, scale = _base_params(dim, init_scale)
        params = [numpyro.param(f"{kind}_{n}", v) for n, v in zip(names, init, strict=True)]
        transforms = [layer(*(p[i] for p in params)) for i in range(num_flows)]
        base = dist.Normal(loc, scale).to_event(1)
        numpyro.sample(SITE, dist.TransformedDistribution(base, transforms))

    return guide


def _gaussian_guide(kind: str, dim: int, init_scale: float):
    def guide(inputs=None):  # the target's inputs (data, shift, scale, constants): unused
        loc = numpyro.param("loc", jnp.zeros(dim))
        if kind == "diagonal":
            scale = numpyro.param(
                "scale", jnp.full(dim, init_scale), constraint=constraints.softplus_positive
            )
            numpyro.sample(SITE, dist.Normal(loc, scale).to_event(1))
        else:
            tril = numpyro.param(
                "scale_tril",
                init_scale * jnp.eye(dim),
                constraint=constraints.scaled_unit_lower_cholesky,
            )
            numpyro.sample(SITE, dist.MultivariateNormal(loc, scale_tril=tril))

    return guide


def _flowjax_guide(kind: str, dim: int, num_flows: int, init_scale: float, key, tails: bool):
    import equinox as eqx
    from flowjax.bijections import Affine, RationalQuadraticSpline
    from flowjax.distributions import Normal, Transformed
    from flowjax.experimental.numpyro import register_params
    from flowjax.flows import coupling_flow, masked_autoregressive_flow

    # Standard-normal base, the flow's layers, optionally a learned tail layer (heavier or
    # lighter tails than the base's), then a learned elementwise affine map: the layers work in
    # standardised coordinates (the splines' interval [-4, 4] covers the bulk).
    base = Normal(jnp.zeros(dim), jnp.ones(dim))
    key = (
        jax.random.wrap_key_data(key) if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    )
    if kind == "maf":
        flow0 = masked_autoregressive_flow(key, base_dist=base, flow_layers=num_flows, invert=False)
    else:
        flow0 = coupling_flow(
            key,
            base_dist=base,
            transformer=RationalQuadraticSpline(knots=8, interval=4.0),
            flow_layers=num_flows,
            invert=False,
        )

    if tails:
        from ._tails import SinhArcsinhTails

        flow0 = Transformed(flow0, SinhArcsinhTails(jnp.zeros(dim)))
    flow0 = Transformed(flow0, Affine(jnp.zeros(dim), jnp.full(dim, init_scale)))
    # The flow's integer arrays (its random permutations, which depend on the key) are read
    # from the guide's argument, not closed over: a compiled program then serves every seed.
    constants, skeleton = eqx.partition(flow0, _is_integer_array)

    def guide(inputs=None):
        given = constants if inputs is None else inputs[GUIDE_CONSTANTS]
        flow = register_params("flow", eqx.combine(skeleton, given))
        raw = numpyro.prng_key()
        v, log_q = flow.sample_and_log_prob(jax.random.wrap_key_data(raw))
        numpyro.sample(SITE, dist.Delta(v, log_density=log_q, event_dim=1))

    guide.constants = constants
    return guide


def _is_integer_array(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.integer)


def make_guide(
    kind: str,
    target: Callable,
    dim: int,
    num_flows: int,
    init_scale: float,
    key,
    tails: bool = False,
) -> Callable:
    """The guide ``guide(inputs)`` of family ``kind`` over the flat site ``"v"`` of ``target``;
    ``tails`` adds the learned tail layer to the families in ``TAILED``.

    ``guide.constants`` holds the arrays the guide needs besides its parameters (for ``maf`` and
    ``nsf``, flowjax's random permutations; ``()`` for the others). The guide reads them from
    ``inputs[GUIDE_CONSTANTS]``, so that they are arguments of the compiled programs, not
    constants baked into them (``flow_vi`` reuses its programs across seeds).
    """
    if tails and kind not in TAILED:
        raise ValueError(f"tails=True needs one of {sorted(TAILED)}, not {kind!r}")
    if kind in ("planar", "radial"):
        guide = _paper_flow_guide(kind, dim, num_flows, init_scale, key)
    elif kind in ("diagonal", "full_rank"):
        guide = _gaussian_guide(kind, dim, init_scale)
    elif kind in ("maf", "nsf"):
        return _flowjax_guide(kind, dim, num_flows, init_scale, key, tails)
    else:
        from numpyro.infer.autoguide import AutoBNAFNormal, AutoIAFNormal

        if kind == "iaf":
            guide = AutoIAFNormal(target, num_flows=num_flows)
        elif kind == "bnaf":
            guide = AutoBNAFNormal(target, num_flows=num_flows)
        else:
            raise KeyError(kind)
    guide.constants = ()
    return guide
