"""Optimiser pieces shared by the optimising backends (``flow_vi``, ``svi``, ``map``): the
Adam-with-schedule transform and its options, declared once here."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..protocols import Option, one_of, positive

__all__ = [
    "LEARNING_RATE",
    "OPTIMIZER",
    "SCHEDULE",
    "SCHEDULES",
    "adam_with_schedule",
    "all_finite",
]

SCHEDULES = ("constant", "cosine", "exponential")


def is_optax(value: Any) -> str | None:
    """None for an optax GradientTransformation, else the error sentence."""
    ok = hasattr(value, "init") and hasattr(value, "update")
    return None if ok else "must be an optax GradientTransformation"


LEARNING_RATE = Option(1e-2, (float,), "Adam's (peak) learning rate", positive)
SCHEDULE = Option(
    "cosine",
    (str,),
    "learning-rate schedule: 'constant', 'cosine' (warm-up, decay to 1/100), 'exponential'",
    one_of(SCHEDULES),
)
OPTIMIZER = Option(
    None, (object,), "an optax GradientTransformation replacing Adam and the schedule", is_optax
)


def adam_with_schedule(learning_rate: float, schedule: str, num_steps: int):
    """Adam (gradients clipped at global norm 100) with a ``constant``, ``cosine`` (warm-up then
    cosine decay to 1/100) or ``exponential`` (to 1/10 at ``num_steps``) learning rate."""
    import optax

    if schedule == "constant":
        rate = learning_rate
    elif schedule == "exponential":
        rate = optax.exponential_decay(learning_rate, transition_steps=num_steps, decay_rate=0.1)
    else:
        rate = optax.warmup_cosine_decay_schedule(
            init_value=learning_rate / 10,
            peak_value=learning_rate,
            warmup_steps=min(100, num_steps // 10),
            decay_steps=num_steps,
            end_value=learning_rate / 100,
        )
    return optax.chain(optax.clip_by_global_norm(100.0), optax.adam(rate))


def all_finite(tree) -> jax.Array:
    """True when every floating leaf of ``tree`` is finite."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
