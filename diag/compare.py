"""``diag compare`` / ``diag report``: the three starts side by side, over seeds and label budgets.

``compare`` trains one run per (label budget, init, seed) into ``OUT/<init>-<budget>-s<seed>/`` with
:func:`diag.train.train`; a finished run is reused, an interrupted one resumed. ``report`` reads every
finished run under a folder and writes

* ``runs.csv``: one row per run (init, freeze, budget, seed, selected epoch, validation and test scores)
* ``summary.csv`` and ``summary.md``: mean ± std over seeds per (init, budget), test split named
* ``comparison.png``: test macro-F1 per label budget, one bar per start (mean ± std over seeds, a dot
  per seed), and the validation macro-F1 curves per start

Test scores come from each run's ``test_metrics.json``, computed once with the checkpoint that the
validation split selected; nothing here looks at test scores to choose anything.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from diag.errors import DiagError
from diag.storage import atomic_write_text, check_writable, claim_output, file_sha256, read_json, write_marker

console = Console(stderr=True)
INIT_ORDER = ("imagenet", "ssl", "scratch")
INIT_COLORS = {"imagenet": "tab:blue", "ssl": "tab:orange", "scratch": "tab:gray"}


def budget_name(labels_per_class: int) -> str:
    return "all" if labels_per_class == 0 else f"{labels_per_class}pc"


def run_dir(out: Path, init: str, labels_per_class: int, seed: int) -> Path:
    return out / f"{init}-{budget_name(labels_per_class)}-s{seed}"


def compare(
    data: str | Path,
    out: str | Path,
    inits: Sequence[str] = ("scratch", "ssl", "imagenet"),
    seeds: Sequence[int] = (0, 1, 2),
    budgets: Sequence[int] = (0,),
    ssl_weights: str | None = None,
    imagenet_weights: str | None = None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    quiet: bool = False,
) -> dict[str, Any]:
    """Train every (budget, init, seed) combination that is not finished yet, then :func:`report`.

    ``budgets`` are labels per class (0 = every training window labelled). ``ssl_weights`` is a
    ``diag pretrain`` folder, needed for ``ssl``; ``imagenet_weights`` a local ImageNet checkpoint
    (else ``$DIAG_IMAGENET_WEIGHTS`` or timm's hub). A start whose weights cannot be had is skipped
    with its reason shown in the report, and the other starts still run.
    """
    from diag.dataset import PreparedDataset
    from diag.train import load_train_config, train

    out = Path(out)
    fingerprint = PreparedDataset(data).manifest.get("fingerprint")
    for init in inits:
        if init not in INIT_ORDER:
            raise DiagError(f"--inits: unknown '{init}'; choose from {', '.join(INIT_ORDER)}")
    if "ssl" in inits and not ssl_weights:
        raise DiagError("--inits ssl needs --ssl-weights DIR (a `diag pretrain` output folder)")
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if key in ("train.init", "train.seed", "train.labels_per_class", "train.label_fraction", "train.weights"):
            raise DiagError(f"--set {text}: compare sets {key} itself; use --inits/--seeds/--labels-per-class")
    load_train_config(config, overrides)  # a bad setting is refused before anything is written
    claim_output(out, "compare", inputs=[data, ssl_weights, imagenet_weights])
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "compare")
    skipped: dict[str, str] = {}
    jobs = [(b, i, s) for b in budgets for i in inits for s in seeds]
    for n, (budget, init, seed) in enumerate(jobs, 1):
        if init in skipped:
            continue
        rd = run_dir(out, init, budget, seed)
        weights = {"ssl": ssl_weights or "", "imagenet": imagenet_weights or ""}.get(init, "")
        cfg = load_train_config(config, list(overrides) + [
            f"train.init={json.dumps(init)}", f"train.seed={seed}", f"train.labels_per_class={budget}",
            f"train.weights={json.dumps(weights)}"])
        _check_same_run(rd, cfg, fingerprint)
        if (rd / "test_metrics.json").is_file():
            if not quiet:
                console.print(f"[{n}/{len(jobs)}] {rd.name}: finished earlier, reused")
            continue
        resume = (rd / "config.json").is_file() and (rd / "last.pt").is_file()
        # A run folder of compare's own that died before finishing one epoch holds nothing to keep.
        restart = rd.exists() and not resume
        if not quiet:
            console.print(f"[bold][{n}/{len(jobs)}] {rd.name}[/]" + (" (resuming)" if resume else "")
                          + (" (restarting: it stopped before its first epoch ended)" if restart else ""))
        try:
            train(data, rd, None if resume else cfg, resume=resume, force=restart, quiet=quiet)
        except DiagError as exc:
            if init == "imagenet" and not weights and not (rd / "config.json").exists():
                skipped[init] = str(exc)
                console.print(f"[yellow]skipping imagenet:[/] {exc}")
                continue
            raise
    return report(out, skipped=skipped, quiet=quiet)


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


# ------------------------------------------------------------------------------------------------
# Report


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """One row per finished run (a folder with model.json and test_metrics.json) under ``root``."""
    rows = []
    for mj in sorted(root.rglob("model.json")):
        rd = mj.parent
        tm = rd / "test_metrics.json"
        if not tm.is_file():
            continue
        model = json.loads(mj.read_text(encoding="utf-8"))
        test = json.loads(tm.read_text(encoding="utf-8"))
        tr = model.get("train", {})
        history = []
        mf = rd / "metrics.jsonl"
        if mf.is_file():
            history = [json.loads(line) for line in mf.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows.append({
            "run": str(rd.relative_to(root)),
            "init": tr.get("init", "?"),
            "freeze": tr.get("freeze", "none"),
            "model": model.get("model", "?"),
            "labels_per_class": int(tr.get("labels_per_class", 0) or 0),
            "label_fraction": float(tr.get("label_fraction", 0.0) or 0.0),
            "labeled": model.get("labeled", {}).get("n"),
            "seed": int(tr.get("seed", 0)),
            "epochs": int(tr.get("epochs", 0)),
            "selected_epoch": model.get("selected", {}).get("epoch"),
            "val_macro_f1": model.get("selected", {}).get("val_macro_f1"),
            "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "test_n": test.get("n"),
            "dataset": model.get("dataset", {}).get("fingerprint"),
            "history": history,
        })
    return rows


def _mean_std(vals: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if v is not None], dtype=float)
    if not len(a):
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (init, freeze, budget)."""
    keys = sorted({(r["init"], r["freeze"], r["labels_per_class"]) for r in rows},
                  key=lambda k: (k[2] if k[2] else 10**9, INIT_ORDER.index(k[0]) if k[0] in INIT_ORDER else 9, k[1]))
    out = []
    for init, freeze, budget in keys:
        rs = [r for r in rows if (r["init"], r["freeze"], r["labels_per_class"]) == (init, freeze, budget)]
        acc, acc_sd = _mean_std([r["test_accuracy"] for r in rs])
        f1, f1_sd = _mean_std([r["test_macro_f1"] for r in rs])
        vf1, vf1_sd = _mean_std([r["val_macro_f1"] for r in rs])
        out.append({"init": init, "freeze": freeze, "budget": budget_name(budget), "labels_per_class": budget,
                    "seeds": len(rs), "labeled": rs[0]["labeled"],
                    "val_macro_f1": vf1, "val_macro_f1_std": vf1_sd,
                    "test_accuracy": acc, "test_accuracy_std": acc_sd,
                    "test_macro_f1": f1, "test_macro_f1_std": f1_sd})
    return out


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items() if k in columns})
    return buf.getvalue()


