"""The two plug-in protocols, Model and Backend, and what passes between them.

A **model** is a NumPyro program plus a little metadata; a **backend** is an algorithm that turns
a model and data into posterior draws, an evidence or a point estimate. They meet in
:func:`bayesplug.fit`, which checks that the model has every capability the backend requires.

Capabilities (the names backends put in ``requires`` and models in ``capabilities``):

``continuous``
    every latent site is continuous (gradient-based methods: NUTS, SG-MCMC, flow VI).
``proper_prior``
    every latent site has a normalised prior, so prior draws and evidences exist (nested sampling).
``discrete_choice``
    the model declares categorical choices (kernel, mean, noise model) marginalised by the backend.
``minibatch``
    the likelihood is a ``numpyro.plate`` over a leading data axis, so it can be subsampled.
``state_space``
    the model implements the state-space protocol (initial, transition and emission
    distributions given parameters) used by particle methods.
``unit_cube``
    the model provides a prior transform from the unit hypercube.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "CAPABILITIES",
    "Backend",
    "Model",
    "Option",
    "RawResult",
]

CAPABILITIES: frozenset[str] = frozenset(
    {"continuous", "proper_prior", "discrete_choice", "minibatch", "state_space", "unit_cube"}
)


@runtime_checkable
class Model(Protocol):
    """What a model plug-in provides.

    Attributes
    ----------
    name
        Registered name (``"gp"``) or a descriptive name for ad-hoc models.
    capabilities
        A frozenset of names from :data:`CAPABILITIES`.
    observed_sites
        Names of the NumPyro sites that take ``obs=`` from the data.
    precision
        ``"float64"`` when the model's numerics need double precision (GP Cholesky); the backend
        then runs inside ``jax.enable_x64(True)``; ``"float32"`` otherwise.

    Methods
    -------
    model(**data)
        The NumPyro program; observed sites take ``obs=`` from ``data``.
    validate(data) -> dict
        Check and convert the data (raise :class:`bayesplug.InputError` naming the key).
    predict(samples, data, inputs, rng_key) -> dict
        Predictive quantities at ``inputs`` given equal-weight ``samples`` (flat over draws).
        Returns ``{"site": draws}`` or, for Gaussian predictives,
        ``{"site": {"mean": .., "std": ..}}`` per draw, which :class:`bayesplug.Prediction` mixes
        exactly.
    """

    name: str
    capabilities: frozenset[str]
    observed_sites: tuple[str, ...]
    precision: str

    def model(self, **data: Any) -> None: ...

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]: ...

    def predict(
        self,
        samples: Mapping[str, Any],
        data: Mapping[str, Any],
        inputs: Mapping[str, Any],
        rng_key,
    ) -> dict[str, Any]: ...


def positive_int(value: Any) -> str | None:
    """Option check: at least 1 (None passes: "use the default")."""
    return None if value is None or value >= 1 else "must be at least 1"


def non_negative(value: Any) -> str | None:
    """Option check: 0 or more."""
    return None if value >= 0 else "must be 0 or more"


def positive(value: Any) -> str | None:
    """Option check: strictly positive."""
    return None if value > 0 else "must be positive"


def probability(value: Any) -> str | None:
    """Option check: strictly between 0 and 1."""
    return None if 0.0 < value < 1.0 else "must lie strictly between 0 and 1"


def one_of(names: Iterable[str]) -> Callable[[Any], str | None]:
    """Option check factory: the value must be one of ``names`` (with a did-you-mean hint)."""
    from .errors import did_you_mean

    names = tuple(names)

    def check(value: Any) -> str | None:
        return None if value in names else f"is not a known name. {did_you_mean(value, names)}"

    return check


@dataclass(frozen=True)
class Option:
    """A backend option: default value, accepted types and a one-line description.

    ``check`` returns an error sentence for a bad value or None.
    """

    default: Any
    types: tuple[type, ...]
    doc: str
    check: Callable[[Any], str | None] | None = None


@dataclass
class RawResult:
    """What a backend returns; :func:`bayesplug.convert.to_inference_data` turns it into ArviZ.

    Attributes
    ----------
    samples
        Constrained draws ``{site: (chain, draw, ...)}`` with equal weights.
    sample_stats
        Per-draw statistics ``{name: (chain, draw)}`` (``diverging``, ``lp``, ...); an
        ``xarray.DataArray`` value keeps its own dimensions (e.g. an ELBO trace over ``step``).
    log_evidence
        ``(ln Z, standard error)`` or None.
    extra_groups
        Further ArviZ groups, ``{group: {var: array}}`` or ``{group: xarray.Dataset}`` (e.g. the
        weighted nested-sampling points, per-category evidences).
    attrs
        Scalars and strings for ``idata.attrs`` (run time, number of likelihood calls, ...).
    point_estimate
        Quantities optimised rather than sampled, without (chain, draw) axes: variational
        parameters, learned inducing inputs, maximum-likelihood estimates. Saved in the group
        ``point_estimate`` and given to the model's ``predict`` along with the draws.
    state
        The backend's resumable state (kept in memory, not saved to NetCDF).
    interrupted
        True when the run stopped early (Ctrl-C, a limit) and holds only part of the draws.
    messages
        What the backend says of this result, in words with the fix (divergences and the option
        to raise, an unreliable approximation, a diverged optimisation): shown by
        ``Fit.diagnostics()`` and warned at fit time; saved with the fit.
    """

    samples: dict[str, Any]
    sample_stats: dict[str, Any] = field(default_factory=dict)
    log_evidence: tuple[float, float] | None = None
    extra_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    point_estimate: dict[str, Any] = field(default_factory=dict)
    state: Any = None
    interrupted: bool = False
    messages: list[str] = field(default_factory=list)


@runtime_checkable
class Backend(Protocol):
    """What an inference backend plug-in provides.

    Attributes
    ----------
    name
        Registered name (``"nuts"``).
    requires
        Capabilities a model must have for this backend to fit it.
    options
        ``{name: Option}``: every option the backend accepts; :func:`bayesplug.fit` rejects others
        and checks types before anything is traced.

    Methods
    -------
    run(model, data, rng_key, *, progress, **options) -> RawResult
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]]
    options: ClassVar[Mapping[str, Option]]

    def run(
        self, model: Model, data: Mapping[str, Any], rng_key, *, progress: bool, **options: Any
    ) -> RawResult: ...


#: The wall-clock limit every long-running backend offers.
def positive_finite(value: Any) -> str | None:
    """Option check: a positive, finite number (NaN and infinity are refused)."""
    import math

    return None if math.isfinite(value) and value > 0 else "must be a positive, finite number"


MAX_TIME = Option(
    None, (float, int, type(None)), "wall-clock limit in seconds (> 0)", positive_finite
)
