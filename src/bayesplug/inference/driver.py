"""The driver: the thin Python loop around jitted chunks that every backend uses.

Samplers are pure ``step`` functions driven by ``lax.scan`` inside one jitted *chunk*; between
chunks this loop updates the progress bar, notices Ctrl-C and ``max_time``, and (inside
:func:`checkpointing`) writes the sampler's state and outputs to a checkpoint file, so an
interrupted or killed run keeps every finished chunk and can be resumed.

Checkpoints are data: a NumPy ``.npz`` archive of arrays and a JSON header, written to a
temporary file and renamed over the old one after every chunk (a kill mid-write leaves the
previous checkpoint whole), read back with ``allow_pickle=False``. A resumed run rebuilds its
sampler from the same model, data, options and seed, then replaces the state of every chunked
loop by the saved one: it takes the same draws as a run that was never interrupted.

Examples
--------
A chunked loop driven by hand, checkpointed, then resumed from the file:

>>> import os, tempfile, jax, jax.numpy as jnp
>>> from bayesplug.inference.driver import checkpointing, run_in_chunks
>>> advance = jax.jit(lambda s: (s + 1.0, s))
>>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
>>> with checkpointing(path, fingerprint={"run": "demo"}):
...     first = run_in_chunks(advance, jnp.zeros(2), num_chunks=3, steps_per_chunk=1,
...                           progress=False)
>>> with checkpointing(path, resume_from=path, fingerprint={"run": "demo"}):
...     again = run_in_chunks(advance, jnp.zeros(2), num_chunks=3, steps_per_chunk=1,
...                           progress=False)
>>> again.resumed_chunks, [float(o[0]) for o in again.outputs]
(3, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ..errors import BayesplugError

__all__ = [
    "ChunkedRun",
    "Checkpoint",
    "active_checkpoint",
    "checkpointing",
    "data_signature",
    "devices_in_use",
    "initialize_hosts",
    "is_checkpoint",
    "keep_program",
    "map_over_devices",
    "nothing_to_keep",
    "place_chains",
    "run_in_chunks",
    "split_over_devices",
    "using_devices",
]

_FORMAT = "bayesplug-checkpoint"
_VERSION = 1
PROGRAMS_KEPT = 8  # entries of each backend's in-process cache of compiled programs


@dataclass
class ChunkedRun:
    """Outcome of :func:`run_in_chunks`."""

    state: Any
    outputs: list[Any] = field(default_factory=list)
    interrupted: bool = False
    reason: str = ""
    by_user: bool = False  # interrupted by Ctrl-C (not by max_time)
    seconds: float = 0.0
    resumed_chunks: int = 0


def _not_a_checkpoint(path: str, exc: BaseException) -> str:
    """Why ``path`` is not a readable checkpoint, in words (a saved fit, pickles, damage)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        head = b""
    if head.startswith((b"\x89HDF", b"CDF")):
        return (
            "it is a saved fit (NetCDF: read it with bp.load), not a checkpoint. Resume from "
            "the file the interrupted run was given as checkpoint=."
        )
    numpy_file = head.startswith((b"\x93NUMPY", b"PK"))  # .npy, or .npz (a zip)
    if head.startswith(b"\x80") or (numpy_file and "allow_pickle" in str(exc)):
        return "it holds pickled objects, which bayesplug never writes and never loads."
    if "allow_pickle" in str(exc):  # NumPy's guess for any file it cannot read: not its advice
        return "it is not a readable bayesplug checkpoint (not a NumPy archive)."
    return f"it is not a readable bayesplug checkpoint ({type(exc).__name__}: {exc})."


def _header(archive) -> Any:
    """A checkpoint archive's JSON header."""
    return json.loads(bytes(archive["header"]).decode("utf-8"))


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bayesplug checkpoint file (its header says so)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as archive:
            header = _header(archive)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return False
    return isinstance(header, dict) and header.get("format") == _FORMAT


def nothing_to_keep(run: ChunkedRun, message: str) -> BaseException:
    """The exception for a run stopped before it had anything to keep: ``KeyboardInterrupt``
    after Ctrl-C (the user asked the program to stop), :class:`~bayesplug.errors.TimeLimitError`
    after ``max_time`` (a limit the program set, to be caught like any error)."""
    from ..errors import TimeLimitError

    if run.by_user:
        return KeyboardInterrupt(message)
    return TimeLimitError(f"{message} Give it a larger max_time.")


