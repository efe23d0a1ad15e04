"""``diag prepare``: recordings -> resampled, windowed, leakage-free split -> time-frequency images on disk."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    import torch

from diag.config import SPLITS, PrepareConfig, load_prepare_config, resolve_auto_norms
from diag.signal.audit import recording_stats, report_findings, run_audit, stored_findings
from diag.signal.choose import choice_table, choose_transform
from diag.signal.dataset import FORMAT_VERSION, MANIFEST, DatasetWriter
from diag.errors import DiagError
from diag.version import __version__
from diag.provenance import package_versions
from diag.learning.runtime import pick_device
from diag.show import console as make_console
from diag.show import esc, tagged
from diag.storage import check_writable, claim_output, file_sha256
from diag.signal.recordings import load_recordings
from diag.sources.base import Recording, list_files
from diag.signal.preprocessing import BATCH, Preprocessing
from diag.signal.windows import check_no_shared_samples, plan_split

console = make_console(stderr=True)


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
    if m.get("versions", {}).get("diag") != __version__:
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
    """Prepare a dataset directory (see :mod:`diag.signal.dataset` for its layout) and return its path.

    An existing ``out`` made from the same config, sources and diag version is reused; anything else
    at ``out`` is only replaced with ``force=True``. The directory appears atomically: an
    interrupted run leaves nothing at ``out``. ``device``: where the time-frequency transform runs,
    ``cpu`` (default; bit-reproducible), ``cuda[:N]`` or ``auto`` (CUDA when present). GPU images
    agree with CPU ones to float rounding; the device is recorded in the manifest, not the fingerprint.
    ``strict``: a finding of the data audit (:mod:`diag.signal.audit`) is an error and nothing is written.

    The steps from a recording to its images are one fitted object, :class:`Preprocessing`, stored in
    the manifest and carried by every run trained on the dataset, so ``diag predict`` applies the same.
    """
    t0 = time.perf_counter()
    dev = transform_device(device)
    cfg = load_prepare_config(config, overrides)
    out = Path(out)
    checksums = source_checksums(cfg)
    if _up_to_date(out, cfg, checksums, force, quiet):
        report_findings(stored_findings(out) if strict else [], console, strict=True, where=f"{out}: ")
        return out
    raw = load_recordings(cfg.source)
    if not raw:
        raise DiagError("no recordings were read; check source.path and the reader options")
    source_checks = getattr(raw, "findings", [])  # what diag.sources.checks found: shown, and kept
    for f in source_checks if not quiet else []:
        console.print(tagged(f"[yellow]{esc(f.tag)}:[/]", f), soft_wrap=True)
    fingerprint = cfg.fingerprint()  # of the config as given (auto included): what the reuse check compares
    for note in resolve_auto_norms(cfg.windows, cfg.transform, raw[0].n_channels):
        if not quiet:
            console.print(tagged("[yellow]note:[/]", note))
    pre = Preprocessing.from_config(cfg, raw[0])
    recordings = pre.harmonise(raw)
    choice = choose_transform(raw, recordings, cfg) if cfg.transform.kind == "auto" else None  # signal.choose
    for line in [choice_table(choice), *choice["notes"]] if choice and not quiet else []:
        console.print(esc(line) if isinstance(line, str) else line)
    pre.transform = dataclasses.replace(cfg.transform)  # the kind auto chose
    refs = _references(pre, raw)  # from each recording as read -- as diag predict reads a file
    fs_original = [r.fs for r in raw]
    rec_stats = recording_stats(raw)  # per recording as read, for the data audit (diag.signal.audit)
    del raw
    plan = _plan(recordings, cfg, quiet)
    _advise(recordings, cfg, quiet)
    classes = _classes(recordings)
    train = plan.windows.select("train")
    pre.fit(recordings, train.rec, train.start, refs, fs_original)
    sides = [s for s in SPLITS if (plan.windows.side == s).any()]
    sizes = {s: int((plan.windows.side == s).sum()) for s in sides}
    with DatasetWriter(out, sizes, tuple(pre.image_shape)) as writer:
        metas = _write_images(writer, pre, recordings, plan, refs, classes, dev, quiet)
        counts = {s: {c: int((metas[s]["y"] == k).sum()) for k, c in enumerate(classes)} for s in sides}
        elapsed = time.perf_counter() - t0
        manifest = _manifest(cfg, pre, fingerprint, classes, recordings, refs, plan, sizes, counts, checksums,
                             source_checks, dev, elapsed)
        if choice:
            manifest["transform_choice"] = choice
        manifest["audit"] = run_audit(manifest, np.load(writer.tmp / "train.npy", mmap_mode="r"), metas["train"],
                                      rec_stats, console, strict=strict)  # prints; strict: raises, nothing written
        writer.commit(metas, manifest, replace=force)
    if not quiet:
        _print_summary(out, classes, counts, sides, tuple(pre.image_shape), elapsed, len(recordings))
    return out


def _up_to_date(out: Path, cfg: PrepareConfig, checksums: dict[str, str], force: bool, quiet: bool) -> bool:
    """Claim ``out`` (refusing what is not a diag dataset); True when it already holds this exact dataset."""
    existing = claim_output(out, "prepared", force=force, inputs=[cfg.source.path])
    check_writable(out)
    if not existing:
        return False
    ok, why = _reusable(out, cfg, checksums)
    if ok:
        if not quiet:
            console.print(esc(f"{out}: up to date (same config and sources); reusing it"))
        return True
    if not force:
        raise DiagError(f"{out}: already exists and {why}; choose another --out or pass --force to replace it")
    return False


def _references(pre: Preprocessing, raw: list[Recording]) -> list[tuple[tuple[float, float] | None, str]]:
    """Order images (envorder / harmonics): each recording's reference rate from its meta or the config, or
    estimated (``transform.ref_search``) from the recording as read; checked to be within the images' reach."""
    refs = []
    for r in raw:
        try:
            pair, how = pre.reference(r.meta, r.signal, r.fs)
        except DiagError as exc:
            raise DiagError(f"{r.source}: {exc}") from None
        if pre.needs_ref:
            if pair is None:
                raise DiagError(
                    f"{r.source}: transform.kind '{pre.transform.kind}' needs this recording's {pre.ref_name}, which "
                    "it does not carry (no rpm / f1 in its meta); set transform.ref_hz=<Hz> (--set "
                    "transform.ref_hz=29.5) or a range to estimate it in (--set 'transform.ref_search=[15, 45]')")
            pre.check_reach(r.source, max(pair), how)
        refs.append((pair, how))
    return refs


def _plan(recordings: list[Recording], cfg: PrepareConfig, quiet: bool) -> Any:
    """The split plan, checked leak-free, with its notes and warnings printed."""
    plan = plan_split(recordings, cfg.windows, cfg.split)
    cfg.split.method = plan.method  # split.method=auto resolved (diag.signal.split_auto); the notes say why
    if plan.leaky:
        console.print("[bold yellow]warning:[/] random window split: neighbouring windows of one recording sit on "
                      "both sides of train/test; reported accuracy will be optimistic and will not transfer")
    else:
        check_no_shared_samples(plan, cfg.windows.length)
    for note in plan.notes:
        if not quiet and note not in plan.warnings:
            console.print(tagged("[yellow]note:[/]", note))
    for warning in plan.warnings:  # printed even when quiet: it changes what the validation score means
        console.print(tagged("[bold yellow]warning:[/]", warning))
    return plan


def _advise(recordings: list[Recording], cfg: PrepareConfig, quiet: bool) -> None:
    """Notes on settings that lose what several channels or a signed DC level carry."""
    n_ch = recordings[0].n_channels
    if quiet:
        return
    if n_ch > 1 and (cfg.windows.normalize in ("zscore", "rms", "minmax") or cfg.transform.norm == "image"):
        console.print("[yellow]note:[/] " + esc(f"windows.normalize={cfg.windows.normalize} / transform.norm={cfg.transform.norm} "
                      f"scale each of the {n_ch} channels on its own, which divides away level differences between "
                      "them; if they are phases of one machine, windows.normalize=rms-joint (or dataset) with "
                      "transform.norm=image-joint keeps them"))
    signed = signed_levels(recordings) if not cfg.transform.polarity else {}
    if signed:
        span = ", ".join(f"{c} {a:+.2f}..{b:+.2f}" for c, (a, b) in signed.items())
        console.print("[yellow]note:[/] " + esc(f"the mean of {', '.join(signed)} changes sign between recordings (mean/RMS "
                      f"{span}), and every image is a magnitude that drops the sign; transform.polarity=true "
                      "keeps it (an open upper vs lower switch of one inverter leg differ only in sign)"))


