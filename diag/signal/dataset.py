"""A prepared dataset on disk: written atomically, read memory-mapped, served to the loops as image batches.

Layout of a prepared directory::

    .diag-output         marker: a diag prepared dataset (only such a folder is ever replaced)
    manifest.json        config (whole), class names, sampling rate, image shape, split sizes,
                         source checksums, package versions, fingerprint of the config, and the
                         size and sha256 of each image file (checked when the dataset is opened)
    train.npy val.npy test.npy
                         float16 images, shape [N, C, H, W] (np.load(..., mmap_mode="r"))
    train.csv val.csv test.csv
                         one row per image: y, label, group, condition, fault_size, source, start, rec

``start`` is the window's first sample at the target rate ``manifest["fs"]``; ``rec`` indexes the
recording within the source, so a window can always be traced to the samples it came from.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from diag.config import SPLITS
from diag.errors import DiagError, disk_full_as_error
from diag.storage import atomic_write_json, clean_stale, file_sha256, output_kind, publish_mode, write_marker

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
        self._committed = False
        try:
            with disk_full_as_error(self.out):
                self._arrays = {s: self._open(s, n) for s, n in self.sizes.items()}
        except BaseException:
            self._arrays = {}
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self._filled = {s: 0 for s in self.sizes}

    def _open(self, split: str, n: int) -> np.ndarray:
        """A memory-mapped ``.npy`` of ``n`` images, its blocks reserved on the disk first
        (``posix_fallocate``): a memory-mapped file written into a hole the disk cannot fill kills the process
        with SIGBUS; reserved, a full disk is an error here, before any image is made."""
        path = self.tmp / f"{split}.npy"
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, *self.image_shape)).flush()  # header
        if hasattr(os, "posix_fallocate"):
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, path.stat().st_size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # else: a file system without it
                    raise
            finally:
                os.close(fd)
        return np.lib.format.open_memmap(path, mode="r+")

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
        """Write metadata and manifest, flush, and move the directory to ``out`` atomically (a full disk: a
        one-line error naming it, and the partial folder is removed by ``__exit__``)."""
        with disk_full_as_error(self.out):
            return self._commit(metas, manifest, replace)

    def _commit(self, metas: dict[str, dict[str, np.ndarray]], manifest: dict[str, Any], replace: bool) -> Path:
        for s, a in self._arrays.items():
            if self._filled[s] != len(a):
                raise RuntimeError(f"split {s}: wrote {self._filled[s]} of {len(a)} images")
            a.flush()
            write_meta_csv(self.tmp / f"{s}.csv", metas[s])
        self._arrays.clear()
        # Cheap to check when the dataset is opened (size; shape from the header); sha256 for a full check.
        manifest = {**manifest, "files": {f"{s}.npy": {"bytes": (self.tmp / f"{s}.npy").stat().st_size,
                                                       "sha256": file_sha256(self.tmp / f"{s}.npy")}
                                          for s in self._filled}}
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


def check_finite_images(arr: np.ndarray, path: Path, fix: str, block_bytes: int = 1 << 25) -> None:
    """A one-line :class:`DiagError` naming ``path`` and the first image holding NaN or infinite values (a
    damaged or hand-edited file: training on it writes NaN weights, scoring it gives meaningless numbers);
    read in blocks of about ``block_bytes``."""
    step = max(1, block_bytes // max(1, int(np.prod(arr.shape[1:])) * arr.itemsize))
    for i in range(0, len(arr), step):
        ok = np.isfinite(arr[i : i + step]).reshape(len(arr[i : i + step]), -1).all(1)
        if not ok.all():
            j = i + int(np.argmin(ok))
            raise DiagError(f"{path}: image {j} (of {len(arr)}) holds NaN or infinite values, which no model can "
                            f"learn from or score (a damaged or edited file); {fix}")


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
        if not isinstance(self.manifest, dict):
            raise DiagError(f"{mf}: not a diag manifest; prepare the dataset again")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DiagError(
                f"{mf}: format version {self.manifest.get('format_version')} is not {FORMAT_VERSION}; "
                "prepare the dataset again with this diag"
            )
        missing = [k for k in ("classes", "image_shape", "sizes") if k not in self.manifest]
        if missing:
            raise DiagError(f"{mf}: damaged (no {', '.join(missing)}); prepare the dataset again")
        self._meta: dict[str, dict[str, np.ndarray]] = {}
        self._finite: set[str] = set()  # the splits whose images were checked for NaN / inf (once each)
        self._check_files()

    def _check_files(self) -> None:
        """Cheap checks when opened: every split's files are there, image files of the recorded size."""
        for split in self.splits:
            for ext in ("npy", "csv"):
                p = self.path / f"{split}.{ext}"
                if not p.is_file():
                    raise DiagError(f"{p}: missing from the prepared dataset; prepare the dataset again")
            record = self.manifest.get("files", {}).get(f"{split}.npy")
            size = (self.path / f"{split}.npy").stat().st_size
            if record and size != record.get("bytes"):
                raise DiagError(f"{self.path / f'{split}.npy'}: {size} bytes, but the manifest says "
                                f"{record.get('bytes')} (truncated or replaced); prepare the dataset again")

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def config(self) -> dict[str, Any]:
        """The full prepare config (source, windows, split, transform) as a dict."""
        return self.manifest["config"]

    def preprocessing_record(self) -> dict[str, Any]:
        """The fitted preprocessing as stored (:meth:`diag.signal.preprocessing.Preprocessing.to_dict`); for a
        dataset prepared before diag stored it, its manifest's preprocessing keys (config, fs, window,
        transform, image shape, the training reference rates), which ``Preprocessing.from_dict`` reads too."""
        if isinstance(self.manifest.get("preprocessing"), dict):
            return self.manifest["preprocessing"]
        from diag.provenance import preprocessing_of

        return preprocessing_of(self.manifest)

    @property
    def preprocessing(self) -> Any:
        """The :class:`~diag.signal.preprocessing.Preprocessing` the images were made with."""
        from diag.signal.preprocessing import Preprocessing

        return Preprocessing.from_dict(self.preprocessing_record(), str(self.path / MANIFEST))

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
        """float16 ``[N, C, H, W]`` images of ``split``, memory-mapped; checked against the manifest
        (shape, dtype, file size) -- a truncated or swapped file is a one-line error, not a crash later."""
        self._check_split(split)
        path = self.path / f"{split}.npy"
        fix = "prepare the dataset again (diag prepare --force)"
        record = self.manifest.get("files", {}).get(path.name)
        try:
            if record and path.stat().st_size != record["bytes"]:
                raise DiagError(f"{path}: {path.stat().st_size} bytes, but the manifest says {record['bytes']} "
                                f"(truncated or replaced); {fix}")
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise DiagError(f"{path}: missing from the prepared dataset; {fix}") from None
        except (ValueError, OSError, EOFError) as exc:
            raise DiagError(f"{path}: damaged ({exc}); {fix}") from None
        want = (int(self.manifest["sizes"][split]), *map(int, self.image_shape))
        if tuple(arr.shape) != want or arr.dtype != np.float16:
            raise DiagError(f"{path}: holds {arr.dtype} {tuple(arr.shape)}, the manifest says float16 {want}; {fix}")
        if split not in self._finite:
            check_finite_images(arr, path, fix)
            self._finite.add(split)
        return arr

    def verify(self) -> None:
        """Full check: every image file against the sha256 recorded when it was prepared."""
        for name, record in self.manifest.get("files", {}).items():
            if file_sha256(self.path / name) != record["sha256"]:
                raise DiagError(f"{self.path / name}: content differs from when it was prepared (sha256); "
                                "prepare the dataset again")

    def meta(self, split: str) -> dict[str, np.ndarray]:
        self._check_split(split)
        if split not in self._meta:
            path = self.path / f"{split}.csv"
            try:
                meta = read_meta_csv(path)
            except FileNotFoundError:
                raise DiagError(f"{path}: missing from the prepared dataset; prepare the dataset again") from None
            except (KeyError, ValueError, UnicodeDecodeError, csv.Error) as exc:
                raise DiagError(f"{path}: damaged ({type(exc).__name__}: {exc}); prepare the dataset again") from None
            n, k = int(self.manifest["sizes"][split]), len(self.classes)
            if len(meta["y"]) != n or (n and (meta["y"].min() < 0 or meta["y"].max() >= k)):
                raise DiagError(f"{path}: {len(meta['y'])} rows or labels outside 0..{k - 1}, the manifest says "
                                f"{n} windows of {k} classes; prepare the dataset again")
            self._meta[split] = meta
        return self._meta[split]

    def labels(self, split: str) -> np.ndarray:
        return self.meta(split)["y"]

    def __len__(self) -> int:
        return sum(self.manifest["sizes"].values())