class Checkpoint:
    """A checkpoint file shared by every chunked loop of one fit (see :func:`checkpointing`).

    Each call of :func:`run_in_chunks` during the fit is one *loop*, numbered in call order; the
    file holds, per loop, the state after its last finished chunk, the outputs of its finished
    chunks and whether it ran to its end.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fingerprint: Mapping[str, Any],
        resume_from: str | os.PathLike | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self._saved: list[dict[str, Any]] = []  # per loop: header entry + arrays
        self._restorable: list[dict[str, Any]] = []
        self._next = 0
        if resume_from is not None:
            self._restorable = self._read(os.fspath(resume_from))

    # -- reading -----------------------------------------------------------------------------
    def _read(self, path: str) -> list[dict[str, Any]]:
        if not os.path.exists(path):
            raise BayesplugError(
                f"Cannot resume: no checkpoint file at {path!r}. Start the run with "
                f"checkpoint={path!r} to write one."
            )
        try:
            with np.load(path, allow_pickle=False) as archive:
                header = _header(archive)
                arrays = {k: archive[k] for k in archive.files if k != "header"}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise BayesplugError(
                f"Cannot resume from {path!r}: {_not_a_checkpoint(path, exc)}"
            ) from None
        if header.get("format") != _FORMAT or header.get("version") != _VERSION:
            raise BayesplugError(
                f"Cannot resume from {path!r}: not a bayesplug checkpoint of version "
                f"{_VERSION} (header {str(header)[:120]})."
            )
        if header.get("fingerprint") != self.fingerprint:
            theirs, ours = header.get("fingerprint", {}), self.fingerprint
            differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise BayesplugError(
                f"Cannot resume from {path!r}: it was written by a different run (differs "
                f"in: {', '.join(differ)}). Resume with the same model, data, method, options "
                "and seed, or start afresh with a new checkpoint file."
            )
        loops = []
        for i, entry in enumerate(header["loops"]):
            loop = dict(entry)
            loop["state"] = [arrays[f"loop{i}/state/{j}"] for j in range(entry["state_leaves"])]
            loop["outputs"] = [
                [arrays[f"loop{i}/out{c}/{j}"] for j in range(entry["output_leaves"])]
                for c in range(entry["chunks"])
            ]
            loops.append(loop)
        return loops

    def restore(self) -> dict[str, Any] | None:
        """The saved record of the next loop (None: nothing saved for it); advances the count."""
        index = self._next
        self._next += 1
        self._saved.append({"chunks": 0, "complete": False, "state": [], "outputs": []})
        if index < len(self._restorable):
            record = self._restorable[index]
            self._saved[index] = {
                "chunks": record["chunks"],
                "complete": record["complete"],
                "state": record["state"],
                "outputs": record["outputs"],
                "keys": record.get("keys", []),
            }
            return record
        return None

    # -- writing -----------------------------------------------------------------------------
    def save(self, state: Any, outputs: list[list[np.ndarray]], complete: bool) -> None:
        """Record the current loop's state and its chunks' outputs (flat leaves, as from
        :func:`host_leaves`), then rewrite the file atomically."""
        leaves, keys = host_leaves(_gathered(state))
        loop = self._saved[self._next - 1]
        loop.update(
            chunks=len(outputs), complete=complete, state=leaves, outputs=outputs, keys=keys
        )
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "loops": [
                {
                    "chunks": entry["chunks"],
                    "complete": entry["complete"],
                    "state_leaves": len(entry["state"]),
                    "output_leaves": len(entry["outputs"][0]) if entry["outputs"] else 0,
                    "keys": entry.get("keys", []),
                }
                for entry in self._saved
            ],
        }
        arrays = {"header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
        for i, entry in enumerate(self._saved):
            for j, leaf in enumerate(entry["state"]):
                arrays[f"loop{i}/state/{j}"] = leaf
            for c, chunk in enumerate(entry["outputs"]):
                for j, leaf in enumerate(chunk):
                    arrays[f"loop{i}/out{c}/{j}"] = leaf
        if jax.process_index() == 0:  # several hosts: one writer, every process holds it all
            _write_atomically(self.path, arrays)


def host_leaves(tree: Any) -> tuple[list[np.ndarray], list[list[Any]]]:
    """The leaves of ``tree`` as NumPy arrays; typed PRNG keys become their raw key data."""
    leaves, keys = [], []
    for j, leaf in enumerate(jax.tree.leaves(tree)):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            keys.append([j, str(jax.random.key_impl(leaf))])
            leaf = jax.random.key_data(leaf)
        leaves.append(np.asarray(leaf))
    return leaves, keys


def _as_tree(template: Any, leaves: list[np.ndarray], keys: list[list[Any]], what: str) -> Any:
    """Put saved leaves into ``template``'s structure, checking count, shapes and dtypes."""
    flat, treedef = jax.tree.flatten(template)
    wrapped = dict((j, impl) for j, impl in keys)
    if len(flat) != len(leaves):
        raise _mismatch(what, f"{len(leaves)} arrays saved, {len(flat)} expected")
    out = []
    for j, (want, got) in enumerate(zip(flat, leaves, strict=True)):
        value = jax.numpy.asarray(got)
        if j in wrapped:
            value = jax.random.wrap_key_data(value, impl=wrapped[j])
        if np.shape(want) != value.shape or jax.numpy.result_type(want) != value.dtype:
            raise _mismatch(
                what,
                f"array {j} is {value.dtype}{list(value.shape)}, expected "
                f"{jax.numpy.result_type(want)}{list(np.shape(want))}",
            )
        sharding = getattr(want, "sharding", None)
        out.append(value if sharding is None else _placed(value, sharding))
    return jax.tree.unflatten(treedef, out)


