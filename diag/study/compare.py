"""``diag compare``: the three starts side by side, over seeds, label budgets, freeze modes and warmup.

One run per (label budget, start, freeze, warmup, seed) is trained with :func:`diag.learning.train.train` into
``OUT/<init>-<budget>-<freeze>-w<warmup>-s<seed>/`` (e.g. ``imagenet-5pc-stages1-w0.1-s0``); a
finished run is reused, an interrupted one resumed, one that differs in any setting refused (a run
in an older diag's ``<init>-<budget>-s<seed>`` folder with the same settings is reused too). One
overall progress bar (with ETA) covers the matrix. ``OUT/compare.json`` records the commands and
any start that had to be skipped; ``diag report OUT`` (which the CLI runs afterwards) reads it.

The same architecture carries every start: ``train.model`` is the model for scratch, ImageNet and
SSL alike, and an SSL weights folder pretrained on another model is refused before anything trains.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

from diag.errors import DiagError
from diag.study.names import COMPARE_RECORD, INIT_ORDER, budget_name, run_dir
from diag.storage import (atomic_write_json, check_writable, claim_output, file_sha256, locked, read_json,
                          write_marker)

console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
# Settings compare chooses per run itself (its axes); --set may not touch them.
OWNED = ("train.init", "train.seed", "train.labels_per_class", "train.label_fraction", "train.weights",
         "train.freeze", "train.warmup")


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
    overrides: Sequence[str] = (),
    command: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train every (budget, init, freeze, warmup, seed) combination that is not finished yet.

    ``budgets`` are labels per class (0 = every training window labelled). ``freezes`` (``none``,
    ``stages:K``, ``backbone``, ...) and ``warmups`` (fractions of the steps, or steps) default to
    the config's single value. ``ssl_weights`` is a ``diag pretrain`` folder, needed for ``ssl``;
    ``imagenet_weights`` a local ImageNet checkpoint (else ``$DIAG_IMAGENET_WEIGHTS``, the weights a
    package ships for the model, or timm's hub). An ImageNet start whose weights cannot be had is
    skipped with its reason (recorded in ``compare.json``) and the other starts still run.

    Returns ``{"out", "runs": [run folders], "skipped": {init: reason}}``; run ``diag report OUT``
    (:func:`diag.study.report.write_report`) for the tables, statistics and report.
    """
    from diag.signal.dataset import PreparedDataset
    from diag.learning.models import create_backbone, parse_freeze
    from diag.learning.train import load_train_config, train

    out = Path(out)
    fingerprint = PreparedDataset(data).manifest.get("fingerprint")
    for init in inits:
        if init not in INIT_ORDER:
            raise DiagError(f"--inits: unknown '{init}'; choose from {', '.join(INIT_ORDER)}")
    if not inits or not seeds or not budgets:
        raise DiagError("--inits, --seeds and --labels-per-class each need at least one value")
    if "ssl" in inits and not ssl_weights:
        raise DiagError("--inits ssl needs --ssl-weights DIR (a `diag pretrain` output folder)")
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key in OWNED:
            raise DiagError(f"--set {text}: compare sets {key} itself; use --inits/--seeds/--labels-per-class/"
                            "--freeze/--warmup")
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
        _check_ssl_model(ssl_weights, base.model)

    claim_output(out, "compare", inputs=[data, ssl_weights, imagenet_weights])
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "compare")
    record_command(out, data, fingerprint, base.model, command)
    skipped: dict[str, str] = {}
    # seed by seed, every start within a seed: a matrix cut short leaves whole paired seeds, not one start's
    jobs = [(b, i, f, w, s) for b in budgets for f in freezes for w in warmups for s in seeds for i in inits]
    plans = []
    for budget, init, freeze, warmup, seed in jobs:
        rd = run_dir(out, init, budget, seed, freeze, warmup)
        weights = {"ssl": ssl_weights or "", "imagenet": imagenet_weights or ""}.get(init, "")
        cfg = load_train_config(config, list(overrides) + [
            f"train.init={json.dumps(init)}", f"train.seed={seed}", f"train.labels_per_class={budget}",
            f"train.weights={json.dumps(weights)}", f"train.freeze={json.dumps(freeze)}", f"train.warmup={warmup}"])
        if not rd.exists():
            rd = _older_layout(out, init, budget, seed, cfg) or rd
        _check_same_run(rd, cfg, fingerprint)  # before anything trains: a misfit is found at once
        plans.append((rd, init, weights, cfg))
    todo = [p for p in plans if not (p[0] / "test_metrics.json").is_file()]
    with _overall_progress(not quiet, len(plans), len(plans) - len(todo)) as (advance, say):
        if len(todo) < len(plans):
            say(f"{len(plans) - len(todo)} of {len(plans)} runs finished earlier: reused")
        for rd, init, weights, cfg in todo:
            if init in skipped:
                advance()
                continue
            resume = (rd / "config.json").is_file() and (rd / "last.pt").is_file()
            # A run folder of compare's own that died before finishing one epoch holds nothing to keep.
            restart = rd.exists() and not resume
            t0 = time.perf_counter()
            try:
                res = train(data, rd, None if resume else cfg, resume=resume, force=restart, quiet=True)
            except DiagError as exc:
                if init == "imagenet" and not weights and not (rd / "config.json").exists():
                    skipped[init] = str(exc)
                    say(f"[yellow]skipping imagenet:[/] {exc}")
                    advance()
                    continue
                raise
            t = res.get("test") or {}
            say(f"{rd.name}{' (resumed)' if resume else ''}: selected epoch {res['selected_epoch']}, "
                f"val macro-F1 {res['val']['val_macro_f1']:.3f}, test macro-F1 {t.get('macro_f1', float('nan')):.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
            advance()
    update_record(out, lambda record: record.update(skipped=skipped))
    return {"out": out, "runs": [p[0] for p in plans if (p[0] / "test_metrics.json").is_file()], "skipped": skipped}


def _check_ssl_model(ssl_weights: str | None, model: str) -> None:
    """The SSL start must be the compared architecture: refuse weights pretrained on another model."""
    from diag.learning.models import SSL_META, SSL_WEIGHTS

    p = Path(ssl_weights or "")
    folder = p if p.is_dir() else p.parent
    if not (folder / SSL_WEIGHTS).is_file() and not p.is_file():
        raise DiagError(f"--ssl-weights {p}: no {SSL_WEIGHTS} there; run `diag pretrain --out DIR` and pass that DIR")
    meta = folder / SSL_META
    if meta.is_file():
        pretrained = json.loads(meta.read_text(encoding="utf-8")).get("model")
        if pretrained and pretrained != model:
            raise DiagError(f"--ssl-weights {p}: pretrained as {pretrained}, but this comparison trains {model}; every "
                            f"start must be the same architecture: pretrain {model} or pass --set train.model={pretrained}")


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


class _overall_progress:
    """One rich progress bar over the whole matrix (runs done / all runs, elapsed, ETA); lines printed
    through it appear above the bar. Nothing is drawn when ``show`` is False."""

    def __init__(self, show: bool, total: int, completed: int):
        self.show, self.total, self.completed = show, total, completed
        self.progress = None

    def __enter__(self):
        if not self.show:
            return (lambda: None), (lambda text: None)
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("compare"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.progress.start()
        # Reused runs are not counted towards the speed (they took no time now): start after them.
        task = self.progress.add_task("compare", total=self.total - self.completed)
        return (lambda: self.progress.advance(task)), (lambda text: self.progress.console.print(text))

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _older_layout(out: Path, init: str, budget: int, seed: int, cfg: Any) -> Path | None:
    """A run folder of an older diag (``<init>-<budget>-s<seed>``, no freeze/warmup in the name) that
    holds this very run (same settings): reused or resumed in place instead of trained again."""
    from diag.config import changed_settings

    old = out / f"{init}-{budget_name(budget)}-s{seed}"
    if not (old / "config.json").is_file():
        return None
    saved = read_json(old / "config.json", "the run's saved settings", "delete that run folder to run it again")
    ignore = RUNTIME_ONLY if (old / "test_metrics.json").is_file() else ()
    return None if changed_settings(cfg, saved.get("train", {}), ignore) else old


# Settings that change where or how fast a run goes, not what it computes.
RUNTIME_ONLY = ("device", "num_workers", "in_memory_gb")


def _check_same_run(rd: Path, cfg: Any, fingerprint: str | None) -> None:
    """An earlier run in ``rd`` is reused or resumed only if it had these settings and this dataset."""
    from diag.config import changed_settings

    saved_path = rd / "config.json"
    if not saved_path.is_file() or not ((rd / "last.pt").is_file() or (rd / "test_metrics.json").is_file()):
        return  # nothing there, or a folder that died before its first checkpoint (restarted)
    saved = read_json(saved_path, "the run's saved settings", "delete that run folder to run it again")
    # A finished run is reused whatever device made it; an interrupted one resumes with its saved settings.
    ignore = RUNTIME_ONLY if (rd / "test_metrics.json").is_file() else ()
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
