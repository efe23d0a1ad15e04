"""The ONNX graph of a run, exported once and kept in the user's cache folder (issue 24 section 4).

Exporting a network to ONNX takes seconds (2-5 s for convnext_atto on a 2-core CPU), more than ONNX
Runtime saves on a short recording; so the graph :class:`diag.serving.engine.OnnxEngine` runs is cached:

* where: ``$DIAG_CACHE_DIR/onnx`` if ``DIAG_CACHE_DIR`` is set, else ``$XDG_CACHE_HOME/diag/onnx``, else
  ``~/.cache/diag/onnx`` -- never the run folder. Deleting the folder is always safe.
* key: sha256 of the run's weights file, the features the unknown score reads, the image shape, the model
  name, the opset and the torch / onnxruntime / onnx versions (:func:`cache_key`); a retrained run, another
  detector or another torch gets its own file.
* each ``KEY.onnx`` has a ``KEY.json`` beside it holding the graph's sha256; both are written atomically
  (temporary file, then rename). A graph is used only if its bytes hash to that sha256, ONNX Runtime loads
  it, and it gives the PyTorch network's outputs on a fixed probe batch (:func:`agrees`); otherwise it is
  exported again and replaced, never trusted blindly.
* a cache folder that cannot be written costs only the speed: the graph is then exported in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["CACHE_ENV", "agrees", "cache_key", "cache_root", "export_bytes", "load_cached", "onnx_dir", "store",
           "usable_folder"]

#: environment variable naming diag's cache folder (tests point it at a temporary folder)
CACHE_ENV = "DIAG_CACHE_DIR"
#: bump when the exported graph's form changes (inputs, outputs, what forward_parts returns)
FORMAT = 1
#: how close the cached graph's outputs must be to PyTorch's on the probe batch (relative to their scale)
PROBE_TOLERANCE = 1e-3


def cache_root() -> Path:
    """diag's cache folder: ``$DIAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/diag``, else ``~/.cache/diag``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "diag"


def onnx_dir() -> Path:
    return cache_root() / "onnx"


def _version(package: str) -> str:
    """The installed version of ``package`` (its distribution metadata; nothing is imported), or "-"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def cache_key(weights_sha256: str, features: str, image_shape: Sequence[int], model: str, opset: int) -> str:
    """The file name (without suffix) of a run's cached graph: a hash of everything the graph depends on."""
    what = {"format": FORMAT, "weights_sha256": weights_sha256, "features": features,
            "image_shape": [int(v) for v in image_shape], "model": model, "opset": int(opset),
            "torch": _version("torch"), "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:40]


def export_bytes(model: Any, image_shape: Sequence[int], opset: int) -> bytes:
    """``model`` (a :class:`~diag.serving.engine.TwoOutputs`, on the CPU, eval mode) exported to ONNX, in memory:
    input ``images [batch, C, H, W]``, outputs ``logits``, ``features``."""
    import torch

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(2, *[int(v) for v in image_shape]),), buf, dynamo=False,
                          opset_version=opset, input_names=["images"], output_names=["logits", "features"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}})
    return buf.getvalue()


def usable_folder(folder: Path, run: Path) -> bool:
    """May graphs be cached in ``folder`` for the run in ``run``? Not inside the run folder (never written)."""
    try:
        folder, run = folder.resolve(), run.resolve()
    except OSError:
        return False
    return folder != run and run not in folder.parents


def load_cached(path: Path) -> bytes | None:
    """The graph at ``path`` if it and its ``.json`` are there and its bytes hash to the recorded sha256."""
    try:
        data = path.read_bytes()
        side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(side, dict) or side.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return data


def store(path: Path, data: bytes, about: dict[str, Any]) -> None:
    """Write the graph and its ``.json`` (sha256 + ``about``) atomically; OSError when the folder is not writable."""
    from diag.storage import (
        atomic_write_bytes,
        atomic_write_json,
        clean_stale_temporaries,
    )

    for p in (path, path.with_suffix(".json")):  # what a write killed midway left (.NAME.tmp-PID-*)
        clean_stale_temporaries(p)
    atomic_write_bytes(path, data)
    atomic_write_json(path.with_suffix(".json"), {"sha256": hashlib.sha256(data).hexdigest(), **about})


def probe_images(image_shape: Sequence[int]) -> np.ndarray:
    """A fixed batch of two images (deterministic, not all zeros) to compare engines on."""
    c, h, w = (int(v) for v in image_shape)
    x = np.sin(np.arange(2 * c * h * w, dtype=np.float64) * 0.37).reshape(2, c, h, w)
    return x.astype(np.float32)


def agrees(session: Any, model: Any, image_shape: Sequence[int]) -> bool:
    """Does the ONNX Runtime ``session`` give ``model``'s (logits, features) on :func:`probe_images`?"""
    import torch

    x = probe_images(image_shape)
    with torch.inference_mode():
        want = [t.float().numpy() for t in model(torch.from_numpy(x))]
    got = session.run(["logits", "features"], {"images": x})
    for a, b in zip(want, got):
        b = np.asarray(b)
        if a.shape != b.shape or not np.all(np.isfinite(b)):
            return False
        scale = max(1.0, float(np.abs(a).max()))
        if float(np.abs(a - b).max()) > PROBE_TOLERANCE * scale:
            return False
    return True