def _write_images(writer: DatasetWriter, pre: Preprocessing, recordings: list[Recording], plan: Any,
                  refs: list, classes: list[str], dev: Any, quiet: bool) -> dict[str, dict[str, np.ndarray]]:
    """Every window's image through ``pre``, side by side, in batches (with a progress bar); the meta tables."""
    y_of_rec = np.array([classes.index(r.label) for r in recordings], dtype=np.int64)
    ref = (np.array([p[0] if p else 0.0 for p, _ in refs]), np.array([p[1] if p else 0.0 for p, _ in refs]))
    sides = [s for s in SPLITS if (plan.windows.side == s).any()]
    total = sum(-(-int((plan.windows.side == s).sum()) // BATCH) for s in sides)
    metas: dict[str, dict[str, np.ndarray]] = {}
    with Progress(TextColumn("[bold]prepare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("images", total=total)
        for side in sides:
            idx = plan.windows.select(side)
            for i in range(0, len(idx), BATCH):
                rec, start = idx.rec[i : i + BATCH], idx.start[i : i + BATCH]
                writer.add(side, pre.images_at(recordings, rec, start, ref, device=dev))
                progress.advance(task)
            metas[side] = {"y": y_of_rec[idx.rec], **{
                key: np.array([getattr(recordings[r], key) for r in idx.rec], dtype=object)
                for key in ("label", "group", "condition", "fault_size", "source")},
                "start": idx.start, "rec": idx.rec}
    return metas


def _manifest(cfg: PrepareConfig, pre: Preprocessing, fingerprint: str, classes: list[str],
              recordings: list[Recording], refs: list, plan: Any, sizes: dict, counts: dict,
              checksums: dict[str, str], source_checks: list, dev: Any, elapsed: float) -> dict[str, Any]:
    """What the dataset's manifest.json records (see :mod:`diag.signal.dataset`)."""
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
        "config": cfg.to_dict(),
        "classes": classes,
        "fs": pre.fs,
        "window": {"length": pre.length, "hop": pre.hop, "normalize": pre.normalize, "channels": list(pre.channels),
                   "band": list(cfg.windows.band), "normalization_stats": pre.norm_stats},
        "transform": pre.images,
        "preprocessing": pre.to_dict(),
        "transform_device": str(dev),
        "image_shape": list(pre.image_shape),
        "sizes": sizes,
        "counts": counts,
        "split": {"method": cfg.split.method, "val_method": cfg.split.val_method, "val_by": plan.val_by,
                  "guard_samples": plan.guard, "leaky": plan.leaky, "notes": plan.notes,
                  "blocks": [[b.rec, b.start, b.stop, b.side] for b in plan.blocks]},
        "recordings": [
            {"source": r.source, "label": r.label, "group": r.group, "condition": r.condition,
             "fault_size": r.fault_size, "fs": r.fs, "fs_original": r.meta.get("fs_original", r.fs),
             "samples": r.n_samples, "channels": list(r.channels),
             **({"ref_hz": list(pair), "ref_from": how} if pre.needs_ref else {})}
            for r, (pair, how) in zip(recordings, refs)
        ],
        "source_checksums": checksums,
        "source_checks": [f.to_dict() for f in source_checks],
        "versions": package_versions(),
        "seconds": round(elapsed, 2),
    }


def _print_summary(out: Path, classes: list[str], counts: dict, sides: list[str], shape: tuple, seconds: float,
                   n_rec: int) -> None:
    con = make_console()
    con.print(f"[bold]{esc(out)}[/]: {n_rec} recordings -> {shape[0]}x{shape[1]}x{shape[2]} images (windows per class and split)")
    t = Table()
    t.add_column("class")
    for s in sides:
        t.add_column(s, justify="right")
    for c in classes:
        t.add_row(esc(c), *[str(counts[s][c]) for s in sides])
    t.add_row("[bold]total", *[f"[bold]{sum(counts[s].values())}" for s in sides])
    con.print(t)
    con.print(f"prepared in {seconds:.1f} s")
