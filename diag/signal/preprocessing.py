"""The fitted preprocessing: one object takes a waveform to the model's images, from ``diag prepare`` to
``diag predict`` (scikit-learn's fit / transform, saved and loaded whole).

:class:`Preprocessing` holds every step between a recording as read and the images a model sees, in order:

1. **source checks** (dead, flat-lined, constant or clipped channels; :mod:`diag.sources.checks`);
2. **channels** the model takes, **resampling** to its rate (polyphase) and the **band limit**
   (``windows.band``: a centred FIR over the whole recording, :func:`diag.signal.windows.band_limit`);
3. the **reference rate** of order images (shaft rate / electrical fundamental: from the recording's
   meta, the config, or estimated from its spectrum; :func:`diag.signal.transforms.reference_hz`);
4. **windows** of ``length`` samples, ``hop`` apart;
5. **normalisation** per window (or with statistics fitted on the training windows: ``dataset``);
6. the **transform** to images (CWT / STFT / envelope-order / harmonics, polarity, image norm).

``diag prepare`` builds it from the config (:meth:`Preprocessing.from_config`), fits it on the training
split (:meth:`fit`: normalisation statistics, the range of training reference rates and sampling rates,
the image shape) and stores :meth:`to_dict` in the dataset's manifest; every run carries it in its
``model.json``; ``diag predict`` / ``evaluate`` / ``export`` load it (:meth:`from_dict`) and call it on
new recordings -- streamed, chunk by chunk, for files of any length (:meth:`stream_images`). Comparing two
preprocessings is comparing two objects (:meth:`difference`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from diag.checks import check_finite
from diag.config import ORDER_PARTS, PrepareConfig, TransformConfig, from_dict as config_from_dict
from diag.errors import DiagError
from diag.signal.stream import band_limit_signal, resample_signal, select_signal
from diag.signal.transforms import REF_SECONDS, make_transform, reference_hz, window_reference_hz
from diag.signal.windows import NormalizationStats, apply_normalization, extract, harmonise, window_starts
from diag.sources.base import Recording
from diag.sources.checks import scan_signal
from diag.sources.stream import Signal

__all__ = ["Preprocessing", "Reference", "FORMAT", "BATCH", "REF_MARGIN", "MAX_UPSAMPLING"]

FORMAT = "diag-preprocessing/1"
#: windows per batch through the transform (prepare) and the network (predict)
BATCH = 256
#: a file's reference rate more than this factor outside the training rates gets a warning note
REF_MARGIN = 1.25
#: samples per channel read at a time by the source checks of a new recording (their memory bound)
CHECK_CHUNK = 1 << 20
#: a recording sampled more than this factor below the model's rate is refused (upsampling invents nothing)
MAX_UPSAMPLING = 4.0


@dataclass
class Reference:
    """The reference rate of one recording for order images: ``pair`` = ``(start_hz, end_hz)`` (equal unless
    a speed ramp), ``how`` it was found, and ``notes`` for the user; ``pair`` None for images without orders."""

    pair: tuple[float, float] | None = None
    how: str = ""
    notes: list[str] = field(default_factory=list)

    def per_window(self, starts: np.ndarray, length: int, n_samples: int) -> np.ndarray | None:
        """The rate of each window starting at ``starts`` (Hz), along a linear ramp; None without orders."""
        return None if self.pair is None else window_reference_hz(self.pair, starts, length, n_samples)


@dataclass
class Preprocessing:
    """Waveform -> model images (see the module docstring). Parameters are the prepare config's, resolved
    (no ``auto`` left); ``norm_stats``, ``ref_range``, ``fs_range`` and ``image_shape`` are fitted on the
    training split."""

    fs: float  #: the model's sampling rate (Hz)
    length: int  #: window length (samples at ``fs``)
    hop: int  #: window hop (samples)
    normalize: str  #: per-window normalisation (``zscore``, ``rms-joint``, ... or ``dataset``)
    channels: list[str]  #: the channels the model takes, in order
    transform: TransformConfig  #: the image settings (norm resolved)
    band: list[float] = field(default_factory=list)  #: ``windows.band`` ``[lo, hi]`` Hz, or empty
    resample: bool = True  #: whether recordings at other rates are resampled at prepare (``windows.fs`` > 0)
    channel_groups: list[list[str]] = field(default_factory=list)  #: for ``normalize = "dataset"``
    on_bad: str = "error"  #: source checks: dead / flat / constant channels (``error`` | ``warn`` | ``skip``)
    on_clipped: str = "warn"  #: source checks: clipped channels
    reader: dict[str, Any] = field(default_factory=dict)  #: how new files of this source are read (CWRU records)
    norm_stats: dict[str, Any] | None = None  #: fitted ``dataset`` normalisation
    ref_range: list[float] | None = None  #: fitted: lowest / highest training reference rate (order images)
    fs_range: list[float] | None = None  #: fitted: lowest / highest rate of the training recordings as read
    image_shape: list[int] | None = None  #: fitted: ``[C, H, W]`` of one image
    images: dict[str, Any] = field(default_factory=dict)  #: fitted: the transform's description (rows, units)

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: PrepareConfig, first: Recording) -> "Preprocessing":
        """The unfitted preprocessing of a prepare config (``auto`` norms already resolved) for recordings like
        ``first`` (its channels; its rate when ``windows.fs`` is 0)."""
        src = cfg.source
        reader: dict[str, Any] = {}
        if src.kind == "cwru":
            chans = list((src.options or {}).get("channels") or ["DE"])
            if len(chans) == 1 and "," in chans[0]:
                chans = [c.strip() for c in chans[0].split(",")]
            reader = {"kind": "cwru", "channels": chans}
        w = cfg.windows
        return cls(fs=float(w.fs or first.fs), length=int(w.length), hop=int(w.hop), normalize=w.normalize,
                   channels=list(first.channels), transform=dataclasses.replace(cfg.transform),
                   band=[float(v) for v in w.band], resample=bool(w.fs), channel_groups=[list(g) for g in w.channel_groups],
                   on_bad=src.on_bad, on_clipped=src.on_clipped, reader=reader)

    @property
    def needs_ref(self) -> bool:
        """Whether the images sit on an order axis (envorder / harmonics): every recording needs a reference rate."""
        return any(p in ORDER_PARTS for p in self.transform.parts)

    @property
    def ref_name(self) -> str:
        return "electrical fundamental" if "harmonics" in self.transform.parts else "shaft rate"

    def transformer(self, device: Any = None) -> Any:
        """The :class:`diag.signal.transforms.Transform` of these settings (built once per device)."""
        cache = self.__dict__.setdefault("_transformers", {})
        key = str(device or "cpu")
        if key not in cache:
            cache[key] = make_transform(self.transform, fs=self.fs, length=self.length, device=device)
        return cache[key]

    # -- recordings (prepare) -----------------------------------------------------------------------

    def harmonise(self, recordings: list[Recording]) -> list[Recording]:
        """Recordings as the windows are cut from them: validated, at ``fs`` (resampled when the config says
        so, else they must agree), band-limited."""
        from diag.config import WindowConfig

        cfg = WindowConfig(fs=self.fs if self.resample else 0.0, length=self.length, hop=self.hop, band=self.band)
        return harmonise(recordings, cfg)

    def reference(self, rec_meta: dict[str, Any], signal: np.ndarray | None = None,
                  fs: float | None = None) -> tuple[tuple[float, float] | None, str]:
        """The reference rate of a recording as read (its meta, else the config's rate, else estimated from
        ``signal`` at ``fs``): :func:`diag.signal.transforms.reference_hz`."""
        return reference_hz(rec_meta, self.transform, signal, fs)

    def fit(self, recordings: list[Recording], rec: np.ndarray, start: np.ndarray,
            refs: Sequence[tuple[tuple[float, float] | None, str]] = (),
            fs_original: Sequence[float] = ()) -> "Preprocessing":
        """Fit on the training windows (recording indices ``rec``, first samples ``start``) of the harmonised
        ``recordings``: the ``dataset`` normalisation's statistics, the range of the training recordings'
        reference rates (``refs``, one per recording) and rates as read (``fs_original``), the image shape."""
        if self.normalize == "dataset":
            acc = NormalizationStats(self.channels, self.channel_groups)
            for i in range(0, len(rec), BATCH):
                acc.update(extract(recordings, rec[i : i + BATCH], start[i : i + BATCH], self.length))
            self.norm_stats = acc.result()
        used = sorted({int(r) for r in rec})
        rates = [v for i in used if i < len(refs) and refs[i][0] for v in refs[i][0]]
        self.ref_range = [float(min(rates)), float(max(rates))] if rates and self.needs_ref else None
        fs_in = [float(fs_original[i]) for i in used if i < len(fs_original)]
        self.fs_range = [min(fs_in), max(fs_in)] if fs_in else None
        probe_ref = {"ref_hz": self.ref_range[1]} if self.needs_ref and self.ref_range else {}
        probe = self.transformer()(np.full((1, len(self.channels), self.length), 1e-3, np.float32), **probe_ref)
        self.image_shape = [int(s) for s in probe.shape[1:]]
        self.images = self.transformer().to_dict()
        return self

    def images_at(self, recordings: list[Recording], rec: np.ndarray, start: np.ndarray,
                  refs: tuple[np.ndarray, np.ndarray] | None = None, device: Any = None) -> np.ndarray:
        """Images ``[B, C, H, W]`` of the windows at (``rec``, ``start``) of harmonised ``recordings``;
        ``refs``: each recording's reference rate ``(start_hz[], end_hz[])`` for order images."""
        x = extract(recordings, rec, start, self.length)
        ref = None
        if self.needs_ref and refs is not None:
            n = np.array([recordings[int(r)].n_samples for r in rec])
            ref = window_reference_hz((refs[0][rec], refs[1][rec]), start, self.length, n)
        return self(x, ref, device=device)

    def __call__(self, windows: np.ndarray, ref_hz: Any = None, device: Any = None) -> np.ndarray:
        """Raw windows ``[B, C, length]`` at ``fs`` -> images ``[B, C', H, W]`` float32: normalisation, then
        the transform (``ref_hz``: each window's reference rate, order images only)."""
        x = apply_normalization(windows, self.normalize, self.norm_stats)
        t = self.transformer(device)
        return t(x, ref_hz=ref_hz) if self.needs_ref else t(x)

    # -- new recordings (predict) -------------------------------------------------------------------

    def check(self, sig: Signal, idx: Sequence[int]) -> tuple[str, str] | None:
        """The source checks of ``diag prepare`` on the channels ``idx`` of a file as read, streamed:
        ``(problem, "channel ib: flat-lined ...")`` for the first channel with a problem the run's settings
        do not let pass (``on_bad`` / ``on_clipped`` = ``error`` or ``skip``), else None. Warnings
        (``warn``) are returned as ``("warning", detail)``."""
        action = {"dead": self.on_bad, "flat": self.on_bad, "constant": self.on_bad, "clipped": self.on_clipped}
        warning = None

        def read(a: int, b: int) -> np.ndarray:  # NaN / Inf samples are an error before any check
            x = np.asarray(sig.read(a, b))
            check_finite(x[list(idx)], sig.path, a)
            return x

        for c, problem in zip(idx, scan_signal(read, sig.n_samples, list(idx), sig.fs, CHECK_CHUNK)):
            if problem is None:
                continue
            kind, detail = problem
            where = f"channel {sig.channels[c]}: {detail}" if len(idx) > 1 else detail
            if action[kind] in ("error", "skip"):
                return kind, where
            warning = warning or ("warning", where)
        return warning

    def select_channels(self, sig: Signal, channels: Sequence[str] | None = None) -> tuple[list[int], list[str]]:
        """Indices of the model's channels in ``sig`` (by name, else by position when the count matches;
        ``channels`` chooses by name) and notes (channels matched by position only)."""
        need = len(self.channels)
        notes: list[str] = []
        if channels:
            missing = [c for c in channels if c not in sig.channels]
            if missing:
                raise DiagError(f"{sig.path}: no channel(s) {', '.join(missing)} (--channels); it has "
                                f"{', '.join(sig.channels)}")
            idx = [sig.channels.index(c) for c in channels]
        elif all(c in sig.channels for c in self.channels):
            idx = [sig.channels.index(c) for c in self.channels]
        elif sig.n_channels == need:
            idx = list(range(need))
            if not all(re.fullmatch(r"ch\d+", c) for c in sig.channels):  # the file names its channels otherwise
                notes.append(f"channels {', '.join(sig.channels)} taken as the model's {', '.join(self.channels)} "
                             "by position (the names differ); choose them with --channels if that is wrong")
        elif sig.n_channels < need:
            raise DiagError(f"{sig.path}: {sig.n_channels} channel(s) but the model needs {need} "
                            f"({', '.join(self.channels)}); score a recording of the same channels")
        else:
            raise DiagError(f"{sig.path}: {sig.n_channels} channels ({', '.join(sig.channels)}) but the model "
                            f"takes {need} ({', '.join(self.channels)}); choose them with --channels")
        if len(idx) != need:
            raise DiagError(f"{sig.path}: --channels selects {len(idx)} channel(s) but the model needs {need}")
        return idx, notes

    def ready(self, sig: Signal, idx: Sequence[int]) -> Signal:
        """The file as the training recordings were before windowing, read in parts: channels ``idx``, at
        ``fs`` (polyphase-resampled, with a note), band-limited; raises for a rate far below ``fs``."""
        if sig.fs < self.fs and self.fs / sig.fs > MAX_UPSAMPLING:
            raise DiagError(f"{sig.path}: sampled at {sig.fs:g} Hz, far below the model's {self.fs:g} Hz "
                            f"(more than {MAX_UPSAMPLING:g}x upsampling); record at a higher rate")
        notes = []
        if abs(sig.fs - self.fs) > 1e-9 * self.fs:
            out = resample_signal(sig, self.fs, idx)
            trained = self._fs_trained()
            notes.append(f"resampled {sig.fs:g} Hz -> {self.fs:g} Hz (polyphase) to match the model"
                         + (f"; its training recordings were {trained}" if trained else ""))
        else:
            out = select_signal(sig, idx)
        out = band_limit_signal(out, self.band)
        out.notes = list(out.notes) + notes
        return out

    def _fs_trained(self) -> str:
        if not self.fs_range:
            return ""
        lo, hi = self.fs_range
        return f"{lo:g} Hz" if lo == hi else f"{lo:g}-{hi:g} Hz"

    def reference_for(self, sig: Signal, given: Any = None, idx: Sequence[int] | None = None) -> Reference:
        """The reference rate of a new recording for order images (see :class:`Reference`).

        ``given`` (a number of Hz, or ``[start, end]`` for a speed ramp) wins; otherwise the rule of
        ``diag prepare``: the recording's meta (what the file's reader knows, e.g. a CWRU record's
        ``X<rec>RPM``, else the ``meta`` of the labels.csv row listing the file: ``rpm`` / ``shaft_hz`` for
        envorder, ``f1`` / ``fundamental_hz`` for harmonics), else the run's ``transform.ref_hz``, else the
        rate estimated from the file's first seconds (its channels ``idx``) when the run sets
        ``transform.ref_search``. Neither: a DiagError naming the file.
        """
        given_pair = _ref_pair(given, sig.path) if given is not None else None
        if not self.needs_ref:
            return Reference(None, "", [f"--ref-hz {_fmt_ref(given_pair)} Hz not used: the run's "
                                        f"{self.transform.kind} images have no order axis"] if given_pair else [])
        fallback = reference_hz({}, self.transform)
        pair, why = reference_hz(sig.meta or {}, self.transform)
        found, how = None, ""
        if pair is not None and why != fallback[1]:
            key = why.split("'")[1] if "'" in why else ""
            found, how = pair, f"{why} of {sig.listed if key in sig.listed_keys and sig.listed else 'the file'}"
        if given_pair is not None:
            note = f"order axis: reference {_fmt_ref(given_pair)} Hz from --ref-hz"
            if found is not None and not np.allclose(found, given_pair, rtol=1e-6):
                note += f" (not the {_fmt_ref(found)} Hz of {how})"
            pair, how = given_pair, "given (--ref-hz)"
        elif found is not None:
            pair, note = found, f"order axis: reference {_fmt_ref(found)} Hz from {how}"
        elif fallback[0] is not None:
            pair, how = fallback[0], "the run's transform.ref_hz"
            note = f"order axis: reference {_fmt_ref(pair)} Hz, the run's fixed transform.ref_hz"
        elif self.transform.ref_search:
            x = np.asarray(sig.read(0, min(sig.n_samples, int(round(REF_SECONDS * sig.fs)))))
            x = x[list(idx)] if idx is not None else x
            try:
                pair, how = reference_hz({}, self.transform, x, sig.fs)
            except DiagError as exc:
                raise DiagError(f"{sig.path}: {exc}") from None
            note = f"order axis: reference {_fmt_ref(pair)} Hz {how}"
        else:
            skipped = f" (skipped {sig.unreadable_listings[0]})" if sig.unreadable_listings else ""
            raise DiagError(f"{sig.path}: the model's {self.transform.kind} images sit on an order axis and need this "
                            f"recording's {self.ref_name}, which neither the file nor a labels.csv listing it "
                            f"gives{skipped}; "
                            f"pass --ref-hz HZ{' (or --rpm RPM)' if self.ref_name == 'shaft rate' else ''}; "
                            "ref_hz= in the API")
        self.check_reach(sig.path, max(pair), how)
        notes = [note]
        if self.ref_range:
            lo, hi = self.ref_range
            if min(pair) < lo / REF_MARGIN or max(pair) > hi * REF_MARGIN:
                notes.append(f"warning: reference {_fmt_ref(pair)} Hz is far outside the {lo:g}-{hi:g} Hz the model "
                             f"was trained at (more than {REF_MARGIN - 1:.0%} beyond): the order axis keeps fault "
                             "lines in place, but resonances and load effects move with speed; check such verdicts")
        return Reference((float(pair[0]), float(pair[1])), how, notes)

    def check_reach(self, path: str, top: float, how: str) -> None:
        """Is a reference rate within what the images can show (``order_max`` x rate below the band edge)?
        A one-line DiagError naming ``path`` and where the rate came from (``how``) if not."""
        try:
            self.transformer()(np.full((1, 1, self.length), 1e-3, dtype=np.float32), ref_hz=top)
        except DiagError as exc:
            detail = str(exc).split(";")[0].removeprefix("transform: ")
            raise DiagError(f"{path}: reference rate {top:g} Hz ({how}) is out of reach of the images: {detail}; "
                            "check the rate (a shaft rate in Hz is rpm / 60)") from None

    def starts(self, n_samples: int, hop: int | None = None) -> np.ndarray:
        """First samples of every window of a recording of ``n_samples`` (``hop`` default the training hop)."""
        return window_starts(0, n_samples, self.length, hop or self.hop)

    def stream_images(self, sig: Signal, starts: np.ndarray, ref: Reference | None = None,
                      batch: int = BATCH, device: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(starts, images)`` of the windows at ``starts`` of a file made :meth:`ready`, ``batch`` at a time,
        reading it in chunks (memory bounded by the batch). NaN / Inf samples are a DiagError naming the
        file and the sample."""
        offs = np.arange(self.length)
        for i in range(0, len(starts), batch):
            st = starts[i : i + batch]
            a, b = int(st[0]), int(st[-1]) + self.length
            if b - a <= 2 * len(st) * self.length:  # overlapping or nearly adjacent windows: one read
                chunk = np.asarray(sig.read(a, b))
                check_finite(chunk, sig.path, a)
                x = chunk[:, (st - a)[:, None] + offs].transpose(1, 0, 2).astype(np.float32)
            else:  # windows far apart (a hop much longer than a window): read only the windows
                x = np.empty((len(st), sig.n_channels, self.length), dtype=np.float32)
                for k, s0 in enumerate(st):
                    w = np.asarray(sig.read(int(s0), int(s0) + self.length))
                    check_finite(w, sig.path, int(s0))
                    x[k] = w
            r = ref.per_window(st, self.length, sig.n_samples) if ref is not None else None
            yield st, self(x, r, device=device)

    # -- saving, loading, comparing -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, versioned: what the manifest and every run's ``model.json`` store."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "preprocessing") -> "Preprocessing":
        """The object :meth:`to_dict` saved -- or, for datasets and runs made before it existed, rebuilt from
        their manifest / ``model.json`` (``config``, ``fs``, ``window``, ``transform``, ``image_shape``)."""
        if not isinstance(d, dict):
            raise DiagError(f"{where}: records no waveform preprocessing")
        if "format" not in d:
            return cls._from_legacy(d, where)
        if d["format"] != FORMAT:
            raise DiagError(f"{where}: preprocessing format {d['format']!r} is newer than this diag reads "
                            f"({FORMAT}); upgrade diag")
        try:
            kw = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
            kw["transform"] = config_from_dict(TransformConfig, d["transform"], "transform")
            return cls(**kw)
        except (KeyError, TypeError) as exc:
            raise DiagError(f"{where}: damaged preprocessing record ({exc}); prepare / train it again") from None

    @classmethod
    def _from_legacy(cls, d: dict[str, Any], where: str) -> "Preprocessing":
        cfg = d.get("config") or {}
        win = d.get("window") or {}
        if not cfg.get("transform") or not win.get("length") or not d.get("fs"):
            raise DiagError(f"{where}: records no waveform preprocessing (trained on images made outside "
                            "`diag prepare`?); it cannot score recordings")
        src = cfg.get("source") or {}
        tcfg = config_from_dict(TransformConfig, cfg["transform"], "transform")
        reader: dict[str, Any] = {}
        if src.get("kind") == "cwru":
            chans = list((src.get("options") or {}).get("channels") or ["DE"])
            reader = {"kind": "cwru", "channels": [c.strip() for c in chans[0].split(",")] if len(chans) == 1
                      else chans}
        recs = d.get("recordings") or []
        fs_in = [float(r.get("fs_original") or r.get("fs")) for r in recs if r.get("fs")]
        return cls(fs=float(d["fs"]), length=int(win["length"]), hop=int(win.get("hop") or win["length"]),
                   normalize=str(win.get("normalize", "zscore")), channels=list(win.get("channels") or []),
                   transform=tcfg, band=[float(v) for v in win.get("band") or []],
                   resample=bool((cfg.get("windows") or {}).get("fs", 1)),
                   channel_groups=list((cfg.get("windows") or {}).get("channel_groups") or []),
                   on_bad=src.get("on_bad", "error"), on_clipped=src.get("on_clipped", "warn"), reader=reader,
                   norm_stats=win.get("normalization_stats"), ref_range=d.get("ref_hz_range"),
                   fs_range=[min(fs_in), max(fs_in)] if fs_in else None,
                   image_shape=d.get("image_shape"), images=d.get("transform") or {})

    def difference(self, other: "Preprocessing", names: tuple[str, str] = ("this", "other")) -> str | None:
        """The first setting in which ``other`` would make different images from the same recording, or None;
        worded ``"windows.length: run 512, dataset 256"`` with ``names = ("run", "dataset")``."""
        checks = [("windows.fs (Hz)", self.fs, other.fs), ("windows.length", self.length, other.length),
                  ("windows.normalize", self.normalize, other.normalize),
                  ("windows.band", list(self.band), list(other.band)),
                  ("number of channels", len(self.channels), len(other.channels))]
        a, b = asdict(self.transform), asdict(other.transform)
        checks += [(f"transform.{k}", a[k], b.get(k)) for k in a if k not in ("ref_hz", "ref_search")]
        checks.append(("image shape", self.image_shape, other.image_shape))
        if self.normalize == "dataset":
            checks.append(("windows.normalization_stats", self.norm_stats, other.norm_stats))
        for name, x, y in checks:
            if x != y:
                short = (lambda v: (str(v)[:40] + "...") if len(str(v)) > 40 else str(v))
                return f"{name}: {names[0]} {short(x)}, {names[1]} {short(y)}"
        return None

    def check_images(self, where: str) -> None:
        """The transform this diag builds must describe itself as the stored one did (a diag version that
        changed the images is refused rather than scoring with different images)."""
        now = self.transformer().to_dict()
        for key in ("kind", "size", "frequencies_hz", "norm", "log"):
            if key in self.images and self.images[key] != now[key]:
                raise DiagError(f"{where}: this diag builds different images than the run was trained on "
                                f"(transform {key} differs); score it with the diag version that trained it")

    def describe(self) -> dict[str, Any]:
        """A short, human-readable summary (for ``diag predict --json``, the report)."""
        return {"fs": self.fs, "window": {"length": self.length, "hop": self.hop, "normalize": self.normalize,
                                          "channels": list(self.channels), "band": list(self.band)},
                "transform": asdict(self.transform), "image_shape": self.image_shape}


def _ref_pair(value: Any, where: str) -> tuple[float, float]:
    """A given reference rate (a number, or ``[start, end]`` for a ramp) -> ``(start_hz, end_hz)``."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        v = np.zeros(0)
    pair = (float(v), float(v)) if v.ndim == 0 else tuple(float(a) for a in v) if v.shape == (2,) else ()
    if len(pair) != 2 or not all(math.isfinite(a) and a > 0 for a in pair):
        raise DiagError(f"{where}: --ref-hz must be a positive number of Hz (the shaft rate, or the electrical "
                        f"fundamental; ref_hz= may also be [start, end] for a ramp), got {value!r}")
    return pair


def _fmt_ref(pair: tuple[float, float] | None) -> str:
    if pair is None:
        return ""
    return f"{pair[0]:g}" if pair[0] == pair[1] else f"{pair[0]:g}..{pair[1]:g}"
