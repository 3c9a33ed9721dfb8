"""JAX's persistent compilation cache, on by default for bayesplug runs.

A new process fitting the same model on data of the same shapes loads the compiled programs from
disk instead of compiling them again (the demo's compilation was ~16-21 s of its ~55 s of fitting).
The cache lives in ``$XDG_CACHE_HOME/bayesplug/jax`` (``~/.cache/bayesplug/jax``); the
environment variable ``BAYESPLUG_CACHE`` moves it (a folder) or turns it off (``off``, ``0``,
``false``, ``no``). A cache folder the user already gave JAX
(``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is. Entries are keyed by
JAX on the program, the shapes, the JAX/XLA versions and the device, so a changed model, shape or
version compiles afresh. Every program is written (``MIN_COMPILE_SECONDS`` = 0; JAX's own
default of 1 s leaves out the ~170 small programs a fit compiles beside its sampler, 0.04 s
each: 7.5 s of the demo's second run at a 0.1 s threshold, whose fitting went from 36 s to 30 s
when they were written too; the demo's cache is ~2 MB).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_folder", "enable_compilation_cache"]

_OFF = frozenset({"off", "0", "false", "no"})
MIN_COMPILE_SECONDS = 0.0  # every program is written (see the module docstring)


def cache_folder() -> Path | None:
    """Where bayesplug puts JAX's compilation cache, or ``None`` when ``BAYESPLUG_CACHE`` turns
    it off.

    >>> import os
    >>> os.environ["BAYESPLUG_CACHE"] = "off"
    >>> cache_folder() is None
    True
    >>> del os.environ["BAYESPLUG_CACHE"]
    """
    setting = os.environ.get("BAYESPLUG_CACHE", "").strip()
    if setting.lower() in _OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayesplug" / "jax"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_folder` unless JAX already has
    one or the folder cannot be made; returns the folder in use (``None``: no cache)."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    folder = cache_folder()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail the fit
        return None
    if not os.access(folder, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
        # a fit compiles ~170 small programs (~0.04 s each) beside its sampler loop
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder
