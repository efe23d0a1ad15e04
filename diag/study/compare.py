"""``diag compare``: the three starts side by side, over seeds, label budgets, freeze modes and warmup.

One run per (label budget, start, freeze, warmup, seed) is trained with :func:`diag.learning.train.train` into
``OUT/<init>-<budget>-<freeze>-w<warmup>-s<seed>/`` (e.g. ``imagenet-5pc-stages1-w0.1-s0``); a
finished run is reused, an interrupted one resumed, one that differs in any setting refused (a run
in an older diag's ``<init>-<budget>-s<seed>`` folder with the same settings is reused too). The grid
is data (:mod:`diag.study.grid`); it runs in this process (``--jobs 1``), in ``--jobs N`` child
processes side by side (:mod:`diag.study.pool`; default: as many as the cores or GPUs allow), or on a
Dask cluster (``--cluster ADDRESS``, :mod:`diag.study.cluster`) -- the same runs and numbers either
way: every run trains with ``compare.threads`` torch threads, whatever ``--jobs`` is. One display
covers the grid (runs done / running / left, ETA). ``OUT/compare.json`` records the commands, any
start that had to be skipped, where each run ran, and every run that failed and why; ``diag report
OUT`` (which the CLI runs afterwards) reads it. A failed run ends the command with an error after the
report of the others; the same command again retries it.

The same architecture carries every start: ``train.model`` is the model for scratch, ImageNet and
SSL alike, and an SSL weights folder pretrained on another model is refused before anything trains.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from contextlib import closing
from typing import Any, Callable, Generator, Sequence

from rich.console import Console

from diag.config import CompareConfig, TrackConfig, load_section
from diag.errors import DiagError
from diag.study.grid import Outcome, RunSpec, default_jobs, expand, finished
from diag.study.names import COMPARE_RECORD, INIT_ORDER, pretrained_from, run_dir, ssl_start  # noqa: F401 -- run_dir: re-exported
from diag.storage import atomic_write_json, check_writable, claim_output, locked, read_json, write_marker

console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
# Settings compare chooses per run itself (its axes); --set may not touch them.
OWNED = ("train.init", "train.seed", "train.labels_per_class", "train.label_fraction", "train.weights",
         "train.freeze", "train.warmup")
#: the report's files, logged as artifacts of the tracked compare run
REPORT_FILES = ("report.html", "report.md", "answer.txt", "summary.csv", "runs.csv", "comparison.png")


def compare(
    data: str | Path,
    out: str | Path,
    inits: Sequence[str] = ("scratch", "ssl", "imagenet"),
    seeds: Sequence[int] = (0, 1, 2),
    budgets: Sequence[int] = (0,),
    freezes: Sequence[str] | None = None,
    warmups: Sequence[float] | None = None,
    ssl_weights: str | None = None,
    imagenet_weights: str | None = None,
    config: str | Path | None = None,
    imagenet_ssl_weights: str | None = None,
    overrides: Sequence[str] = (),
    command: str | None = None,
    quiet: bool = False,
    jobs: int | None = None,
    cluster: str | None = None,
    track: TrackConfig | str | None = None,
    report: Callable[[Path], Any] | None = None,
) -> dict[str, Any]:
    """Train every (budget, init, freeze, warmup, seed) combination that is not finished yet.

    ``budgets`` are labels per class (0 = every training window labelled). ``freezes`` (``none``,
    ``stages:K``, ``backbone``, ...) and ``warmups`` (fractions of the steps, or steps) default to
    the config's single value. ``ssl_weights`` is a ``diag pretrain`` folder, needed for ``ssl``;
    ``imagenet_ssl_weights`` one pretrained from ImageNet (``pretrain.init = "imagenet"``), for ``imagenet+ssl``;
    ``imagenet_weights`` a local ImageNet checkpoint (else ``$DIAG_IMAGENET_WEIGHTS``, the weights a
    package ships for the model, or timm's hub). An ImageNet start whose weights cannot be had is
    skipped with its reason (recorded in ``compare.json``) and the other starts still run.

    ``overrides`` are ``train.*`` settings, and ``compare.*`` / ``track.*`` ones (as are the
    ``[compare]`` / ``[track]`` tables of ``config``); ``jobs`` and ``cluster`` given here win over
    both; ``track`` is a whole :class:`TrackConfig`, or the ``--track`` flag (``tensorboard,mlflow``)
    turning trackers on over the config's. ``report(out)``, when given, is called once the runs are done (also when some
    failed), and its files are logged to the tracked compare run.

    Returns ``{"out", "runs": [run folders], "skipped": {init: reason}}``; a run that failed is a
    :class:`DiagError` at the end (after ``report``), naming it; ``compare.json`` lists every reason.
    """
    from diag.learning import tracking
    from diag.signal.dataset import PreparedDataset

    out = Path(out)
    fingerprint = PreparedDataset(data).manifest.get("fingerprint")
    train_over, cc, track = _settings(config, overrides, jobs, cluster, track)
    base, axes = _checked_axes(config, train_over, inits, seeds, budgets, freezes, warmups,
                               {"ssl": ssl_weights, "imagenet+ssl": imagenet_ssl_weights})
    tracking.check_available(track)

    claim_output(out, "compare", inputs=[data, ssl_weights, imagenet_weights, imagenet_ssl_weights])
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "compare")
    record_command(out, data, fingerprint, base.model, command)
    weights = {"ssl": ssl_weights or "", "imagenet": imagenet_weights or "", "imagenet+ssl": imagenet_ssl_weights or ""}
    specs = expand(out, data, axes, weights, config, train_over, fingerprint, cc.threads,
                   dataclasses.asdict(track) if track.enabled else None)
    todo = [s for s in specs if not finished(s)]
    skipped = _skip_imagenet(base.model, imagenet_weights, todo)
    todo = [s for s in todo if s.init not in skipped or (Path(s.path) / "last.pt").is_file()]  # a resume needs none
    tracker = tracking.open_run(track, out, "compare", _grid_params(axes, base, cc), warn=console.print)
    reused = sum(finished(s) for s in specs)
    failed = _run_grid(out, todo, cc, base.device, not quiet, reused)
    update_record(out, lambda record: record.update(skipped=skipped))
    if report is not None and any(finished(s) for s in specs):  # a report of no run would hide why they failed
        report(out)
        tracker.artifacts(out / name for name in REPORT_FILES)
    tracker.close("FAILED" if failed else "FINISHED")
    if failed:
        name, why = next(iter(failed.items()))
        raise DiagError(f"{len(failed)} of {len(specs)} runs failed ({name}: {why}); every reason is in "
                        f"{out / COMPARE_RECORD}; the same command again retries them")
    return {"out": out, "runs": [Path(s.path) for s in specs if finished(s)], "skipped": skipped}


def _settings(config: str | Path | None, overrides: Sequence[str], jobs: int | None, cluster: str | None,
              track: TrackConfig | str | None) -> tuple[list[str], CompareConfig, TrackConfig]:
    """``--set`` split by table: ``train.*`` (checked against what compare sets itself), ``compare.*``
    and ``track.*``; the ``[compare]`` and ``[track]`` tables under them; explicit arguments win."""
    parts: dict[str, list[str]] = {"train": [], "compare": [], "track": []}
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key in OWNED:
            raise DiagError(f"--set {text}: compare sets {key} itself; use --inits/--seeds/--labels-per-class/"
                            "--freeze/--warmup")
        parts.get(key.split(".", 1)[0], parts["train"]).append(text)  # any other table: the train loader says so
    cc = load_section(CompareConfig, "compare", config, parts["compare"], example="compare.threads=2")
    if jobs is not None:
        cc = dataclasses.replace(cc, jobs=jobs)
    if cluster is not None:
        cc = dataclasses.replace(cc, cluster=cluster)
    cc = cc.validate()
    tc = track if isinstance(track, TrackConfig) else load_section(TrackConfig, "track", config, parts["track"])
    tc = TrackConfig.from_flag(track, tc) if isinstance(track, str) else tc
    if tc.mlflow:  # one store for the compare and every run, wherever the runs are
        from diag.learning.tracking import mlflow_uri

        tc = dataclasses.replace(tc, mlflow_uri=mlflow_uri(tc))
    return parts["train"], cc, tc


def _checked_axes(config: str | Path | None, overrides: Sequence[str], inits: Sequence[str], seeds: Sequence[int],
                  budgets: Sequence[int], freezes: Sequence[str] | None, warmups: Sequence[float] | None,
                  ssl_folders: dict[str, str | None]) -> tuple[Any, dict[str, list[Any]]]:
    """The base training settings and every axis, checked before anything trains."""
    from diag.learning.models import create_backbone, parse_freeze
    from diag.learning.train import load_train_config

    for init in inits:
        if init not in INIT_ORDER:
            raise DiagError(f"--inits: unknown '{init}'; choose from {', '.join(INIT_ORDER)}")
    if not inits or not seeds or not budgets:
        raise DiagError("--inits, --seeds and --labels-per-class each need at least one value")
    if "ssl" in inits and not ssl_folders["ssl"]:
        raise DiagError("--inits ssl needs --ssl-weights DIR (a `diag pretrain` output folder)")
    if "imagenet+ssl" in inits and not ssl_folders["imagenet+ssl"]:
        raise DiagError("--inits imagenet+ssl needs --imagenet-ssl-weights DIR (a `diag pretrain --init imagenet` "
                        "output folder)")
    base = load_train_config(config, overrides)
    freezes = list(freezes) if freezes else [base.freeze]
    warmups = [float(w) for w in warmups] if warmups else [float(base.warmup)]
    for f in freezes:  # checked on the model itself (stages:K needs K stages), before anything trains
        parse_freeze(f)
        create_backbone(base.model, "scratch", in_chans=1, num_classes=2, freeze=f)
    for w in warmups:
        if w < 0 or (w >= 1 and not float(w).is_integer()):
            raise DiagError(f"--warmup: a fraction in [0, 1) or a whole number of steps, got {w:g}")
    if "ssl" in inits:
        _check_ssl_model(ssl_folders["ssl"], base.model)
    if "imagenet+ssl" in inits:
        _check_ssl_model(ssl_folders["imagenet+ssl"], base.model, "imagenet+ssl", "--imagenet-ssl-weights")
    axes = {"budgets": list(budgets), "inits": list(inits), "freezes": freezes, "warmups": warmups,
            "seeds": list(seeds)}
    return base, axes


def _skip_imagenet(model: str, weights: str | None, todo: list[RunSpec]) -> dict[str, str]:
    """``{"imagenet": reason}`` when runs still to do start from ImageNet weights that cannot be had and
    none were given (offline, nothing packaged or cached); a given file that fails is the run's error."""
    if weights or not any(s.init == "imagenet" for s in todo):
        return {}
    from diag.learning.models import create_backbone

    try:  # once, here: a hub download lands in the cache before runs side by side would each try it
        create_backbone(model, "imagenet", in_chans=1, num_classes=2)
    except DiagError as exc:
        console.print(f"[yellow]skipping imagenet:[/] {exc}")
        return {"imagenet": str(exc)}
    return {}


def _grid_params(axes: dict[str, list[Any]], base: Any, cc: CompareConfig) -> dict[str, Any]:
    """The tracked compare run's parameters: the axes, the runs' common settings, how the grid ran."""
    params: dict[str, Any] = {f"grid.{k}": ",".join(map(str, v)) for k, v in axes.items()}
    params.update({f"train.{k}": v for k, v in dataclasses.asdict(base).items() if f"train.{k}" not in OWNED})
    params.update({f"compare.{k}": v for k, v in dataclasses.asdict(cc).items()})
    return params


def _run_grid(out: Path, todo: list[RunSpec], cc: CompareConfig, device: str, show: bool,
              reused: int) -> dict[str, str]:
    """Carry out ``todo`` here, side by side or on the cluster, recording each outcome as it comes;
    returns the runs that failed (``{run: reason}``)."""
    failed: dict[str, str] = {}
    with GridProgress(show, len(todo), reused) as progress, closing(_outcomes(out, todo, cc, device, progress)) as each:
        for o in each:  # closed on any error (Ctrl-C too): child processes ended, cluster tasks released
            _record_outcome(out, o)
            if o.ok:
                progress.ended(_finished_line(o))
            else:
                failed[o.spec.name] = o.error
                progress.ended(f"[red]failed:[/] {o.spec.name}: {o.error}"
                               + (f" (after {o.attempts} attempts)" if o.attempts > 1 else ""))
    return failed


