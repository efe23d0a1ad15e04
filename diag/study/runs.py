"""Reading a study's run records: one row per finished ``diag train`` run, summaries over seeds, the main
setting, the data the runs were trained on, and the training budget in words.

Everything is read from each run's ``model.json``, ``test_metrics.json`` and ``metrics.jsonl``, never from
folder names; an SSL run's start (``ssl`` or ``imagenet+ssl``) and how its pretraining went come from the
``pretrain.json`` beside its starting weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError
from diag.signal.audit import audit_lines
from diag.study.names import SSL_STARTS, budget_key, budget_label, init_key, pretrained_from
from diag.learning.probe_noise import probe_learned
from diag.learning.rundir import RunDir
from diag.signal.dataset import MANIFEST

SPLIT_TESTS = {
    "time": "later time blocks of the same recordings (generalisation in time within recordings seen in "
            "training; the most optimistic of the leakage-free splits)",
    "recording": "whole recordings never seen in training (unseen recordings of known conditions)",
    "group": "whole groups (machines, bearings) never seen in training",
    "condition": "operating conditions never trained on (transfer to an unseen condition)",
    "fault-size": "fault sizes never trained on (unseen damaged bearings)",
    "random": "randomly drawn windows (LEAKY: neighbouring windows of one recording sit on both sides; optimistic)",
}

#: a study record's copy of the pretrain.json an SSL run started from (scripts/dev/results_tables.py record)
RECORD_PRETRAINING = "start_pretraining.json"


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """One row per finished run (a folder with model.json and test_metrics.json) under ``root``."""
    root = Path(root)
    rows: list[dict[str, Any]] = []
    cache: dict[Path, dict[str, Any] | None] = {}
    for mj in sorted(root.rglob("model.json")):
        rd = mj.parent
        tm = rd / RunDir.TEST
        if not tm.is_file():
            continue
        try:
            model = json.loads(mj.read_text(encoding="utf-8"))
            test = json.loads(tm.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DiagError(f"{rd}: unreadable run record ({exc}); delete that run folder or train it again") from None
        bad = [k for k in ("accuracy", "macro_f1") if isinstance(test.get(k), float) and not math.isfinite(test[k])]
        if bad:
            raise DiagError(f"{tm}: test {bad[0]} is {test[bad[0]]} (not a number), so no spread or comparison over "
                            f"runs can include run {rd.relative_to(root)}; train that run again or delete its folder")
        tr = model.get("train", {})
        history = []
        mf = rd / "metrics.jsonl"
        if mf.is_file():
            history = [json.loads(line) for line in mf.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows.append({
            "run": str(rd.relative_to(root)),
            "init": tr.get("init", "?"),
            "freeze": tr.get("freeze", "none"),
            "warmup": float(tr.get("warmup", 0.0)),
            "model": model.get("model", "?"),
            "labels_per_class": int(tr.get("labels_per_class", 0) or 0),
            "label_fraction": float(tr.get("label_fraction", 0.0) or 0.0),
            "labeled": model.get("labeled", {}).get("n"),
            "seed": int(tr.get("seed", 0)),
            "epochs": int(model.get("schedule", {}).get("epochs") or tr.get("epochs", 0)),
            "min_steps": int(tr.get("min_steps", 0) or 0),
            "epochs_run": len(history),
            "steps": history[-1].get("step") if history else None,
            "selected_epoch": model.get("selected", {}).get("epoch"),
            "val_accuracy": model.get("selected", {}).get("val_accuracy"),
            "val_macro_f1": model.get("selected", {}).get("val_macro_f1"),
            "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "test_n": test.get("n"),
            "confusion": test.get("confusion"),
            "classes": model.get("classes", []),
            "dataset": model.get("dataset", {}).get("fingerprint"),
            "dataset_path": model.get("dataset", {}).get("path"),
            "start": model.get("start", {}),
            "train": tr,
            "versions": model.get("versions", {}),
            "runtime": model.get("runtime", {}),
            "history": history,
            "pretraining": pretraining_of(model.get("start", {}), tr, cache, rd),
        })
        how = rows[-1]["pretraining"]
        if rows[-1]["init"] == "ssl" and how and how.get("init"):  # ImageNet, then SSL: the fourth start
            rows[-1]["init"] = "imagenet+ssl" if how["init"] == "imagenet" else "ssl"
    return rows


def pretraining_of(start: dict[str, Any], train: dict[str, Any], cache: dict[Path, dict[str, Any] | None],
                   run: Path | None = None) -> dict[str, Any] | None:
    """How the pretraining an SSL run started from went (:func:`pretraining_outcome`); None for a start that is
    not SSL. Read from, in this order: the copy of ``pretrain.json`` that ``diag train`` keeps in model.json's
    ``start.pretraining``; a committed record's copy beside the run (:data:`RECORD_PRETRAINING`); the
    ``pretrain.json`` beside the starting weights. ``cache`` holds folders read already."""
    from diag.learning.models import SSL_META

    if train.get("init") not in SSL_STARTS:
        return None
    where = start.get("weights") or train.get("weights") or ""
    folder = Path(where) if Path(where).is_dir() else Path(where).parent
    if isinstance(start.get("pretraining"), dict):
        return pretraining_outcome(start["pretraining"], folder / SSL_META)
    if run is not None and (run / RECORD_PRETRAINING).is_file():
        folder = run
    if folder not in cache:
        meta, path = None, folder / (RECORD_PRETRAINING if folder == run else SSL_META)
        if where and path.is_file():
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, OSError):
                meta = None
        cache[folder] = pretraining_outcome(meta, path)
    return cache[folder]


def pretraining_by_start(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each SSL start in ``rows``: how its pretraining went (the first run's; a start has one pretraining)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("pretraining") and r["init"] not in out:
            out[r["init"]] = r["pretraining"]
    return out


def _probe_value(v: Any, metric: str | None = None) -> float | None:
    """A probe value of pretrain.json's curve: a number, or a dict holding one (the probe's ``metric``, else
    ``value``, ``accuracy``...)."""
    if isinstance(v, dict):
        keys = ([metric] if metric else []) + ["value", "probe", "accuracy", "knn_accuracy", "macro_f1", "knn_macro_f1"]
        v = next((v[k] for k in keys if k in v), None)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def pretraining_outcome(meta: dict[str, Any] | None, path: Path) -> dict[str, Any]:
    """Whether a pretraining learned, in words, from its ``pretrain.json`` (``diag-ssl/2``: the ``probe``
    dict {curve, initial, best, best_epoch, learned, ...}). ``learned`` is True / False as pretraining
    measured it, None where it was not measured (no pretrain.json, or an older one without ``probe``)."""
    out: dict[str, Any] = {"path": str(path), "learned": None, "initial": None, "final": None, "best": None,
                           "best_epoch": None, "init": None}
    if not isinstance(meta, dict):
        return out | {"text": f"pretraining not measured ({path} not found)"}
    out["init"] = pretrained_from(meta)
    probe = meta.get("probe")
    if not isinstance(probe, dict) or not isinstance(probe.get("learned"), bool):
        old = [_probe_value(meta.get(k)) for k in ("knn_start", "knn_last")]
        seen = (f"; its k-NN validation accuracy went {old[0]:.3f} → {old[1]:.3f}, the last epoch kept"
                if None not in old else "")
        return out | {"text": f"pretraining probe not measured (older pretrain.json, no best-by-probe choice{seen})"}
    metric = probe.get("metric") if isinstance(probe.get("metric"), str) else None
    curve = [_probe_value(v, metric) for v in probe.get("curve") or []]
    curve = [v for v in curve if v is not None]
    initial, best = _probe_value(probe.get("initial"), metric), _probe_value(probe.get("best"), metric)
    final = _probe_value(probe.get("last"), metric)
    final = final if final is not None else curve[-1] if curve else best
    learned, margin = _learned_now(probe, initial, best, len(curve))
    out.update(learned=learned, initial=initial, final=final, best=best, best_epoch=probe.get("best_epoch"))
    if initial is None or final is None:
        return out | {"text": "pretraining " + ("learned" if learned else "failed") + " (probe values missing)"}
    what = _method_words(meta)
    if learned:
        at = f" at epoch {out['best_epoch']}" if out["best_epoch"] is not None else ""
        return out | {"text": f"{what} learned (probe {initial:.3f} → {best if best is not None else final:.3f}{at})"}
    kept = "; the initial weights were kept" if probe.get("best_epoch") == 0 else ""
    peak = final  # the rise judged is the best reading's (after initialisation), not the last's
    if best is not None and probe.get("best_epoch") not in (None, 0):
        peak = max(final, best)
        if best > final:
            kept = f", best {best:.3f} at epoch {probe['best_epoch']}{kept}"
    if peak >= initial and margin is not None:  # did not fall, but did not rise beyond the probe's noise either
        kept = f"{kept}, within the noise margin {margin:.3f}"
    return out | {"text": f"{what} failed (probe {initial:.3f} → {final:.3f}{kept})"}


def _learned_now(probe: dict[str, Any], initial: float | None, best: float | None, readings: int) -> tuple[bool, float | None]:
    """The verdict by today's margin (:func:`diag.learning.probe_noise.probe_margin`, which holds against
    the best of the readings) where the record has what it needs (the accuracy curve and the number of
    validation windows); else the verdict the pretraining wrote. Records made under the older one-reading
    margin are thereby read by the same rule as new ones (with the design effect of the validation
    recordings where the record has it)."""
    n_val = probe.get("windows")
    stored = _probe_value(probe.get("margin"))
    if (probe.get("metric") not in (None, "accuracy") or initial is None or best is None or readings < 2
            or not isinstance(n_val, int) or n_val < 1):
        return bool(probe["learned"]), stored
    deff = probe.get("design_effect")  # records before it: windows counted as independent
    return probe_learned(initial, best, n_val, readings - 1, deff if isinstance(deff, (int, float)) else 1.0)


def _method_words(meta: dict[str, Any]) -> str:
    """``SimCLR pretraining``, or with ``method = "auto"``: ``VICReg pretraining (chosen by its probe over SimCLR)``."""
    method = meta.get("method") if isinstance(meta.get("method"), str) else None
    if not method:
        return "pretraining"
    choice = meta.get("method_choice")
    others = [c for c in (choice.get("candidates") or []) if c != choice.get("chosen")] if isinstance(choice, dict) else []
    names = {"simclr": "SimCLR", "vicreg": "VICReg", "moco": "MoCo", "byol": "BYOL", "msm": "MSM"}
    probes = choice.get("probes") if isinstance(choice, dict) and isinstance(choice.get("probes"), dict) else {}
    rise = {m: p["best"] - p["initial"] for m, p in probes.items()
            if isinstance(p, dict) and isinstance(p.get("best"), (int, float)) and isinstance(p.get("initial"), (int, float))}
    tied = [o for o in others if o in rise and choice.get("chosen") in rise and abs(rise[o] - rise[choice["chosen"]]) < 1e-9]
    if tied:
        return f"{method} pretraining (tied with {', '.join(names.get(o, o) for o in tied)} by the probe; the first kept)"
    over = f" (chosen by its probe over {', '.join(names.get(o, o) for o in others)})" if others else ""
    return f"{method} pretraining{over}"


def mean_std(vals: Sequence[Any]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if v is not None], dtype=float)
    if not len(a):
        return math.nan, math.nan
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else 0.0)


def cell_of(r: dict[str, Any]) -> tuple[int, str, float]:
    """The (labels per class, freeze, warmup) cell a run belongs to."""
    return r["labels_per_class"], r["freeze"], r["warmup"]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (ddof=1) over seeds per (init, freeze, warmup, budget)."""
    keys = sorted({(r["init"], r["freeze"], r["warmup"], r["labels_per_class"]) for r in rows},
                  key=lambda k: (budget_key(k[3]), k[1] != "none", k[1], -k[2], init_key(k[0]), k[0]))
    out = []
    for init, freeze, warmup, budget in keys:
        rs = [r for r in rows if (r["init"], r["freeze"], r["warmup"], r["labels_per_class"]) == (init, freeze, warmup, budget)]
        acc, acc_sd = mean_std([r["test_accuracy"] for r in rs])
        f1, f1_sd = mean_std([r["test_macro_f1"] for r in rs])
        vf1, vf1_sd = mean_std([r["val_macro_f1"] for r in rs])
        out.append({"init": init, "freeze": freeze, "warmup": warmup, "budget": budget_label(budget),
                    "labels_per_class": budget, "seeds": len(rs), "labeled": rs[0]["labeled"],
                    "steps": rs[0]["steps"],
                    "val_macro_f1": vf1, "val_macro_f1_std": vf1_sd,
                    "test_accuracy": acc, "test_accuracy_std": acc_sd,
                    "test_macro_f1": f1, "test_macro_f1_std": f1_sd})
    return out


