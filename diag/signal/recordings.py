"""The recordings a source config describes, read (or simulated) and checked: :func:`load_recordings`.

``source.kind`` picks a reader of :mod:`diag.sources` (your files, CWRU, Paderborn, Ottawa) or a simulator
of :mod:`diag.simulate`; the table's extra keys are passed as keyword options (an option the reader does
not take is refused with its name). Every recording then passes the checks of :mod:`diag.sources.checks`
(dead, flat-lined, constant segments, clipping, duplicates), governed by ``source.on_bad`` and
``source.on_clipped``. This module sits above both readers and simulators, so neither knows the other.
"""

from __future__ import annotations

import inspect
from typing import Callable

from diag.config import SourceConfig
from diag.errors import DiagError
from diag.sources.base import Recording
from diag.sources.checks import Finding, check_recordings

__all__ = ["Recordings", "READERS", "get_reader", "load_recordings"]


#: the source kinds: readers of files, then the simulators
READERS = ("cwru", "paderborn", "ottawa", "files", "bearing_sim", "inverter_sim")


def get_reader(kind: str) -> Callable[..., list[Recording]]:
    """The reader of ``source.kind`` (imported on first use so ``diag --help`` stays fast)."""
    if kind == "cwru":
        from diag.sources.cwru import read_cwru as reader
    elif kind == "paderborn":
        from diag.sources.paderborn import read_paderborn as reader
    elif kind == "ottawa":
        from diag.sources.ottawa import read_ottawa as reader
    elif kind == "files":
        from diag.sources.files import read_files as reader
    elif kind == "bearing_sim":
        from diag.simulate.bearing import simulate_bearing_recordings as reader
    elif kind == "inverter_sim":
        from diag.simulate.inverter import simulate_inverter_recordings as reader
    else:
        raise DiagError(f"source.kind: unknown '{kind}'; choose one of {', '.join(READERS)}")
    return reader


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