def _outcomes(out: Path, todo: list[RunSpec], cc: CompareConfig, device: str,
              progress: "GridProgress") -> Generator[Outcome, None, None]:
    """The executor for this grid: a Dask cluster, processes side by side, or this process."""
    from diag.study.pool import run_here, run_local

    if cc.cluster and todo:
        from diag.study.cluster import run_on_cluster

        needs = cc.resource_needs() or ({"GPU": 1.0} if device.startswith("cuda") else {})
        progress.say(f"{len(todo)} runs to the Dask cluster at {cc.cluster}, {cc.threads} thread(s) each")
        return run_on_cluster(cc.cluster, todo, needs, cc.retries, progress.started,
                              paths=[todo[0].data, str(out.resolve())])
    auto, gpus = default_jobs(device, cc.threads)
    jobs = min(cc.jobs or auto, len(todo))
    if jobs <= 1:
        return run_here(todo, progress.started)
    progress.say(f"{len(todo)} runs, {jobs} side by side, {cc.threads} thread(s) each"
                 + (f", GPUs {','.join(map(str, gpus))}" if gpus else ""))
    return run_local(todo, jobs, cc.retries, gpus, progress.started)


def _finished_line(o: Outcome) -> str:
    s = o.summary or {}
    val, test = s.get("val_macro_f1"), s.get("test_macro_f1")
    return (f"{o.spec.name}{' (resumed)' if s.get('resumed') else ''}: selected epoch {s.get('selected_epoch')}, "
            f"val macro-F1 {val if val is not None else float('nan'):.3f}, test macro-F1 "
            f"{test if test is not None else float('nan'):.3f} ({s.get('seconds') or 0:.0f} s)")


