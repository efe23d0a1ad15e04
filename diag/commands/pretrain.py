"""``diag pretrain``: settle the settings, read an unlabelled pool (``--unlabelled DIR``) with the prepared
dataset's own preprocessing, then pretrain (:func:`diag.learning.pretrain.pretrain`).

The pool: every file of a format ``diag prepare`` reads under ``DIR`` (recursively), opened as
``diag predict`` opens a file, cut into windows at the dataset's hop and turned into images by the
dataset's fitted :class:`~diag.signal.preprocessing.Preprocessing` (channels, resampling, band,
normalisation, transform, reference rate). A recording whose content (its samples as float32, the
hash ``diag prepare`` finds duplicates with) or whose file bytes match a recording of the dataset's
*test* split is refused, one line naming both: pretraining on test recordings would let the
comparison's test score see them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console

from diag.errors import DiagError
from diag.learning.pretrain import UnlabelledPool, load_pretrain_config, pretrain
from diag.signal.dataset import PreparedDataset
from diag.sources.files import list_files
from diag.sources.formats import MANIFEST_NAME
from diag.sources.stream import SUPPORTED, open_signal
from diag.storage import file_sha256


def run(data: str | Path | None, out: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
        extra: Sequence[str | Path] = (), unlabelled: str | Path | None = None, fs: float | None = None,
        resume: bool = False, force: bool = False, quiet: bool = False, track: Any = None) -> dict[str, Any]:
    """What ``diag pretrain`` calls."""
    cfg = load_pretrain_config(config, overrides) if (config or overrides or not resume) else None
    pool = None
    if unlabelled is not None:
        if data is None:
            raise DiagError("--unlabelled needs --data: the pool is imaged with that dataset's preprocessing")
        pool = read_unlabelled(PreparedDataset(data), unlabelled, fs=fs, quiet=quiet)
    return pretrain(data, out, cfg, extra=extra, force=force, quiet=quiet, resume=resume, unlabelled=pool, track=track)


def sample_hash(signal: np.ndarray) -> str:
    """sha256 of a recording's samples as float32 and their shape (:func:`diag.sources.checks.signal_hash`)."""
    import hashlib

    sig = np.ascontiguousarray(signal, dtype=np.float32)
    h = hashlib.sha256(f"{sig.shape}".encode())
    h.update(memoryview(sig).cast("B"))
    return h.hexdigest()


def held_out_recordings(ds: PreparedDataset) -> tuple[dict[str, str], dict[str, str]]:
    """``(sample hashes, file sha256s)`` of the recordings with windows in ``ds``'s test split, each mapped
    to the recording's source. Sample hashes come from re-reading the source files where they still
    exist; the file checksums from the manifest (``source_checksums``)."""
    if "test" not in ds.splits:
        return {}, {}
    sources = sorted({str(s) for s in ds.meta("test").get("source", [])})
    by_source = {r["source"]: r for r in ds.manifest.get("recordings", [])}
    samples: dict[str, str] = {}
    for src in sources:
        p = Path(src)
        if p.is_file():
            rate = (by_source.get(src) or {}).get("fs_original")
            sig = open_signal(p, fs=rate)
            samples[sample_hash(np.asarray(sig.read(0, sig.n_samples)))] = src
    root = Path((ds.config.get("source") or {}).get("path") or "")
    tested = {Path(src).resolve(): src for src in sources}
    files = {}
    for name, digest in (ds.manifest.get("source_checksums") or {}).items():
        full = (root / name if root.is_dir() or not root.suffix else root).resolve()
        if full in tested:
            files[digest] = tested[full]
    return samples, files


def read_unlabelled(ds: PreparedDataset, folder: str | Path, fs: float | None = None,
                    quiet: bool = False) -> UnlabelledPool:
    """The images of every recording under ``folder`` made with ``ds``'s preprocessing; DiagError when one
    is a test recording of ``ds`` (by content or file bytes) or none is usable."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DiagError(f"--unlabelled {root}: not a folder; give a folder of recordings (any format prepare reads)")
    files = [p for p in list_files(root) if p.suffix.lower() in SUPPORTED and p.name != MANIFEST_NAME]  # as predict
    if not files:
        raise DiagError(f"--unlabelled {root}: no recordings ({', '.join(SUPPORTED)}) in it")
    pre = ds.preprocessing
    samples, checksums = held_out_recordings(ds)
    images, used = [], []
    for p in files:
        digest = file_sha256(p)
        if digest in checksums:
            raise DiagError(f"--unlabelled {p}: the same file as test recording {checksums[digest]} of {ds.path}; "
                            "remove it from the pool: pretraining must never see the test split")
        sig = open_signal(p, fs=fs)
        if sample_hash(np.asarray(sig.read(0, sig.n_samples))) in samples:
            raise DiagError(f"--unlabelled {p}: the same samples as test recording "
                            f"{samples[sample_hash(np.asarray(sig.read(0, sig.n_samples)))]} of {ds.path}; remove it "
                            "from the pool: pretraining must never see the test split")
        idx, _ = pre.select_channels(sig)
        ready = pre.ready(sig, idx)
        if ready.n_samples < pre.length:
            raise DiagError(f"--unlabelled {p}: {ready.n_samples} samples is shorter than one {pre.length}-sample "
                            "window; record longer or leave it out")
        ref = pre.reference_for(sig, None, idx)
        for _, batch in pre.stream_images(ready, pre.starts(ready.n_samples), ref):
            images.append(np.asarray(batch, dtype=np.float16))
        used.append(str(p))
    pool = np.concatenate(images)
    if not quiet:
        Console(stderr=True).print(f"--unlabelled {root}: {len(used)} recordings, {len(pool)} windows (no test recording among them)")
    return UnlabelledPool(pool, {"path": str(root), "files": len(used), "sources": used})


