"""Readers of recordings. Every reader returns a list of :class:`~diag.sources.base.Recording`.

:func:`load_recordings` picks the reader named by ``SourceConfig.kind`` and passes the table's
extra keys as keyword options; an option the reader does not take is refused with its name.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from diag.config import SourceConfig
from diag.errors import DiagError
from diag.sources.base import Recording

__all__ = ["Recording", "READERS", "get_reader", "load_recordings"]

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


def load_recordings(cfg: SourceConfig) -> list[Recording]:
    """Read every recording the source config describes."""
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
    return reader(path, **cfg.options)
