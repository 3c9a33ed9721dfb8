"""Many fits at once: in this process, on a Dask ``LocalCluster``, or on a real cluster.

``bp.fit_many(tasks, cluster=...)`` runs independent fits (grids of models × data sets,
simulation-based calibration) and returns them in the order given. Each task carries its own
seed, so the results are the same whichever worker runs it, and the same as in-process.

``cluster``:

- ``None``: one after the other in this process (a progress bar counts the fits);
- ``"local"``: a ``distributed.LocalCluster`` started for the call (one single-threaded worker
  process per CPU core, at most ``len(tasks)``) and closed after it;
- a ``distributed.Client``, or a scheduler address (``"tcp://host:8786"``): that cluster.

Dask is an optional extra (``pip install 'bayesplug[dask]'``). Models and data travel to the
workers by (cloud)pickle: a plain NumPyro function defined in a script travels by value; one
imported from a module must be importable on the workers too.

Examples
--------
>>> import bayesplug as bp, numpyro, numpyro.distributions as dist
>>> def model(y=None):
...     mu = numpyro.sample("mu", dist.Normal(0, 10))
...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
>>> tasks = [bp.FitTask(model, {"y": [float(v)]}, options={"num_samples": 200,
...          "num_warmup": 200, "num_chains": 1}) for v in (-1, 1)]
>>> first, second = bp.fit_many(tasks)
>>> bool(first.samples["mu"].mean() < 0 < second.samples["mu"].mean())
True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .errors import BayesplugError, InputError

__all__ = ["FitTask", "FitManyError", "fit_many", "map_tasks"]


class FitTask(NamedTuple):
    """One fit: the arguments of :func:`bayesplug.fit`."""

    model: Any
    data: Mapping[str, Any]
    method: Any = "nuts"
    seed: int = 0
    options: Mapping[str, Any] = {}


class FitManyError(BayesplugError):
    """Some tasks failed; ``results`` holds every task's outcome (a Fit or the exception)."""

    def __init__(self, message: str, results: list) -> None:
        super().__init__(message)
        self.results = results


def _as_task(task: Any, position: int) -> FitTask:
    if isinstance(task, FitTask):
        return task
    if isinstance(task, Mapping):
        unknown = set(task) - set(FitTask._fields)
        if unknown or not {"model", "data"} <= set(task):
            raise InputError(
                f"tasks[{position}]",
                f"expected the keys {FitTask._fields} (model and data required), got "
                f"{sorted(task)}.",
            )
        return FitTask(**task)
    raise InputError(
        f"tasks[{position}]",
        f"expected a bp.FitTask or a mapping, got {type(task).__name__}.",
    )


def _run_fit(task: FitTask):
    from .api import fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(
            task.model, task.data, task.method, seed=task.seed, progress=False, **task.options
        )
    result.idata.attrs["warnings"] = "\n".join(str(w.message) for w in caught)
    return result


def _client(cluster: Any, num_tasks: int):
    """(client, close) for ``cluster``; close() shuts down what this call started."""
    try:
        import distributed
    except ImportError:
        raise InputError(
            "cluster",
            "needs Dask's distributed package, which is not installed.",
            "pip install 'bayesplug[dask]', or pass cluster=None to run in this process.",
        ) from None
    if isinstance(cluster, distributed.Client):
        return cluster, lambda: None
    if cluster == "local":
        import os

        workers = max(1, min(num_tasks, os.cpu_count() or 1))
        local = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(local)

        def close():
            client.close()
            local.close()

        return client, close
    if isinstance(cluster, str) and "://" in cluster:
        client = distributed.Client(cluster, timeout=30)
        return client, client.close
    raise InputError(
        "cluster",
        f"expected None, 'local', a distributed.Client or a scheduler address, got {cluster!r}.",
    )


def map_tasks(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    cluster: Any = None,
    progress: bool = False,
    description: str = "tasks",
) -> list:
    """``[function(item) or the exception it raised, ...]`` in order, here or on a cluster.

    ``function`` must be importable (a module-level function) to run on a cluster. Ctrl-C
    stops the loop (in-process: after the running item) or cancels what has not finished (on a
    cluster); what finished is returned and every item not run holds an ``InterruptedError``.
    """
    from tqdm.auto import tqdm

    results: list = [None] * len(items)
    bar = tqdm(total=len(items), disable=not progress, desc=description, leave=True)
    try:
        if cluster is None:
            for i, item in enumerate(items):
                try:
                    results[i] = function(item)
                except Exception as exc:  # one failure must not lose the others
                    results[i] = exc
                bar.update()
            return results
        import distributed

        client, close = _client(cluster, len(items))
        try:
            futures = client.map(function, items, pure=False)
            position = {f.key: i for i, f in enumerate(futures)}
            try:
                for future in distributed.as_completed(futures):
                    i = position[future.key]
                    try:
                        results[i] = future.result()
                    except Exception as exc:
                        results[i] = exc
                    bar.update()
            except KeyboardInterrupt:
                client.cancel(futures)
                raise
        finally:
            close()
        return results
    except KeyboardInterrupt:
        done = sum(r is not None for r in results)
        warnings.warn(
            f"interrupted: {done} of {len(items)} {description} finished and are returned; "
            "the others hold an InterruptedError.",
            stacklevel=3,
        )
        return [InterruptedError("not run: interrupted") if r is None else r for r in results]
    finally:
        bar.close()


def fit_many(
    tasks: Iterable[FitTask | Mapping[str, Any]],
    *,
    cluster: Any = None,
    progress: bool | None = None,
    return_exceptions: bool = False,
) -> list:
    """Run many independent fits, in this process or on a Dask cluster.

    Parameters
    ----------
    tasks
        :class:`FitTask` s (or mappings with its fields): ``model``, ``data``, ``method``
        (``"nuts"``), ``seed`` (0) and ``options`` (method options).
    cluster
        ``None`` (in-process), ``"local"`` (a LocalCluster for this call), a
        ``distributed.Client`` or a scheduler address.
    progress
        A bar counting finished fits; by default when standard error is a terminal.
    return_exceptions
        Put a failed task's exception in its place in the list instead of raising
        :class:`FitManyError` (which carries every outcome in ``.results``) at the end.

    Returns
    -------
    list
        One :class:`bayesplug.Fit` per task, in the order given. The warnings a fit raised are
        in ``fit.idata.attrs["warnings"]``. The same seeds give the same draws whichever
        ``cluster`` runs them.
    """
    import sys

    tasks = [_as_task(task, i) for i, task in enumerate(tasks)]
    if not tasks:
        raise InputError("tasks", "is empty.")
    if progress is None:
        progress = sys.stderr.isatty()
    results = map_tasks(_run_fit, tasks, cluster=cluster, progress=progress, description="fits")
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    if failed and not return_exceptions:
        first = results[failed[0]]
        raise FitManyError(
            f"{len(failed)} of {len(tasks)} fits failed (tasks {failed[:10]}); the first: "
            f"{type(first).__name__}: {first}. Every outcome is in this error's .results; "
            "pass return_exceptions=True to get them as the return value.",
            results,
        )
    return results
