"""``diag evaluate RUN DATA``: score a trained model on another prepared dataset with the same preprocessing.

This is how an engineer checks a model trained at one load or machine on another. The dataset's
preprocessing must be the run's (sampling rate, window length, normalisation, channels, transform);
otherwise the first setting that differs is named. Classes the model does not know are reported
as such -- counted as unknown-detection cases (share flagged ``unknown`` and what they were called) --
never remapped onto a known class.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.show import console as make_console
from diag.show import esc

METRICS = "metrics.json"
CONFUSION = "confusion.png"


def evaluate_dataset(run: str | Path, data: str | Path, split: str = "test", device: str = "cpu") -> dict[str, Any]:
    """Metrics of ``run`` on ``split`` of prepared dataset ``data`` (see the module docstring)."""
    import torch

    from diag.signal.dataset import PreparedDataset
    from diag.learning.evaluate import classification_metrics
    from diag.serving.predictor import Predictor
    from diag.learning.unknown import dataset_outputs, scores_from

    pred = Predictor(run, device=device)
    ds = PreparedDataset(data)
    if split not in ds.splits:
        raise DiagError(f"--split {split}: {data} has no such split; it has {', '.join(ds.splits)}")
    diff = pred.pre.difference(ds.preprocessing, ("run", "dataset"))
    if diff:
        raise DiagError(f"{data}: prepared with other preprocessing than {run} ({diff}); prepare it with the run's "
                        "config (model.json, preprocessing)")
    classes = pred.classes
    ds_classes = ds.classes
    foreign = [c for c in ds_classes if c not in classes]
    y_ds = ds.labels(split)
    if len(y_ds) == 0:
        raise DiagError(f"--split {split}: {data} has no windows in it")
    t0 = time.perf_counter()
    feats, logits = dataset_outputs(pred.net, ds.images(split), pred.device, features=pred.unknown_features)
    seconds = time.perf_counter() - t0
    lg, ft = torch.from_numpy(logits), torch.from_numpy(feats)
    p = logits.argmax(1)
    if pred.unknown is not None:
        s = scores_from(pred.unknown.method, lg, ft, pred.unknown.stats).numpy()
        flagged = s > pred.unknown.threshold
    else:
        flagged = np.zeros(len(p), bool)
    names = np.array(ds_classes, dtype=object)[y_ds]
    known = np.array([n in classes for n in names])
    y_model = np.array([classes.index(n) if n in classes else -1 for n in names])
    out: dict[str, Any] = {"run": str(run), "data": str(data), "split": split, "n": int(len(y_ds)),
                           "seconds": round(seconds, 2),
                           "unknown": pred.unknown.describe() if pred.unknown is not None else None}
    if known.any():
        m = classification_metrics(y_model[known], p[known], classes, split)
        out["known"] = {"note": "windows of classes the model knows; closed-set (argmax, unknown ignored)", **m}
        out["known"]["flagged_unknown"] = float(flagged[known].mean())
        keep = known & ~flagged
        out["known"]["accuracy_of_kept"] = float((p[keep] == y_model[keep]).mean()) if keep.any() else None
    else:
        out["known"] = None
    out["foreign"] = {}
    for c in foreign:
        m = names == c
        if not m.any():
            continue
        called = {classes[k]: int(((p == k) & m & ~flagged).sum()) for k in range(len(classes))}
        out["foreign"][c] = {"n": int(m.sum()), "detected_unknown": float(flagged[m].mean()),
                             "called": {k: v for k, v in called.items() if v}}
    if foreign and known.any():
        from diag.learning.unknown import auroc

        if pred.unknown is not None:
            out["unknown_auroc"] = auroc(s[known], s[~known])
    # confusion over dataset classes (rows) x model classes + unknown (columns), as a square matrix
    labels = list(classes) + [c for c in foreign] + ["unknown"]
    conf = np.zeros((len(labels), len(labels)), dtype=int)
    for name, k, f in zip(names, p, flagged):
        conf[labels.index(name), labels.index("unknown") if f else int(k)] += 1
    out["confusion"] = {"labels": labels, "matrix": conf.tolist(),
                        "note": "rows: true class of the dataset; columns: the model's call (unknown when flagged)"}
    return out


def run_evaluate(run: str | Path, data: str | Path, split: str = "test", out: str | Path = "eval",
                 device: str = "cpu", force: bool = False) -> dict[str, Any]:
    """What ``diag evaluate`` does: check --out, score, print a table, write metrics.json and confusion.png."""
    from rich.table import Table

    from diag.storage import atomic_write_json
    from diag.learning.evaluate import plot_confusion

    from diag.storage import check_writable, claim_output, write_marker

    out = Path(out)
    if claim_output(out, "evaluate", force=force, inputs=[run, data]) and not force:
        raise DiagError(f"--out {out}: already holds an evaluation; choose another folder or pass --force to replace it")
    check_writable(out)
    res = evaluate_dataset(run, data, split, device)
    con = make_console()
    k = res["known"]
    t = Table(title=esc(f"{run} on {data} ({split}, {res['n']} windows)"))
    t.add_column("class")
    t.add_column("windows", justify="right")
    t.add_column("recall", justify="right")
    t.add_column("flagged unknown", justify="right")
    if k:
        conf = np.array(res["confusion"]["matrix"])
        labels = res["confusion"]["labels"]
        for c, v in k["per_class"].items():
            if v["support"]:
                row = conf[labels.index(c)]
                t.add_row(esc(c), str(v["support"]), f"{v['recall']:.3f}", f"{row[-1] / max(1, row.sum()):.3f}")
    for c, v in res["foreign"].items():
        t.add_row(f"{esc(c)} [yellow](not a model class)[/]", str(v["n"]), "-", f"{v['detected_unknown']:.3f}")
    con.print(t)
    if k:
        con.print(f"accuracy {k['accuracy']:.3f}, macro-F1 {k['macro_f1']:.3f} on the model's classes "
                  f"({k['n']} windows); {100 * k['flagged_unknown']:.1f} % flagged unknown")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "evaluate")
    atomic_write_json(out / METRICS, res)
    title = (f"{split}: accuracy {k['accuracy']:.3f}, macro-F1 {k['macro_f1']:.3f}" if k else f"{split}: no known class")
    plot_confusion(res["confusion"]["matrix"], res["confusion"]["labels"], out / CONFUSION, title)
    make_console(stderr=True).print(esc(f"-> {out / METRICS}, {out / CONFUSION}"))
    return res


HELD_OUT_JSON = "heldout.json"
HELD_OUT_CSV = "heldout.csv"
HELD_OUT_COLUMNS = ("held_out", "auroc", "held_out_detected", "known_test_flagged", "threshold", "guaranteed",
                    "n_held_out", "n_known_test", "n_known_val")


def held_out_csv(res: dict[str, Any]) -> str:
    """One CSV row per held-out class (:data:`HELD_OUT_COLUMNS`)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HELD_OUT_COLUMNS)
    for r in res["classes"]:
        n = r["windows"]
        w.writerow([r["held_out"], r["auroc"], r["held_out_detected"], r["known_test_flagged"], r["threshold"],
                    r["guaranteed"], n["held_out"], n["known_test"], n["known_val"]])
    return buf.getvalue()


