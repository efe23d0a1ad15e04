"""Results generated, not typed: a study's committed record and the tables made from it.

    python scripts/dev/results_tables.py record STUDY COMPARE_DIR --title T --command CMD [--note N] [--wall-s S]
    python scripts/dev/results_tables.py write      # regenerate every table between markers
    python scripts/dev/results_tables.py check      # exit 1 when a committed table differs from its records

``record`` copies what the runs of a ``diag compare`` folder already wrote — per run ``model.json``,
``test_metrics.json`` and ``metrics.jsonl`` (never weights) — and the folder's ``compare.json`` into
``docs/results/STUDY/``, with ``record.json``: the title, the command that made the folder, the machine
it ran on (CPU, cores, GPU, torch) and the diag commit.

``write`` and ``check`` read those records through :mod:`diag.study.runs` and :mod:`diag.study.stats` (the functions ``diag
report`` uses, so the numbers are the report's) and fill every block of ``README.md`` and ``docs/**.md``
between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->``: NAME ``answer`` is the table
across every recorded study, any other NAME is that study's own tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "docs" / "results"
RUN_FILES = ("model.json", "test_metrics.json", "metrics.jsonl")
from diag.study.runs import RECORD_PRETRAINING  # noqa: E402  (after ROOT is on sys.path)
BLOCK = re.compile(r"(<!-- results:([\w-]+):begin -->\n)(.*?)(<!-- results:\2:end -->)", re.S)
STARTS = ("imagenet", "imagenet+ssl", "ssl", "scratch")
LABEL = {"imagenet": "ImageNet", "imagenet+ssl": "ImageNet+SSL", "ssl": "SSL", "scratch": "scratch"}


class RecordError(Exception):
    """A record or a marker is missing or unreadable (printed as one line, exit 2)."""


# ------------------------------------------------------------------------------------------------
# record


def machine() -> dict:
    """The machine this process runs on, in words a reader can compare."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(terse=True),
            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _start_pretraining(run: Path) -> Path | None:
    """The pretrain.json an SSL run started from, where its model.json does not carry a copy (runs of an older
    diag): the record keeps it beside the run, so a clean clone still tells ssl from imagenet+ssl."""
    from diag.learning.models import SSL_META

    model = json.loads((run / "model.json").read_text(encoding="utf-8"))
    start = model.get("start", {})
    where = start.get("weights") or model.get("train", {}).get("weights")
    if model.get("train", {}).get("init") != "ssl" or isinstance(start.get("pretraining"), dict) or not where:
        return None
    folder = Path(where) if Path(where).is_dir() else Path(where).parent
    meta = folder / SSL_META
    if not meta.is_file():
        raise RecordError(f"{run}: an SSL run whose pretraining record {meta} is not here; record the study from the "
                          "folder it ran in (its weights paths are relative to it)")
    return meta


