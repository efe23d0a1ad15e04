"""The answer across studies: one markdown table from several `diag compare` folders.

Usage: python scripts/answer_table.py NAME=DIR [NAME=DIR ...]

For each folder (one study, one prepared dataset) and each label budget of its main setting (the
(freeze, warmup) with the most runs, as in `diag report`): test macro-F1 mean ± std over seeds per
start, and the paired difference of ImageNet and SSL against scratch with its 95 % t interval.
Every number is read from the runs' own JSON through diag.study (runs, stats), never typed by hand.
"""

from __future__ import annotations

import math
import sys

from diag.errors import DiagError
from diag.study.names import INIT_LABEL, budget_name
from diag.study.runs import collect_runs, main_setting, summarise
from diag.study.stats import compare_starts


def _diff(s: dict | None) -> str:
    if s is None:
        return "—"
    if math.isnan(s["low"]):
        return f"{s['mean']:+.3f} (one seed)"
    mark = "**" if s["low"] > 0 or s["high"] < 0 else ""
    return f"{mark}{s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]{mark}"


def table(studies: list[tuple[str, str]]) -> str:
    starts = ("imagenet", "ssl", "scratch")
    head = (["study", "labels/class", "seeds"] + [f"{INIT_LABEL[s]}" for s in starts]
            + ["ImageNet − scratch", "SSL − scratch"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, root in studies:
        rows = collect_runs(root)
        if not rows:
            raise DiagError(f"{root}: no finished runs")
        base = main_setting(rows)
        rows = [r for r in rows if (r["freeze"], r["warmup"]) == base]
        summary = {(s["init"], s["labels_per_class"]): s for s in summarise(rows)}
        stats = {(s["a"], s["b"], s["labels_per_class"]): s for s in compare_starts(rows)}
        for budget in dict.fromkeys(s["labels_per_class"] for s in summary.values()):  # summarise's budget order
            cells = []
            for init in starts:
                s = summary.get((init, budget))
                cells.append("—" if s is None else f"{s['test_macro_f1']:.3f}" if s["seeds"] == 1
                             else f"{s['test_macro_f1']:.3f} ± {s['test_macro_f1_std']:.3f}")
            seeds = max((summary[k]["seeds"] for k in summary if k[1] == budget), default=0)
            lines.append("| " + " | ".join([name, budget_name(budget), str(seeds)] + cells
                                           + [_diff(stats.get(("imagenet", "scratch", budget))),
                                              _diff(stats.get(("ssl", "scratch", budget)))]) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        print(table([tuple(a.split("=", 1)) for a in argv]))
    except DiagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
