"""Mini-batches of the data a likelihood plate runs over, shared by SG-MCMC and SVI.

A model has the ``minibatch`` capability when every observed (or factor) site sits in one
``numpyro.plate`` over the leading axis of N data. A batch draws ``batch_size`` indices with
replacement and subsamples every data array whose leading axis has length N; the batch's
log-likelihood times N / batch_size is an unbiased estimate of the full one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from numpyro.primitives import Messenger

from ..errors import InputError
from .driver import split_over_devices

__all__ = ["MiniBatches", "scale_likelihood"]


class MiniBatches:
    """Which data arrays are subsampled, and how a batch's log-likelihood is scaled.

    Parameters
    ----------
    num_data
        Size of the likelihood plate (``ModelInfo.data_plate_size``), None if there is none.
    data
        The data mapping (arrays with leading axis ``num_data`` are subsampled).
    batch_size
        Data per batch; None gives ``min(N, default)``.
    default
        The batch size used when ``batch_size`` is None.
    """

    def __init__(
        self,
        num_data: int | None,
        data: Mapping[str, Any],
        batch_size: int | None,
        default: int = 100,
    ):
        self.num_data = num_data
        if num_data is None:
            if batch_size is not None:
                raise InputError(
                    "batch_size",
                    "needs a likelihood that is a numpyro.plate over the leading axis of the data.",
                    "Wrap the observed site in `with numpyro.plate('data', N):`, or leave "
                    "batch_size=None to use full-data gradients.",
                )
            self.keys, self.batch_size = (), None
            return
        if batch_size is not None and batch_size > num_data:
            raise InputError(
                "batch_size",
                f"is {batch_size} but the data hold only {num_data} points.",
                f"Use batch_size <= {num_data} (or None for min(N, {default})).",
            )
        self.keys = tuple(
            k for k, v in data.items() if np.ndim(v) >= 1 and np.shape(v)[0] == num_data
        )
        self.batch_size = batch_size or min(num_data, default)

    @property
    def scale(self) -> float:
        """N / batch_size: the factor on a batch's log-likelihood (1 without batches)."""
        if self.batch_size is None:
            return 1.0
        return self.num_data / self.batch_size

    def draw(self, key, data):
        """A mini-batch of ``data`` (the full data when there is no plate or the batch is all)."""
        if self.batch_size is None or self.batch_size == self.num_data:
            return data
        index = jax.random.randint(key, (self.batch_size,), 0, self.num_data)
        batch = {k: (v[index] if k in self.keys else v) for k, v in data.items()}
        # data-parallel gradients: the batch split over the devices in use, if any
        return split_over_devices(batch, self.batch_size)


class _ScaleLikelihood(Messenger):
    """Effect handler: multiply the log-density of observed (and factor) sites by ``factor``."""

    def __init__(self, fn: Callable | None = None, factor: float = 1.0):
        self.factor = factor
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"]:
            msg["scale"] = self.factor if msg.get("scale") is None else self.factor * msg["scale"]


def scale_likelihood(fn: Callable, factor: float) -> Callable:
    """``fn`` with its likelihood (observed and factor sites) scaled by ``factor``; priors kept.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from numpyro import handlers
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
    ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> tr = handlers.trace(handlers.seed(scale_likelihood(model, 10.0), 0)).get_trace(1.0)
    >>> tr["y"]["scale"], tr["mu"]["scale"]
    (10.0, None)
    """
    return _ScaleLikelihood(fn, factor)