def _fmt(m: float, s: float) -> str:
    return "—" if math.isnan(m) else f"{m:.3f} ± {s:.3f}"


def _short(m: float, s: float, n: int) -> str:
    return "—" if math.isnan(m) else (f"{m:.3f}" if n < 2 else f"{m:.3f}±{s:.3f}")


def report(root: str | Path, skipped: dict[str, str] | None = None, quiet: bool = False) -> dict[str, Any]:
    """Write runs.csv, summary.csv, summary.md and comparison.png for the runs under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DiagError(f"{root}: no such folder; give the --out folder of `diag compare` or of several `diag train` runs")
    rows = collect_runs(root)
    if not rows:
        raise DiagError(f"{root}: no finished runs (folders with model.json and test_metrics.json) found")
    fingerprints = {r["dataset"] for r in rows}
    if len(fingerprints) > 1:
        raise DiagError(f"{root}: runs were trained on {len(fingerprints)} different prepared datasets; "
                        "compare runs of one dataset only")
    summary = summarise(rows)
    skipped = skipped or {}
    run_cols = ["run", "init", "freeze", "model", "labels_per_class", "labeled", "seed", "epochs", "selected_epoch",
                "val_macro_f1", "test_accuracy", "test_macro_f1", "test_n"]
    atomic_write_text(root / "runs.csv", _csv(rows, run_cols))
    sum_cols = ["init", "freeze", "budget", "labeled", "seeds", "val_macro_f1", "val_macro_f1_std",
                "test_accuracy", "test_accuracy_std", "test_macro_f1", "test_macro_f1_std"]
    atomic_write_text(root / "summary.csv", _csv(summary, sum_cols))
    md = ["| start | freeze | labels/class | labelled windows | seeds | val macro-F1 | **test** accuracy | **test** macro-F1 |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        md.append(f"| {s['init']} | {s['freeze']} | {s['budget']} | {s['labeled']} | {s['seeds']} | "
                  f"{_fmt(s['val_macro_f1'], s['val_macro_f1_std'])} | {_fmt(s['test_accuracy'], s['test_accuracy_std'])} | "
                  f"{_fmt(s['test_macro_f1'], s['test_macro_f1_std'])} |")
    for init, why in skipped.items():
        md.append(f"| {init} | — | — | — | 0 | skipped: {why} | | |")
    md.append("")
    md.append("Mean ± standard deviation over seeds. Test scores: the test split, scored once per run with the "
              "checkpoint chosen on the validation split.")
    atomic_write_text(root / "summary.md", "\n".join(md) + "\n")
    plot_comparison(rows, summary, root / "comparison.png")
    if not quiet:
        con = Console()
        con.print(f"[bold]{root}[/]: test split scores (mean ± std over seeds), model chosen on validation")
        t = Table()
        for c in ("start", "freeze", "labels", "seeds", "val F1", "test acc", "test F1"):
            t.add_column(c, justify="left" if c in ("start", "freeze") else "right")
        for s in summary:
            t.add_row(s["init"], s["freeze"], s["budget"], str(s["seeds"]),
                      _short(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                      _short(s["test_accuracy"], s["test_accuracy_std"], s["seeds"]),
                      _short(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"]))
        con.print(t)
        for init, why in skipped.items():
            con.print(f"[yellow]{init} skipped:[/] {why}")
        con.print(f"tables and plot: {root / 'summary.md'}, {root / 'comparison.png'}")
    return {"runs": rows, "summary": summary, "skipped": skipped}


def plot_comparison(rows: list[dict[str, Any]], summary: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    from diag.evaluate import save_figure

    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    starts = [i for i in INIT_ORDER if any(s["init"] == i for s in summary)] + sorted(
        {s["init"] for s in summary} - set(INIT_ORDER))
    budgets = sorted({s["labels_per_class"] for s in summary}, key=lambda b: b if b else 10**9)
    xs = {b: k for k, b in enumerate(budgets)}
    width = 0.8 / max(1, len(starts))
    for j, init in enumerate(starts):
        ss = [s for s in summary if s["init"] == init]
        x = np.array([xs[s["labels_per_class"]] for s in ss]) + (j - (len(starts) - 1) / 2) * width
        ax1.bar(x, [s["test_macro_f1"] for s in ss], width, yerr=[s["test_macro_f1_std"] for s in ss],
                capsize=3, label=init, color=INIT_COLORS.get(init))
        for r in rows:  # the individual seeds, so a mean never hides a spread
            if r["init"] == init and r["test_macro_f1"] is not None:
                ax1.plot(xs[r["labels_per_class"]] + (j - (len(starts) - 1) / 2) * width, r["test_macro_f1"],
                         "k.", ms=4)
    ax1.set_xticks(range(len(budgets)), [budget_name(b) for b in budgets])
    ax1.set_xlabel("labelled windows per class")
    ax1.set_ylabel("test macro-F1")
    ax1.set_ylim(0, 1.18)  # headroom: the legend sits above the bars
    ax1.set_yticks(np.arange(0, 1.01, 0.2))
    ax1.set_title("Test split (bars: mean ± std; dots: seeds)")
    ax1.legend(title="start", loc="upper center", ncol=max(1, len(starts)), fontsize="small")
    full = budgets[-1]
    for init in starts:
        hs = [r["history"] for r in rows if r["init"] == init and r["labels_per_class"] == full and r["history"]]
        if not hs:
            continue
        n = min(len(h) for h in hs)
        f1 = np.array([[e.get("val_macro_f1", np.nan) for e in h[:n]] for h in hs])
        ep = np.arange(1, n + 1)
        ax2.plot(ep, f1.mean(0), label=init, color=INIT_COLORS.get(init))
        if len(hs) > 1:
            ax2.fill_between(ep, f1.min(0), f1.max(0), alpha=0.2, color=INIT_COLORS.get(init))
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation macro-F1")
    ax2.set_ylim(0, 1.02)
    ax2.set_title(f"Validation curves ({budget_name(full)} labels; band: seed range)")
    ax2.legend(title="start")
    fig.tight_layout()
    save_figure(fig, path)
