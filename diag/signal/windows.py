"""From recordings to windows: resampling, band limiting, windowing, normalisation and leakage-free
train / validation / test splits.

The split is decided on sample ranges of recordings before any window is cut, so no training window
shares a sample with a validation or test window; the methods (``split.method``) and how validation is
chosen are described in :mod:`diag.signal.splits`.

Before windowing, every recording may be band-limited (``windows.band``, :func:`band_limit`);
windows are normalised by :func:`apply_normalization` (per window and channel, per window jointly,
or with fixed training-split statistics per channel group).

The concerns live in their own modules -- :mod:`diag.signal.resampling` (rates and bands),
:mod:`diag.signal.normalization`, :mod:`diag.signal.splits` (the split plan and its windows) -- and this
module holds :func:`harmonise`, which brings a set of recordings to one rate and band, and re-exports the
public names of those modules, so ``from diag.signal.windows import ...`` keeps working.
"""

from __future__ import annotations

from diag.config import WindowConfig
from diag.errors import DiagError
from diag.signal.normalization import NormalizationStats, apply_normalization, channel_groups, normalize
from diag.signal.resampling import (
    BAND_ATTENUATION_DB,
    BAND_TRANSITION,
    band_edges,
    band_filter,
    band_limit,
    filter_segment,
    rational_ratio,
    resample,
    symmetric_index,
)
from diag.signal.splits import (
    Block,
    SplitPlan,
    WindowIndex,
    check_no_shared_samples,
    extract,
    plan_split,
    window_starts,
)
from diag.sources.base import Recording

__all__ = [
    "harmonise",
    # re-exported from the modules by concern (imported from here before the split)
    "rational_ratio", "resample", "BAND_TRANSITION", "BAND_ATTENUATION_DB", "band_filter", "band_edges",
    "filter_segment", "symmetric_index", "band_limit",
    "normalize", "channel_groups", "NormalizationStats", "apply_normalization",
    "window_starts", "Block", "WindowIndex", "SplitPlan", "plan_split", "check_no_shared_samples", "extract",
]


def harmonise(recordings: list[Recording], cfg: WindowConfig) -> list[Recording]:
    """Validate, check channel counts agree, bring every recording to the target rate, band-limit.

    With ``cfg.fs == 0`` the recordings must already share one rate: mixing rates without
    resampling plants a trivial cue (CWRU's 48 kHz healthy baseline among 12 kHz faults).
    ``cfg.band`` (when set) is applied to every recording after resampling (:func:`band_limit`).
    """
    if not recordings:
        raise DiagError("no recordings were read; check source.path and the reader options")
    for r in recordings:
        r.validate()
    first = recordings[0]
    for r in recordings[1:]:
        if r.n_channels != first.n_channels:
            raise DiagError(
                f"{r.source}: {r.n_channels} channels but {first.source} has {first.n_channels}; "
                "select the same channels for every recording"
            )
    if cfg.fs == 0:
        for r in recordings[1:]:
            if abs(r.fs - first.fs) > 1e-9 * first.fs:
                raise DiagError(
                    f"inconsistent sampling rates: {first.source} is {first.fs:g} Hz, {r.source} is {r.fs:g} Hz; "
                    "set windows.fs to resample them all to one rate"
                )
        return [band_limit(r, cfg.band) for r in recordings]
    out = []
    for r in recordings:
        if r.fs < cfg.fs:
            # Upsampling invents no information but changes what the images show; allow it only
            # up to a factor of 4 and say so in the manifest via meta.
            if cfg.fs / r.fs > 4:
                raise DiagError(
                    f"{r.source}: sampled at {r.fs:g} Hz, far below the target windows.fs={cfg.fs:g} Hz; "
                    "lower windows.fs"
                )
        out.append(band_limit(resample(r, cfg.fs), cfg.band))
    return out