def _record_outcome(out: Path, o: Outcome) -> None:
    """``compare.json``: ``runs[name]`` says where and how each run ran; ``failed`` lists the runs
    whose last attempt failed, and why (a run that finishes later leaves it)."""
    def change(record: dict[str, Any]) -> None:
        runs, failed = record.setdefault("runs", {}), record.setdefault("failed", {})
        if o.ok:
            keep = ("selected_epoch", "seconds", "resumed", "threads", "host", "pid")
            runs[o.spec.name] = {"status": "finished", "attempts": o.attempts, **{k: o.summary.get(k) for k in keep}}
            failed.pop(o.spec.name, None)
        else:
            runs[o.spec.name] = {"status": "failed", "kind": o.kind, "attempts": o.attempts, "error": o.error}
            failed[o.spec.name] = o.error
    update_record(out, change)


def _check_ssl_model(ssl_weights: str | None, model: str, start: str = "ssl", option: str = "--ssl-weights") -> None:
    """An SSL start must be the compared architecture (refuse weights pretrained on another model) and the
    start its pretraining began from (``ssl``: scratch; ``imagenet+ssl``: ImageNet), as pretrain.json says."""
    from diag.learning.models import SSL_META, SSL_WEIGHTS

    p = Path(ssl_weights or "")
    folder = p if p.is_dir() else p.parent
    if not (folder / SSL_WEIGHTS).is_file() and not p.is_file():
        raise DiagError(f"{option} {p}: no {SSL_WEIGHTS} there; run `diag pretrain --out DIR` and pass that DIR")
    meta = folder / SSL_META
    if meta.is_file():
        record = read_json(meta, "the pretraining record", "pass the output folder of a finished `diag pretrain`")
        pretrained = record.get("model")
        if pretrained and pretrained != model:
            raise DiagError(f"{option} {p}: pretrained as {pretrained}, but this comparison trains {model}; every "
                            f"start must be the same architecture: pretrain {model} or pass --set train.model={pretrained}")
        if ssl_start(record) != start:
            other = "--imagenet-ssl-weights (start imagenet+ssl)" if start == "ssl" else "--ssl-weights (start ssl)"
            raise DiagError(f"{option} {p}: its pretraining began from {pretrained_from(record)} (pretrain.json), so it "
                            f"is the other start; pass it as {other}")
    elif start == "imagenet+ssl":
        raise DiagError(f"{option} {p}: no {SSL_META} beside the weights to show the pretraining began from ImageNet; "
                        "pass the whole `diag pretrain` output folder")


