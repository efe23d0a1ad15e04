"""The grid of a study as data, and one run of it.

:func:`expand` turns the axes (budgets x starts x freeze modes x warmups x seeds) into one
:class:`RunSpec` per run: its folder (:func:`diag.study.names.run_dir`), its full training settings,
the torch thread count it trains with. A spec is plain data (picklable, JSON-able), so the same spec
runs in this process, in a child process (:mod:`diag.study.pool`) or as a task on a Dask worker
(:mod:`diag.study.cluster`), always through :func:`run_one`: a finished run is reused, an
interrupted one resumed from its ``last.pt``, one that died before its first checkpoint started
over. Whichever ran it, the outcome is an :class:`Outcome`.

Why the thread count is part of the spec: on a CPU, torch splits reductions (convolution weight
gradients, sums) over its threads, so the same run with 1 and with 2 threads differs in the last bits
of its gradients, and after some epochs in its selected epoch and metrics. A run's threads are
therefore fixed by ``compare.threads`` (default 1), never derived from ``--jobs``: ``--jobs 1`` and
``--jobs 2`` then train bit-identical runs (checked in tests/test_compare.py).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from diag.errors import DiagError
from diag.storage import file_sha256, read_json
from diag.study.names import budget_name, run_dir, train_init
from diag.learning.rundir import RunDir

__all__ = ["RunSpec", "Outcome", "expand", "run_one", "finished", "cpu_count", "default_jobs", "RUNTIME_ONLY"]

# Settings that change where or how fast a run goes, not what it computes.
RUNTIME_ONLY = ("device", "num_workers", "in_memory_gb")


@dataclass(frozen=True)
class RunSpec:
    """One point of the grid: everything a worker needs to train (or reuse, or resume) it."""

    name: str  #: the run folder's name, e.g. ``imagenet-5pc-stages1-w0.1-s0``
    path: str  #: the run folder (absolute: a worker elsewhere writes the same folder on a shared disk)
    data: str  #: the prepared dataset (absolute)
    init: str
    budget: int
    seed: int
    weights: str  #: the starting weights given for this start ("" = found by the start itself)
    train: dict = field(hash=False)  #: the full ``[train]`` settings (``asdict(TrainConfig)``)
    threads: int = 1  #: torch CPU threads while it trains
    track: dict | None = field(default=None, hash=False)  #: ``asdict(TrackConfig)``, or None


@dataclass
class Outcome:
    """What became of one run: ``summary`` when it finished, else ``error`` (and whether to retry)."""

    spec: RunSpec
    summary: dict[str, Any] | None = None
    error: str = ""
    #: "" (finished), "input" (a DiagError: the same again would fail the same way), "crash" (an
    #: exception in the run), "died" (its process or worker was killed)
    kind: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.summary is not None


def finished(spec: RunSpec) -> bool:
    return (Path(spec.path) / RunDir.TEST).is_file()


def expand(out: Path, data: str | Path, axes: dict[str, Sequence[Any]], weights: dict[str, str],
           config: str | Path | None, overrides: Sequence[str], fingerprint: str | None, threads: int = 1,
           track: dict | None = None) -> list[RunSpec]:
    """One spec per (budget, freeze, warmup, seed, start), seed by seed with every start inside a seed
    (a grid cut short leaves whole paired seeds). ``axes``: ``budgets, inits, freezes, warmups, seeds``.
    Every earlier run found in its folder is checked against its settings now, before anything trains."""
    from diag.learning.train import load_train_config

    out, data = Path(out).resolve(), str(Path(data).resolve())
    specs = []
    for b in axes["budgets"]:
        for f in axes["freezes"]:
            for w in axes["warmups"]:
                for s in axes["seeds"]:
                    for i in axes["inits"]:
                        given = weights.get(i, "")
                        cfg = load_train_config(config, list(overrides) + [
                            f"train.init={json.dumps(train_init(i))}", f"train.seed={s}", f"train.labels_per_class={b}",
                            f"train.weights={json.dumps(given)}", f"train.freeze={json.dumps(f)}",
                            f"train.warmup={w}"])
                        rd = run_dir(out, i, b, s, f, w)
                        if not rd.exists():
                            rd = older_layout(out, i, b, s, cfg) or rd
                        check_same_run(rd, cfg, fingerprint)  # a misfit is found at once, not hours later
                        specs.append(RunSpec(rd.name, str(rd), data, i, b, s, given, asdict(cfg), threads, track))
    return specs


def older_layout(out: Path, init: str, budget: int, seed: int, cfg: Any) -> Path | None:
    """A run folder of an older diag (``<init>-<budget>-s<seed>``, no freeze/warmup in the name) that
    holds this very run (same settings): reused or resumed in place instead of trained again."""
    from diag.config import changed_settings

    old = out / f"{init}-{budget_name(budget)}-s{seed}"
    if not (old / "config.json").is_file():
        return None
    saved = read_json(old / "config.json", "the run's saved settings", "delete that run folder to run it again")
    ignore = RUNTIME_ONLY if (old / RunDir.TEST).is_file() else ()
    return None if changed_settings(cfg, saved.get("train", {}), ignore) else old


def check_same_run(rd: Path, cfg: Any, fingerprint: str | None) -> None:
    """An earlier run in ``rd`` is reused or resumed only if it had these settings and this dataset."""
    from diag.config import changed_settings

    saved_path = rd / "config.json"
    if not saved_path.is_file() or not ((rd / "last.pt").is_file() or (rd / RunDir.TEST).is_file()):
        return  # nothing there, or a folder that died before its first checkpoint (restarted)
    saved = read_json(saved_path, "the run's saved settings", "delete that run folder to run it again")
    # A finished run is reused whatever device made it; an interrupted one resumes with its saved settings.
    ignore = RUNTIME_ONLY if (rd / RunDir.TEST).is_file() else ()
    diff = changed_settings(cfg, saved.get("train", {}), ignore)
    if saved.get("dataset_fingerprint") != fingerprint:
        diff.insert(0, "the prepared dataset")
    start = saved.get("start", {})
    if start.get("weights_sha256") and Path(start.get("weights", "")).is_file():
        if file_sha256(start["weights"]) != start["weights_sha256"]:
            diff.append(f"the starting weights in {start['weights']} (changed since)")
    if diff:
        raise DiagError(f"{rd}: an earlier run there used other settings ({', '.join(diff)}); "
                        "use another --out, or delete that folder to run it again")


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train (or resume, or reuse) the run of ``spec`` with ``spec.threads`` threads; its summary.

    Runs wherever it is called: this process, a worker process, a Dask worker. A run already finished
    (a task started again after its worker finished it) is read back, not trained again. The thread
    count bounds torch and also the BLAS and OpenMP pools of numpy, scipy and scikit-learn (the unknown
    detector's covariance): left alone, these take every core in each process, and two runs side by
    side on 2 cores ran 4 BLAS threads. It is restored afterwards (a setting of the whole process)."""
    import torch
    from threadpoolctl import threadpool_limits

    from diag.config import TrackConfig, from_dict
    from diag.learning import train as training

    rd = Path(spec.path)
    where = {"host": socket.gethostname(), "pid": os.getpid(), "threads": spec.threads}
    if finished(spec):
        return {**_read_finished(rd), **where, "reused": True}
    resume = (rd / "config.json").is_file() and (rd / "last.pt").is_file()
    restart = rd.exists() and not resume  # a folder of compare's own that died before its first epoch
    cfg = None if resume else from_dict(training.TrainConfig, spec.train, "train")
    track = from_dict(TrackConfig, spec.track, "track") if spec.track else None
    before, t0 = torch.get_num_threads(), time.perf_counter()
    with threadpool_limits(limits=spec.threads):  # numpy/scipy BLAS, OpenMP: else each run takes every core
        torch.set_num_threads(spec.threads)
        try:
            res = training.train(spec.data, rd, cfg, resume=resume, force=restart, quiet=True, track=track)
        finally:
            torch.set_num_threads(before)
    test = res.get("test") or {}
    return {"selected_epoch": res["selected_epoch"], "val_macro_f1": res["val"]["val_macro_f1"],
            "test_macro_f1": test.get("macro_f1"), "seconds": round(time.perf_counter() - t0, 1),
            "resumed": resume, **where}


def _read_finished(rd: Path) -> dict[str, Any]:
    test = read_json(rd / RunDir.TEST, "the run's test metrics")
    sel = (read_json(rd / "model.json", "the run's record").get("selected") or {}) if (rd / "model.json").is_file() else {}
    return {"selected_epoch": test.get("selected_epoch"), "val_macro_f1": sel.get("val_macro_f1"),
            "test_macro_f1": test.get("macro_f1"), "seconds": 0.0, "resumed": False}


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_jobs(device: str, threads: int) -> tuple[int, list[int]]:
    """``(jobs, gpus)`` for this machine: one run per GPU when the runs train on CUDA (``device``
    ``auto`` or ``cuda`` with GPUs here; ``cuda:N`` pins one), else the CPU cores divided by ``threads``."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return n, list(range(n))
    if device.startswith("cuda:") or device == "mps":
        return 1, []
    return max(1, cpu_count() // threads), []