def main_setting(rows: list[dict[str, Any]]) -> tuple[str, float]:
    """The (freeze, warmup) of the main matrix: the one with the most runs (ablations sit at one budget)."""
    counts: dict[tuple[str, float], int] = {}
    for r in rows:
        counts[(r["freeze"], r["warmup"])] = counts.get((r["freeze"], r["warmup"]), 0) + 1
    return max(counts, key=lambda k: (counts[k], k[0] == "none", k[1]))



def training_budget(rows: list[dict[str, Any]]) -> str:
    """One sentence on how long the runs trained (the step budget, or its absence)."""
    mins = sorted({r["min_steps"] for r in rows})
    steps = [r["steps"] for r in rows if r["steps"]]
    span = f" ({min(steps)}-{max(steps)} optimiser steps per run)" if steps else ""
    if mins == [0]:
        eps = sorted({int(r["train"].get("epochs", 0)) for r in rows})
        return (f"Training: a fixed {', '.join(map(str, eps))} epoch(s) with no step budget{span}, so small label "
                "budgets had fewer optimiser steps; selection on validation.")
    return (f"Training: at least {', '.join(map(str, mins))} optimiser steps per run (train.min_steps: small label "
            f"budgets get more epochs){span}; the epoch selected on validation.")



def describe_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Source, split and what it tests, class counts per side -- from the prepared dataset's manifest."""
    path = next((r["dataset_path"] for r in rows if r.get("dataset_path")), None)
    info: dict[str, Any] = {"path": path, "name": Path(path).name if path else "the prepared dataset",
                            "fingerprint": rows[0]["dataset"], "classes": rows[0]["classes"]}
    mf = Path(path) / MANIFEST if path else None
    if mf is None or not mf.is_file():
        info["missing"] = f"{path}: prepared dataset not found; data details unavailable"
        return info
    m = json.loads(mf.read_text(encoding="utf-8"))
    counts = m.get("counts")
    if not counts:  # older manifests: count the labels
        from diag.signal.dataset import PreparedDataset

        ds = PreparedDataset(path)
        counts = {s: {c: int((ds.labels(s) == k).sum()) for k, c in enumerate(ds.classes)} for s in ds.splits}
    cfg = m.get("config", {})
    src = cfg.get("source", {})
    split = cfg.get("split", {})
    method = (m.get("split") or {}).get("method") or split.get("method", "?")
    detail = {"condition": split.get("test_conditions"), "fault-size": split.get("test_fault_sizes"),
              "group": split.get("test_groups"), "recording": split.get("test_groups")}.get(method)
    info.update({
        "source": src.get("kind", "?") + (f" ({src['path']})" if src.get("path") else ""),
        "source_options": {k: v for k, v in src.items() if k not in ("kind", "path")},
        "split": method + (f" (test: {', '.join(map(str, detail))})" if detail else ""),
        "split_tests": SPLIT_TESTS.get(method, f"a '{method}' split (not described in the manifest)"),
        "counts": counts,
        "sizes": m.get("sizes") or {},
        "fs": m.get("fs"), "window": m.get("window"), "transform": m.get("transform"),
        "image_shape": m.get("image_shape"), "recordings": len(m.get("recordings", [])),
        "audit": audit_lines(m),  # the data audit's findings (diag.signal.audit); None: never audited
        "name": f"{src.get('kind', '?')} data ({Path(path).name})",
    })
    return info



def starts(rows: list[dict[str, Any]]) -> list[str]:
    """The starts present in ``rows``, in table order."""
    return sorted({r["init"] for r in rows}, key=lambda i: (init_key(i), i))
