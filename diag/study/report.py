"""``diag report RUNS``: what a set of finished runs says, as ``report.html`` + ``report.md``.

Reads every finished ``diag train`` run under a folder (a ``diag compare --out``, or any runs of one
prepared dataset; :mod:`diag.study.runs`) and writes

* ``report.html`` and ``report.md``: self-contained (figures are PNGs embedded as base64, from
  :mod:`diag.study.figures`; no network), written atomically. In order: **the answer** (a paragraph
  generated from the verdicts below), the data (a table in words, :mod:`diag.study.datatable`, with
  the full settings folded away; class counts per side; the data audit), the main table (mean ± std
  over seeds of the validation and *test* scores), the paired comparisons of starts
  (:mod:`diag.study.stats`), the label-efficiency plot, warmup vs none (learning-rate schedule and
  validation curves), freeze modes, each warmup / freeze ablation paired with the main setting of the
  same start, a confusion matrix per start, example images of each class, and the exact commands, the
  training config and package versions. A section with nothing in it is left out (:class:`_Doc`
  writes a header only when something follows it).
* ``answer.txt``: the answer paragraph alone (what ``scripts/demo.sh`` prints).
* ``power.json``: every paired verdict with the smallest difference its seeds could detect and the seeds
  the difference that matters (``effect``) would need (:func:`diag.study.stats.power_record`).
* ``runs.csv`` (one row per run), ``summary.csv`` / ``summary.md`` (the main table) and
  ``comparison.png``.

Test scores are each run's own ``test_metrics.json`` (scored once with the checkpoint the validation
split chose); nothing here uses a test score to choose anything.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diag.errors import DiagError
from diag.storage import atomic_write_json, claim_output_files, record_output_file, write_output_file
from diag.study.datatable import data_rows, full_settings
from diag.study.figures import fig_confusion, fig_examples, fig_label_efficiency, fig_warmup
from diag.study.names import COMPARE_RECORD, INIT_LABEL, INIT_ORDER, budget_key, budget_words, init_key, warmup_name
from diag.study.runs import (cell_of, collect_runs, describe_data, main_setting, pretraining_by_start, starts,
                             summarise, training_budget)
from diag.study.stats import CONFIDENCE, EFFECT, MAX_SEEDS, POWER, compare_settings, compare_starts, power_record

__all__ = ["write_report", "answer_paragraph", "ablation_sentences", "start_sentence", "qualify_failed", "load_study", "read_record"]


# ------------------------------------------------------------------------------------------------
# The answer in words


def ablation_sentences(settings: list[dict[str, Any]]) -> list[str]:
    """One sentence per ablation setting and budget, from the verdicts of :func:`compare_settings`."""
    out = []
    for key in dict.fromkeys((s["labels_per_class"], s["setting"], s["against"]) for s in settings):
        same = [s for s in settings if (s["labels_per_class"], s["setting"], s["against"]) == key]
        said = "; ".join(f"{INIT_LABEL.get(s['init'], s['init'])}: {s['verdict']}" for s in same)
        out.append(f"{key[1][0].upper() + key[1][1:]} instead of {key[2]} ({budget_words(key[0])}): {said}.")
    return out


def answer_paragraph(rows: list[dict[str, Any]], stats: list[dict[str, Any]], data: dict[str, Any],
                     settings: list[dict[str, Any]] | None = None) -> str:
    """The answer in a few sentences, generated from the verdicts of the main setting (``stats``,
    :func:`compare_starts`) and of the ablations (``settings``, :func:`compare_settings`; computed
    from ``rows`` when not given)."""
    stats = qualify_failed(stats, rows)
    failed = {k: v for k, v in pretraining_by_start(rows).items() if v["learned"] is False}
    freeze, warmup = main_setting(rows)
    models = sorted({r["model"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    inits = sorted({r["init"] for r in rows}, key=init_key)
    parts = [f"On {data.get('name', 'this dataset')} (test split: {data.get('split_tests', 'see below')}), "
             f"{', '.join(INIT_LABEL.get(i, i) for i in inits)} starts of {', '.join(models)} were compared on "
             f"test macro-F1 over {len(seeds)} seed(s) (fine-tuning {'everything' if freeze == 'none' else 'with freeze=' + freeze}, "
             f"warmup {warmup_name(warmup)})."]
    main = [s for s in stats if (s["freeze"], s["warmup"]) == (freeze, warmup)]
    for budget in sorted({s["labels_per_class"] for s in main}, key=budget_key, reverse=True):
        said = [f"{INIT_LABEL.get(s['a'], s['a'])} vs {INIT_LABEL.get(s['b'], s['b'])}: {s['verdict']}"
                for s in main if s["labels_per_class"] == budget]
        parts.append(f"With {budget_words(budget)}: " + "; ".join(said) + ".")
    for start in (i for i in INIT_ORDER if i != "scratch"):
        if start in failed and any(r["init"] == start for r in rows):
            parts.append(f"{INIT_LABEL.get(start, start)}: {failed[start]['text']}, so its runs are no evidence "
                         "about self-supervised pretraining either way: judge it after a pretraining whose probe rises.")
            continue
        said = start_sentence(start, [s for s in main if s["a"] == start and s["b"] == "scratch"])
        if said:
            parts.append(said)
    parts += ablation_sentences(compare_settings(rows) if settings is None else settings)
    parts.append(training_budget(rows))
    spread = [s for s in summarise(rows) if s["seeds"] > 1 and (s["freeze"], s["warmup"]) == (freeze, warmup)]
    if spread:
        worst = max(spread, key=lambda s: s["test_macro_f1_std"])
        parts.append(f"Seed spread: the standard deviation of test macro-F1 over seeds is at most "
                     f"{worst['test_macro_f1_std']:.3f} ({INIT_LABEL.get(worst['init'], worst['init'])}, "
                     f"{budget_words(worst['labels_per_class'])}).")
    else:
        parts.append("Only one seed per setting: no interval and no seed spread; differences are not tested.")
    mdd = [s["detectable"] for s in main if s["n"] > 1 and math.isfinite(s["detectable"])]
    if mdd:
        effect = main[0]["effect"]
        parts.append(f"Power: the smallest difference these seeds could detect (probability {POWER:g}) is "
                     f"{min(mdd):.3f}-{max(mdd):.3f} macro-F1 across the comparisons of starts; the difference that "
                     f"matters here is {effect:g} (--effect).")
    return " ".join(parts)


def qualify_failed(stats: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdicts with every one that would call a start whose pretraining failed (its probe fell) worse
    replaced: a fine-tune from features that got worse than their initialisation is a failed pretraining,
    not evidence against the start. The numbers stay; only the words change (and ``pretraining_failed``
    names the start, for tables that mark the number instead of printing the verdict)."""
    failed = {k: v for k, v in pretraining_by_start(rows).items() if v["learned"] is False}
    out = []
    for s in stats:
        loser = s["a"] if s["verdict"].startswith("worse") else s["b"] if s["verdict"].startswith("better") else None
        if loser in failed:
            name = INIT_LABEL.get(loser, loser)
            s = dict(s, verdict=f"{failed[loser]['text']}: no verdict on {name} (difference {s['mean']:+.3f}, "
                                f"interval excludes 0)", decided=False, pretraining_failed=loser)
        out.append(s)
    return out