def run_held_out(data: str | Path, out: str | Path, far: float | None = None, csv: bool = False,
                 force: bool = False) -> dict[str, Any]:
    """What ``diag evaluate --held-out DATA`` does: check --out, run
    :func:`diag.learning.heldout.held_out_study`, print a table, write heldout.json (and heldout.csv)."""
    from rich.console import Console
    from rich.table import Table

    from diag.learning.heldout import held_out_study
    from diag.learning.unknown import DEFAULT_FAR
    from diag.storage import atomic_write_json, atomic_write_text, check_writable, claim_output, write_marker

    out = Path(out)
    if claim_output(out, "evaluate", force=force, inputs=[data]) and not force:
        raise DiagError(f"--out {out}: already holds an evaluation; choose another folder or pass --force to replace it")
    check_writable(out)
    res = held_out_study(data, DEFAULT_FAR if far is None else far)
    t = Table(title=f"{data}: every class held out in turn ({res['method']} score, no network; "
                    f"{res['split']} split, {100 * res['far']:g} % false-alarm bound)")
    for col in ("held out", "AUROC", "held-out flagged", "false alarms (known test)", "windows held / known"):
        t.add_column(col, justify="left" if col == "held out" else "right")
    for r in res["classes"]:
        n = r["windows"]
        warn = "" if r["guaranteed"] else " [yellow](too few val windows for the bound)[/]"
        t.add_row(r["held_out"], f"{r['auroc']:.3f}", f"{r['held_out_detected']:.3f}",
                  f"{r['known_test_flagged']:.3f}{warn}", f"{n['held_out']} / {n['known_test']}")
    Console().print(t)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "evaluate")
    atomic_write_json(out / HELD_OUT_JSON, res)
    written = [out / HELD_OUT_JSON]
    if csv:
        atomic_write_text(out / HELD_OUT_CSV, held_out_csv(res))
        written.append(out / HELD_OUT_CSV)
    Console(stderr=True).print(f"-> {', '.join(map(str, written))}")
    return res
