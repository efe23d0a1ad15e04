"""Runs side by side on this machine: ``jobs`` persistent worker processes, each taking runs one after another.

A worker is a ``spawn``-ed child process (not ``fork``: no torch state or threads copied from the
parent) that imports torch, timm and diag once and then trains the runs it is handed, one at a time,
through the same :func:`~diag.study.grid.run_one` as ``--jobs 1`` uses in the ``diag compare``
process itself: every run sets its own torch thread count and seeds, so a run's weights and metrics
do not depend on which worker trained it, nor on the runs it trained before (tests/test_compare.py
checks them against ``--jobs 1`` and against a fresh process). Starting a process and importing torch
and timm (a few seconds a process on the 2-core machine, docs/cluster.md) is paid once per worker, not
once per run. Each worker gets one GPU of ``gpus`` for its life (by ``CUDA_VISIBLE_DEVICES``, so
``device=auto`` / ``cuda`` inside it is that GPU) when there are any.

A run that raises a :class:`~diag.errors.DiagError` (bad input: the same again fails the same way) is
reported at once and its worker goes on. A run whose worker crashes or is killed (out of memory, a
signal), or that raises any other exception (its worker then ends, so that no half-done state is
carried into the next run), is started again in a fresh worker up to ``retries`` times -- it resumes
from its last checkpoint -- and then reported. Nothing is lost silently: every spec given comes back
as exactly one :class:`~diag.study.grid.Outcome`.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies, the whole pool
breaks (``BrokenProcessPool``): the runs training in the other workers are killed with it, and no
future says which run's process died. Here each worker has its own pipe, so a death is the run of
that worker alone, with its exit code, and the others train on.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Sequence

from diag.errors import DiagError, describe
from diag.study.grid import Outcome, RunSpec, run_one

__all__ = ["run_local", "run_here", "worker_loop"]


def worker_loop(conn: Any, gpu: int | None) -> None:
    """A worker process: import what every run needs once, then train each spec received until ``None``
    (or a closed pipe), sending back ``(kind, summary or message)`` per spec."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import diag.learning.train  # noqa: F401 -- torch, timm and diag's training code, once per worker

    try:
        while True:
            try:
                spec = conn.recv()
            except (EOFError, KeyboardInterrupt):  # the parent is gone, or Ctrl-C while idle: nothing to say
                return
            if spec is None:
                return
            try:
                conn.send(("", run_one(spec)))
            except DiagError as exc:
                conn.send(("input", str(exc)))
            except BaseException as exc:  # noqa: BLE001 -- reported to the parent, which decides on a retry
                conn.send(("crash", describe(exc, 300)))
                return  # a fresh worker for whatever comes next: nothing half-done carried over
    finally:
        conn.close()


@dataclass
class _Worker:
    proc: Any
    conn: Any
    gpu: int | None
    run: tuple[RunSpec, int] | None = None  #: (spec, attempt) it is training, None when idle


def run_local(specs: Sequence[RunSpec], jobs: int, retries: int = 1, gpus: Sequence[int] = (),
              started: Callable[[RunSpec], None] = lambda spec: None) -> Iterator[Outcome]:
    """Run ``specs`` in ``jobs`` worker processes, in order; yield each :class:`Outcome` as it ends.

    ``started(spec)`` is called when a run is handed to a worker (for the progress display). Stopping the
    iteration (Ctrl-C, or the caller's error) terminates the workers; their runs resume next time."""
    ctx = multiprocessing.get_context("spawn")
    queue: deque[tuple[RunSpec, int]] = deque((s, 1) for s in specs)
    jobs = max(1, min(jobs, len(specs)))
    slots = [gpus[i % len(gpus)] if gpus else None for i in range(jobs)]  # the GPU of each worker slot
    workers: dict[int, _Worker] = {}  # slot -> its worker

    def spawn(slot: int) -> _Worker:
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=worker_loop, args=(child, slots[slot]), name=f"diag-worker-{slot}")
        proc.start()
        child.close()
        return _Worker(proc, parent, slots[slot])

    try:
        while queue or any(w.run for w in workers.values()):
            for slot in range(jobs):  # hand the next runs to idle workers, starting any that are missing
                if queue and (slot not in workers or workers[slot].run is None):
                    started(_hand_out(workers, slot, queue.popleft(), spawn))
            busy = {h: s for s, w in workers.items() if w.run for h in (w.conn, w.proc.sentinel)}
            for slot in {busy[r] for r in wait(list(busy))}:
                yield from _collect(workers, slot, queue, retries)
    finally:
        _stop(workers.values())


def _hand_out(workers: dict[int, _Worker], slot: int, run: tuple[RunSpec, int],
              spawn: Callable[[int], _Worker]) -> RunSpec:
    """Give ``run`` to the worker of ``slot`` (a fresh one if it has none, or if its idle worker is gone)."""
    w = workers.get(slot) or workers.setdefault(slot, spawn(slot))
    try:
        w.conn.send(run[0])
    except OSError:  # it died while idle: a fresh one
        _stop([w])
        w = workers[slot] = spawn(slot)
        w.conn.send(run[0])
    w.run = run
    w.proc.name = f"diag-{run[0].name}"  # which run it trains, for a look from outside
    return run[0]


def _collect(workers: dict[int, _Worker], slot: int, queue: deque, retries: int) -> Iterator[Outcome]:
    """The end of the run of worker ``slot``: its outcome, or it queued again (first: it resumes from its
    checkpoint); a worker that died or crashed is removed (a fresh one takes its slot)."""
    w = workers[slot]
    (spec, attempt), w.run = w.run, None
    message = _receive(w.conn)
    if message is None or message[0] == "crash":
        workers.pop(slot)
        w.conn.close()
        w.proc.join()
    kind, payload = message or ("died", f"its process died (exit code {w.proc.exitcode})")
    if kind == "":
        yield Outcome(spec, payload, attempts=attempt)
    elif kind != "input" and attempt <= retries:
        queue.appendleft((spec, attempt + 1))
    else:
        yield Outcome(spec, None, payload, kind, attempt)


def _receive(conn: Any) -> tuple[str, Any] | None:
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _stop(workers: Any) -> None:
    """End the workers: idle ones are told to stop, ones still training (Ctrl-C, an error) are terminated."""
    workers = list(workers)
    for w in workers:
        try:
            if w.run is None:
                w.conn.send(None)
            else:
                w.proc.terminate()
        except (OSError, ValueError):
            w.proc.terminate()
    for w in workers:
        w.proc.join(timeout=30)
        if w.proc.is_alive():
            w.proc.terminate()
            w.proc.join()
        w.conn.close()


def run_here(specs: Sequence[RunSpec], started: Callable[[RunSpec], None] = lambda spec: None) -> Iterator[Outcome]:
    """``--jobs 1``: the runs one after another in this process (no process start-up per run).

    A run here sets the same thread count and seeds as in a worker process and leaves no state behind
    that the next run reads (tests/test_compare.py checks the metrics against ``--jobs 2``). A crash
    here is not retried: it is an error in this very process, and the next ``diag compare`` resumes it."""
    for spec in specs:
        started(spec)
        try:
            yield Outcome(spec, run_one(spec))
        except DiagError as exc:
            yield Outcome(spec, None, str(exc), "input")
