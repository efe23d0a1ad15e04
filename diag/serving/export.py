"""``diag export RUN --onnx FILE``: the classifier as ONNX, checked against PyTorch, plus its preprocessing.

The graph takes images ``float32 [batch, C, H, W]`` (dynamic batch) and returns ``logits [batch, K]``
and ``features [batch, D]`` (the pooled pre-classifier features the ``unknown`` score may need).
After writing, ONNX Runtime runs the run's validation images (up to ``CHECK_IMAGES``) and the largest
absolute difference to PyTorch's logits must stay within ``TOLERANCE`` (printed), else nothing is left
behind. Beside ``FILE`` goes ``FILE`` with ``.json``: class names, the preprocessing (sampling rate, window,
normalisation, transform config and description with row frequencies) and the unknown rule, which an
embedded consumer needs to turn a waveform into the model's input; and, when the run's unknown method
uses fitted statistics, ``FILE`` with ``.unknown.safetensors``.

The window -> CWT image transform is not put inside the graph (tried with torch 2.14, opset 17): the
TorchScript exporter has no translation for ``aten::fft_rfft`` ("not supported"), and the dynamo
exporter (onnxscript) translates the FFT but not the complex-valued ``pad`` / ``unfold`` / multiply of
the banded filter bank ("No decompositions registered for the complex-valued input"). Rewriting the
bank in real arithmetic, or as dense real DFT matrices (2N x (N+1) complex, about 67 MB in float32 for 2048-sample
windows), would be a second implementation of the transform to keep in step with the first; the
.json instead describes the transform exactly (config, row frequencies) for the consumer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from diag.errors import DiagError
from diag.serving.engine import OPSET, TwoOutputs
from diag.serving.onnx_cache import export_bytes
from diag.signal.dataset import MANIFEST

TOLERANCE = 1e-4
CHECK_IMAGES = 256


def _need_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise DiagError("diag export needs onnx and onnxruntime; install them with `pip install 'diag[onnx]'`") from None
    return onnx, onnxruntime


def _read_meta(run: str | Path) -> dict[str, Any]:
    """The run's ``model.json`` if it reads as an object, else ``{}`` (the Predictor names the problem)."""
    try:
        meta = json.loads((Path(run) / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def export_onnx(run: str | Path, onnx_path: str | Path, force: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Write ``onnx_path`` (+ ``.json``, + ``.unknown.safetensors``); return the agreement check's numbers."""
    import torch

    from diag.storage import (atomic_file, claim_output_files, clean_stale_temporaries, json_default,
                              record_output_file, write_output_file)
    from diag.serving.predictor import Predictor

    onnx, ort = _need_onnx()
    onnx_path = Path(onnx_path)
    json_path = onnx_path.with_suffix(".json")
    stats_path = onnx_path.with_suffix(".unknown.safetensors")
    if onnx_path.suffix.lower() != ".onnx":
        raise DiagError(f"--onnx {onnx_path}: name the file with the .onnx suffix")
    if not onnx_path.parent.is_dir():
        raise DiagError(f"--onnx {onnx_path}: folder {onnx_path.parent} does not exist; create it first")
    for p in (onnx_path, json_path, stats_path):  # what an export killed midway left (.NAME.tmp-PID-*)
        clean_stale_temporaries(p)
    data_dir = (_read_meta(run).get("dataset") or {}).get("path")
    claim_output_files([("--onnx", onnx_path), ("--onnx (its .json)", json_path),
                        ("--onnx (its unknown statistics)", stats_path)], force=force, inputs=[run],
                       protected_dirs=[run, data_dir])
    pred = Predictor(run, device="cpu", quiet=quiet)
    pre = pred.pre
    c, h, w = (int(v) for v in pre.image_shape)
    images, source = _check_images(run, pred)
    model = TwoOutputs(pred.net, features=pred.unknown_features).eval()
    with atomic_file(onnx_path, suffix=".onnx") as tmp_path:
        tmp = str(tmp_path)
        Path(tmp).write_bytes(export_bytes(model, (c, h, w), OPSET))  # the graph predict's onnx engine runs
        onnx.checker.check_model(tmp)
        sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got_l, got_f = sess.run(["logits", "features"], {"images": images})
        with torch.no_grad():
            ref_l, ref_f = (t.numpy() for t in model(torch.from_numpy(images)))
        diff = float(np.abs(got_l - ref_l).max())
        diff_f = float(np.abs(got_f - ref_f).max())
        ok = diff <= TOLERANCE and diff_f <= TOLERANCE
        check = {"images": source, "n": int(len(images)), "max_abs_diff_logits": diff,
                 "max_abs_diff_features": diff_f, "tolerance": TOLERANCE,
                 "same_argmax": float((got_l.argmax(1) == ref_l.argmax(1)).mean())}
        if not ok:
            raise DiagError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {max(diff, diff_f):.2e} "
                            f"(> {TOLERANCE:g}) on {source}; not written")
        unknown = pred.unknown.describe() if pred.unknown is not None else None
        if pred.unknown is not None and pred.unknown.stats:
            from diag.learning.unknown import save_tensors

            save_tensors(stats_path, pred.unknown.stats)
            record_output_file(stats_path)
            unknown["stats_file"] = stats_path.name
        info = {
            "format": "diag-onnx/1",
            "onnx": onnx_path.name,
            "input": {"name": "images", "shape": ["batch", c, h, w], "dtype": "float32"},
            "outputs": {"logits": ["batch", len(pred.classes)], "features": ["batch", "D"]},
            "features": {"layers": "every stage's channel means, channel standard deviations and frequency profile, "
                                   "concatenated (unknown method layers; diag.learning.unknown.stage_statistics)",
                         "rows": "the input images' row profile: each channel's mean over columns, per row "
                                 "(unknown method rows; diag.learning.unknown.row_profile)",
                         "pooled": "pooled pre-classifier features"}[pred.unknown_features],
            "classes": pred.classes,
            "preprocessing": {
                "steps": ["select channels (channels)", "polyphase-resample to fs",
                          "band-limit the whole recording to band (centred FIR over mirrored ends, "
                          "diag.signal.windows.band_limit; empty: none)",
                          f"windows of length samples (hop {pred.hop})",
                          "normalize ('dataset' uses norm_stats)",
                          *(["split each channel into max(x, 0) and max(-x, 0) (transform.polarity)"]
                            if pre.transform.polarity else []),
                          "transform (transform, described in images) to images",
                          "softmax(logits) = class probabilities"],
                **pre.to_dict(),
            },
            "unknown": unknown,
            "check": check,
            "run": str(run),
            "transform_in_graph": False,
            "transform_in_graph_why": ("torch's ONNX exporters do not translate the CWT filter bank: aten::fft_rfft "
                                       "(TorchScript exporter) and complex-valued pad/unfold (dynamo exporter)"),
        }
    # the ONNX file is in place (renamed when the block ended); its description next
    record_output_file(onnx_path)
    write_output_file(json_path, json.dumps(info, indent=2, default=json_default) + "\n")
    return check


def run_export(run: str | Path, onnx_path: str | Path, with_transform: bool = False, force: bool = False) -> dict[str, Any]:
    from diag.show import console as make_console
    from diag.show import esc

    if with_transform:
        raise DiagError("--with-transform: the CWT cannot be exported inside the ONNX graph (torch's ONNX exporters "
                        "do not translate its complex FFT filter bank, see docs/commands/export.md); export without it and compute "
                        "the images as the .json describes")
    check = export_onnx(run, onnx_path, force=force)
    make_console().print(esc(f"{onnx_path}: ONNX Runtime vs PyTorch on {check['images']}: max |diff| logits "
                    f"{check['max_abs_diff_logits']:.2e}, features {check['max_abs_diff_features']:.2e} "
                    f"(tolerance {check['tolerance']:g}); same class {100 * check['same_argmax']:.1f} %"))
    make_console().print(esc(f"preprocessing and classes: {Path(onnx_path).with_suffix('.json')}"))
    return check


def _check_images(run: str | Path, pred: Any) -> tuple[np.ndarray, str]:
    """Images to check the exported graph on: validation images of the run's dataset, else images of
    random noise windows through the run's own preprocessing; and what they are, in words."""
    from diag.signal.dataset import PreparedDataset

    pre = pred.pre
    data = Path((pred.meta.get("dataset") or {}).get("path") or "")
    if data.name and (data / MANIFEST).is_file():
        ds = PreparedDataset(data)
        if "val" in ds.splits and len(ds.labels("val")):
            return (np.asarray(ds.images("val")[:CHECK_IMAGES], dtype=np.float32),
                    f"{min(CHECK_IMAGES, len(ds.labels('val')))} validation images of {data}")
    if pre.needs_ref and not pre.transform.ref_hz:
        raise DiagError(f"{run}: its prepared dataset is gone and its order images ({pre.transform.kind}) need a "
                        "reference rate to draw the check images; export it while the dataset is there, or train with "
                        "a fixed transform.ref_hz")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, len(pre.channels) or 1, pre.length)).astype(np.float32)
    return pre(x, pre.transform.ref_hz or None), "64 images of random noise windows (the run's prepared dataset is gone)"
