"""Summary of an SSL measurement folder (scripts/studies/ssl_methods.sh, ssl_pool.sh): each pretraining's
loss, probe and (with method auto) choice; each fine-tune's test macro-F1, and its per-seed difference to
scratch where both ran. Usage: python scripts/studies/ssl_summary.py OUT"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def pretrainings(out: Path) -> list[str]:
    lines = []
    for p in sorted(out.glob("*/pretrain.json")):
        m = json.loads(p.read_text())
        pr = m["probe"]
        h = [r for r in m.get("history") or [] if r.get("epoch", 0) > 0]
        loss = f"loss {h[0]['loss']:.3f} -> {h[-1]['loss']:.3f}; " if h and "loss" in h[0] else ""
        choice = (m.get("method_choice") or {}).get("said")
        curve = " ".join(f"{c['accuracy']:.3f}" for c in pr["curve"])
        lines.append(f"{p.parent.name}: {m.get('method')} {m.get('model')} init {m.get('init')}, "
                     f"{m.get('unlabeled_windows')} unlabelled windows: {loss}probe {pr['initial']:.3f} -> best "
                     f"{pr['best']:.3f} (epoch {pr['best_epoch']}), margin {pr['margin']:.3f}, learned {pr['learned']}; "
                     f"curve {curve}" + (f"; {choice}" if choice else ""))
    return lines


def finetunes(out: Path) -> list[str]:
    rows: dict[str, dict[int, float]] = {}
    for p in sorted(out.glob("ft/*/test_metrics.json")):
        start, seed = p.parent.name.rsplit("-s", 1)
        rows.setdefault(start, {})[int(seed)] = json.loads(p.read_text())["macro_f1"]
    base, lines = rows.get("scratch", {}), []
    for start, by_seed in rows.items():
        f1 = np.array(list(by_seed.values()))
        line = (f"fine-tune {start:9s} test macro-F1 {f1.mean():.3f} +- {f1.std(ddof=1) if len(f1) > 1 else 0:.3f} "
                f"over {len(f1)} seeds")
        common = sorted(set(by_seed) & set(base))
        if start != "scratch" and common:
            d = np.array([by_seed[s] - base[s] for s in common])
            line += f"; minus scratch {d.mean():+.3f} (seeds {common}: {' '.join(f'{x:+.3f}' for x in d)})"
        lines.append(line)
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print("\n".join(pretrainings(folder) + finetunes(folder)))
