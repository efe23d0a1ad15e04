"""Readers of recordings. Every reader returns a list of :class:`~diag.sources.base.Recording`.

:func:`load_recordings` picks the reader named by ``SourceConfig.kind`` and passes the table's
extra keys as keyword options; an option the reader does not take is refused with its name. Every
recording then passes the checks of :mod:`diag.sources.checks` (dead, flat-lined, constant
segments, clipping, duplicates), governed by ``source.on_bad`` and ``source.on_clipped``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from diag.config import SourceConfig
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.sources.checks import Finding, check_recordings

__all__ = ["Recording", "Recordings", "Finding", "READERS", "get_reader", "load_recordings"]

# kind -> "module:function"; imported on first use so `diag --help` stays fast.
READERS: dict[str, str] = {
    "cwru": "diag.sources.cwru:read_cwru",
    "paderborn": "diag.sources.paderborn:read_paderborn",
    "ottawa": "diag.sources.ottawa:read_ottawa",
    "files": "diag.sources.files:read_files",
    "bearing_sim": "diag.simulate.bearing:simulate_bearing_recordings",
    "inverter_sim": "diag.simulate.inverter:simulate_inverter_recordings",
}


def get_reader(kind: str) -> Callable[..., list[Recording]]:
    if kind not in READERS:
        raise DiagError(f"source.kind: unknown '{kind}'; choose one of {', '.join(READERS)}")
    module, func = READERS[kind].split(":")
    return getattr(importlib.import_module(module), func)


class Recordings(list):
    """The list :func:`load_recordings` returns: the recordings kept, plus ``findings``, one
    :class:`~diag.sources.checks.Finding` per problem the checks found (warned about or skipped)
    and per reader note. The caller shows them to the user and records them (``diag prepare``
    prints them and writes them into the dataset's manifest as ``source_checks``)."""

    def __init__(self, recordings: list[Recording] = (), findings: list[Finding] | None = None) -> None:
        super().__init__(recordings)
        self.findings: list[Finding] = list(findings or [])


def load_recordings(cfg: SourceConfig) -> Recordings:
    """Read every recording the source config describes, and check them (:mod:`diag.sources.checks`).

    A problem whose action is ``error`` (and any duplicate) raises a one-line DiagError; the rest
    are listed in the result's ``findings``.
    """
    cfg.validate()
    reader = get_reader(cfg.kind)
    path = cfg.path or None
    try:
        inspect.signature(reader).bind(path, **cfg.options)
    except TypeError:
        params = [
            p.name
            for p in inspect.signature(reader).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "path"
        ]
        unknown = [k for k in cfg.options if k not in params]
        raise DiagError(
            f"source: option(s) {unknown or list(cfg.options)} not understood by the '{cfg.kind}' reader; "
            f"it takes: {', '.join(params)}"
        ) from None
    found: list[Finding] = []
    kept = check_recordings(reader(path, **cfg.options), cfg.on_bad, cfg.on_clipped, found)
    return Recordings(kept, found)
