"""What runs the network when a run scores images: PyTorch, ONNX Runtime, or ``auto`` (the default of ``diag
predict``: ONNX Runtime where it can run, else PyTorch), optionally with the linear layers quantised to int8,
and the bounded producer-consumer pipeline that overlaps making the next batch of images with scoring this one.

Every engine maps images ``float32 [B, C, H, W]`` to ``(features, logits)`` as torch tensors -- the
features the run's unknown score reads (:func:`diag.learning.unknown.forward_parts`).

* ``torch``: the network itself (the reference; what ``diag train`` selected and scored).
* ``onnx``: the same network exported to ONNX (the graph of ``diag export``; cached per run in the user's
  cache folder, :mod:`diag.serving.onnx_cache`) and run by ONNX Runtime with its own thread pool.
* ``auto`` (:func:`resolve_engine`): onnx on a CPU with onnxruntime installed and no quantisation, else torch;
  a network the exporter cannot write falls back to torch with a note.
* ``quantize = "int8"``: dynamic int8 quantisation of the ``nn.Linear`` layers (``torch.ao.quantization.
  quantize_dynamic``: weights int8, activations quantised on the fly). ConvNeXt blocks are mostly
  pointwise linear layers. Off by default: ``scripts/bench/bench_predict.py --agreement DATA`` measures its
  accuracy and agreement with the float model on a prepared test split.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

import numpy as np

from diag.errors import DiagError

__all__ = ["ENGINES", "QUANTIZE", "TwoOutputs", "check_engine", "make_engine", "onnxruntime_available", "prefetch",
           "resolve_engine"]

ENGINES = ("auto", "torch", "onnx")
QUANTIZE = ("none", "int8")
OPSET = 17


def _torch():
    import torch

    return torch


class TwoOutputs(_torch().nn.Module):
    """The classifier with two outputs, ``(logits, features)``: the features the run's unknown score reads
    (pooled features; the stage statistics for ``layers``; the input's row profile for ``rows``)."""

    def __init__(self, net: Any, features: str = "pooled"):
        super().__init__()
        self.m, self.features = net, features

    def forward(self, x: Any) -> tuple[Any, Any]:
        from diag.learning.unknown import forward_parts

        feats, logits = forward_parts(self.m, x, features=self.features)
        return logits, feats


def quantized(net: Any) -> Any:
    """A copy of ``net`` with every ``nn.Linear`` dynamically quantised to int8 (CPU)."""
    import copy

    torch = _torch()
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(net).cpu().eval(), {torch.nn.Linear}, dtype=torch.qint8)


class TorchEngine:
    def __init__(self, net: Any, features: str, device: Any):
        self.net, self.features, self.device = net, features, device

    def __call__(self, images: np.ndarray) -> tuple[Any, Any]:
        torch = _torch()
        from diag.learning.unknown import forward_parts

        with torch.inference_mode():
            return forward_parts(self.net, torch.from_numpy(np.ascontiguousarray(images)).to(self.device),
                                 features=self.features)


class OnnxEngine:
    """The network exported to ONNX and run by ONNX Runtime on the CPU. With ``weights`` (the run's weights
    file) the graph comes from the user's cache (:mod:`diag.serving.onnx_cache`), exported there on first
    use; without, it is exported in memory. ``source``: how the graph was obtained (cache, exported, memory)."""

    def __init__(self, net: Any, features: str, image_shape: Any, threads: int | None = None,
                 weights: Any = None, model: str = ""):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DiagError("--engine onnx needs onnxruntime; install it with `pip install 'diag[onnx]'`") from None
        self.ort = ort
        self.opts = ort.SessionOptions()
        if threads:
            self.opts.intra_op_num_threads = int(threads)
        two = TwoOutputs(net.cpu().eval(), features)
        self.session, self.source, self.path = self._graph(two, features, image_shape, weights, model)

    def _open(self, data: bytes) -> Any:
        return self.ort.InferenceSession(data, self.opts, providers=["CPUExecutionProvider"])

    def _graph(self, two: Any, features: str, image_shape: Any, weights: Any, model: str) -> tuple[Any, str, Any]:
        from pathlib import Path

        from diag.serving import onnx_cache as oc
        from diag.storage import file_sha256

        if weights is None or not oc.usable_folder(oc.onnx_dir(), Path(weights).parent):
            return self._open(oc.export_bytes(two, image_shape, OPSET)), "memory", None
        sha = file_sha256(weights)
        path = oc.onnx_dir() / f"{oc.cache_key(sha, features, image_shape, model, OPSET)}.onnx"
        data = oc.load_cached(path)
        if data is not None:
            try:
                session = self._open(data)
                ok = oc.agrees(session, two, image_shape)
            except Exception:  # noqa: BLE001 -- a damaged graph ONNX Runtime refuses or cannot run: export again
                ok = False
            if ok:
                return session, "cache", path
        data = oc.export_bytes(two, image_shape, OPSET)
        session = self._open(data)
        try:
            oc.store(path, data, {"weights": str(Path(weights).resolve()), "weights_sha256": sha, "model": model,
                                  "features": features, "image_shape": [int(v) for v in image_shape]})
        except OSError:  # a cache folder that cannot be written: only the next start is slower
            return session, "memory", None
        return session, "exported", path

    def __call__(self, images: np.ndarray) -> tuple[Any, Any]:
        torch = _torch()
        logits, feats = self.session.run(["logits", "features"],
                                         {"images": np.ascontiguousarray(images, dtype=np.float32)})
        return torch.from_numpy(feats), torch.from_numpy(logits)


