"""Where an output came from: package versions, the preprocessing record a model carries, and the
checks that decide whether a run folder may be started, resumed or replaced.

Bottom layer: imports only :mod:`diag.errors` and :mod:`diag.storage`.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from diag.errors import DiagError
from diag.version import __version__
from diag.storage import check_writable, claim_output, remove_output, write_marker

VERSIONED_PACKAGES = ("numpy", "scipy", "PyWavelets", "scikit-learn", "torch", "timm")
PREPROCESSING_KEYS = ("config", "fingerprint", "fs", "window", "transform", "image_shape", "classes")


def package_versions() -> dict[str, str]:
    """Versions of Python, diag and the numerical packages, for manifests and checkpoints."""
    out = {"python": platform.python_version(), "diag": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def preprocessing_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """From a prepared dataset's manifest: everything needed to turn a waveform into this model's images
    (and, for order images, the range of reference rates the training windows came from)."""
    return {**{key: manifest.get(key) for key in PREPROCESSING_KEYS}, "ref_hz_range": trained_ref_range(manifest)}


def preprocessing_difference(pre: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """The first setting in which a prepared dataset's manifest differs from a run's preprocessing, or None."""
    win_r, win_d = pre.get("window") or {}, manifest.get("window") or {}
    tr_r, tr_d = pre.get("transform") or {}, manifest.get("transform") or {}
    checks = [
        ("windows.fs (Hz)", pre.get("fs"), manifest.get("fs")),
        ("windows.length", win_r.get("length"), win_d.get("length")),
        ("windows.normalize", win_r.get("normalize"), win_d.get("normalize")),
        ("number of channels", len(win_r.get("channels") or []), len(win_d.get("channels") or [])),
        ("transform.polarity", *(bool(((m.get("config") or {}).get("transform") or {}).get("polarity"))
                                 for m in (pre, manifest))),
        ("image shape", pre.get("image_shape"), manifest.get("image_shape")),
    ]
    for key in ("kind", "size", "norm", "log", "frequencies_hz", "cwt", "stft"):
        checks.append((f"transform.{key}", tr_r.get(key), tr_d.get(key)))
    for name, a, b in checks:
        if a != b:
            short = (lambda v: (str(v)[:40] + "...") if len(str(v)) > 40 else str(v))
            return f"{name}: run {short(a)}, dataset {short(b)}"
    return None


def trained_ref_range(manifest: dict[str, Any]) -> list[float] | None:
    """Order images (envorder / harmonics): ``[lowest, highest]`` reference rate (shaft rate or electrical
    fundamental, Hz) of the recordings that gave training windows; None for other images."""
    recs = manifest.get("recordings") or []
    blocks = (manifest.get("split") or {}).get("blocks") or []
    train = {int(b[0]) for b in blocks if len(b) >= 4 and b[3] == "train"}
    rates = [float(v) for i in sorted(train) if i < len(recs) for v in (recs[i].get("ref_hz") or [])]
    return [min(rates), max(rates)] if rates else None


def check_run_dir(out: str | Path, kind: str, *, resume: bool, force: bool,
                  inputs: Iterable[str | Path | None] = ()) -> None:
    """May a run of ``kind`` (``train-run`` | ``pretrain``) start (or resume) in ``out``? One-line refusals.

    A finished or interrupted diag run there needs ``--resume`` or ``--force``; ``--force`` replaces
    only a diag run of the same kind (:func:`diag.storage.claim_output`); the folder must be writable.
    """
    out = Path(out)
    if resume:
        if force:
            raise DiagError("--resume and --force contradict each other: resume continues a run, force starts over")
        check_writable(out)
        return
    existing = claim_output(out, kind, force=force, inputs=inputs)
    if existing and not force:
        raise DiagError(f"{out}: already exists; pass --resume to continue that run or --force to start over")
    check_writable(out)


def start_run_dir(out: str | Path, kind: str, *, force: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Create the run folder ``out`` with its marker (with ``force``, an old diag run of ``kind`` there
    is deleted first; nothing else ever is)."""
    out = Path(out)
    inputs = list(inputs)
    check_run_dir(out, kind, resume=False, force=force, inputs=inputs)
    if force and out.is_dir() and any(out.iterdir()):
        remove_output(out, kind)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, kind)
