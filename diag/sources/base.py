"""The one type every reader returns: :class:`Recording`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError


@dataclass
class Recording:
    """One continuous multi-channel recording.

    Attributes
    ----------
    signal : float array, shape ``[channels, samples]``
        The waveform (physical units as stored, e.g. acceleration in g or current in A).
    fs : float
        Sampling rate in Hz.
    label : str
        Class name (e.g. ``"IR_0.007"``, ``"normal"``, ``"T1_open"``).
    group : str
        What makes recordings dependent on each other: the bearing, the test rig run, the
        recording id. Splits by ``recording``/``group`` never put one group on both sides.
    condition : str
        Operating condition (e.g. ``"0HP"``, ``"1772rpm"``, ``"m0.8_f50Hz"``); the ``condition``
        split trains on some and tests on others.
    source : str
        Where it came from (file path, or ``simulate:bearing#12``), used in error messages and
        provenance tables.
    fault_size : str
        Defect size or severity (``"0.007"``); empty for healthy recordings and where unknown. The
        ``fault-size`` split tests on sizes never seen in training.
    channels : tuple of str
        A name per channel (``("DE",)``, ``("ia", "ib", "ic")``).
    meta : dict
        Anything else worth keeping (rpm, record number, load in HP...). JSON-serialisable values.
    notes : list of str
        A reader's remarks the user must see (a followed symbolic link, a known defect of a
        published file that was accepted). :func:`diag.signal.recordings.load_recordings` reports them and
        the prepared dataset's manifest lists them under ``source_checks``.
    """

    signal: np.ndarray
    fs: float
    label: str
    group: str = ""
    condition: str = ""
    source: str = ""
    fault_size: str = ""
    channels: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        sig = np.asarray(self.signal)
        if sig.ndim == 1:
            sig = sig[None, :]
        if sig.ndim != 2:
            raise DiagError(
                f"{self.source or 'recording'}: signal must be [channels, samples], got shape {sig.shape}"
            )
        self.signal = sig
        if not self.channels:
            self.channels = tuple(f"ch{i}" for i in range(sig.shape[0]))
        self.channels = tuple(self.channels)
        if len(self.channels) != sig.shape[0]:
            raise DiagError(
                f"{self.source or 'recording'}: {len(self.channels)} channel names for "
                f"{sig.shape[0]} channels"
            )
        self.fs = float(self.fs)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.signal.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.fs

    def validate(self) -> "Recording":
        """Check the recording is usable; raise a one-line :class:`DiagError` naming the source if not."""
        name = self.source or "recording"
        if not np.isfinite(self.fs) or self.fs <= 0:
            raise DiagError(f"{name}: sampling rate must be a positive number of Hz, got {self.fs}")
        if self.n_samples == 0:
            raise DiagError(f"{name}: the signal is empty; remove the file or re-export it")
        if not np.issubdtype(self.signal.dtype, np.number):
            raise DiagError(f"{name}: signal is not numeric (dtype {self.signal.dtype})")
        finite = np.isfinite(self.signal)
        if not finite.all():
            bad = int((~finite).sum())
            first = int(np.argmax(~finite.all(axis=0)))
            raise DiagError(
                f"{name}: {bad} NaN/Inf samples (first at sample {first}); "
                "clean or interpolate the recording before preparing it"
            )
        if not self.label:
            raise DiagError(f"{name}: no label; give one in the labels manifest or the folder name")
        return self


def list_files(
    root: Path, suffix: str | None = None, links: list[tuple[Path, Path]] | None = None
) -> list[Path]:
    """Files below folder ``root`` (recursive, sorted), skipping hidden files and folders.

    ``suffix`` (e.g. ``".mat"``, matched case-insensitively) keeps only files of that type.
    Folders that are symbolic links are followed (never skipped silently); each one followed is
    appended to ``links`` as ``(link, target)`` so the caller can say so. A link that leads back
    into a folder already being walked (a loop), or to nothing, is a one-line :class:`DiagError`; so is a
    device, a pipe or a socket (or a link to one) of the asked type, never read, never skipped silently.
    """
    root = Path(root)
    if root.exists() and not root.is_dir() and not root.is_file():
        raise DiagError(f"{root}: not a regular file or a folder (a device, a pipe or a socket); "
                        "pass the data folder or a recording file")
    out: list[Path] = []

    def walk(folder: Path, ancestors: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DiagError(f"{folder}: cannot list the folder ({exc.strerror or exc}); check its permissions") from None
        for e in entries:
            if e.name.startswith("."):
                continue
            p = Path(e.path)
            if e.is_dir(follow_symlinks=True):
                real = os.path.realpath(p)
                if e.is_symlink():
                    if real in ancestors:
                        raise DiagError(
                            f"{p}: symbolic link to {real}, a folder that contains it (a loop); remove the link"
                        )
                    if links is not None:
                        links.append((p, Path(real)))
                walk(p, ancestors + (real,))
            elif e.is_file(follow_symlinks=True):
                if suffix is None or p.suffix.lower() == suffix:
                    out.append(p)
            elif e.is_symlink() and not os.path.exists(p):
                raise DiagError(
                    f"{p}: symbolic link to {os.readlink(p)}, which does not exist; fix or remove the link"
                )
            elif suffix is None or p.suffix.lower() == suffix:  # a device, a pipe or a socket: never read
                link = f"symbolic link to {os.readlink(p)}, which is " if e.is_symlink() else ""
                raise DiagError(f"{p}: {link}not a regular file (a device, a pipe or a socket); "
                                "remove it from the data folder")

    walk(root, (os.path.realpath(root),))
    return sorted(out)
