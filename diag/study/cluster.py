"""A grid on a Dask cluster (``diag compare --cluster tcp://HOST:8786``; optional extra ``diag[cluster]``).

Each run is one task (:func:`diag.study.grid.run_one` on a :class:`~diag.study.grid.RunSpec`) with the
resources it needs (``compare.resources``, e.g. ``GPU=1``; a worker offers them with
``dask worker ADDRESS --nthreads 1 --resources GPU=1``). Results land where ``diag compare`` on one
machine puts them -- the run folders inside ``--out`` -- so the dataset and ``--out`` must be on a
disk that every worker sees at the same path (checked before anything is submitted); ``diag report``
works the same afterwards.

Failures, never silently lost (docs/cluster.md):

* a worker that dies mid-run (killed, out of memory, its machine gone): the scheduler hands the run
  to another worker, where it resumes from its last checkpoint (``last.pt``, written every epoch);
  after ``distributed.scheduler.allowed-failures`` deaths (Dask's default: 3) the run is reported;
* an exception in a run: Dask retries it ``compare.retries`` times, then it is reported;
* a :class:`~diag.errors.DiagError` (bad input): reported at once, not retried.

Reported runs are recorded in ``compare.json`` (``failed``) and printed; the same command again
resumes them.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterator, Sequence

from diag.errors import DiagError, describe
from diag.study.grid import Outcome, RunSpec, run_one

__all__ = ["run_on_cluster", "connect", "check_workers"]


def _require() -> Any:
    try:
        import distributed
    except ImportError:
        raise DiagError("--cluster: Dask distributed is not installed; pip install 'diag[cluster]' "
                        "(or dask[distributed]) here and on every worker") from None
    return distributed


def connect(address: str, timeout: float = 20.0) -> Any:
    """A ``distributed.Client`` for the scheduler at ``address`` (``tcp://HOST:8786``)."""
    distributed = _require()
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DiagError(f"--cluster {address}: no Dask scheduler answers there ({describe(exc, 120)}); start one "
                        "with `dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from None


def check_workers(client: Any, needs: dict[str, float], paths: Sequence[str], wait_s: float = 60.0) -> int:
    """How many runs the cluster can hold at once; refuses (one line, with the fix) a cluster with no
    worker, none offering ``needs``, or a worker that cannot see ``paths`` (the dataset, the output)."""
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError:
        raise DiagError(f"--cluster: no worker joined the scheduler in {wait_s:.0f} s; start some with "
                        "`dask worker ADDRESS --nthreads 1`") from None
    try:  # every worker (some Dask versions list only the first few by default)
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # older Dask: always all of them
        workers = client.scheduler_info()["workers"]
    fit = [w for w in workers.values() if all(w.get("resources", {}).get(k, 0) >= v for k, v in needs.items())]
    if not fit:
        want = ",".join(f"{k}={v:g}" for k, v in needs.items())
        raise DiagError(f"--cluster: no worker offers the resources a run needs ({want}); start workers with "
                        f"`dask worker ADDRESS --nthreads 1 --resources {want}` or set compare.resources")
    seen = client.run(_sees, list(paths))
    blind = {w: missing for w, missing in seen.items() if missing}
    if blind:
        w, missing = next(iter(blind.items()))
        raise DiagError(f"--cluster: worker {w} cannot see {missing[0]}; the dataset and --out must be on a disk every "
                        "worker shares, at the same path")
    if not needs:
        return sum(int(w.get("nthreads", 1)) for w in fit)
    return sum(int(min(w["resources"][k] // v for k, v in needs.items())) for w in fit)


def _sees(paths: list[str]) -> list[str]:
    """On a worker: which of ``paths`` (or, for a folder yet to be made, its parent) it cannot see."""
    return [p for p in paths if not (os.path.exists(p) or os.path.isdir(os.path.dirname(p)))]


def _task(spec: RunSpec) -> dict[str, Any]:
    """On a worker: one run. A DiagError comes back as a value (Dask retries exceptions; bad input would
    only fail again), anything else is raised for Dask to retry."""
    try:
        return {"ok": run_one(spec)}
    except DiagError as exc:
        return {"error": str(exc)}


def run_on_cluster(address: str, specs: Sequence[RunSpec], needs: dict[str, float], retries: int = 1,
                   started: Callable[[RunSpec], None] = lambda spec: None, paths: Sequence[str] = ()) -> Iterator[Outcome]:
    """Submit every spec as a task (in grid order: Dask runs earlier submissions first); yield each
    :class:`Outcome` as it ends. ``started`` is called for as many runs as the cluster can hold at
    once, then for the next each time one ends (Dask does not say when a task begins)."""
    distributed = _require()
    from distributed.scheduler import KilledWorker

    client = connect(address)
    try:
        slots = check_workers(client, needs, paths)
        token = uuid.uuid4().hex[:8]
        futures = {client.submit(_task, spec, key=f"diag-{spec.name}-{token}", resources=needs or None,
                                 retries=retries, pure=False): spec for spec in specs}
        pending = list(specs)
        for spec in pending[:slots]:
            started(spec)
        begun = min(slots, len(pending))
        for fut in distributed.as_completed(list(futures)):
            spec = futures[fut]
            if begun < len(pending):
                started(pending[begun])
                begun += 1
            try:
                res = fut.result()
            except KilledWorker as exc:
                yield Outcome(spec, None, f"its workers died while running it ({describe(exc, 160)})", "died")
                continue
            except Exception as exc:  # noqa: BLE001 -- the run's own exception, after Dask's retries
                yield Outcome(spec, None, describe(exc, 300), "crash", retries + 1)
                continue
            if "error" in res:
                yield Outcome(spec, None, res["error"], "input")
            else:
                yield Outcome(spec, res["ok"])
    finally:
        client.close()
