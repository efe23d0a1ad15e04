"""Runs side by side on this machine: each run in a fresh child process, ``jobs`` at a time.

A fresh process per run (``spawn``, not ``fork``: no torch state or threads copied from the parent)
means no run inherits anything from the one before it. Each child gets one GPU of ``gpus`` (by
``CUDA_VISIBLE_DEVICES``, so ``device=auto`` / ``cuda`` inside it is that GPU) when there are any.
A child that raises a :class:`~diag.errors.DiagError` (bad input: the same again fails the same way)
is reported at once; one that crashes or is killed (out of memory, a signal) is started again up to
``retries`` times -- it resumes from its last checkpoint -- and then reported. Nothing is lost
silently: every spec given comes back as exactly one :class:`~diag.study.grid.Outcome`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator, Sequence

from diag.errors import DiagError, describe
from diag.study.grid import Outcome, RunSpec, run_one

__all__ = ["run_local", "run_here"]


def _child(spec: RunSpec, conn: Any, gpu: int | None) -> None:
    """The child process: train one run, send back ``(kind, summary or message)``."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        conn.send(("", run_one(spec)))
    except DiagError as exc:
        conn.send(("input", str(exc)))
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent, which decides on a retry
        conn.send(("crash", describe(exc, 300)))
    finally:
        conn.close()


def run_local(specs: Sequence[RunSpec], jobs: int, retries: int = 1, gpus: Sequence[int] = (),
              started: Callable[[RunSpec], None] = lambda spec: None) -> Iterator[Outcome]:
    """Run ``specs`` in child processes, ``jobs`` at a time, in order; yield each :class:`Outcome` as it ends.

    ``started(spec)`` is called when a run's process starts (for the progress display). Stopping the
    iteration (Ctrl-C, or the caller's error) terminates the children; their runs resume next time."""
    ctx = multiprocessing.get_context("spawn")
    queue: deque[tuple[RunSpec, int]] = deque((s, 1) for s in specs)
    running: dict[Any, tuple[Any, RunSpec, Any, int, int | None]] = {}
    free = list(gpus) * max(1, -(-jobs // max(1, len(gpus)))) if gpus else []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec, attempt = queue.popleft()
                gpu = free.pop(0) if free else None
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(spec, child, gpu), name=f"diag-{spec.name}")
                proc.start()
                child.close()
                running[proc.sentinel] = (proc, spec, parent, attempt, gpu)
                started(spec)
            for sentinel in wait(list(running)):
                proc, spec, conn, attempt, gpu = running.pop(sentinel)
                message = _receive(conn)
                proc.join()
                if gpu is not None:
                    free.append(gpu)
                kind, payload = message or ("died", f"its process died (exit code {proc.exitcode})")
                if kind == "":
                    yield Outcome(spec, payload, attempts=attempt)
                elif kind != "input" and attempt <= retries:
                    queue.appendleft((spec, attempt + 1))  # again, first: it resumes from its checkpoint
                else:
                    yield Outcome(spec, None, payload, kind, attempt)
    finally:
        for proc, *_ in running.values():
            proc.terminate()
        for proc, *_ in running.values():
            proc.join()


def _receive(conn: Any) -> tuple[str, Any] | None:
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None
    finally:
        conn.close()


def run_here(specs: Sequence[RunSpec], started: Callable[[RunSpec], None] = lambda spec: None) -> Iterator[Outcome]:
    """``--jobs 1``: the runs one after another in this process (no process start-up per run).

    A run here sets the same thread count and seeds as in a child process and leaves no state behind
    that the next run reads (tests/test_compare.py checks the metrics against ``--jobs 2``). A crash
    here is not retried: it is an error in this very process, and the next ``diag compare`` resumes it."""
    for spec in specs:
        started(spec)
        try:
            yield Outcome(spec, run_one(spec))
        except DiagError as exc:
            yield Outcome(spec, None, str(exc), "input")
