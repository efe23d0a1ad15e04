"""Window normalisation: per window and channel, per window jointly, or with fixed statistics of the
training split per channel group (``windows.normalize = "dataset"``: :class:`NormalizationStats`,
:func:`apply_normalization`)."""

from __future__ import annotations

import numpy as np

from diag.config import auto_norms
from diag.errors import DiagError

__all__ = ["normalize", "channel_groups", "NormalizationStats", "apply_normalization"]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0).astype(np.float32)


def normalize(x: np.ndarray, method: str) -> np.ndarray:
    """Per-window normalisation of ``x`` with shape ``[..., C, W]`` (windows on the last axis).

    Per channel (each channel of each window on its own; ratios between channels are lost):

    * ``zscore``: ``(x - mean) / std``
    * ``rms``: ``x / sqrt(mean(x**2))`` (keeps the DC level)
    * ``minmax``: affine map of ``[min, max]`` to ``[-1, 1]``

    Joint (one map per window for all its channels; amplitude ratios, offsets and phase relations
    between channels are kept):

    * ``zscore-joint``: ``(x - m) / s`` with ``m``, ``s`` the mean and std over all channels and samples
    * ``rms-joint``: ``x / sqrt(mean over channels and samples of x**2)``

    * ``none``: unchanged. (``dataset`` needs statistics: see :func:`apply_normalization`.)
    * ``auto``: ``zscore`` for one channel, ``zscore-joint`` for several (the default; ``diag prepare``
      stores the resolved method)

    Constant windows (std, rms or range 0) are left at zero rather than divided by zero.
    """
    x = x.astype(np.float32, copy=False)
    if method == "auto":  # diag prepare stores the resolved method; this is for direct callers
        method = auto_norms(x.shape[-2] if x.ndim >= 2 else 1)[0]
    if method == "none":
        return x
    if method == "zscore":
        return _safe_div(x - x.mean(axis=-1, keepdims=True), x.std(axis=-1, keepdims=True))
    if method == "rms":
        return _safe_div(x, np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True)))
    if method == "minmax":
        lo = x.min(axis=-1, keepdims=True)
        hi = x.max(axis=-1, keepdims=True)
        rng = hi - lo
        return np.where(rng > 0, 2 * (x - lo) / np.where(rng > 0, rng, 1) - 1, 0).astype(np.float32)
    if method in ("zscore-joint", "rms-joint"):
        if x.ndim < 2:
            raise DiagError(f"windows.normalize={method}: needs windows shaped [..., channels, samples]")
        axes = (-2, -1)
        if method == "zscore-joint":
            return _safe_div(x - x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True))
        return _safe_div(x, np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True)))
    if method == "dataset":
        raise DiagError("windows.normalize=dataset needs the training-split statistics; "
                        "call apply_normalization(windows, 'dataset', stats)")
    raise DiagError(f"windows.normalize: unknown '{method}'")


def channel_groups(channels: list[str] | tuple[str, ...], groups: list[list[str]]) -> list[list[int]]:
    """Channel indices of each group of ``windows.channel_groups`` (empty: all channels form one group).

    Every channel must be in exactly one group; a name that is not a channel is an error.
    """
    channels = list(channels)
    if not groups:
        return [list(range(len(channels)))]
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        idx = []
        for name in g:
            if name not in channels:
                raise DiagError(f"windows.channel_groups: '{name}' is not a channel; the channels are {channels}")
            if name in seen:
                raise DiagError(f"windows.channel_groups: channel '{name}' is in two groups")
            seen[name] = len(out)
            idx.append(channels.index(name))
        out.append(idx)
    missing = [c for c in channels if c not in seen]
    if missing:
        raise DiagError(f"windows.channel_groups: channel(s) {missing} are in no group; list every channel once")
    return out


class NormalizationStats:
    """Running sums for the ``dataset`` normalisation: one mean and one std per channel group.

    Feed it the *training* windows (``update``), then ``result()`` gives the JSON-able statistics
    that :func:`apply_normalization` needs and the manifest stores (so predict applies the same).
    """

    def __init__(self, channels: list[str] | tuple[str, ...], groups: list[list[str]]):
        self.channels = list(channels)
        self.groups = channel_groups(self.channels, groups)
        self.n = np.zeros(len(self.channels))
        self.s1 = np.zeros(len(self.channels))
        self.s2 = np.zeros(len(self.channels))

    def update(self, x: np.ndarray) -> None:
        """Add windows ``[B, C, W]``."""
        x = np.asarray(x, dtype=np.float64)
        self.n += x.shape[0] * x.shape[-1]
        self.s1 += x.sum(axis=(0, 2))
        self.s2 += np.square(x).sum(axis=(0, 2))

    def result(self) -> dict:
        c = len(self.channels)
        center, scale = np.zeros(c), np.ones(c)
        for idx in self.groups:
            n = self.n[idx].sum()
            if n == 0:
                raise DiagError("windows.normalize=dataset: no training windows to compute the scale from")
            mean = self.s1[idx].sum() / n
            var = max(self.s2[idx].sum() / n - mean**2, 0.0)
            sd = float(np.sqrt(var))
            center[idx] = mean
            scale[idx] = sd if sd > 0 else 1.0
        return {"channels": self.channels, "groups": [[self.channels[i] for i in g] for g in self.groups],
                "center": [float(v) for v in center], "scale": [float(v) for v in scale]}


def apply_normalization(windows: np.ndarray, method: str, stats: dict | None = None) -> np.ndarray:
    """Normalise windows ``[B, C, W]`` the way a prepared dataset (and so its model) expects.

    Per-window methods (see :func:`normalize`) need no ``stats``. ``dataset``: one fixed affine map
    per channel group, ``(x - center) / scale`` with the mean and standard deviation of the group's
    channels over the training windows (``stats`` as stored in the manifest under
    ``window.normalization_stats``; :class:`NormalizationStats` computes them). It keeps the
    absolute level as well as the ratios between the channels of a group.
    """
    if method != "dataset":
        return normalize(windows, method)
    if not stats or "center" not in stats or "scale" not in stats:
        raise DiagError("windows.normalize=dataset: the training-split statistics are missing "
                        "(a dataset or checkpoint prepared without them); prepare the dataset again")
    x = np.asarray(windows, dtype=np.float32)
    center = np.asarray(stats["center"], dtype=np.float32)
    scale = np.asarray(stats["scale"], dtype=np.float32)
    if x.ndim < 2 or x.shape[-2] != len(center):
        raise DiagError(f"windows.normalize=dataset: the statistics are for {len(center)} channel(s) "
                        f"({stats.get('channels')}), the windows have shape {x.shape}")
    return ((x - center[:, None]) / scale[:, None]).astype(np.float32)