def check_engine(engine: str, quantize: str, device: Any = "cpu") -> None:
    """Refuse (one line) an engine / quantisation that does not exist or cannot run here, before any work:
    an unknown name; onnx or int8 on a GPU (both are CPU paths); onnx with int8 (the exporter cannot write
    torch's dynamically quantised linear layers, and ONNX Runtime's own quantisation is not wired in);
    onnx without onnxruntime installed. ``auto`` never refuses what torch would run."""
    if engine not in ENGINES:
        raise DiagError(f"--engine: choose one of {', '.join(ENGINES)}, got '{engine}'")
    if quantize not in QUANTIZE:
        raise DiagError(f"--quantize: choose one of {', '.join(QUANTIZE)}, got '{quantize}'")
    dev = _device_type(device)
    if (engine == "onnx" or quantize != "none") and dev != "cpu":
        raise DiagError(f"--engine {engine} / --quantize {quantize}: CPU only; on a GPU use the torch engine")
    if engine == "onnx" and quantize == "int8":
        raise DiagError("--engine onnx --quantize int8: not supported (torch's int8 linear layers do not export to "
                        "ONNX); use --engine torch --quantize int8, or --engine onnx --quantize none")
    if engine == "onnx" and not onnxruntime_available():
        raise DiagError("--engine onnx needs onnxruntime; install it with `pip install 'diag[onnx]'`")


def _device_type(device: Any) -> str:
    return getattr(device, "type", str(device).split(":")[0])


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def resolve_engine(engine: str, quantize: str = "none", device: Any = "cpu") -> str:
    """The engine that runs: ``engine`` itself unless ``auto``, which is ONNX Runtime on the CPU when
    onnxruntime is installed and no quantisation is asked for, else torch (GPU, int8, no onnxruntime).
    (Measured: ONNX Runtime gives torch's classes and unknown verdicts; docs/speed.md.)"""
    check_engine(engine, quantize, device)
    if engine != "auto":
        return engine
    if _device_type(device) == "cpu" and quantize == "none" and onnxruntime_available():
        return "onnx"
    return "torch"


def make_engine(net: Any, features: str, device: Any, image_shape: Any, engine: str = "torch",
                quantize: str = "none", weights: Any = None, model: str = "") -> Any:
    """The engine that scores images for a run (see the module docstring); checked options. ``weights``:
    the run's weights file, the key of the cached ONNX graph. Its ``name`` says what runs (torch, onnx,
    torch+int8); ``notes``: why ``auto`` fell back to torch, if it did."""
    chosen = resolve_engine(engine, quantize, device)
    notes: list[str] = []
    if quantize == "int8":
        net = quantized(net)
    if chosen == "onnx":
        try:
            eng = OnnxEngine(net, features, image_shape, weights=weights, model=model)
            eng.name, eng.notes = "onnx", notes
            return eng
        except Exception as exc:  # auto: any export / runtime failure falls back to torch
            if engine != "auto":
                raise
            notes.append(f"--engine auto: ONNX Runtime unavailable for this network ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); scoring with torch")
    eng = TorchEngine(net, features, device)
    eng.name, eng.notes = "torch" + ("+int8" if quantize == "int8" else ""), notes
    return eng


_DONE = object()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """``items``, produced ``depth`` ahead by a background thread (a bounded queue), so making the next
    batch of images overlaps scoring this one; an exception of the producer is raised here, in order."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 -- handed over to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, daemon=True, name="diag-prefetch")
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