def _mismatch(what: str, detail: str) -> BayesplugError:
    return BayesplugError(
        f"The checkpoint's {what} does not fit this run ({detail}): it was written by another "
        "version of the sampler. Start afresh with a new checkpoint file."
    )


def _write_atomically(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` next to ``path`` and rename it over ``path`` (never a torn file)."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


_ACTIVE: contextvars.ContextVar[Checkpoint | None] = contextvars.ContextVar(
    "bayesplug_checkpoint", default=None
)


def active_checkpoint() -> Checkpoint | None:
    """The checkpoint of the enclosing :func:`checkpointing` block, or None outside one."""
    return _ACTIVE.get()


@contextlib.contextmanager
def checkpointing(
    path: str | os.PathLike | None,
    *,
    resume_from: str | os.PathLike | None = None,
    fingerprint: Mapping[str, Any] | None = None,
) -> Iterator[Checkpoint | None]:
    """Checkpoint every :func:`run_in_chunks` loop run inside this block to ``path``.

    Parameters
    ----------
    path
        The checkpoint file (None: no checkpointing; the block runs as it would without it).
    resume_from
        A checkpoint file (often ``path`` itself) to read first: each loop continues from its
        saved state.
    fingerprint
        A JSON-able description of the run (model, data digest, method, options, seed). A
        resume whose fingerprint differs from the file's is refused: it would splice two
        different runs.
    """
    if path is None:
        yield None
        return
    checkpoint = Checkpoint(path, fingerprint or {}, resume_from=resume_from)
    token = _ACTIVE.set(checkpoint)
    try:
        yield checkpoint
    finally:
        _ACTIVE.reset(token)


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
    progress, description, postfix
        Show a tqdm bar counting steps; its label (or a function of the chunk index giving it);
        ``(state, out) -> dict`` shown after it (divergences, ln Z, ...).
    max_time
        Wall-clock limit in seconds: the run stops after the chunk that crosses it.
    done
        ``(state, out) -> bool``: the run has converged and stops (not an interruption).
    total_steps, steps_done
        The bar's total (None: unknown; default ``num_chunks * steps_per_chunk``); ``out ->
        int``, the steps a chunk took when chunks vary in length (default ``steps_per_chunk``).

    Returns
    -------
    ChunkedRun
        The last state, every finished chunk's outputs, whether (and why) the run stopped early
        (Ctrl-C acts between chunks, never losing finished ones). Inside :func:`checkpointing`
        each chunk is saved and a saved loop resumed (see :func:`_resumed`).
    """
    from tqdm.auto import tqdm

    checkpoint = _ACTIVE.get()
    run, saved_outputs, complete = _resumed(checkpoint, state)
    host_outputs: list[list[np.ndarray]] = []
    start = time.perf_counter()
    total = num_chunks * steps_per_chunk if total_steps == -1 else total_steps
    bar = tqdm(total=total, disable=not progress, leave=True)
    bar.update(run.resumed_chunks * steps_per_chunk if total_steps == -1 else 0)
    try:
        first = run.resumed_chunks if not complete else num_chunks
        for i in range(first, num_chunks):
            bar.set_description(description(i) if callable(description) else description)
            new_state, out = advance(run.state)
            out = _gathered(jax.block_until_ready(out))
            run.state = new_state
            run.outputs.append(out)
            bar.update(steps_per_chunk if steps_done is None else steps_done(out))
            if postfix is not None and progress:
                bar.set_postfix(postfix(new_state, out), refresh=False)
            finished = i + 1 == num_chunks or (done is not None and done(new_state, out))
            if checkpoint is not None:
                host_outputs.append(host_leaves(out)[0])
                checkpoint.save(run.state, saved_outputs + host_outputs, finished)
            if finished:
                break
            if max_time is not None and time.perf_counter() - start > max_time:
                run.interrupted = True
                run.reason = f"the wall-clock limit max_time={max_time:g} s was reached"
                break
    except KeyboardInterrupt:
        run.interrupted = run.by_user = True
        run.reason = "interrupted by the user (Ctrl-C)"
    finally:
        bar.close()
        run.seconds = time.perf_counter() - start
    if saved_outputs:  # structure from a fresh chunk (a finished loop runs one, discarded)
        template = run.outputs[0] if run.outputs else advance(run.state)[1]
        saved = [_as_tree(template, leaves, [], "chunk output") for leaves in saved_outputs]
        run.outputs = saved + run.outputs
    return run


def _resumed(
    checkpoint: Checkpoint | None, state: Any
) -> tuple[ChunkedRun, list[list[np.ndarray]], bool]:
    """The run to continue: from the checkpoint's saved loop if it has one, else from ``state``.

    Returns the run (its state restored), the saved chunks' outputs (flat leaves) and whether
    the saved loop had finished. The saved outputs are put back into their tree structure at
    the end of the loop, from a fresh chunk's output (no tree structure is ever unpickled);
    a loop that had finished runs one chunk from its saved state for that, and discards it.
    """
    run = ChunkedRun(state)
    record = checkpoint.restore() if checkpoint is not None else None
    if record is None or record["chunks"] == 0:
        return run, [], False
    run.state = _as_tree(state, record["state"], record.get("keys", []), "sampler state")
    run.resumed_chunks = record["chunks"]
    return run, record["outputs"], record["complete"]


# -- devices -----------------------------------------------------------------------------------
class _DevicePlan:
    def __init__(self, devices: list[Any] | None) -> None:
        self.devices = devices
        self.used = 1  # the most devices any loop of the run was split over
        self.chains_split = False  # place_chains split this run's chains: items stay whole


_DEVICES: contextvars.ContextVar[_DevicePlan | None] = contextvars.ContextVar(
    "bayesplug_devices", default=None
)


@contextlib.contextmanager
def using_devices(devices: int | list[Any] | None = None) -> Iterator[_DevicePlan]:
    """Split the work of every backend run inside this block over ``devices``: the chains of
    NUTS and SG-MCMC (:func:`place_chains`), else interacting items — PaRIS / PPG particles,
    nested sampling's live points, SVI and SG-MCMC mini-batches
    (:func:`split_over_devices`) — and draws from a fitted flow (:func:`map_over_devices`).

    Parameters
    ----------
    devices
        None: every local device (``jax.local_devices()``); an int: the first that many; or a
        list of JAX devices. A run with C chains uses the largest count of these devices that
        divides C (4 chains on 3 devices run on 2).
    """
    local = jax.devices() if jax.process_count() > 1 else jax.local_devices()
    if devices is None:
        chosen = local
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise BayesplugError(
                f"devices={devices}: this process sees {len(local)} device(s) "
                f"({local[0].platform}); pass a count from 1 to {len(local)}."
            )
        chosen = local[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise BayesplugError("devices=[] names no device; pass None for all of them.")
    plan = _DevicePlan(chosen)
    token = _DEVICES.set(plan)
    try:
        yield plan
    finally:
        _DEVICES.reset(token)


def place_chains(carry: Any, data: Any, num_chains: int) -> tuple[Any, Any]:
    """Split ``carry`` (its leaves with a leading chain axis) over the devices in use and
    replicate ``data`` on them, so that a ``jit`` of the chunk runs each device's chains there.

    Chains are independent, so the draws are those of one device up to floating-point
    reassociation. Outside :func:`using_devices`, or with one device, nothing moves.
    """
    plan = _DEVICES.get()
    devices = plan.devices if plan is not None else [jax.local_devices()[0]]
    shardings = _split_and_whole(plan, devices, num_chains, "chains")
    if shardings is None:
        return carry, data
    split, whole = shardings
    plan.chains_split = True

    def place(leaf):
        chained = np.ndim(leaf) > 0 and np.shape(leaf)[0] == num_chains
        return _placed(leaf, split if chained else whole)

    return jax.tree.map(place, carry), jax.tree.map(lambda x: _placed(x, whole), data)


def map_over_devices(function: Any, items: Any, *shared: Any) -> Any:
    """``function(items, *shared)`` with the leading axis of ``items`` split over the devices in
    use (``jax.shard_map``; ``shared`` replicated), for work that is independent per item:
    draws from a fitted approximation, particles' weights. Each device runs ``function`` on its
    slice, so the result is what one device gives, to floating-point rounding at most.

    Usable inside ``jit``. ``function`` must map an array of items to outputs with the same
    leading axis. The largest count of this process's devices that divides the number of items
    is used (recorded as the run's ``num_devices``; in a multi-host run every process computes
    all items on its own devices); outside :func:`using_devices`, or with one device, it is a
    plain call.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> squares = map_over_devices(lambda x, c: x**2 + c, jnp.arange(4.0), 1.0)
    >>> squares.tolist()
    [1.0, 2.0, 5.0, 10.0]
    """
    plan = _DEVICES.get()
    devices = plan.devices if plan is not None else jax.local_devices()[:1]
    # across hosts each process computes every item on its own devices (no collectives)
    devices = [d for d in devices if d.process_index == jax.process_index()]
    size = jax.tree.leaves(items)[0].shape[0]
    count = _dividing_count(len(devices), size)
    if count == 1:
        return function(items, *shared)
    from jax.sharding import Mesh, PartitionSpec

    plan.used = max(plan.used, count)
    mesh = Mesh(np.asarray(devices[:count]), ("items",))
    split = jax.shard_map(
        function,
        mesh=mesh,
        in_specs=(PartitionSpec("items"),) + (PartitionSpec(),) * len(shared),
        out_specs=PartitionSpec("items"),
        check_vma=False,  # a per-item loop inside (lax.map's scan) mixes split and whole values
    )
    return split(items, *shared)


def devices_in_use() -> tuple[Any, ...]:
    """The devices of the enclosing :func:`using_devices` block (empty outside one): part of
    the key of an in-process cache of compiled programs, whose layout depends on them."""
    plan = _DEVICES.get()
    return () if plan is None else tuple(plan.devices)


def data_signature(data: Mapping[str, Any]) -> tuple:
    """The data's names, shapes and types: what a compiled program that takes the data as
    arguments depends on (never their values), for the key of an in-process cache.

    Examples
    --------
    >>> import numpy as np
    >>> data_signature({"y": np.zeros(3, np.float32), "n": np.arange(2, dtype=np.int32)})
    (('n', (2,), 'int32'), ('y', (3,), 'float32'))
    """
    jnp = jax.numpy
    return tuple((k, jnp.shape(v), jnp.result_type(v).name) for k, v in sorted(data.items()))


def keep_program(cache: dict, key: Any, value: Any) -> None:
    """Keep ``value`` under ``key`` in a backend's in-process cache of compiled programs (a
    dict, oldest first); past ``PROGRAMS_KEPT`` entries the oldest is dropped.

    Examples
    --------
    >>> cache = {}
    >>> for i in range(PROGRAMS_KEPT + 2):
    ...     keep_program(cache, i, f"program {i}")
    >>> len(cache), next(iter(cache))
    (8, 2)
    """
    cache[key] = value
    while len(cache) > PROGRAMS_KEPT:
        cache.pop(next(iter(cache)))


def split_over_devices(tree: Any, size: int) -> Any:
    """``tree`` with every leaf whose leading axis has length ``size`` laid out split along it
    over this process's devices in use (the most that divide ``size``), the rest replicated:
    interacting items — particles, live points, a mini-batch — whose sums, cumulative sums and
    gathers across items XLA's partitioner then runs with collectives
    (``jax.lax.with_sharding_constraint``; usable inside ``jit`` and ``vmap``, where the mapped
    axis stays whole). JAX's random bits do not depend on the layout (partitionable threefry),
    so the result is one device's to floating-point reassociation.

    Outside :func:`using_devices`, with one device, or in a run whose chains
    :func:`place_chains` split (each device then holds whole chains), ``tree`` is returned as
    it is.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> particles = split_over_devices({"x": jnp.zeros((8, 2)), "t": jnp.ones(())}, 8)
    >>> particles["x"].shape
    (8, 2)
    """
    plan = _DEVICES.get()
    if plan is None or plan.chains_split:
        return tree
    devices = [d for d in plan.devices if d.process_index == jax.process_index()]
    shardings = _split_and_whole(plan, devices, size, "items")
    if shardings is None:
        return tree
    split, whole = shardings

    def place(leaf):
        along = np.ndim(leaf) > 0 and np.shape(leaf)[0] == size
        return jax.lax.with_sharding_constraint(leaf, split if along else whole)

    return jax.tree.map(place, tree)


def _split_and_whole(plan, devices: list[Any], size: int, axis: str) -> tuple[Any, Any] | None:
    """Shardings over the most of ``devices`` that divide ``size``: (split along the leading
    axis, replicated), recorded in ``plan.used``; None when that is one device."""
    count = _dividing_count(len(devices), size)
    if count == 1:
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    plan.used = max(plan.used, count)
    mesh = Mesh(np.asarray(devices[:count]), (axis,))
    return NamedSharding(mesh, PartitionSpec(axis)), NamedSharding(mesh, PartitionSpec())


def _dividing_count(num_devices: int, size: int) -> int:
    """The most devices (at most ``num_devices``) that split ``size`` items evenly."""
    return max(n for n in range(1, num_devices + 1) if size % n == 0)


def _placed(value: Any, sharding: Any) -> Any:
    """``value`` laid out by ``sharding``; across hosts each process builds its own shards."""
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _gathered(tree: Any) -> Any:
    """Arrays spread over several processes gathered whole into every process (else as is)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def gather(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return leaf

    return jax.tree.map(gather, tree)


def initialize_hosts(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process (multi-host) run: JAX's own multi-controller runtime.

    Start the same script once per process; each calls this first (before any other JAX
    work), then ``bp.fit`` as usual: the chains of ``nuts`` and SG-MCMC are split over every
    process's devices, and every process returns the whole result (save it from process 0:
    ``jax.process_index() == 0``). Arguments left None are read from the environment variables
    ``BAYESPLUG_COORDINATOR`` (``host:port`` of process 0), ``BAYESPLUG_NUM_PROCESSES`` and
    ``BAYESPLUG_PROCESS_ID``, else left to ``jax.distributed.initialize`` (which detects SLURM
    and similar clusters). On CPUs the collectives go through gloo.

    Examples
    --------
    Two processes on one machine (one terminal each)::

        BAYESPLUG_COORDINATOR=localhost:12355 BAYESPLUG_NUM_PROCESSES=2 \\
            BAYESPLUG_PROCESS_ID=0 python my_fit.py
        BAYESPLUG_COORDINATOR=localhost:12355 BAYESPLUG_NUM_PROCESSES=2 \\
            BAYESPLUG_PROCESS_ID=1 python my_fit.py

    where ``my_fit.py`` calls ``bayesplug.inference.driver.initialize_hosts()`` first.
    """
    environ = os.environ
    coordinator_address = coordinator_address or environ.get("BAYESPLUG_COORDINATOR")
    if num_processes is None and "BAYESPLUG_NUM_PROCESSES" in environ:
        num_processes = int(environ["BAYESPLUG_NUM_PROCESSES"])
    if process_id is None and "BAYESPLUG_PROCESS_ID" in environ:
        process_id = int(environ["BAYESPLUG_PROCESS_ID"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
