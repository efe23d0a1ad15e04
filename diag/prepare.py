"""``diag prepare``: recordings -> resampled, windowed, leakage-free split -> time-frequency images on disk."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    import torch

import diag
from diag.audit import recording_stats, report_findings, run_audit, stored_findings
from diag.choose import choice_table, choose_transform
from diag.config import SPLITS, PrepareConfig, load_prepare_config, resolve_auto_norms
from diag.dataset import FORMAT_VERSION, MANIFEST, DatasetWriter
from diag.errors import DiagError
from diag.provenance import package_versions
from diag.runtime import pick_device
from diag.storage import check_writable, claim_output, file_sha256
from diag.sources import load_recordings
from diag.sources.base import Recording, list_files
from diag.windows import (
    NormalizationStats,
    apply_normalization,
    check_no_shared_samples,
    extract,
    harmonise,
    plan_split,
)

console = Console(stderr=True)
BATCH = 256


def source_checksums(cfg: PrepareConfig) -> dict[str, str]:
    """sha256 of every file under ``source.path`` (relative names); empty for the simulators.

    Simulated data is fully determined by the config (seed included), which the fingerprint covers.
    """
    if cfg.source.kind.endswith("_sim") or not cfg.source.path:
        return {}
    root = Path(cfg.source.path)
    if not root.exists():
        raise DiagError(f"{root}: no such file or folder; check source.path / --data")
    if root.is_file():
        return {root.name: file_sha256(root)}
    return {str(p.relative_to(root)): file_sha256(p) for p in list_files(root)}


def _reusable(out: Path, cfg: PrepareConfig, checksums: dict[str, str]) -> tuple[bool, str]:
    """Whether ``out`` already holds this exact dataset; else a reason why not."""
    mf = out / MANIFEST
    if not mf.is_file():
        return False, "it is not a prepared dataset (no manifest.json)"
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False, "its manifest.json is corrupt"
    if m.get("fingerprint") != cfg.fingerprint():
        return False, "it was prepared with a different config"
    if m.get("source_checksums") != checksums:
        return False, "the source files changed since"
    if m.get("versions", {}).get("diag") != diag.__version__:
        return False, f"it was prepared by diag {m.get('versions', {}).get('diag')}"
    return True, ""


#: |mean| / RMS of a channel above which its DC level counts as signed information (see signed_levels)
SIGNED_LEVEL = 0.25


def signed_levels(recordings: list[Recording], threshold: float = SIGNED_LEVEL) -> dict[str, tuple[float, float]]:
    """Channels whose DC level carries a sign: ``{name: (lowest, highest mean / RMS)}`` for every channel
    whose mean is at least ``threshold`` of its RMS below zero in one recording and above zero in another.

    An open upper inverter switch pulls its phase current's mean negative, the open lower switch of the
    same leg positive (and the currents are then mirror images of each other): every diag image is a
    magnitude and drops that sign unless ``transform.polarity`` is set. A sensor offset shifts all
    recordings the same way and does not count (CWRU's accelerometers: mean / RMS 0.006-0.17, all > 0).
    """
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for r in recordings:
        x = np.asarray(r.signal)  # float64 accumulators, no float64 copy of the recording
        rms = np.sqrt(np.einsum("cn,cn->c", x, x, dtype=np.float64) / x.shape[-1])
        ratio = np.mean(x, axis=-1, dtype=np.float64) / np.where(rms > 0, rms, 1.0)
        for name, v in zip(r.channels, ratio):
            lo[name], hi[name] = min(lo.get(name, v), v), max(hi.get(name, v), v)
    return {c: (float(lo[c]), float(hi[c])) for c in lo if lo[c] <= -threshold and hi[c] >= threshold}


def _classes(recordings: list[Recording]) -> list[str]:
    labels = sorted({r.label for r in recordings})
    # A healthy class first reads best in tables and confusion matrices.
    for healthy in ("normal", "healthy"):
        if healthy in labels:
            labels.remove(healthy)
            labels.insert(0, healthy)
    return labels


def transform_device(spec: str) -> torch.device:
    """The device ``diag prepare`` computes images on: ``cpu``, ``cuda[:N]`` or ``auto``."""
    import torch

    if spec == "auto":  # not pick_device's auto: the transform is not tested on Apple MPS
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.split(":")[0] not in ("cpu", "cuda"):
        raise DiagError(f"--device: '{spec}' is not one of cpu, cuda, cuda:N, auto")
    return pick_device(spec)


def prepare(
    config: str | Path | None,
    out: str | Path,
    overrides: list[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    device: str = "cpu",
    strict: bool = False,
) -> Path:
    """Prepare a dataset directory (see :mod:`diag.dataset` for its layout) and return its path.

    An existing ``out`` made from the same config, sources and diag version is reused; anything else
    at ``out`` is only replaced with ``force=True``. The directory appears atomically: an
    interrupted run leaves nothing at ``out``. ``device``: where the time-frequency transform runs,
    ``cpu`` (default; bit-reproducible), ``cuda[:N]`` or ``auto`` (CUDA when present). GPU images
    agree with CPU ones to float rounding; the device is recorded in the manifest, not the fingerprint.
    ``strict``: a finding of the data audit (:mod:`diag.audit`) is an error and nothing is written.
    """
    from diag.transforms import make_transform, reference_hz, window_reference_hz

    t0 = time.perf_counter()
    dev = transform_device(device)
    cfg = load_prepare_config(config, overrides)
    out = Path(out)
    existing = claim_output(out, "prepared", force=force, inputs=[cfg.source.path])
    check_writable(out)
    checksums = source_checksums(cfg)
    if existing:
        ok, why = _reusable(out, cfg, checksums)
        if ok:
            if not quiet:
                console.print(f"{out}: up to date (same config and sources); reusing it")
            report_findings(stored_findings(out) if strict else [], console, strict=True, where=f"{out}: ")
            return out
        if not force:
            raise DiagError(f"{out}: already exists and {why}; choose another --out or pass --force to replace it")

    recordings = load_recordings(cfg.source)
    source_checks = getattr(recordings, "findings", [])  # what diag.sources.checks found: shown, and kept
    for f in source_checks if not quiet else []:
        console.print(f"[yellow]{f.tag}:[/] {escape(str(f))}", soft_wrap=True)
    raw, recordings = recordings, harmonise(recordings, cfg.windows)
    fingerprint = cfg.fingerprint()  # of the config as given (auto included): what the reuse check compares
    for note in resolve_auto_norms(cfg.windows, cfg.transform, recordings[0].n_channels):
        if not quiet:
            console.print(f"[yellow]note:[/] {note}")
    choice = choose_transform(raw, recordings, cfg) if cfg.transform.kind == "auto" else None  # diag.choose
    for line in [choice_table(choice), *choice["notes"]] if choice and not quiet else []:
        console.print(line)
    # order images (envorder / harmonics): every recording's reference rate, from its meta or the config,
    # or estimated (transform.ref_search) from the recording as read -- as diag predict reads a file
    refs = []
    for r in raw:
        try:
            refs.append(reference_hz(r.meta, cfg.transform, r.signal, r.fs))
        except DiagError as exc:
            raise DiagError(f"{r.source}: {exc}") from None
    rec_stats = recording_stats(raw)  # per recording as read, for the data audit (diag.audit)
    del raw
    fs = recordings[0].fs
    plan = plan_split(recordings, cfg.windows, cfg.split)
    cfg.split.method = plan.method  # split.method=auto resolved (diag.split_auto); the notes say why
    if plan.leaky:
        console.print("[bold yellow]warning:[/] random window split: neighbouring windows of one recording sit on "
                      "both sides of train/test; reported accuracy will be optimistic and will not transfer")
    else:
        check_no_shared_samples(plan, cfg.windows.length)
    for note in plan.notes:
        if not quiet and note not in plan.warnings:
            console.print(f"[yellow]note:[/] {note}")
    for warning in plan.warnings:  # printed even when quiet: it changes what the validation score means
        console.print(f"[bold yellow]warning:[/] {warning}")
    n_ch = recordings[0].n_channels
    if n_ch > 1 and not quiet and (cfg.windows.normalize in ("zscore", "rms", "minmax") or cfg.transform.norm == "image"):
        console.print(f"[yellow]note:[/] windows.normalize={cfg.windows.normalize} / transform.norm={cfg.transform.norm} "
                      f"scale each of the {n_ch} channels on its own, which divides away level differences between "
                      "them; if they are phases of one machine, windows.normalize=rms-joint (or dataset) with "
                      "transform.norm=image-joint keeps them")
    if not cfg.transform.polarity and not quiet:
        signed = signed_levels(recordings)
        if signed:
            span = ", ".join(f"{c} {a:+.2f}..{b:+.2f}" for c, (a, b) in signed.items())
            console.print(f"[yellow]note:[/] the mean of {', '.join(signed)} changes sign between recordings (mean/RMS "
                          f"{span}), and every image is a magnitude that drops the sign; transform.polarity=true "
                          "keeps it (an open upper vs lower switch of one inverter leg differ only in sign)")

    classes = _classes(recordings)
    y_of_rec = np.array([classes.index(r.label) for r in recordings], dtype=np.int64)
    transform = make_transform(cfg.transform, fs=fs, length=cfg.windows.length, device=dev)
    needs_ref = bool(getattr(transform, "needs_ref", False))
    if needs_ref:
        for r, (pair, _) in zip(recordings, refs):
            if pair is None:
                raise DiagError(
                    f"{r.source}: transform.kind '{cfg.transform.kind}' needs this recording's "
                    f"{'shaft rate' if 'envorder' in transform.kinds else 'electrical fundamental'}, which it does "
                    "not carry (no rpm / f1 in its meta); set transform.ref_hz=<Hz> (--set transform.ref_hz=29.5) "
                    "or a range to estimate it in (--set 'transform.ref_search=[15, 45]')"
                )
    ref_lo = np.array([p[0] if p else 0.0 for p, _ in refs])
    ref_hi = np.array([p[1] if p else 0.0 for p, _ in refs])
    rec_len = np.array([r.n_samples for r in recordings])
    # the probe also checks the highest reference rate against the image's reach (order_max x ref_hz)
    ref_kw = {"ref_hz": float(np.maximum(ref_lo, ref_hi).max())} if needs_ref else {}
    probe = transform(np.zeros((1, recordings[0].n_channels, cfg.windows.length), np.float32) + 1e-3, **ref_kw)
    image_shape = tuple(int(s) for s in probe.shape[1:])

    sides = [s for s in SPLITS if (plan.windows.side == s).any()]
    sizes = {s: int((plan.windows.side == s).sum()) for s in sides}
    norm_stats = None
    if cfg.windows.normalize == "dataset":  # one scale per channel group, from the training windows only
        acc = NormalizationStats(recordings[0].channels, cfg.windows.channel_groups)
        tr = plan.windows.select("train")
        for i in range(0, len(tr), BATCH):
            acc.update(extract(recordings, tr.rec[i : i + BATCH], tr.start[i : i + BATCH], cfg.windows.length))
        norm_stats = acc.result()
    metas: dict[str, dict[str, np.ndarray]] = {}
    total_batches = sum((n + BATCH - 1) // BATCH for n in sizes.values())
    with DatasetWriter(out, sizes, image_shape) as writer, Progress(
        TextColumn("[bold]prepare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=quiet, transient=True,
    ) as progress:
        task = progress.add_task("images", total=total_batches)
        for side in sides:
            idx = plan.windows.select(side)
            for i in range(0, len(idx), BATCH):
                rec, start = idx.rec[i : i + BATCH], idx.start[i : i + BATCH]
                x = apply_normalization(extract(recordings, rec, start, cfg.windows.length), cfg.windows.normalize,
                                        norm_stats)
                if needs_ref:
                    ref = window_reference_hz((ref_lo[rec], ref_hi[rec]), start, cfg.windows.length, rec_len[rec])
                    writer.add(side, transform(x, ref_hz=ref))
                else:
                    writer.add(side, transform(x))
                progress.advance(task)
            metas[side] = {
                "y": y_of_rec[idx.rec],
                "label": np.array([recordings[r].label for r in idx.rec], dtype=object),
                "group": np.array([recordings[r].group for r in idx.rec], dtype=object),
                "condition": np.array([recordings[r].condition for r in idx.rec], dtype=object),
                "fault_size": np.array([recordings[r].fault_size for r in idx.rec], dtype=object),
                "source": np.array([recordings[r].source for r in idx.rec], dtype=object),
                "start": idx.start,
                "rec": idx.rec,
            }
        counts = {
            s: {c: int((metas[s]["y"] == k).sum()) for k, c in enumerate(classes)} for s in sides
        }
        elapsed = time.perf_counter() - t0
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": fingerprint,
            "config": cfg.to_dict(),
            "classes": classes,
            "fs": fs,
            "window": {"length": cfg.windows.length, "hop": cfg.windows.hop, "normalize": cfg.windows.normalize,
                       "channels": list(recordings[0].channels), "band": list(cfg.windows.band),
                       "normalization_stats": norm_stats},
            "transform": transform.to_dict(),
            "transform_device": str(dev),
            "image_shape": list(image_shape),
            "sizes": sizes,
            "counts": counts,
            "split": {"method": cfg.split.method, "val_method": cfg.split.val_method, "val_by": plan.val_by,
                      "guard_samples": plan.guard, "leaky": plan.leaky,
                      "notes": plan.notes,
                      "blocks": [[b.rec, b.start, b.stop, b.side] for b in plan.blocks]},
            "recordings": [
                {"source": r.source, "label": r.label, "group": r.group, "condition": r.condition,
                 "fault_size": r.fault_size, "fs": r.fs, "fs_original": r.meta.get("fs_original", r.fs),
                 "samples": r.n_samples, "channels": list(r.channels),
                 **({"ref_hz": list(pair), "ref_from": how} if needs_ref else {})}
                for r, (pair, how) in zip(recordings, refs)
            ],
            "source_checksums": checksums,
            "source_checks": [f.to_dict() for f in source_checks],
            **({"transform_choice": choice} if choice else {}),
            "versions": package_versions(),
            "seconds": round(elapsed, 2),
        }
        manifest["audit"] = run_audit(manifest, np.load(writer.tmp / "train.npy", mmap_mode="r"), metas["train"],
                                      rec_stats, console, strict=strict)  # prints; strict: raises, nothing written
        writer.commit(metas, manifest, replace=force)

    if not quiet:
        _print_summary(out, classes, counts, sides, image_shape, elapsed, len(recordings))
    return out


def _print_summary(out: Path, classes: list[str], counts: dict, sides: list[str], shape: tuple, seconds: float,
                   n_rec: int) -> None:
    con = Console()
    con.print(f"[bold]{out}[/]: {n_rec} recordings -> {shape[0]}x{shape[1]}x{shape[2]} images (windows per class and split)")
    t = Table()
    t.add_column("class")
    for s in sides:
        t.add_column(s, justify="right")
    for c in classes:
        t.add_row(c, *[str(counts[s][c]) for s in sides])
    t.add_row("[bold]total", *[f"[bold]{sum(counts[s].values())}" for s in sides])
    con.print(t)
    con.print(f"prepared in {seconds:.1f} s")