def start_sentence(start: str, against: list[dict[str, Any]]) -> str | None:
    """What the verdicts of ``start`` against scratch over the label budgets add up to: helped where the
    interval says so; "did not help" only where every budget was decided (powered); else not decided."""
    if not against or any(s["n"] < 2 for s in against):
        return None
    name = INIT_LABEL.get(start, start)
    where = [budget_words(s["labels_per_class"]) for s in against if s["verdict"].startswith("better")]
    if where:
        return f"{name} helped measurably with {', '.join(where)}."
    open_ = [s for s in against if not s["decided"]]
    if not open_:
        return (f"{name} did not help here: at no label budget was it measurably better than training from "
                "scratch.")
    need = [s["seeds_needed"] for s in open_]
    more = f"~{max(need)}" if all(need) else f"more than {MAX_SEEDS}"
    return (f"Whether {name} helps is not decided: too few seeds with "
            f"{', '.join(budget_words(s['labels_per_class']) for s in open_)} (would need {more} seeds to detect "
            f"{open_[0]['effect']:g}).")


# ------------------------------------------------------------------------------------------------
# Writing the report


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _pm(m: float, s: float, n: int) -> str:
    if math.isnan(m):
        return "—"
    return f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"


class _Doc:
    """The report built once, rendered to HTML and Markdown side by side.

    A header is written only when something is written under it: a header followed by another of the same
    or a higher level, or by the end, is left out (no empty sections)."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []
        self._pending: list[tuple[int, str]] = []

    def h(self, level: int, text: str) -> None:
        self._pending = [(lv, t) for lv, t in self._pending if lv < level] + [(level, text)]

    def _emit(self) -> None:
        for level, text in self._pending:
            self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
            self.md += ["#" * level + " " + text, ""]
        self._pending = []

    def p(self, text: str, strong: bool = False) -> None:
        self._emit()
        body = html.escape(text)
        self.html.append(f"<p class='answer'><strong>{body}</strong></p>" if strong else f"<p>{body}</p>")
        self.md += [f"**{text}**" if strong else text, ""]

    def ul(self, items: list[str]) -> None:
        if not items:
            return
        self._emit()
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        self.md += [f"- {i}" for i in items] + [""]

    def table(self, header: list[str], rows: list[list[str]], cls: str = "") -> None:
        if not rows:
            return
        self._emit()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        head = f"<thead><tr>{th}</tr></thead>" if any(header) else ""  # a table of (what, value) rows: no header
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        self.html.append(f"<table class='{cls}'>{head}<tbody>{body}</tbody></table>")
        self.md += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        self.md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows] + [""]

    def img(self, png: bytes | None, alt: str) -> None:
        if png is None:
            return
        self._emit()
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'/>"
                         f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        self.md += [f"![{alt}](data:image/png;base64,{b64})", ""]

    def pre(self, text: str) -> None:
        self._emit()
        self.html.append(f"<pre>{html.escape(text)}</pre>")
        self.md += ["```", text, "```", ""]

    def details(self, summary: str, text: str) -> None:
        """``text`` folded away under ``summary`` (HTML ``<details>``; Markdown: the summary, then a fenced block)."""
        self._emit()
        self.html.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>")
        self.md += [summary + ":", "", "```json", text, "```", ""]


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
       "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}.answer{font-size:1.1em;"
       "background:#eef6ff;padding:0.8em;border-left:4px solid #3a7bd5}img{max-width:100%}pre{background:#f6f6f6;"
       "padding:0.6em;overflow-x:auto;font-size:0.85em}figure{margin:1em 0}table.data td{text-align:left}"
       "table.data td:first-child{font-weight:600;white-space:nowrap}details{margin:0.5em 0}summary{cursor:pointer;"
       "color:#3a7bd5}")


def load_study(root: Path) -> list[dict[str, Any]]:
    """The finished runs under ``root`` (one prepared dataset), or a one-line error saying what to give."""
    if not root.is_dir():
        raise DiagError(f"{root}: no such folder; give the --out folder of `diag compare` or of several `diag train` runs")
    rows = collect_runs(root)
    if not rows:
        raise DiagError(f"{root}: no finished runs (folders with model.json and test_metrics.json) found")
    fingerprints = {r["dataset"] for r in rows}
    if len(fingerprints) > 1:
        raise DiagError(f"{root}: runs were trained on {len(fingerprints)} different prepared datasets; "
                        "report runs of one dataset only (one folder each)")
    return rows


def read_record(root: Path) -> dict[str, Any]:
    """``root/compare.json`` (commands, skipped starts), or ``{}`` for runs made by ``diag train`` directly."""
    path = root / COMPARE_RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DiagError(f"{path}: unreadable ({exc}); delete it (diag compare writes it again)") from None


#: the files ``diag report`` writes in the runs folder (replaced only where diag wrote them)
REPORT_FILES = ("runs.csv", "summary.csv", "summary.md", "comparison.png", "report.html", "report.md", "answer.txt",
                "power.json")


def write_report(root: str | Path, quiet: bool = False, effect: float = EFFECT) -> dict[str, Any]:
    """Write ``report.html``, ``report.md``, ``answer.txt``, ``power.json``, ``runs.csv``,
    ``summary.csv``/``.md`` and ``comparison.png`` for the runs under ``root``; ``effect`` is the difference
    of test macro-F1 that matters (:mod:`diag.study.stats`). Returns the rows, summary, statistics, answer."""
    root = Path(root)
    rows = load_study(root)
    record = read_record(root)
    skipped: dict[str, str] = record.get("skipped", {})
    summary = summarise(rows)
    if not (math.isfinite(effect) and 0 < effect < 1):
        raise DiagError(f"--effect {effect:g}: a difference of macro-F1 between 0 and 1, e.g. 0.05")
    stats = qualify_failed(compare_starts(rows, effect=effect), rows)
    data = describe_data(rows)
    settings = compare_settings(rows, effect=effect)
    answer = answer_paragraph(rows, stats, data, settings)

    claim_output_files([("report", root / name) for name in REPORT_FILES], force=True, trusted_kinds=("compare",))
    _write_tables(root, rows, summary, skipped, pretraining_by_start(rows))
    atomic_write_json(root / "power.json", power_record(stats, settings, effect))
    record_output_file(root / "power.json")
    label_png = fig_label_efficiency(rows)
    write_output_file(root / "comparison.png", label_png)

    doc = _Doc()
    doc.h(1, f"Which start helps? {data['name']}")
    doc.p(f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `diag report {root}` from "
          f"{len(rows)} finished run(s). Every test number is the run's own test_metrics.json (the test split, "
          "scored once with the checkpoint chosen on the validation split).")
    doc.h(2, "The answer")
    doc.p(answer, strong=True)
    for init, why in skipped.items():
        doc.p(f"{INIT_LABEL.get(init, init)} start skipped: {why}")
    for init, how in pretraining_by_start(rows).items():
        where = "" if how["path"] in how["text"] else f" ({how['path']})"
        doc.p(f"{INIT_LABEL.get(init, init)} start: {how['text']}{where}.")
    _section_data(doc, data)
    _section_main(doc, summary, pretraining_by_start(rows), rows)
    _section_pairs(doc, stats)
    doc.h(2, "Label efficiency")
    doc.img(label_png, "test macro-F1 vs labelled windows per class, one line per start")
    _section_ablations(doc, rows, summary, settings)
    _section_images(doc, rows, data)
    _section_how(doc, root, rows, record)

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>diag report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(doc.html) + "</body></html>\n")
    write_output_file(root / "report.html", page)
    write_output_file(root / "report.md", "\n".join(doc.md))
    write_output_file(root / "answer.txt", answer + "\n")
    if not quiet:
        _print(root, summary, answer, skipped, pretraining_by_start(rows))
    return {"runs": rows, "summary": summary, "stats": stats, "settings": settings, "answer": answer,
            "skipped": skipped, "html": root / "report.html", "md": root / "report.md", "power": root / "power.json"}


def _section_data(doc: _Doc, data: dict[str, Any]) -> None:
    doc.h(2, "The data")
    doc.table(["", ""], data_rows(data), cls="data")
    settings = full_settings(data)
    if settings:
        doc.details("Full settings of the source, window and transform (as the prepared dataset's manifest holds "
                    "them)", settings)
    if "missing" in data:
        return  # no class counts, audit or example images without the prepared dataset: said once, in the table
    sides = [s for s in ("train", "val", "test") if s in data["counts"]]
    doc.p("Windows per class and split:")
    doc.table(["class"] + sides, [[c] + [str(data["counts"][s].get(c, 0)) for s in sides] for c in data["classes"]]
              + [["total"] + [str(sum(data["counts"][s].values())) for s in sides]], cls="counts")

    doc.h(2, "Data audit")
    audit = data.get("audit")
    doc.p("Never audited (prepared before the data audit; `diag audit PREPARED` runs it)." if audit is None else
          "No findings: no class rests on one recording / group / condition, no single image row or per-recording "
          "statistic separates a class trivially, no class alone was resampled, no one-sided class or condition."
          if not audit else "What `diag prepare` found in this data (`diag audit PREPARED` re-runs it):")
    if audit:
        doc.ul(audit)


def _section_main(doc: _Doc, summary: list[dict[str, Any]], pretraining: dict[str, dict[str, Any]],
                  rows: list[dict[str, Any]]) -> None:
    doc.h(2, "Main table")
    doc.p("Mean ± standard deviation over seeds (one value: one seed). val = validation split (selects the epoch); "
          "test = test split, scored once.")
    said = any(s["init"] in pretraining for s in summary)  # the pretraining column only where it has something
    doc.table(["start", "freeze", "warmup", "labels/class", "labelled windows", "steps", "seeds", "val macro-F1",
               "test accuracy", "test macro-F1"] + ["pretraining"] * said,
              [[s["init"], s["freeze"], warmup_name(s["warmup"]), s["budget"], _f(s["labeled"]), _f(s["steps"]),
                str(s["seeds"]), _pm(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                _pm(s["test_accuracy"], s["test_accuracy_std"], s["seeds"]),
                _pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"])]
               + [pretraining[s["init"]]["text"] if s["init"] in pretraining else "—"] * said for s in summary],
              cls="main")
    not_run = _ablations_not_run(rows)
    if not_run:
        doc.p("Not run here: " + "; ".join(not_run) + ".")


def _ablations_not_run(rows: list[dict[str, Any]]) -> list[str]:
    """The ablations these runs hold no second setting for, with the option of `diag compare` that adds them."""
    freeze, warmup = main_setting(rows)
    out = []
    if len({r["warmup"] for r in rows}) < 2:
        out.append(f"warmup vs none (every run used warmup {warmup_name(warmup)}; `diag compare --warmup 0.1,0` adds it)")
    if len({r["freeze"] for r in rows}) < 2:
        out.append(f"freeze modes (every run used freeze {freeze}; `diag compare --freeze none,stages:1,backbone` "
                   "adds them)")
    return out


def _section_pairs(doc: _Doc, stats: list[dict[str, Any]]) -> None:
    if not stats:  # one start only: nothing to pair
        return
    doc.h(2, "Starts compared (paired over seeds)")
    doc.p(f"Difference of test macro-F1, first start minus second, paired by seed; {int(CONFIDENCE * 100)} % "
          "Student-t interval over seeds (scipy.stats.t, n-1 degrees of freedom). The verdict is computed from "
          f"the interval; where it holds 0, from the smallest difference the seeds could detect (found with "
          f"probability {POWER:g}, from the measured spread of the per-seed differences) against the difference "
          f"that matters ({stats[0]['effect']:g}): larger means too few seeds to decide "
          "(power.json).")
    doc.table(["labels/class", "freeze", "warmup", "first", "second", "seeds", "mean difference", "95 % interval",
               "smallest detectable", "verdict"],
              [[s["budget"], s["freeze"], warmup_name(s["warmup"]), s["a"], s["b"], str(s["n"]), _f(s["mean"]),
                _interval(s), _f(s["detectable"]), s["verdict"]] for s in stats], cls="stats")


def _interval(s: dict[str, Any]) -> str:
    return "—" if math.isnan(s["low"]) else f"[{s['low']:.3f}, {s['high']:.3f}]"


def _section_ablations(doc: _Doc, rows: list[dict[str, Any]], summary: list[dict[str, Any]],
                       settings: list[dict[str, Any]]) -> None:
    freeze, _ = main_setting(rows)
    wcells = sorted({(r["labels_per_class"], r["freeze"]) for r in rows
                     if len({x["warmup"] for x in rows if (x["labels_per_class"], x["freeze"]) ==
                             (r["labels_per_class"], r["freeze"])}) > 1}, key=lambda c: budget_key(c[0]))
    if wcells:
        doc.h(2, "Warmup vs none")
        for budget, fz in wcells:
            doc.img(fig_warmup(rows, budget, fz), f"learning rate and validation macro-F1 per epoch, "
                                                  f"{budget_words(budget)}, freeze {fz}")
    elif any(r["history"] for r in rows):  # one warmup setting: its schedule and curves, no ablation
        doc.h(2, "Training curves")
        doc.img(fig_warmup(rows, max((r["labels_per_class"] for r in rows), key=budget_key), freeze),
                "learning rate and validation macro-F1 per epoch")

    doc.h(2, "Freeze modes")
    fz = [s for s in summary if len({x["freeze"] for x in summary if x["labels_per_class"] == s["labels_per_class"]
                                     and x["warmup"] == s["warmup"]}) > 1]
    if fz:
        doc.table(["start", "labels/class", "warmup", "freeze", "seeds", "val macro-F1", "test macro-F1"],
                  [[s["init"], s["budget"], warmup_name(s["warmup"]), s["freeze"], str(s["seeds"]),
                    _pm(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                    _pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"])] for s in fz], cls="freeze")

    doc.h(2, "Warmup and freeze against the main setting (paired over seeds)")
    if settings:
        doc.p("Change of test macro-F1 when one start is trained with another warmup or freeze mode than the main "
              f"setting, paired by seed (same start, labelled subset and seed); {int(CONFIDENCE * 100)} % Student-t "
              "interval over seeds. The verdict is computed from the interval.")
        doc.table(["start", "labels/class", "setting", "against", "seeds", "mean change", "95 % interval",
                   "smallest detectable", "verdict"],
                  [[s["init"], s["budget"], s["setting"], s["against"], str(s["n"]), _f(s["mean"]), _interval(s),
                    _f(s["detectable"]), s["verdict"]] for s in settings], cls="settings")


def _section_images(doc: _Doc, rows: list[dict[str, Any]], data: dict[str, Any]) -> None:
    freeze, warmup = main_setting(rows)
    doc.h(2, "Confusion matrices (test split)")
    top = max((r["labels_per_class"] for r in rows), key=budget_key)
    for init in starts(rows):
        rs = [r for r in rows if r["init"] == init and cell_of(r) == (top, freeze, warmup) and r["confusion"]]
        if not rs:
            continue
        cm = np.sum([np.asarray(r["confusion"]) for r in rs], axis=0).tolist()
        doc.img(fig_confusion(cm, rs[0]["classes"], f"{INIT_LABEL.get(init, init)}, {budget_words(top)}, "
                                                    f"summed over {len(rs)} seed(s)"),
                f"confusion matrix of the {init} start ({budget_words(top)}, test split, summed over seeds)")

    doc.h(2, "Example images of each class")  # left out where the prepared dataset is not here (the data table says so)
    ex = fig_examples(data["path"], data["classes"]) if data.get("path") and "missing" not in data else None
    doc.img(ex, "training images, channel 0, as the models saw them")


def _section_how(doc: _Doc, root: Path, rows: list[dict[str, Any]], record: dict[str, Any]) -> None:
    doc.h(2, "How this was made")
    cmds = record.get("commands", [])
    doc.pre("\n".join(cmds) if cmds else "(no compare.json: runs made by `diag train` directly)")
    doc.p(training_budget(rows))
    doc.p(f"diag report {root}")
    base = rows[0]["train"]
    varying = sorted({k for r in rows for k in r["train"] if r["train"].get(k) != base.get(k)})
    doc.p("Training config (the settings shared by every run" +
          (f"; per run varying: {', '.join(varying)}):" if varying else "):"))
    doc.pre(json.dumps({k: v for k, v in base.items() if k not in varying}, indent=1))
    weights = {}
    for r in rows:
        st = r["start"]
        if st.get("weights"):
            weights[r["init"]] = f"{st.get('weights_source', st['weights'])}; sha256 {st.get('weights_sha256', '?')}"
    if weights:
        doc.ul([f"{INIT_LABEL.get(k, k)} weights: {v}" for k, v in sorted(weights.items(), key=lambda kv: init_key(kv[0]))])
    devices = sorted({r["runtime"].get("device", "?") for r in rows})
    doc.p(f"Device(s): {', '.join(devices)}. Package versions (first run):")
    doc.pre("\n".join(f"{k} {v}" for k, v in rows[0]["versions"].items()))


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and k != "warmup" else v) for k, v in r.items() if k in columns})
    return buf.getvalue()


def _write_tables(root: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]], skipped: dict[str, str],
                  pretraining: dict[str, dict[str, Any]]) -> None:
    run_cols = ["run", "init", "freeze", "warmup", "model", "labels_per_class", "labeled", "seed", "epochs", "min_steps",
                "steps",
                "selected_epoch", "val_macro_f1", "test_accuracy", "test_macro_f1", "test_n"]
    write_output_file(root / "runs.csv", _csv(rows, run_cols))
    sum_cols = ["init", "freeze", "warmup", "budget", "labeled", "steps", "seeds", "val_macro_f1", "val_macro_f1_std",
                "test_accuracy", "test_accuracy_std", "test_macro_f1", "test_macro_f1_std"]
    write_output_file(root / "summary.csv", _csv(summary, sum_cols))
    md = ["| start | freeze | warmup | labels/class | labelled windows | seeds | val macro-F1 | **test** accuracy | **test** macro-F1 |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        md.append(f"| {s['init']} | {s['freeze']} | {warmup_name(s['warmup'])} | {s['budget']} | {s['labeled']} | "
                  f"{s['seeds']} | {_pm(s['val_macro_f1'], s['val_macro_f1_std'], s['seeds'])} | "
                  f"{_pm(s['test_accuracy'], s['test_accuracy_std'], s['seeds'])} | "
                  f"{_pm(s['test_macro_f1'], s['test_macro_f1_std'], s['seeds'])} |")
    for init, why in skipped.items():
        md.append(f"| {init} | — | — | — | — | 0 | skipped: {why} | | |")
    md += ["", "Mean ± standard deviation over seeds. Test scores: the test split, scored once per run with the "
               "checkpoint chosen on the validation split."]
    md += [f"{init} start: {how['text']}." for init, how in pretraining.items()]
    write_output_file(root / "summary.md", "\n".join(md) + "\n")


def _print(root: Path, summary: list[dict[str, Any]], answer: str, skipped: dict[str, str],
           pretraining: dict[str, dict[str, Any]]) -> None:
    from rich.table import Table

    from diag.show import console as make_console
    from diag.show import esc, tagged

    con = make_console()
    con.print(f"[bold]{esc(root)}[/]: test split scores (mean ± std over seeds), model chosen on validation")
    t = Table()
    for c in ("start", "freeze", "warmup", "labels", "seeds", "val F1", "test acc", "test F1"):
        t.add_column(c, justify="left" if c in ("start", "freeze") else "right")
    for s in summary:
        t.add_row(s["init"], s["freeze"], warmup_name(s["warmup"]), s["budget"], str(s["seeds"]),
                  _pm(s["val_macro_f1"], s["val_macro_f1_std"], s["seeds"]),
                  _pm(s["test_accuracy"], s["test_accuracy_std"], s["seeds"]),
                  _pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"]))
    con.print(t)
    for init, why in skipped.items():
        con.print(f"[yellow]{esc(init)} skipped:[/] {esc(why)}")
    for init, how in pretraining.items():
        con.print(f"{init}: {how['text']}", style="yellow" if how["learned"] is False else None, markup=False)
    con.print(tagged("[bold]Answer:[/]", answer), soft_wrap=True)
    con.print(esc(f"report: {root / 'report.html'} (and report.md)"))
