"""A prepared dataset on disk: written atomically, read memory-mapped.

Layout of a prepared directory::

    manifest.json        config (whole), class names, sampling rate, image shape, split sizes,
                         source checksums, package versions, fingerprint of the config
    train.npy val.npy test.npy
                         float16 images, shape [N, C, H, W] (np.load(..., mmap_mode="r"))
    train.csv val.csv test.csv
                         one row per image: y, label, group, condition, fault_size, source, start, rec

``start`` is the window's first sample at the target rate ``manifest["fs"]``; ``rec`` indexes the
recording within the source, so a window can always be traced to the samples it came from.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.storage import atomic_write_json, clean_stale, output_kind, publish_mode, write_marker

SPLITS = ("train", "val", "test")
META_COLUMNS = ("y", "label", "group", "condition", "fault_size", "source", "start", "rec")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def write_meta_csv(path: Path, meta: dict[str, np.ndarray]) -> None:
    n = len(meta["y"])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(META_COLUMNS)
        cols = [meta[c] for c in META_COLUMNS]
        for i in range(n):
            w.writerow([c[i] for c in cols])


def read_meta_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, np.ndarray] = {}
    for c in META_COLUMNS:
        vals = [r[c] for r in rows]
        if c in ("y", "start", "rec"):
            out[c] = np.asarray(vals, dtype=np.int64)
        else:
            out[c] = np.asarray(vals, dtype=object)
    return out


class DatasetWriter:
    """Writes a prepared dataset into a temporary sibling directory, then renames it into place.

    Use as a context manager; nothing is left at ``out`` unless :meth:`commit` ran. Images are
    appended batch by batch to pre-sized memory-mapped ``.npy`` files, so datasets larger than RAM
    can be written.
    """

    def __init__(self, out: str | Path, sizes: dict[str, int], image_shape: tuple[int, int, int]):
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(self.out)  # what a killed earlier run of this output left beside it
        self.tmp = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.partial-{os.getpid()}-"))
        publish_mode(self.tmp, directory=True)
        self.sizes = dict(sizes)
        self.image_shape = tuple(int(s) for s in image_shape)
        self._arrays = {
            s: np.lib.format.open_memmap(
                self.tmp / f"{s}.npy", mode="w+", dtype=np.float16, shape=(n, *self.image_shape)
            )
            for s, n in self.sizes.items()
        }
        self._filled = {s: 0 for s in self.sizes}
        self._committed = False

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self._arrays.clear()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, split: str, images: np.ndarray) -> None:
        """Append a batch ``[B, C, H, W]`` of images to ``split``."""
        a = self._arrays[split]
        i = self._filled[split]
        b = len(images)
        if i + b > len(a):
            raise RuntimeError(f"too many images for split {split}: {i + b} > {len(a)}")
        a[i : i + b] = images.astype(np.float16, copy=False)
        self._filled[split] = i + b

    def commit(self, metas: dict[str, dict[str, np.ndarray]], manifest: dict[str, Any], replace: bool = False) -> Path:
        """Write metadata and manifest, flush, and move the directory to ``out`` atomically."""
        for s, a in self._arrays.items():
            if self._filled[s] != len(a):
                raise RuntimeError(f"split {s}: wrote {self._filled[s]} of {len(a)} images")
            a.flush()
            write_meta_csv(self.tmp / f"{s}.csv", metas[s])
        self._arrays.clear()
        atomic_write_json(self.tmp / MANIFEST, manifest)
        write_marker(self.tmp, "prepared")
        backup = None
        if self.out.is_dir() and not self.out.is_symlink() and not any(self.out.iterdir()):
            self.out.rmdir()  # an empty folder (made by the user for it) is simply taken
        if self.out.exists() or self.out.is_symlink():
            if not replace:
                raise DiagError(f"{self.out}: already exists; choose another --out or pass --force")
            if self.out.is_symlink() or not self.out.is_dir() or output_kind(self.out) != "prepared":
                raise DiagError(f"{self.out}: not a prepared dataset folder of diag; not replaced")
            backup = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, backup)
        os.replace(self.tmp, self.out)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        self._committed = True
        return self.out


@dataclass
class PreparedDataset:
    """Read access to a prepared directory (images memory-mapped, metadata in memory).

    >>> ds = PreparedDataset("prepared/cwru")
    >>> x = ds.images("train")          # float16 memmap [N, C, H, W]
    >>> y = ds.labels("train")          # int64 [N], indices into ds.classes
    """

    path: Path

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise DiagError(f"{self.path}: not a prepared dataset (no {MANIFEST}); run `diag prepare` first")
        try:
            self.manifest = json.loads(mf.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DiagError(f"{mf}: corrupt manifest ({exc}); prepare the dataset again") from None
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DiagError(
                f"{mf}: format version {self.manifest.get('format_version')} is not {FORMAT_VERSION}; "
                "prepare the dataset again with this diag"
            )
        self._meta: dict[str, dict[str, np.ndarray]] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def config(self) -> dict[str, Any]:
        """The full prepare config (source, windows, split, transform) as a dict."""
        return self.manifest["config"]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["image_shape"])  # type: ignore[return-value]

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if s in self.manifest["sizes"]]

    def _check_split(self, split: str) -> None:
        if split not in self.manifest["sizes"]:
            raise DiagError(f"{self.path}: no split '{split}'; it has {', '.join(self.splits)}")

    def images(self, split: str) -> np.ndarray:
        self._check_split(split)
        return np.load(self.path / f"{split}.npy", mmap_mode="r")

    def meta(self, split: str) -> dict[str, np.ndarray]:
        self._check_split(split)
        if split not in self._meta:
            self._meta[split] = read_meta_csv(self.path / f"{split}.csv")
        return self._meta[split]

    def labels(self, split: str) -> np.ndarray:
        return self.meta(split)["y"]

    def __len__(self) -> int:
        return sum(self.manifest["sizes"].values())