# ------------------------------------------------------------------------------------------------
# Image batches for the training loops


class SplitImages:
    """The images of one split (optionally a subset), served as float32 batches on ``device``.

    Held as one float16 tensor (moved to the GPU when training there) if it fits in ``budget_gb``;
    otherwise read batch by batch from the memory-mapped ``.npy`` by ``num_workers`` processes.
    """

    def __init__(self, ds: "PreparedDataset", split: str, indices: np.ndarray | None, device: torch.device,
                 budget_gb: float = 4.0, num_workers: int = 0):
        arr = ds.images(split)
        self.path = ds.path / f"{split}.npy"
        self.indices = np.arange(len(arr)) if indices is None else np.asarray(indices)
        self.device = device
        self.num_workers = num_workers
        self.shape = tuple(arr.shape[1:])
        nbytes = len(self.indices) * int(np.prod(self.shape)) * 2
        self.memory: torch.Tensor | None = None
        if nbytes <= budget_gb * 2**30:
            full = len(self.indices) == len(arr) and np.array_equal(self.indices, np.arange(len(arr)))
            t = torch.from_numpy(np.array(arr) if full else arr[self.indices])
            self.memory = t.to(device) if device.type == "cuda" else t

    def __len__(self) -> int:
        return len(self.indices)

    def iterate(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Yield float32 ``[b, C, H, W]`` batches on the device for the given position batches."""
        if self.memory is not None:
            if not batches:
                return
            sizes = [len(b) for b in batches]
            for b in torch.cat(list(batches)).to(self.memory.device).split(sizes):  # one index transfer
                yield self.memory[b].to(self.device, non_blocking=True).float()
            return
        loader = torch.utils.data.DataLoader(
            MemmapBatches(self.path, self.indices), batch_size=None, sampler=[b.numpy() for b in batches],
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for x in loader:
            yield x.to(self.device, non_blocking=True).float()


class MemmapBatches(torch.utils.data.Dataset):
    """Whole batches from a memory-mapped ``.npy`` (opened lazily in each worker, read in sorted order)."""

    def __init__(self, path: Path, indices: np.ndarray):
        self.path, self.indices, self._arr = path, indices, None

    def __getitem__(self, positions: np.ndarray) -> torch.Tensor:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        rows = self.indices[positions]
        order = np.argsort(rows, kind="stable")
        batch = np.empty((len(rows), *self._arr.shape[1:]), dtype=np.float16)
        batch[order] = self._arr[rows[order]]
        return torch.from_numpy(batch)

    def __len__(self) -> int:
        return len(self.indices)
