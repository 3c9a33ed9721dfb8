"""The thin Python loop around jitted chunks that every backend uses.

Samplers are pure ``step`` functions driven by ``lax.scan`` inside one jitted *chunk*; between
chunks this loop updates the progress bar and notices Ctrl-C, so an interrupted run keeps every
finished chunk instead of losing the lot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax


@dataclass
class ChunkedRun:
    """Outcome of :func:`run_in_chunks`."""

    state: Any
    outputs: list[Any] = field(default_factory=list)
    interrupted: bool = False
    reason: str = ""
    seconds: float = 0.0


def run_in_chunks(
    advance: Callable[[Any], tuple[Any, Any]],
    state: Any,
    *,
    num_chunks: int,
    steps_per_chunk: int,
    progress: bool,
    description: str | Callable[[int], str] = "sampling",
    postfix: Callable[[Any, Any], dict[str, Any]] | None = None,
    max_time: float | None = None,
    done: Callable[[Any, Any], bool] | None = None,
    total_steps: int | None = -1,
    steps_done: Callable[[Any], int] | None = None,
) -> ChunkedRun:
    """Call ``state, out = advance(state)`` ``num_chunks`` times, collecting ``out``.

    Parameters
    ----------
    advance
        A jitted function advancing the sampler by ``steps_per_chunk`` steps.
    progress
        Show a tqdm bar counting steps.
    description
        Bar label, or a function of the chunk index returning it (e.g. "warmup" / "sampling").
    postfix
        ``(state, out) -> dict`` shown after the bar (divergences, ln Z, ...).
    max_time
        Wall-clock limit in seconds: the run stops after the chunk that crosses it.
    done
        ``(state, out) -> bool``: the run has converged and stops (not an interruption).
    total_steps
        Steps shown as the bar's total (None: unknown; default: ``num_chunks * steps_per_chunk``).
    steps_done
        ``out -> int``: the steps a chunk actually took (chunks of varying length); default
        ``steps_per_chunk``.

    Returns
    -------
    ChunkedRun
        The last state, the outputs of every finished chunk, and whether (and why) the run
        stopped early. Ctrl-C stops the run between chunks' results, never losing finished ones.
    """
    from tqdm.auto import tqdm

    run = ChunkedRun(state)
    start = time.perf_counter()
    total = num_chunks * steps_per_chunk if total_steps == -1 else total_steps
    bar = tqdm(total=total, disable=not progress, leave=True)
    try:
        for i in range(num_chunks):
            bar.set_description(description(i) if callable(description) else description)
            new_state, out = advance(run.state)
            out = jax.block_until_ready(out)
            run.state = new_state
            run.outputs.append(out)
            bar.update(steps_per_chunk if steps_done is None else steps_done(out))
            if postfix is not None and progress:
                bar.set_postfix(postfix(new_state, out), refresh=False)
            if done is not None and done(new_state, out):
                break
            if (
                max_time is not None
                and time.perf_counter() - start > max_time
                and i + 1 < num_chunks
            ):
                run.interrupted = True
                run.reason = f"the wall-clock limit max_time={max_time:g} s was reached"
                break
    except KeyboardInterrupt:
        run.interrupted = True
        run.reason = "interrupted by the user (Ctrl-C)"
    finally:
        bar.close()
        run.seconds = time.perf_counter() - start
    return run