def record(study: str, compare_dir: Path, title: str, command: str, note: str = "", wall_s: float | None = None,
           commit: str | None = None) -> Path:
    """Copy a compare folder's run records into docs/results/STUDY (replacing an older record of it)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", study):
        raise RecordError(f"study name {study!r}: use lower-case letters, digits and '-'")
    runs = sorted(p.parent for p in compare_dir.rglob("test_metrics.json") if (p.parent / "model.json").is_file())
    if not runs:
        raise RecordError(f"{compare_dir}: no finished runs (model.json + test_metrics.json); run diag compare first")
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{study}-", dir=RESULTS))
    for rd in runs:
        dest = tmp / "runs" / rd.relative_to(compare_dir)
        dest.mkdir(parents=True)
        for name in RUN_FILES:
            if (rd / name).is_file():
                shutil.copyfile(rd / name, dest / name)
        pretraining = _start_pretraining(rd)
        if pretraining is not None:
            shutil.copyfile(pretraining, dest / RECORD_PRETRAINING)
    if (compare_dir / "compare.json").is_file():
        shutil.copyfile(compare_dir / "compare.json", tmp / "compare.json")
    meta = {"study": study, "title": title, "command": command, "note": note, "wall_s": wall_s,
            "machine": machine(), "diag_commit": commit or _commit(),
            "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "runs": len(runs)}
    (tmp / "record.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    final = RESULTS / study
    if final.exists():
        old = final.with_name(f".{study}-old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    return final


# ------------------------------------------------------------------------------------------------
# tables


def studies() -> dict[str, dict]:
    """Every recorded study's record.json, by name, in name order."""
    out = {}
    for rj in sorted(RESULTS.glob("*/record.json")):
        try:
            out[rj.parent.name] = json.loads(rj.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RecordError(f"{rj}: unreadable ({exc}); record the study again") from None
    return out


def _rows(study: str) -> list[dict]:
    from diag.study.runs import collect_runs

    rows = collect_runs(RESULTS / study / "runs")
    if not rows:
        raise RecordError(f"{RESULTS / study}: no run records; record the study again")
    return rows


def _pm(mean: float, std: float, n: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.3f}" if n == 1 else f"{mean:.3f} ± {std:.3f}"


def _diff(s: dict | None, say_failed: bool = True) -> str:
    """A paired difference as a cell; ``say_failed``: name a failed pretraining (where no verdict column does)."""
    if s is None:
        return "—"
    if math.isnan(s["low"]):
        return f"{s['mean']:+.3f} (one seed, no interval)"
    failed = s.get("pretraining_failed")  # set by qualify_failed: the start that "lost" had a failed pretraining
    mark = "**" if (s["low"] > 0 or s["high"] < 0) and not failed else ""
    mdd = s.get("detectable")
    finds = f"; detects ≥ {mdd:.3f}" if isinstance(mdd, float) and math.isfinite(mdd) else ""
    why = f"; {LABEL.get(failed, failed)} pretraining failed: no verdict" if failed and say_failed else ""
    return f"{mark}{s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]{mark}{finds}{why}"


def _main_cells(rows: list[dict]) -> tuple[list[dict], dict, dict]:
    from diag.study.report import qualify_failed
    from diag.study.runs import main_setting, summarise
    from diag.study.stats import compare_starts

    base = main_setting(rows)
    rows = [r for r in rows if (r["freeze"], r["warmup"]) == base]
    summary = {(s["init"], s["labels_per_class"]): s for s in summarise(rows)}
    # the report's verdicts: a difference against a start whose pretraining failed is no verdict on it
    stats = {(s["a"], s["b"], s["labels_per_class"]): s for s in qualify_failed(compare_starts(rows), rows)}
    return rows, summary, stats


def machine_words(meta: dict) -> str:
    m = meta.get("machine", {})
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores{gpu}, torch {m.get('torch', '?')}"


def answer_table() -> str:
    """Test macro-F1 per start and label budget of every recorded study that compares starts (a study of one
    start, e.g. ablations of the ImageNet start, has its tables on its page only), with the paired differences."""
    from diag.study.names import budget_label

    if not studies():
        return ("*No study has a committed record yet* (`python scripts/dev/results_tables.py record ...`); "
                "the measured studies' typed tables are on the [results pages](docs/results/index.md).")
    pairs = [(a, "scratch") for a in STARTS if a != "scratch"]
    head = ["study", "labels/class", "seeds", *(LABEL[s] for s in STARTS), *(f"{LABEL[a]} − {LABEL[b]}" for a, b in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, meta in studies().items():
        _, summary, stats = _main_cells(_rows(name))
        if len({init for init, _ in summary}) < 2:  # one start (an ablation study): nothing to compare here
            continue
        for budget in dict.fromkeys(k[1] for k in summary):
            cells = [_pm(s["test_macro_f1"], s["test_macro_f1_std"], s["seeds"]) if (s := summary.get((i, budget)))
                     else "—" for i in STARTS]
            seeds = max(summary[k]["seeds"] for k in summary if k[1] == budget)
            link = f"[{meta.get('title', name)}]({_page_of(name)})"
            lines.append("| " + " | ".join([link, budget_label(budget), str(seeds), *cells,
                                           *(_diff(stats.get((a, b, budget))) for a, b in pairs)]) + " |")
    return "\n".join(lines)


def _page_of(name: str) -> str:
    """The results page that holds the study's tables (its ``results:NAME`` block), from the repository
    root; ``docs/results/NAME.md`` when no page holds them yet (one page may hold several studies)."""
    for page in sorted(RESULTS.glob("*.md")):
        if f"<!-- results:{name}:begin -->" in page.read_text(encoding="utf-8"):
            return page.relative_to(ROOT).as_posix()
    return f"docs/results/{name}.md"


def study_tables(name: str) -> str:
    """One study: its main table, its paired differences, and where and how it was measured."""
    meta = studies().get(name)
    if meta is None:
        raise RecordError(f"<!-- results:{name} -->: no record docs/results/{name}/record.json; "
                          f"record it with scripts/dev/results_tables.py record {name} COMPARE_DIR ...")
    every = _rows(name)  # the main setting's runs and the ablations'
    rows, summary, stats = _main_cells(every)
    from diag.study.names import budget_label

    out = ["| start | labels/class | seeds | optimiser steps | val macro-F1 | test accuracy | **test macro-F1** |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for (init, budget), s in summary.items():
        out.append(f"| {LABEL.get(init, init)} | {budget_label(budget)} | {s['seeds']} | {s['steps']} | "
                   f"{_pm(s['val_macro_f1'], s['val_macro_f1_std'], s['seeds'])} | "
                   f"{_pm(s['test_accuracy'], s['test_accuracy_std'], s['seeds'])} | "
                   f"{_pm(s['test_macro_f1'], s['test_macro_f1_std'], s['seeds'])} |")
    if stats:  # a study of one start has no pairs of starts
        out += ["", "| paired difference of test macro-F1 | labels/class | mean [95 % t interval]; smallest difference "
                "the seeds detect | verdict |", "| --- | --- | --- | --- |"]
    for (a, b, budget), s in stats.items():
        out.append(f"| {LABEL.get(a, a)} − {LABEL.get(b, b)} | {budget_label(budget)} | {_diff(s, say_failed=False)} | {s['verdict']} |")
    out += ablation_table(every)
    from diag.study.runs import pretraining_by_start

    for init, how in pretraining_by_start(rows).items():
        out += ["", f"{LABEL.get(init, init)} start: {how['text']} (k-NN probe on the validation split)."]
    model = rows[0]["model"]
    wall = f"; {meta['wall_s']:.0f} s of wall time" if meta.get("wall_s") else ""
    out += ["", f"Model `{model}`, {len(every)} runs. Recorded {meta.get('recorded', '?')} at diag commit "
            f"`{meta.get('diag_commit', '?')[:10]}` on: {machine_words(meta)}{wall}."
            + (f" {meta['note']}" if meta.get("note") else ""),
            "", "```bash", meta.get("command", "?"), "```"]
    return "\n".join(out)


def ablation_table(rows: list[dict]) -> list[str]:
    """The warmup and freeze ablations (each setting against the main one, same start, budget and seeds),
    as table lines; none when the study ran the main setting only."""
    from diag.study.names import budget_label
    from diag.study.runs import summarise
    from diag.study.stats import compare_settings

    settings = compare_settings(rows)
    if not settings:
        return []
    cells = {(s["init"], s["labels_per_class"], s["freeze"], s["warmup"]): s for s in summarise(rows)}
    out = ["", "| start | labels/class | setting | seeds | **test macro-F1** | minus the main setting "
           "(mean [95 % t interval]; smallest difference the seeds detect) | verdict |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in settings:
        c = cells[(s["init"], s["labels_per_class"], s["freeze"], s["warmup"])]
        out.append(f"| {LABEL.get(s['init'], s['init'])} | {budget_label(s['labels_per_class'])} | {s['setting']} "
                   f"(main: {s['against']}) | {c['seeds']} | "
                   f"{_pm(c['test_macro_f1'], c['test_macro_f1_std'], c['seeds'])} | {_diff(s)} | {s['verdict']} |")
    return out


def render(name: str) -> str:
    return answer_table() if name == "answer" else study_tables(name)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _link_for(page: Path, text: str) -> str:
    """Links in the answer table are written from the repository root; make them relative to ``page``."""
    rel = os.path.relpath(ROOT / "docs", page.parent).replace(os.sep, "/")
    return text if rel == "docs" else text.replace("](docs/", f"]({rel}/")


def outdated() -> dict[Path, str]:
    """Every page whose generated blocks differ from what the records say, with its regenerated text."""
    out = {}
    for page in pages():
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        if "<!-- results:" not in text:
            continue
        new = BLOCK.sub(lambda m: m.group(1) + _link_for(page, render(m.group(2))).rstrip("\n") + "\n" + m.group(4),
                        text)
        if new != text:
            out[page] = new
    return out


def _shown(page: Path) -> str:
    try:
        return str(page.relative_to(ROOT))
    except ValueError:
        return str(page)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("record", help="copy a compare folder's run records into docs/results/STUDY")
    rec.add_argument("study")
    rec.add_argument("compare_dir", type=Path)
    rec.add_argument("--title", required=True)
    rec.add_argument("--command", required=True, help="the command that made the folder, as run")
    rec.add_argument("--note", default="")
    rec.add_argument("--wall-s", type=float)
    rec.add_argument("--commit", help="the diag commit the runs used (default: this checkout's HEAD)")
    sub.add_parser("write", help="regenerate every table between results markers")
    sub.add_parser("check", help="exit 1 when a committed table differs from its records")
    a = ap.parse_args(argv)
    try:
        if a.what == "record":
            print(record(a.study, a.compare_dir, a.title, a.command, a.note, a.wall_s, a.commit))
            return 0
        stale = outdated()
        if a.what == "write":
            for page, text in stale.items():
                _write_atomic(page, text)
                print(f"wrote {_shown(page)}")
            return 0
        for page in stale:
            print(f"{_shown(page)}: a results table differs from docs/results; "
                  "run python scripts/dev/results_tables.py write", file=sys.stderr)
        return 1 if stale else 0
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
