"""What runs the network when a run scores images: PyTorch (default), ONNX Runtime, optionally with the
linear layers quantised to int8, and the bounded producer-consumer pipeline that overlaps making the next
batch of images with scoring this one.

Every engine maps images ``float32 [B, C, H, W]`` to ``(features, logits)`` as torch tensors -- the
features the run's unknown score reads (:func:`diag.learning.unknown.forward_parts`).

* ``torch``: the network itself (the reference; what ``diag train`` selected and scored).
* ``onnx``: the same network exported to ONNX in memory (the graph of ``diag export``) and run by ONNX
  Runtime with its own thread pool.
* ``quantize = "int8"``: dynamic int8 quantisation of the ``nn.Linear`` layers (``torch.ao.quantization.
  quantize_dynamic``: weights int8, activations quantised on the fly). ConvNeXt blocks are mostly
  pointwise linear layers. Off by default: ``scripts/bench/bench_predict.py --agreement DATA`` measures its
  accuracy and agreement with the float model on a prepared test split.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any, Iterable, Iterator

import numpy as np

from diag.errors import DiagError

__all__ = ["ENGINES", "QUANTIZE", "TwoOutputs", "check_engine", "make_engine", "prefetch"]

ENGINES = ("torch", "onnx")
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
    """The network exported to ONNX (in memory) and run by ONNX Runtime on the CPU."""

    def __init__(self, net: Any, features: str, image_shape: Any, threads: int | None = None):
        torch = _torch()
        try:
            import onnxruntime as ort
        except ImportError:
            raise DiagError("--engine onnx needs onnxruntime; install it with `pip install 'diag[onnx]'`") from None
        buf = io.BytesIO()
        model = TwoOutputs(net.cpu().eval(), features)
        with torch.no_grad():
            torch.onnx.export(model, (torch.zeros(2, *[int(v) for v in image_shape]),), buf, dynamo=False,
                              opset_version=OPSET, input_names=["images"], output_names=["logits", "features"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}})
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray) -> tuple[Any, Any]:
        torch = _torch()
        logits, feats = self.session.run(["logits", "features"],
                                         {"images": np.ascontiguousarray(images, dtype=np.float32)})
        return torch.from_numpy(feats), torch.from_numpy(logits)


def check_engine(engine: str, quantize: str, device: Any = "cpu") -> None:
    """Refuse (one line) an engine / quantisation that does not exist or cannot run here, before any work:
    an unknown name; onnx or int8 on a GPU (both are CPU paths); onnx with int8 (the exporter cannot write
    torch's dynamically quantised linear layers, and ONNX Runtime's own quantisation is not wired in);
    onnx without onnxruntime installed."""
    if engine not in ENGINES:
        raise DiagError(f"--engine: choose one of {', '.join(ENGINES)}, got '{engine}'")
    if quantize not in QUANTIZE:
        raise DiagError(f"--quantize: choose one of {', '.join(QUANTIZE)}, got '{quantize}'")
    dev = getattr(device, "type", str(device).split(":")[0])
    if (engine != "torch" or quantize != "none") and dev != "cpu":
        raise DiagError(f"--engine {engine} / --quantize {quantize}: CPU only; on a GPU use the default torch engine")
    if engine == "onnx" and quantize == "int8":
        raise DiagError("--engine onnx --quantize int8: not supported (torch's int8 linear layers do not export to "
                        "ONNX); use --engine torch --quantize int8, or --engine onnx --quantize none")
    if engine == "onnx":
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            raise DiagError("--engine onnx needs onnxruntime; install it with `pip install 'diag[onnx]'`")


def make_engine(net: Any, features: str, device: Any, image_shape: Any, engine: str = "torch",
                quantize: str = "none") -> Any:
    """The engine that scores images for a run (see the module docstring); checked options."""
    check_engine(engine, quantize, device)
    if quantize == "int8":
        net = quantized(net)
    if engine == "onnx":
        return OnnxEngine(net, features, image_shape)
    return TorchEngine(net, features, device)


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
