""""The data" of a study's report in words: a short table a person reads (source, split and what the test
holds, recordings, sampling rate, window, normalisation, images, the transform's key settings, the prepared
dataset), and the full settings as text for a folded block beneath it.

Reads the dict of :func:`diag.study.runs.describe_data` (from the prepared dataset's manifest); every value
is optional, so a manifest of an older ``diag prepare`` (or a toy dataset) still gives a table.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["data_rows", "full_settings", "normalisation_words", "pixel_words", "transform_words", "window_words"]

#: ``windows.normalize`` in words (:mod:`diag.signal.normalization`)
NORMALIZE_WORDS = {
    "none": "none (raw units)",
    "zscore": "each channel of each window to zero mean and unit standard deviation",
    "rms": "each channel of each window to unit RMS (DC level kept)",
    "minmax": "each channel of each window mapped to [-1, 1]",
    "zscore-joint": "each window to zero mean and unit standard deviation over all its channels "
                    "(level relations between channels kept)",
    "rms-joint": "each window to unit RMS over all its channels (level relations between channels kept)",
    "dataset": "one fixed mean and scale per channel group, measured on the training split",
}
#: ``transform.norm`` in words
IMAGE_NORM_WORDS = {
    "image": "each image standardised on its own",
    "image-joint": "images standardised with one mean and standard deviation over all channels of a window",
    "none": "images not standardised",
}
#: ``transform.kind`` parts in words
KIND_WORDS = {
    "cwt": "CWT scalogram",
    "stft": "STFT spectrogram",
    "envorder": "envelope order spectrum",
    "harmonics": "harmonic order spectrum",
}


def _g(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def window_words(window: dict[str, Any] | None, fs: float | None) -> str:
    """``2048 samples (0.205 s), a new window every 1024 samples (50 % overlap); 3 channels (ia, ib, ic)``."""
    if not window:
        return "not recorded"
    length, hop = window.get("length"), window.get("hop")
    out = f"{length} samples"
    if isinstance(length, (int, float)) and fs:
        out += f" ({length / fs:.3g} s)"
    if isinstance(hop, (int, float)) and isinstance(length, (int, float)) and length:
        out += f", a new window every {hop:g} samples ({max(0.0, 1 - hop / length):.0%} overlap)".replace("%", " %")
    channels = window.get("channels") or []
    if channels:
        out += f"; {len(channels)} channel{'s' if len(channels) > 1 else ''} ({', '.join(map(str, channels))})"
    band = window.get("band") or []
    if len(band) == 2:
        out += f"; band-passed {_g(band[0])}–{_g(band[1])} Hz"
    return out


def normalisation_words(window: dict[str, Any] | None) -> str:
    method = (window or {}).get("normalize")
    if method is None:
        return "not recorded"
    return f"{NORMALIZE_WORDS.get(method, method)} ({method})"


def _part_words(kind: str, t: dict[str, Any]) -> str | None:
    """The key settings of one representation from its block of the manifest's transform."""
    d = t.get(kind)
    if not isinstance(d, dict):
        return None
    if kind == "cwt":
        out = (f"CWT: {d.get('n_scales', '?')} scales, {_g(d.get('fmin', '?'))}–{_g(d.get('fmax', '?'))} Hz "
               f"(log-spaced), Morlet w0 {_g(d.get('w0', '?'))}")
        if "edge_free_fmin_hz" in d:
            out += f"; rows below {_g(d['edge_free_fmin_hz'])} Hz mostly see the window's edges"
        return out
    if kind == "stft":
        return (f"STFT: {str(d.get('window', 'hann')).capitalize()} window of {d.get('nperseg', '?')} samples, hop {d.get('hop', '?')}, "
                f"{d.get('bins', '?')} bins 0–{_g(d.get('fmax', '?'))} Hz, {d.get('frames', '?')} frames")
    edges = re.search(r"cells ([0-9.]+)\.\.([0-9.]+)", str(d.get("rows", "")))  # the rows' outer edges
    orders = d.get("orders") or []
    span = (f"orders {edges[1]}–{edges[2]}" if edges else
            f"orders {orders[0]:.3g}–{orders[-1]:.3g}" if orders else "orders")
    top = _g(d.get("highest_frequency_hz", "?"))
    if kind == "envorder":
        return (f"envelope spectrum, {span} of the shaft rate (envelope up to {top} Hz), demodulation band: "
                f"{d.get('env_mode', '?')}")
    return f"power spectrum, {span} of the electrical fundamental (up to {top} Hz)"


