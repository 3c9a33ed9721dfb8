"""A small base class for model plug-ins: sensible defaults for the Model protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class ModelBase:
    """Defaults shared by model plug-ins; subclasses write ``model``, ``validate`` and ``predict``.

    A subclass sets ``name``, ``capabilities``, ``observed_sites`` and, when its numerics need it,
    ``precision = "float64"``. It stores its constructor options in ``self.options`` (a dict of
    JSON-friendly values) so that a saved fit can rebuild it with ``get_model(name, **options)``.
    """

    name: ClassVar[str] = "model"
    capabilities: ClassVar[frozenset[str]] = frozenset({"continuous", "proper_prior"})
    observed_sites: ClassVar[tuple[str, ...]] = ("y",)
    precision: ClassVar[str] = "float32"

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    def model(self, **data: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define model(**data)")

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return dict(data)

    def pointwise_log_likelihood(self, samples: Mapping[str, Any], data: Mapping[str, Any]):
        """Per-observation log-likelihood ``{site: (chain, draw, n)}`` for ArviZ's LOO.

        The default asks NumPyro (correct for factorised likelihoods); models whose likelihood
        does not factorise over observations override it.
        """
        from ..bridge import pointwise_log_likelihood

        return pointwise_log_likelihood(self.model, samples, data)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"
