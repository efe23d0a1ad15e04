"""The data audit: what in a prepared dataset can make its test score answer another question.

``diag prepare`` runs it and prints the findings (``diag audit PREPARED`` re-runs it on a prepared
dataset); they are stored in the manifest under ``audit`` and listed by ``diag report``. Each
finding is a warning with what to do; ``--strict`` turns them into an error (exit 2). Findings:

``one-recording`` / ``one-group`` / ``one-condition``
    a class whose every recording is one recording, one group (bearing, machine) or one operating
    condition: its test windows measure that recording / group / condition, not the class.
``row-separates``
    a single image row's mean over time separates one class from the rest with AUROC >= 0.99 on the
    training windows; the row's band (Hz, or orders of the reference rate) is named. Only for a class
    whose training windows come from a single recording (a single group where groups are given):
    there the separating row is as likely that recording's signature as the class's (CWRU's one
    48 kHz healthy recording is separated by the top CWT row alone). A row that separates a class
    over several independent recordings is the cue a model should learn (on the simulated bearings
    the envelope-order row at BPFI separates 'inner' over two recordings with AUROC 1.000), not a finding.
``stat-separates``
    a per-recording statistic of the recordings as read (per channel: RMS, DC offset) separates a
    class from the rest with AUROC >= 0.99 over the training recordings, with a chance below
    :data:`MAX_P` of so clean a split by accident (exact Mann-Whitney test: a class of two recordings
    among six is cleanly split by chance 13 % of the time, so it is never reported).
``resampled-some``
    recordings resampled from another rate for only some classes (another acquisition chain: a
    cue no preprocessing removes).
``one-side``
    a class with windows on some sides of the split but not on others, or an operating condition on
    the test side only (when the split is not by condition: the test then mixes an unseen operating
    point into a question that does not claim it). A condition only on the training side is normal
    for every holdout split and is not reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.sources.base import Recording

#: AUROC (either direction) at or above which one feature counts as separating a class from the rest
SEPARATES = 0.99
#: a class on at most this many training units (recordings, groups) has its row separators reported
MAX_UNITS = 1
#: largest chance of a clean per-recording split by accident that is still reported
MAX_P = 0.01
BATCH = 512


@dataclass
class AuditFinding:
    """One thing the audit found: ``code`` (see the module doc), what (``message``), what to do
    (``advice``), the classes concerned and the numbers behind it (``detail``)."""

    code: str
    message: str
    advice: str
    classes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message}. {self.advice}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# Inputs kept in the manifest (so `diag audit` can re-run without the source files)


def recording_stats(raw: list[Recording]) -> list[dict[str, Any]]:
    """Per recording as read (before resampling): ``{"rms": [per channel], "dc": [per channel], "fs"}``,
    in the order of the recordings (the manifest's ``recordings``)."""
    out = []
    for r in raw:
        x = np.asarray(r.signal)
        mean = np.mean(x, axis=-1, dtype=np.float64)
        rms = np.sqrt(np.einsum("cn,cn->c", x, x, dtype=np.float64) / x.shape[-1])
        out.append({"rms": [float(v) for v in rms], "dc": [float(v) for v in mean], "fs": float(r.fs)})
    return out


def auroc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``scores`` ``[N, F]`` for the boolean ``positive`` ``[N]`` (ties count
    half): the chance that a positive scores above a negative. ``[F]``."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=0)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], 0.5)
    u = ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


# ---------------------------------------------------------------------------------------------------
# The checks (each: manifest (+ data) -> findings)


def _per_class(recordings: list[dict], key: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in recordings:
        out.setdefault(r["label"], set()).add(r.get(key) or r["source"])
    return out


def check_units(m: dict[str, Any]) -> list[AuditFinding]:
    """Classes resting on one recording, one group (where groups are given) or one condition."""
    recs = m["recordings"]
    findings = []
    by_rec = _per_class(recs, "source")
    one = sorted(c for c, s in by_rec.items() if len(s) == 1)
    if one:
        findings.append(AuditFinding(
            "one-recording", f"class(es) {_names(one)} rest on a single recording each "
            f"({', '.join(sorted(next(iter(by_rec[c])) for c in one)[:3])}{', ...' if len(one) > 3 else ''}): their "
            "validation and test windows come from the recording trained on, so their scores measure that recording",
            "Record more recordings of these classes (other days, machines, mountings), or read their scores as "
            "memory of one recording", one))
    groups = [r.get("group") for r in recs if r.get("group")]
    if len(groups) > len(set(groups)):  # groups are given: some recordings share one
        by_group = _per_class(recs, "group")
        one_g = sorted(c for c, g in by_group.items() if len(g) == 1 and c not in one)
        if one_g:
            findings.append(AuditFinding(
                "one-group", f"class(es) {_names(one_g)} rest on a single group (bearing / machine) each: every "
                "test window of such a class comes from the group trained on, so the test measures that group, "
                "not the class on another machine",
                "Add recordings of these classes from other groups (machines, bearings), or read the scores as "
                "recognition of known machines", one_g))
    conditions = {r.get("condition", "") for r in recs}
    if len(conditions) > 1:
        by_cond = _per_class(recs, "condition")
        one_c = sorted(c for c, s in by_cond.items() if len(s) == 1 and c not in one)
        if one_c:
            which = {c: next(iter(by_cond[c])) for c in one_c}
            findings.append(AuditFinding(
                "one-condition", f"class(es) {_names(one_c)} were recorded at one operating condition each "
                f"({', '.join(f'{c}: {v}' for c, v in list(which.items())[:4])}) while the data holds "
                f"{len(conditions)}: whatever marks that condition also marks the class",
                "Record these classes at the other conditions too, or score only within one condition",
                one_c, {"conditions": which}))
    return findings


def check_resampled(m: dict[str, Any]) -> list[AuditFinding]:
    """Recordings resampled from another rate for only some classes."""
    fs = float(m.get("fs") or 0)
    rates: dict[float, set[str]] = {}
    for r in m["recordings"]:
        rates.setdefault(float(r.get("fs_original", r.get("fs", fs))), set()).add(r["label"])
    classes = set(m["classes"])
    findings = []
    for rate, cls in sorted(rates.items()):
        if len(rates) < 2 or cls == classes or abs(rate - fs) <= 1e-9 * max(fs, 1):
            continue
        only = sorted(cls)
        others = sorted({f"{r:g}" for r in rates if r != rate})
        findings.append(AuditFinding(
            "resampled-some", f"recordings of class(es) {_names(only)} were sampled at {rate:g} Hz and resampled "
            f"to {fs:g} Hz; the other classes' recordings at {' / '.join(others)} Hz: another acquisition chain "
            "(anti-alias filter, sensor, amplifier) leaves marks no preprocessing removes",
            "Record every class with the same chain and rate; until then check the row-separates findings and "
            "set windows.band below the lowest anti-alias edge", only, {"rate_hz": rate, "to_hz": fs}))
    return findings


def check_sides(m: dict[str, Any]) -> list[AuditFinding]:
    """Classes with windows on some sides only; conditions on the test side only (not a condition split)."""
    counts = m.get("counts") or {}
    findings = []
    sides = [s for s in ("train", "val", "test") if s in counts]
    lopsided = {c: [s for s in sides if not counts[s].get(c)] for c in m["classes"]}
    lopsided = {c: s for c, s in lopsided.items() if 0 < len(s) < len(sides)}
    if lopsided:
        findings.append(AuditFinding(
            "one-side", "class(es) " + "; ".join(f"'{c}' have no {'/'.join(s)} windows" for c, s in lopsided.items()),
            "A class never trained on cannot be named, one never tested is not measured: give it recordings on "
            "every side (other split fractions, more recordings)", sorted(lopsided)))
    split = m.get("split") or {}
    blocks = split.get("blocks") or []
    if split.get("method") != "condition" and blocks:
        cond_sides: dict[str, set[str]] = {}
        for rec, _, _, side in blocks:
            cond_sides.setdefault(m["recordings"][rec].get("condition", ""), set()).add(side)
        test_only = sorted(c for c, s in cond_sides.items() if s == {"test"} and c)
        if test_only:
            cls = sorted({r["label"] for r in m["recordings"] if r.get("condition") in test_only})
            findings.append(AuditFinding(
                "one-side", f"condition(s) {_names(test_only)} appear on the test side only (classes {_names(cls)}): "
                f"the {split.get('method')} split's test then mixes an operating point never trained on into its "
                "question",
                "Use split.method=condition to ask that question on purpose, or record those conditions for training "
                "as well", cls, {"conditions": test_only}))
    return findings


def check_stats(m: dict[str, Any], stats: list[dict[str, Any]]) -> list[AuditFinding]:
    """Per-recording RMS / DC offset (per channel, as read) separating a class over the training recordings."""
    from scipy.stats import mannwhitneyu

    train = sorted({rec for rec, _, _, side in (m.get("split") or {}).get("blocks") or [] if side == "train"})
    if len(train) < 4 or len(stats) != len(m["recordings"]):
        return []
    labels = np.array([m["recordings"][i]["label"] for i in train])
    channels = m["recordings"][train[0]].get("channels") or ["ch0"]
    findings = []
    for what, key in (("RMS", "rms"), ("DC offset", "dc")):
        values = np.array([stats[i][key] for i in train], dtype=np.float64)  # [recordings, channels]
        for c in m["classes"]:
            pos = labels == c
            if pos.sum() == 0 or pos.all():
                continue
            a = auroc(values, pos)
            for ch in np.nonzero(np.maximum(a, 1 - a) >= SEPARATES)[0]:
                p = mannwhitneyu(values[pos, ch], values[~pos, ch], alternative="two-sided", method="exact").pvalue
                if p >= MAX_P:
                    continue
                hi = a[ch] >= 0.5
                findings.append(AuditFinding(
                    "stat-separates", f"the {what} of channel {channels[ch]} (as read) is {'higher' if hi else 'lower'} "
                    f"for class '{c}' than for the rest on the training recordings (AUROC {max(a[ch], 1 - a[ch]):.3f}, "
                    f"{int(pos.sum())} vs {int((~pos).sum())} recordings, chance of so clean a split p = {p:.2g})",
                    f"{_norm_advice(m, key)}; if it is the sensor, gain or mounting rather than the fault, record the "
                    "classes with the same chain", [c], {"statistic": key, "channel": channels[ch],
                                                         "auroc": round(float(a[ch]), 4), "p": float(p)}))
    return findings


def _norm_advice(m: dict[str, Any], key: str) -> str:
    norm = (m.get("window") or {}).get("normalize", "")
    removes = {"rms": ("zscore", "rms", "minmax", "zscore-joint", "rms-joint"), "dc": ("zscore", "minmax", "zscore-joint")}
    if norm in removes[key]:
        return f"windows.normalize={norm} removes each window's {'level' if key == 'rms' else 'offset'}, but other " \
               "marks of the same cause can remain in the images"
    return f"windows.normalize={norm} keeps it: the model can use it"


def row_means(images: np.ndarray) -> np.ndarray:
    """Mean over time (columns) of every row of every channel of ``images`` ``[N, C, H, W]``: ``[N, C, H]``
    (float32, batch by batch: works on a memory-mapped float16 file)."""
    out = np.empty(images.shape[:3], dtype=np.float32)
    for i in range(0, len(images), BATCH):
        out[i : i + BATCH] = np.asarray(images[i : i + BATCH], dtype=np.float32).mean(axis=3)
    return out


def row_band(transform: dict[str, Any], channel: int, row: int) -> str:
    """What image ``channel``'s ``row`` covers, in words, from the manifest's transform description."""
    kinds = transform.get("representations") or [transform.get("kind", "?")]
    k = len(kinds)
    part = kinds[channel % k]
    axis = (transform.get("frequencies_hz") or {}).get(part)
    unit = "Hz"
    if axis is None and isinstance(transform.get(part), dict):
        axis, unit = transform[part].get("orders"), "x the reference rate"
    if not axis:
        return f"{part} row {row}"
    v = np.asarray(axis, dtype=np.float64)
    inner = (v[1:] + v[:-1]) / 2 if unit != "Hz" or part == "stft" else np.sqrt(np.abs(v[1:] * v[:-1]))
    edges = np.concatenate([[2 * v[0] - inner[0]], inner, [2 * v[-1] - inner[-1]]]) if len(v) > 1 else [v[0], v[0]]
    lo, hi = max(float(edges[row]), 0.0), float(edges[row + 1])
    return f"{part} row {row}: {lo:.4g}-{hi:.4g} {unit}"


def row_runs(transform: dict[str, Any], features: np.ndarray, n_rows: int, most: int = 4) -> list[str]:
    """The image rows ``features`` (flat indices ``channel * n_rows + row``) as runs of neighbouring rows,
    each with its band in words, e.g. ``["cwt rows 52-58: 2071-3542 Hz"]`` (at most ``most`` runs)."""
    runs: list[list[int]] = []
    for f in sorted(int(v) for v in features):
        if runs and f == runs[-1][-1] + 1 and f // n_rows == runs[-1][0] // n_rows:
            runs[-1].append(f)
        else:
            runs.append([f])
    out = []
    for run in runs[:most]:
        first = row_band(transform, run[0] // n_rows, run[0] % n_rows)
        last = row_band(transform, run[-1] // n_rows, run[-1] % n_rows)
        if len(run) == 1:
            out.append(first)
            continue
        part, lo = first.split(" row ")[0], first.split(": ")[1].split("-")[0]
        hi = last.split(": ")[1].split("-", 1)[1]
        ch = run[0] // n_rows
        out.append(f"{part}{f' (channel {ch})' if ch else ''} rows {run[0] % n_rows}-{run[-1] % n_rows}: {lo}-{hi}")
    if len(runs) > most:
        out.append(f"{len(runs) - most} more run(s)")
    return out


def check_rows(m: dict[str, Any], means: np.ndarray, meta: dict[str, np.ndarray]) -> list[AuditFinding]:
    """A single image row's mean over time separating a class from the rest on the training windows,
    for the classes resting on at most :data:`MAX_UNITS` training recording (group where groups are given)."""
    y = np.asarray(meta["y"])
    groups = [r.get("group") for r in m["recordings"] if r.get("group")]
    by_group = len(groups) > len(set(groups))
    unit_of = np.array([(r.get("group") or r["source"]) if by_group else r["source"] for r in m["recordings"]],
                       dtype=object)
    flat = means.reshape(len(means), -1)
    n_rows = means.shape[2]
    findings = []
    for k, c in enumerate(m["classes"]):
        pos = y == k
        units = len(set(unit_of[np.asarray(meta["rec"])[pos]]))
        if not pos.any() or pos.all() or units > MAX_UNITS:
            continue
        a = auroc(flat, pos)
        sep = np.maximum(a, 1 - a)
        hits = np.nonzero(sep >= SEPARATES)[0]
        if not len(hits):
            continue
        best = int(hits[np.argmax(sep[hits])])
        transform = m.get("transform") or {}
        bands = row_runs(transform, hits, n_rows)
        findings.append(AuditFinding(
            "row-separates", f"class '{c}' (its training windows all from one {'group' if by_group else 'recording'}) "
            f"is separated from the rest by the mean of a single image row, AUROC {sep[best]:.3f} on "
            f"{int(pos.sum())} vs {int((~pos).sum())} training windows; the {len(hits)} row(s) at >= {SEPARATES}: "
            f"{'; '.join(bands)}",
            "A model can name the class from one such band alone, and with one recording nothing tells the fault "
            "from that recording's signature (sensor, acquisition chain, mounting): remove the band (windows.band, "
            "transform.fmin/fmax) or record the class on more recordings", [c],
            {"auroc": round(float(sep[best]), 4), "best_row": row_band(transform, best // n_rows, best % n_rows),
             "bands": bands, "rows": [int(h) for h in hits], "higher_for_class": bool(a[best] >= 0.5)}))
    return findings


def _names(items: list[str]) -> str:
    return ", ".join(f"'{c}'" for c in items[:6]) + (f" and {len(items) - 6} more" if len(items) > 6 else "")


# ---------------------------------------------------------------------------------------------------
# Running it


def audit(m: dict[str, Any], train_images: np.ndarray | None, train_meta: dict[str, np.ndarray] | None,
          stats: list[dict[str, Any]] | None) -> list[AuditFinding]:
    """Every check on a prepared dataset's manifest ``m``, its training images ``[N, C, H, W]`` and
    meta (``y``, ``rec``), and the per-recording ``stats`` (:func:`recording_stats`); a check whose
    input is missing (``None``) is skipped."""
    findings = check_units(m) + check_resampled(m) + check_sides(m)
    if stats is not None:
        findings += check_stats(m, stats)
    if train_images is not None and train_meta is not None and len(train_images):
        findings += check_rows(m, row_means(train_images), train_meta)
    return findings


def report_findings(findings: list[AuditFinding], console, strict: bool = False, where: str = "") -> None:
    """Print every finding as a warning; with ``strict`` and any finding, raise a one-line DiagError."""
    from rich.markup import escape

    for f in findings:
        console.print(f"[bold yellow]data audit ({f.code}):[/] {escape(str(f))}", soft_wrap=True)
    if strict and findings:
        raise DiagError(f"{where}data audit: {len(findings)} finding(s) (--strict makes them errors; the first: "
                        f"{findings[0].message}); fix the data or drop --strict")


def audit_record(findings: list[AuditFinding], stats: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What the manifest stores under ``audit``: the findings and the inputs ``diag audit`` re-runs on."""
    return {"findings": [f.to_dict() for f in findings], "recording_stats": stats,
            "thresholds": {"auroc": SEPARATES, "max_units": MAX_UNITS, "max_p": MAX_P}}


def run_audit(m: dict[str, Any], train_images: np.ndarray, train_meta: dict[str, np.ndarray],
              stats: list[dict[str, Any]], console, strict: bool = False) -> dict[str, Any]:
    """The audit ``diag prepare`` runs before it commits a dataset: audit, print, raise with ``strict``
    (nothing is written then), and return the manifest's ``audit`` record."""
    findings = audit(m, train_images, train_meta, stats)
    report_findings(findings, console, strict=strict)
    return audit_record(findings, stats)


def stored_findings(path: str | Path) -> list[AuditFinding]:
    """The findings a prepared dataset's manifest holds (for a reused dataset: ``diag prepare --strict``)."""
    import json

    from diag.signal.dataset import MANIFEST

    m = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    return [AuditFinding(**f) for f in (m.get("audit") or {}).get("findings", [])]


def audit_lines(manifest: dict[str, Any]) -> list[str] | None:
    """The findings stored in a manifest as lines for a report (``None``: the dataset was never audited)."""
    a = manifest.get("audit")
    if not isinstance(a, dict):
        return None
    return [f"{f['code']}: {f['message']}. {f['advice']}" for f in a.get("findings", [])]


def audit_prepared(path: str | Path, console, strict: bool = False) -> list[AuditFinding]:
    """``diag audit PREPARED``: re-run the audit on a prepared dataset and print it; the per-recording
    statistics come from its manifest (datasets prepared before the audit have none: that check is skipped)."""
    from diag.signal.dataset import PreparedDataset

    ds = PreparedDataset(path)
    m = ds.manifest
    stats = (m.get("audit") or {}).get("recording_stats")
    if stats is None:
        console.print("[yellow]note:[/] no per-recording statistics in this manifest (prepared before the audit); "
                      "the RMS / DC offset check is skipped; prepare it again for that check")
    train = "train" in ds.splits
    findings = audit(m, ds.images("train") if train else None, ds.meta("train") if train else None, stats)
    if not findings:
        console.print(f"{path}: data audit: no findings")
    report_findings(findings, console, strict=strict, where=f"{path}: ")
    return findings
