"""Typed configuration: plain dataclasses loaded from ``configs/*.toml`` plus ``section.key=value`` overrides.

A config file has one table per stage::

    [source]      # where recordings come from: kind + path + reader options
    [windows]     # target sampling rate, window length/hop, normalisation
    [split]       # leakage-free split method and its parameters
    [transform]   # CWT / STFT image parameters
    [train]       # fine-tuning (read by diag.learning.train, and by diag.study.compare for each run)
    [pretrain]    # self-supervised pretraining (read by diag.learning.pretrain)
    [compare]     # how diag compare runs its grid: jobs side by side, threads per run, a Dask cluster
    [track]       # experiment tracking: TensorBoard and/or MLflow (optional extras, off by default)

Every value is validated when loaded; an unknown key is an error (a flag that is parsed and then
ignored is worse than no flag).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence, get_type_hints

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

from diag.errors import DiagError

SOURCE_KINDS = ("cwru", "paderborn", "ottawa", "files", "bearing_sim", "inverter_sim")
SPLIT_METHODS = ("auto", "time", "recording", "group", "condition", "fault-size", "random")
NORMALIZATIONS = ("auto", "none", "zscore", "rms", "minmax", "zscore-joint", "rms-joint", "dataset")
VAL_METHODS = ("auto", "time", "recording", "group", "condition", "fault-size")
IMAGE_NORMS = ("auto", "image", "image-joint", "none")
#: single image representations; ``transform.kind`` joins one or more with "+" (e.g. "cwt+envorder")
TRANSFORM_PARTS = ("cwt", "stft", "envorder", "harmonics")
#: kinds whose rows are orders of a reference rate (shaft rate / electrical fundamental), not Hz
ORDER_PARTS = ("envorder", "harmonics")
ENV_MODES = ("bands", "sk", "fixed")
ON_BAD_ACTIONS = ("error", "warn", "skip")


@dataclass
class SourceConfig:
    """Where recordings come from.

    ``kind`` picks the reader; ``path`` is a file or folder (unused by the simulators); ``options``
    holds reader-specific settings (e.g. ``channels = ["DE"]`` for CWRU), passed as keyword
    arguments, and rejected by the reader if unknown.

    ``on_bad`` (``"error"`` | ``"warn"`` | ``"skip"``, default ``"error"``): what to do with a
    recording that has a dead (all-zero), flat-lined or long constant channel; ``on_clipped``
    (same choices, default ``"warn"``): with one whose samples pile up at a rail (see
    :mod:`diag.sources.checks`).
    """

    kind: str = "bearing_sim"
    path: str = ""
    on_bad: str = "error"
    on_clipped: str = "warn"
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise DiagError(f"source.kind: unknown '{self.kind}'; choose one of {', '.join(SOURCE_KINDS)}")
        for key in ("on_bad", "on_clipped"):
            value = getattr(self, key)
            if value not in ON_BAD_ACTIONS:
                raise DiagError(f"source.{key}: unknown '{value}'; choose one of {', '.join(ON_BAD_ACTIONS)}")
        simulated = self.kind in ("bearing_sim", "inverter_sim")
        if not simulated and not self.path:
            raise DiagError(f"source.path: the '{self.kind}' reader needs a path (--data PATH)")
        if simulated and self.path:
            raise DiagError(f"source.path: the '{self.kind}' simulator reads no files, but got '{self.path}'; "
                            "for files written by `diag simulate` use --source files --data DIR")


@dataclass
class WindowConfig:
    """Resampling and windowing.

    ``fs`` is the target sampling rate in Hz (every recording is polyphase-resampled to it; 0 keeps
    the recordings' own rate, which must then agree). ``length``/``hop`` are in samples at ``fs``.
    ``normalize``: per window and channel ``zscore`` (zero mean, unit std), ``rms`` (divide by RMS,
    keep the mean) or ``minmax`` (to [-1, 1]); per window, one map for all channels, keeping the
    ratios between them: ``zscore-joint``, ``rms-joint``; ``dataset``: one fixed mean and scale per
    channel group, computed on the training split and stored in the manifest (groups from
    ``channel_groups``, e.g. ``[["ia", "ib", "ic"], ["vab", "vbc", "vca"]]``; empty = all channels
    one group); or ``none``. ``auto`` (default): ``zscore`` for one channel, ``zscore-joint`` for several
    (channels recorded together -- the phases of one machine -- keep their level relations; a fault
    that raises one phase current by 3 % is divided away by a per-channel scale), resolved by
    ``diag prepare`` (:func:`resolve_auto_norms`) and stored resolved in the manifest.
    ``band = [lo, hi]`` Hz: every recording is band-limited (zero-phase FFT brick wall) after
    resampling and before windowing; ``lo = 0``: no high-pass, ``hi = 0``: no low-pass, empty: off.
    """

    fs: float = 12000.0
    length: int = 2048
    hop: int = 1024
    normalize: str = "auto"
    band: list[float] = field(default_factory=list)
    channel_groups: list[list[str]] = field(default_factory=list)

    def validate(self) -> None:
        if self.fs < 0:
            raise DiagError(f"windows.fs: must be >= 0 Hz (0 keeps the recordings' rate), got {self.fs}")
        if self.length < 16:
            raise DiagError(f"windows.length: must be at least 16 samples, got {self.length}")
        if self.hop < 1:
            raise DiagError(f"windows.hop: must be at least 1 sample, got {self.hop}")
        if self.normalize not in NORMALIZATIONS:
            raise DiagError(
                f"windows.normalize: unknown '{self.normalize}'; choose one of {', '.join(NORMALIZATIONS)}"
            )
        if self.band:
            if len(self.band) != 2 or min(self.band) < 0:
                raise DiagError(f"windows.band: expected [low, high] in Hz, both >= 0 (0 = no edge), got {self.band}")
            lo, hi = self.band
            if hi and lo >= hi:
                raise DiagError(f"windows.band: low edge {lo:g} Hz must be below the high edge {hi:g} Hz")
            if self.fs and hi >= self.fs / 2:
                raise DiagError(f"windows.band: high edge {hi:g} Hz must be below the Nyquist frequency "
                                f"{self.fs / 2:g} Hz of windows.fs={self.fs:g}")
        if self.channel_groups and self.normalize != "dataset":
            raise DiagError("windows.channel_groups: only used by windows.normalize=dataset; remove it or set that")


SPLITS = ("train", "val", "test")  # the sides of every split, in this order (prepare, dataset, windows)


@dataclass
class SplitConfig:
    """Train / validation / test split that does not leak.

    * ``auto`` (default): ``group`` where groups are given, else ``recording``, wherever every class
      has at least two of them; else ``time``, with a warning (:mod:`diag.signal.split_auto`).
    * ``time``: each recording is cut into contiguous blocks ``train | guard | val | guard | test``
      (fractions of its length); the guard is ``guard_windows`` window lengths, so no two windows on
      different sides share a sample.
    * ``recording`` / ``group``: whole groups go to the test side (``test_groups`` if given, else a
      seeded stratified choice of about ``test_fraction``).
    * ``condition``: recordings whose condition is in ``test_conditions`` are the test side.
    * ``fault-size``: faulty recordings whose fault size is in ``test_fault_sizes`` are the test side;
      healthy recordings (no size) are split by time.
    * ``random``: windows shuffled at random. Leaks (neighbouring windows overlap or correlate);
      needs ``allow_leaky = true`` and prints a warning.

    Validation comes from the training side only. ``val_method``: ``auto`` (default) holds out
    whole units of the same kind as the test side (recordings / groups / conditions / fault sizes)
    for the classes whose training side has at least two of them, and carves the rest by time
    (the reason goes to the plan's notes and is printed); ``time``: the last ``val_fraction`` of
    every training recording after a guard gap; or a kind named explicitly (an error where no
    class has two of them on the training side).
    """

    method: str = "auto"
    val_method: str = "auto"
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    guard_windows: float = 1.0
    test_groups: list[str] = field(default_factory=list)
    test_conditions: list[str] = field(default_factory=list)
    test_fault_sizes: list[str] = field(default_factory=list)
    seed: int = 0
    allow_leaky: bool = False

    def validate(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise DiagError(f"split.method: unknown '{self.method}'; choose one of {', '.join(SPLIT_METHODS)}")
        if self.val_method not in VAL_METHODS:
            raise DiagError(f"split.val_method: unknown '{self.val_method}'; choose one of {', '.join(VAL_METHODS)}")
        if self.method in ("time", "random") and self.val_method not in ("auto", "time"):
            raise DiagError(f"split.val_method: '{self.val_method}' holds out whole units for validation, but "
                            f"split.method={self.method} puts every recording on the training and the test side; "
                            "use split.val_method=time (or a grouping split.method)")
        if not 0.0 < self.test_fraction < 1.0 and self.method in ("auto", "time", "random", "recording", "group"):
            raise DiagError(f"split.test_fraction: must be in (0, 1), got {self.test_fraction}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DiagError(f"split.val_fraction: must be in [0, 1), got {self.val_fraction}")
        if self.guard_windows < 1.0 and self.method != "random":
            raise DiagError(
                f"split.guard_windows: must be >= 1 window so train and test share no sample, got {self.guard_windows}"
            )
        if self.method == "condition" and not self.test_conditions:
            raise DiagError("split.test_conditions: the 'condition' split needs at least one test condition, e.g. ['3HP']")
        if self.method == "fault-size" and not self.test_fault_sizes:
            raise DiagError("split.test_fault_sizes: the 'fault-size' split needs at least one size, e.g. ['0.014']")
        if self.method == "random" and not self.allow_leaky:
            raise DiagError(
                "split.method: 'random' window splits leak neighbouring windows into the test set; "
                "set split.allow_leaky=true (--allow-leaky) if you really want it"
            )


@dataclass
class TransformConfig:
    """Time-frequency image parameters.

    ``kind``: ``cwt`` (analytic Morlet scalogram), ``stft`` (spectrogram), ``envorder`` or
    ``harmonics`` (order images, below), or several joined by ``+`` (``cwt+stft``, ``cwt+envorder``:
    stacked as channels, same H x W); ``auto``: ``diag prepare`` scores the candidates by a cheap probe
    on the validation split and uses the best (:mod:`diag.signal.choose`). ``size`` = ``[H, W]`` of the output image: rows are frequencies in
    ascending order (row 0 = lowest; plot with ``origin="lower"``), columns are time. CWT:
    ``n_scales`` log-spaced centre frequencies from ``fmin`` to ``fmax`` Hz (``fmax`` 0 means
    0.45 * fs), Morlet parameter ``w0`` (radians). A Morlet wavelet at f Hz lasts about
    ``w0 / f`` seconds: below roughly ``5.7 * fs / length`` Hz it is longer than the window and the
    row shows mostly the mirrored edges (the manifest records ``edge_free_fmin_hz``). STFT: ``nperseg`` samples per segment, ``noverlap``. ``log``: dB /
    log1p magnitude scaling. ``norm``: per-image standardisation (``image``) or none.

    Order images (rows = orders of a reference rate ``r`` Hz, ``H`` equal cells from ``order_min`` to
    ``order_max``; ``r`` is given per window, see :func:`diag.signal.transforms.reference_hz`):
    ``envorder`` is the squared-envelope spectrum of band-passed signal (bearing impacts repeat at
    BPFO/BPFI/2xBSF x shaft rate whatever the resonance they ring), with ``env_mode``: ``bands``
    (default; column ``j`` = demodulation band ``j`` of ``env_bandwidth`` Hz, centres spread evenly
    over the spectrum: a band x order map), ``sk`` (the band of highest spectral kurtosis, per window,
    its spectrum repeated in every column) or ``fixed`` (the band ``env_band = [lo, hi]`` Hz, repeated).
    ``harmonics`` is the plain power spectrum in multiples of the fundamental (converter currents),
    repeated in every column. ``ref_hz``: the reference rate to use when a recording does not carry
    one (0 = none: then such a recording is an error). ``ref_search = [lo, hi]`` Hz instead estimates
    it, per recording that does not carry one, from the spectrum of its first seconds: the rate in
    ``[lo, hi]`` whose first harmonics stand highest above the spectrum's local median (see
    :func:`diag.signal.transforms.estimate_reference_hz`); keep the range within a factor of about 1.5 either
    side of the nominal speed, or a harmonic of the true rate can win.

    ``polarity``: split every channel into its positive and negative half-waves (``max(x, 0)``,
    ``max(-x, 0)``) before the transform, so each input channel gives two image channels per
    representation. Every image here is a magnitude, blind to the sign of the signal: an open upper
    switch (no positive current in its phase) and the open lower switch of the same leg give the same
    current mirrored and shifted by half a period, hence the same magnitude images. The half-waves keep
    the polarity (converter phase currents; pointless for zero-mean vibration).
    """

    kind: str = "cwt"
    size: list[int] = field(default_factory=lambda: [64, 64])
    n_scales: int = 64
    fmin: float = 40.0
    fmax: float = 0.0
    w0: float = 6.0
    nperseg: int = 128
    noverlap: int = 96
    log: bool = True
    norm: str = "auto"  # image (one channel) / image-joint (several): resolve_auto_norms
    order_min: float = 0.5
    order_max: float = 12.0
    env_mode: str = "sk"
    env_bandwidth: float = 1000.0
    env_band: list[float] = field(default_factory=list)
    ref_hz: float = 0.0
    ref_search: list[float] = field(default_factory=list)
    polarity: bool = False

    @property
    def parts(self) -> tuple[str, ...]:
        """The representations of ``kind`` in channel order, e.g. ``("cwt", "envorder")``."""
        return tuple(self.kind.split("+"))

    def validate(self) -> None:
        parts = () if self.kind == "auto" else self.parts  # auto: diag prepare picks the kind (diag.signal.choose)
        if self.kind != "auto" and (not parts or any(p not in TRANSFORM_PARTS for p in parts)
                                    or len(set(parts)) != len(parts)):
            raise DiagError(f"transform.kind: unknown '{self.kind}'; choose one or more of "
                            f"{', '.join(TRANSFORM_PARTS)} joined by '+' (each once), e.g. cwt+envorder, "
                            "or auto (diag prepare picks it by a probe on the validation split)")
        if "envorder" in parts and "harmonics" in parts:
            raise DiagError("transform.kind: envorder (shaft orders) and harmonics (orders of the electrical "
                            "fundamental) need different reference rates; use one of them")
        if not 0 <= self.order_min < self.order_max:
            raise DiagError(f"transform.order_min/order_max: need 0 <= order_min < order_max, got "
                            f"{self.order_min}..{self.order_max}")
        if self.env_mode not in ENV_MODES:
            raise DiagError(f"transform.env_mode: unknown '{self.env_mode}'; choose one of {', '.join(ENV_MODES)}")
        if not self.env_bandwidth > 0:
            raise DiagError(f"transform.env_bandwidth: must be > 0 Hz, got {self.env_bandwidth}")
        if self.env_band and (len(self.env_band) != 2 or not 0 <= self.env_band[0] < self.env_band[1]):
            raise DiagError(f"transform.env_band: expected [lo, hi] Hz with 0 <= lo < hi, got {self.env_band}")
        if self.env_mode == "fixed" and not self.env_band:
            raise DiagError("transform.env_band: env_mode = 'fixed' needs the band, e.g. env_band = [2000, 4000] (Hz)")
        if self.env_band and self.env_mode != "fixed":
            raise DiagError(f"transform.env_band: only used with env_mode = 'fixed' (env_mode is '{self.env_mode}'); "
                            "set env_mode = 'fixed' or leave env_band empty")
        if self.ref_hz < 0:
            raise DiagError(f"transform.ref_hz: must be >= 0 Hz (0 = take it from each recording), got {self.ref_hz}")
        if self.ref_search and (len(self.ref_search) != 2 or not 0 < self.ref_search[0] < self.ref_search[1]):
            raise DiagError(f"transform.ref_search: expected [lo, hi] Hz with 0 < lo < hi, got {self.ref_search}")
        if self.ref_search and self.ref_hz > 0:
            raise DiagError("transform.ref_hz and transform.ref_search: both set; give a fixed rate (ref_hz) or a "
                            "range to estimate each recording's rate in (ref_search), not both")
        if len(self.size) != 2 or min(self.size) < 8:
            raise DiagError(f"transform.size: must be [H, W] with both >= 8, got {self.size}")
        if self.n_scales < 2:
            raise DiagError(f"transform.n_scales: must be >= 2, got {self.n_scales}")
        if self.fmin <= 0:
            raise DiagError(f"transform.fmin: must be > 0 Hz, got {self.fmin}")
        if self.fmax and self.fmax <= self.fmin:
            raise DiagError(f"transform.fmax: must exceed fmin ({self.fmin} Hz), got {self.fmax}")
        if self.w0 < 3:
            raise DiagError(f"transform.w0: Morlet w0 below 3 is not admissible/analytic enough, got {self.w0}")
        if not 0 <= self.noverlap < self.nperseg:
            raise DiagError(f"transform.noverlap: must be in [0, nperseg={self.nperseg}), got {self.noverlap}")
        if self.norm not in IMAGE_NORMS:
            raise DiagError(f"transform.norm: choose one of {', '.join(IMAGE_NORMS)}, got '{self.norm}'")


def check_image_sizes(transform: TransformConfig, length: int) -> None:
    """Refuse image settings whose arrays cannot fit in memory, before anything is allocated: one image
    (float32 ``H x W`` per representation) and the CWT filter bank (per scale at least
    ``2 W x 2`` complex128 samples: :class:`diag.signal.transforms._CwtBank`), and one window's samples."""
    from diag.limits import budget, check_fits

    h, w = (int(v) for v in transform.size)
    parts = 1 if transform.kind == "auto" else len(transform.parts)
    side = int((budget() / (4 * parts)) ** 0.5)
    check_fits(4.0 * h * w * parts, f"transform.size={list(transform.size)}: one image",
               f"even a single image fits only up to about [{side}, {side}], and a dataset holds one per window "
               "(64 x 64 is the default)")
    if "cwt" in transform.parts or transform.kind == "auto":
        per_scale = 2 * w * 2 * 16.0
        check_fits(transform.n_scales * per_scale, f"transform.n_scales={transform.n_scales}: the CWT filter bank",
                   f"at most about {int(budget() // per_scale)} scales fit (64 is the default)")
    check_fits(8.0 * length, f"windows.length={length}: one window", "choose a shorter window")


def auto_norms(n_channels: int) -> tuple[str, str]:
    """What ``auto`` means for data with ``n_channels``: ``(windows.normalize, transform.norm)``."""
    return ("zscore-joint", "image-joint") if n_channels > 1 else ("zscore", "image")


def resolve_auto_norms(windows: WindowConfig, transform: TransformConfig, n_channels: int) -> list[str]:
    """Replace ``auto`` in ``windows.normalize`` / ``transform.norm`` by what it means for ``n_channels``.

    One channel: ``zscore`` / ``image`` (per window, per image: the defaults before ``auto``). Several:
    ``zscore-joint`` / ``image-joint``, one scale for all channels of a window, so the level relations
    between channels recorded together survive (measured on the inverter's phase currents, docs/images.md
    "Band limit and normalisation"). Returns what was resolved, as notes for the user.
    """
    notes = []
    joint = n_channels > 1
    window_norm, image_norm = auto_norms(n_channels)
    if windows.normalize == "auto":
        windows.normalize = window_norm
        if joint:
            notes.append(f"windows.normalize=auto -> zscore-joint: one scale for the {n_channels} channels of a "
                         "window keeps the level relations between them (set windows.normalize=zscore to scale "
                         "each channel on its own, e.g. for sensors in different units)")
    if transform.norm == "auto":
        transform.norm = image_norm
        if joint:
            notes.append("transform.norm=auto -> image-joint: one mean/std over the channels of a window's image")
    return notes


@dataclass
class PrepareConfig:
    """Everything ``diag prepare`` needs; stored whole in the prepared dataset's manifest."""

    source: SourceConfig = field(default_factory=SourceConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)

    def validate(self) -> "PrepareConfig":
        for part in (self.source, self.windows, self.split, self.transform):
            part.validate()
        check_image_sizes(self.transform, self.windows.length)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """A short hash of the config: equal configs prepare equal datasets.

        Settings added after datasets were first prepared (:data:`LATER_SETTINGS`) count only when they
        differ from their default, so an upgrade of diag does not orphan the datasets prepared before it.
        """
        d = self.to_dict()
        for section, key in LATER_SETTINGS:
            if d[section].get(key) == getattr(type(getattr(self, section))(), key):
                d[section].pop(key, None)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


#: (section, key) of prepare settings added later; at their default they leave the fingerprint as it was
LATER_SETTINGS = (("transform", "ref_search"), ("transform", "polarity"))


# ---------------------------------------------------------------------------------------------------
# Loading


#: Declarative ranges of numeric settings beyond their type (``section.key``: low, high, low open?, why).
#: Every float setting is also finite, every integer one fits 64 bits and no number is a boolean
#: (:func:`_coerce`); the rest of each section's rules stay in its ``validate()``.
LIMITS: dict[str, tuple[float, float, bool, str]] = {
    "train.lr": (0.0, 10.0, True, "a peak learning rate"),
    "pretrain.lr": (0.0, 10.0, True, "a peak learning rate"),
    # numpy's legacy RandomState (scikit-learn's random_state) takes seeds below 2**32
    "train.seed": (0, 2**32 - 1, False, "a random seed"),
    "pretrain.seed": (0, 2**32 - 1, False, "a random seed"),
    "split.seed": (0, 2**32 - 1, False, "a random seed"),
    "windows.fs": (0.0, 1e9, False, "a sampling rate in Hz, 0 keeps the recordings' rate"),
}
INT64 = (-(2**63), 2**63 - 1)


def _check_limit(value: Any, where: str) -> None:
    rule = LIMITS.get(where)
    if rule is None or isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        return
    lo, hi, lo_open, why = rule
    if (value <= lo if lo_open else value < lo) or value > hi:
        raise DiagError(f"{where}: {why}, must be in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}], got {value!r}")


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert ``value`` (from TOML or a CLI string) to the annotated type ``typ``."""
    import math

    origin = getattr(typ, "__origin__", None)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise DiagError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float) and isinstance(value, bool):
        raise DiagError(f"{where}: expected {'an integer' if typ is int else 'a number'}, got the boolean "
                        f"{str(value).lower()}")
    if typ is int:
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = int(value)
        except (TypeError, ValueError, OverflowError):
            raise DiagError(f"{where}: expected an integer, got {value!r}") from None
        _check_limit(out, where)
        if not INT64[0] <= out <= INT64[1]:
            raise DiagError(f"{where}: {out} does not fit a 64-bit integer (from -2^63 to 2^63-1)")
        return out
    if typ is float:
        try:
            out = float(value)
        except (TypeError, ValueError, OverflowError):
            raise DiagError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(out):
            rule = LIMITS.get(where)
            span = f" ({rule[3]}) in {'(' if rule[2] else '['}{_num(rule[0])}, {_num(rule[1])}]" if rule else ""
            raise DiagError(f"{where}: must be a finite number{span}, got {value!r}")
        _check_limit(out, where)
        return out
    if typ is str:
        return str(value)
    if origin is list:
        (inner,) = typ.__args__
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.strip("[]").split(",")) if v]
            value = [v.strip("'\"") for v in value]
        if not isinstance(value, (list, tuple)):
            raise DiagError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, inner, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise DiagError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly nested) dict, refusing unknown keys."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    extra_into_options = "options" in names  # SourceConfig: unknown keys are reader options
    options: dict[str, Any] = dict(data.get("options", {})) if extra_into_options else {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            if extra_into_options:
                options[key] = value
                continue
            raise DiagError(f"{path}: unknown setting; known: {', '.join(sorted(names))}")
        if key == "options":
            continue
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise DiagError(f"{path}: expected a table")
            kwargs[key] = from_dict(typ, value, path)
        else:
            kwargs[key] = _coerce(value, typ, path)
    if extra_into_options:
        kwargs["options"] = options
    return cls(**kwargs)


def changed_settings(cfg: Any, saved: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Names of the fields of dataclass ``cfg`` whose value differs from a saved ``asdict`` copy.

    A field the saved copy lacks (added to diag after it was written) counts as its default.
    """
    was = {**asdict(type(cfg)()), **saved}
    return [k for k, v in asdict(cfg).items() if k not in ignore and was.get(k) != v]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (value in TOML syntax when it parses, else a plain string)."""
    if "=" not in text:
        raise DiagError(f"override '{text}': expected section.key=value, e.g. windows.length=1024")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
        smuggled = re.search(r"[,;\s]\s*([A-Za-z_][\w.]*)\s*=", raw)
        if smuggled:
            raise DiagError(f"--set {text}: one setting per --set; '{smuggled.group(1)}=' inside the value of "
                            f"{key.strip()} would be lost; write --set {key.strip()}=... --set "
                            f"SECTION.{smuggled.group(1)}=... separately") from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set nested keys of ``data`` from ``section.key=value`` strings."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise DiagError(f"override '{text}': '{k}' is not a table")
        node[keys[-1]] = value
    return data


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; one-line errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise DiagError(f"{p}: config file not found; see configs/ for examples")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DiagError(f"{p}: not valid TOML ({exc})") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DiagError(f"{p}: not a TOML text file (binary or not UTF-8); give a config like those in configs/") from None


def load_section(cls: type, section: str, path: str | Path | None = None, overrides: Sequence[str] = (),
                 base: dict[str, Any] | None = None, example: str = "") -> Any:
    """Dataclass ``cls`` (with a ``validate()`` method) from one table of a config file: ``base``
    (e.g. a run's saved settings), then the ``[section]`` table of ``path``, then
    ``section.key=value`` overrides, in that order; validated. The one loader of the
    ``[train]`` and ``[pretrain]`` tables (``diag train``, ``diag pretrain``, ``diag compare``)."""
    data = read_toml(path) if path else {}
    table = dict(base or {})
    table.update(data.get(section, {}))
    for text in overrides:
        if not text.split("=", 1)[0].strip().startswith(f"{section}."):
            raise DiagError(f"--set {text}: diag {section} reads only {section}.* settings"
                            + (f" (e.g. {example})" if example else ""))
    tree = apply_overrides({section: table}, list(overrides))
    return from_dict(cls, tree[section], section).validate()


def load_prepare_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PrepareConfig:
    """Load the ``[source]``, ``[windows]``, ``[split]``, ``[transform]`` tables of a config file.

    ``[train]`` and ``[pretrain]`` are left to their own loaders; any other table (a typo such as
    ``[transfrom]``) and any override outside the four tables is an error, never silently ignored.
    """
    data = read_toml(path) if path else {}
    known = [f.name for f in fields(PrepareConfig)]
    unknown = sorted(set(data) - set(known) - set(RUN_TABLES))
    if unknown:
        raise DiagError(f"{path}: unknown table(s) {', '.join(f'[{k}]' for k in unknown)}; "
                        f"a config holds {', '.join(f'[{k}]' for k in [*known, *RUN_TABLES])}")
    for text in overrides or []:
        section = parse_override(text)[0][0]
        if section not in known:
            raise DiagError(f"--set {text}: diag prepare reads only {', '.join(f'{k}.*' for k in known)} settings")
    data = apply_overrides(data, overrides or [])
    sub = {k: v for k, v in data.items() if k in known}
    cfg = from_dict(PrepareConfig, sub)
    return cfg.validate()


# ---------------------------------------------------------------------------------------------------
# How runs are carried out and where they are logged: [compare] and [track] (read by diag compare / train /
# pretrain; neither changes what a run computes, so neither is part of a run's saved settings)

#: the tables a config file may hold besides the four of diag prepare
RUN_TABLES = ("train", "pretrain", "compare", "track")


@dataclass
class CompareConfig:
    """How ``diag compare`` carries out its grid (``[compare]``; ``--jobs``, ``--cluster``).

    jobs: runs side by side on this machine, in as many worker processes; 0 = as many as the machine
    allows (one per GPU when the runs train on CUDA, else the CPU cores divided by ``threads``).
    threads: torch CPU threads of every run, whatever ``jobs`` is: on a CPU a run's numbers depend on
    its thread count (reductions are split differently), so fixing it here makes ``--jobs 1`` and
    ``--jobs 4`` give the same runs. cluster: the address of a Dask scheduler (``tcp://host:8786``)
    to submit every run to as a task instead (optional extra ``diag[cluster]``); "" = this machine.
    retries: how often a run whose process or worker died is started again (it resumes from its
    last checkpoint); a run that still fails is recorded in ``compare.json`` and reported.
    resources: Dask resources one run needs, e.g. ``GPU=1`` or ``GPU=1,MEM=8e9``; "" = ``GPU=1``
    when the runs train on CUDA, else none (start workers with ``--nthreads 1``).
    """

    jobs: int = 0
    threads: int = 1
    cluster: str = ""
    retries: int = 1
    resources: str = ""

    def validate(self) -> "CompareConfig":
        if self.jobs < 0:
            raise DiagError(f"compare.jobs: must be >= 0 (0 = as many as the machine allows), got {self.jobs}")
        if self.threads < 1:
            raise DiagError(f"compare.threads: must be >= 1, got {self.threads}")
        if self.retries < 0:
            raise DiagError(f"compare.retries: must be >= 0, got {self.retries}")
        self.resource_needs()
        return self

    def resource_needs(self) -> dict[str, float]:
        """``resources`` as a dict (``GPU=1,MEM=8e9`` -> ``{"GPU": 1.0, "MEM": 8e9}``)."""
        needs: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in self.resources.split(","))):
            name, _, amount = part.partition("=")
            try:
                needs[name.strip()] = float(amount)
            except ValueError:
                raise DiagError(f"compare.resources: expected NAME=AMOUNT[,NAME=AMOUNT], e.g. GPU=1, "
                                f"got '{self.resources}'") from None
            if not name.strip() or needs[name.strip()] <= 0:
                raise DiagError(f"compare.resources: '{part}' needs a name and an amount > 0, e.g. GPU=1")
        return needs


TRACKERS = ("tensorboard", "mlflow")


@dataclass
class TrackConfig:
    """Experiment tracking (``[track]``; ``--track tensorboard,mlflow``); off by default.

    tensorboard: write TensorBoard event files (needs the ``tensorboard`` package: ``diag[track]``)
    into ``tensorboard_dir`` ("" = the run folder's ``tensorboard/``; ``tensorboard --logdir`` a
    compare folder shows every run). mlflow: log to MLflow (``mlflow-skinny``: ``diag[track]``) at
    ``mlflow_uri`` ("" = ``$MLFLOW_TRACKING_URI``, else a local file store ``mlruns/`` beside the
    output folder), in ``experiment``. Logged: the settings, per epoch the losses, learning rate
    and validation metrics, the final test metrics, and the run's files (and a compare's report).
    """

    tensorboard: bool = False
    mlflow: bool = False
    tensorboard_dir: str = ""
    mlflow_uri: str = ""
    experiment: str = "diag"

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.mlflow

    def validate(self) -> "TrackConfig":
        if not self.experiment.strip():
            raise DiagError("track.experiment: give the MLflow experiment a name, e.g. track.experiment=\"diag\"")
        return self

    @classmethod
    def from_flag(cls, text: str | None, base: "TrackConfig | None" = None) -> "TrackConfig":
        """``--track tensorboard,mlflow`` on top of ``base`` (a config's ``[track]`` table)."""
        cfg = dataclasses.replace(base) if base is not None else cls()
        for name in filter(None, (t.strip() for t in (text or "").split(","))):
            if name not in TRACKERS:
                raise DiagError(f"--track: unknown '{name}'; choose from {', '.join(TRACKERS)} (comma-separated)")
            setattr(cfg, name, True)
        return cfg.validate()