def transform_words(transform: dict[str, Any] | None) -> str:
    """The transform's key settings in a sentence: per representation its band and resolution."""
    if not transform:
        return "not recorded"
    kinds = str(transform.get("kind", "?")).split("+")
    said = [w for w in (_part_words(k, transform) for k in kinds) if w]
    return "; ".join(said) if said else str(transform.get("kind", "?"))


def pixel_words(transform: dict[str, Any] | None) -> str | None:
    """What a pixel holds: the log scale, the image standardisation and the polarity split (None: not recorded)."""
    t = transform or {}
    said = []
    log = t.get("log")
    if isinstance(log, str):
        said.append("log power (dB)" if log.startswith("10*log10") else log)
    if t.get("norm"):
        said.append(IMAGE_NORM_WORDS.get(t["norm"], f"image norm {t['norm']}"))
    if str(t.get("polarity", "")).startswith("each input channel split"):
        said.append("each channel split into its positive and negative half-waves first")
    return "; ".join(said) or None


def _image_words(shape: Any, transform: dict[str, Any] | None) -> str:
    kinds = str((transform or {}).get("kind", "?")).split("+")
    kind = " + ".join(KIND_WORDS.get(k, k) for k in kinds)
    if isinstance(shape, (list, tuple)) and len(shape) == 3:
        return f"{kind}, {shape[0]} × {shape[1]} × {shape[2]} (channels × rows × columns)"
    return kind


def _split_sizes(sizes: dict[str, Any]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sizes.items())


def data_rows(data: dict[str, Any]) -> list[list[str]]:
    """The rows (what, value) of the data table, in words."""
    where = [["prepared dataset", f"{data.get('path')} (fingerprint {data.get('fingerprint')})"]]
    if "missing" in data:
        classes = data.get("classes") or []
        return where + [["classes", f"{len(classes)}: {', '.join(map(str, classes))}"],
                        ["details", ("the prepared dataset is not here, so no data details, data audit or "
                                     "example images (report again where it is)")]]
    recordings = f"{data.get('recordings', '?')} recordings"
    if data.get("sizes"):
        recordings += f", cut into windows: {_split_sizes(data['sizes'])}"
    fs = data.get("fs")
    return [["source", str(data.get("source", "?"))],
            ["split", f"{data.get('split', '?')}: the test split holds {data.get('split_tests', '?')}"],
            ["recordings", recordings],
            ["sampling rate", f"{_g(fs)} Hz" if fs else "not recorded"],
            ["window", window_words(data.get("window"), fs)],
            ["normalisation", normalisation_words(data.get("window"))],
            ["images", _image_words(data.get("image_shape"), data.get("transform"))],
            ["transform", transform_words(data.get("transform"))]] + \
        [["pixel values", w] for w in [pixel_words(data.get("transform"))] if w] + where


def _compact(v: Any, indent: int = 0) -> str:
    """JSON with one key per line but each list of numbers or strings on one line."""
    pad = " " * (indent + 1)
    if isinstance(v, dict) and v:
        inner = ",\n".join(f"{pad}{json.dumps(k)}: {_compact(x, indent + 1)}" for k, x in v.items())
        return "{\n" + inner + "\n" + " " * indent + "}"
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        return "[" + ", ".join(_compact(x, indent + 1) for x in v) + "]"
    return json.dumps(v)


def full_settings(data: dict[str, Any]) -> str | None:
    """Every setting of the source, window and transform, as the manifest holds them (None: nothing known)."""
    if "missing" in data:
        return None
    full = {"source": ({"kind": data["source"]} if data.get("source") else {}) | (data.get("source_options") or {}),
            "window": data.get("window"), "transform": data.get("transform")}
    full = {k: v for k, v in full.items() if v}
    return _compact(full) if full else None