def update_record(out: str | Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to ``OUT/compare.json`` (the dataset, the model, every command that filled the
    folder, the starts skipped last) under a lock, re-reading it first: two comparisons filling one
    folder side by side each keep their command."""
    path = Path(out) / COMPARE_RECORD
    with locked(path):
        record: dict[str, Any] = {}
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                record = {}
        change(record)
        atomic_write_json(path, record)
    return record


def record_command(out: str | Path, data: str | Path, fingerprint: str | None, model: str,
                   command: str | None) -> dict[str, Any]:
    """Note in ``compare.json`` the dataset, the model and the command filling the folder now."""
    def change(record: dict[str, Any]) -> None:
        record.update({"data": str(data), "dataset_fingerprint": fingerprint, "model": model})
        cmds = record.setdefault("commands", [])
        if command and command not in cmds:
            cmds.append(command)
    return update_record(out, change)


class GridProgress:
    """One display for the whole grid: runs done / running / left, elapsed time and ETA, with a line per
    finished run above it. The ETA is the runs left at the pace of this call so far (runs done per
    second of wall time, side by side included; reused runs took no time now and do not count). Nothing
    is drawn when ``show`` is False; off a terminal only the lines are printed."""

    def __init__(self, show: bool, todo: int, reused: int):
        self.show, self.todo, self.reused = show, todo, reused
        self.done = self.running = 0
        self.progress: Any = None
        self.task: Any = None
        self.t0 = time.monotonic()

    def eta(self) -> str:
        """``ETA 0:12:30`` once a run finished in this call, else ``ETA -``."""
        if not self.done or self.done >= self.todo:
            return "ETA -" if not self.done else ""
        left = (self.todo - self.done) * (time.monotonic() - self.t0) / self.done
        return f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"

    def __enter__(self) -> "GridProgress":
        if not self.show:
            return self
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("compare"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total} done, {task.fields[running]} running, "
                                            "{task.fields[left]} left"), TimeElapsedColumn(),
                                 TextColumn("{task.fields[eta]}"), console=console)
        self.progress.start()
        self.task = self.progress.add_task("compare", total=self.todo, running=0, left=self.todo, eta=self.eta())
        if self.reused:
            self.say(f"{self.reused} run(s) finished earlier: reused")
        return self

    def _refresh(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, running=self.running,
                                 left=self.todo - self.done - self.running, eta=self.eta())

    def started(self, spec: RunSpec) -> None:
        self.running += 1
        self._refresh()

    def ended(self, line: str) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.say(line)
        self._refresh()

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
