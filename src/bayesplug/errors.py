"""Errors and warnings raised by bayesplug.

Every error a user can act on says what was wrong, in the user's terms, and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BayesplugError",
    "ConvergenceWarning",
    "IncompatibleMethodError",
    "InputError",
    "IncompleteResultWarning",
    "InterruptedRunWarning",
    "ModelTracingError",
    "TimeLimitError",
    "did_you_mean",
]


class BayesplugError(Exception):
    """Base class of every error raised by bayesplug."""


class InputError(BayesplugError, ValueError):
    """Bad input: names the argument, says what was wrong and how to fix it.

    Parameters
    ----------
    argument
        The argument (or data key, or option) that was wrong, e.g. ``"data['y']"``.
    problem
        What was wrong with it.
    fix
        What to do instead (optional).
    """

    def __init__(self, argument: str, problem: str, fix: str | None = None) -> None:
        self.argument = argument
        self.problem = problem
        self.fix = fix
        message = f"{argument}: {problem}"
        if fix:
            message += f" {fix}"
        super().__init__(message)


class IncompatibleMethodError(BayesplugError, ValueError):
    """A method (backend) was asked to fit a model that lacks a capability it requires."""

    def __init__(self, model: str, method: str, missing: Iterable[str], working: Iterable[str]):
        self.model = model
        self.method = method
        self.missing = tuple(sorted(missing))
        self.working = tuple(sorted(working))
        alternatives = ", ".join(repr(m) for m in self.working) or "none of the registered methods"
        super().__init__(
            f"method {method!r} cannot fit model {model!r}: the model lacks the capability "
            f"{', '.join(repr(c) for c in self.missing)} that {method!r} requires. "
            f"Methods that can fit this model: {alternatives}."
        )


class ModelTracingError(BayesplugError, TypeError):
    """A model's Python code needs the value of an array that JAX passes abstractly while it
    compiles the model (``float(x)``, ``if x > 0:``, ``np.asarray(x)``, ``x[x > 0]`` on data or
    parameters). Raised by :func:`bayesplug.fit` in place of JAX's own error, which is kept as
    its ``__cause__``."""

    def __init__(self, model: str, method: str, cause: BaseException) -> None:
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        super().__init__(
            f"model {model!r} cannot be compiled for method {method!r}: its Python code needs "
            f"the value of an array, which JAX only knows abstractly while compiling "
            f"({type(cause).__name__}: {first}). Write the model with jax.numpy operations: "
            "jnp.where(x > 0, a, b) instead of `if x > 0:`, jnp.max(x) instead of "
            "float(np.max(x)), no np.asarray() of data or parameters, jnp.where masks instead "
            "of x[x > 0]. Sizes and switches can be passed in the data as Python int, bool or "
            "str: those reach the model unchanged."
        )


class TimeLimitError(BayesplugError, TimeoutError):
    """A run reached its ``max_time`` before it had anything to keep (during warm-up or
    burn-in, or before its first chunk). An ordinary exception, unlike the ``KeyboardInterrupt``
    raised when Ctrl-C stops a run that early: a program that set the limit can catch it, and a
    fit in :func:`bayesplug.many.fit_many` fails alone instead of stopping the others."""


class ConvergenceWarning(UserWarning):
    """The run finished but its output should not be trusted as it is (says why and what to do)."""


class InterruptedRunWarning(UserWarning):
    """A run was interrupted (Ctrl-C, a wall-clock limit) and returned what it had so far."""


class IncompleteResultWarning(UserWarning):
    """Sampling finished but a later step failed: the fit keeps the draws and says what is
    missing (e.g. the log-likelihood group) and why."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Sentence listing the known names, with the closest match to ``name`` first.

    Examples
    --------
    >>> did_you_mean("nutz", ["nuts", "nested"])
    "Did you mean 'nuts'? Known: 'nested', 'nuts'."
    >>> did_you_mean("matern25", ["matern52", "matern72"])[:26]   # a transposition wins a tie
    "Did you mean 'matern52'? K"
    """
    known = sorted(known)
    listing = ", ".join(repr(k) for k in known)
    if not known:
        return f"Known: {listing}."
    name = str(name)

    def closeness(k: str):  # difflib's ratio; on a tie, a transposition of the name first
        return difflib.SequenceMatcher(None, name, k).ratio(), sorted(k) == sorted(name)

    best = max(known, key=closeness)  # max keeps the first (alphabetical) of equals
    if closeness(best)[0] >= 0.5:
        return f"Did you mean {best!r}? Known: {listing}."
    return f"Known: {listing}."
