"""Helpers shared by the tests: the tiny prepared dataset (diag.signal.toy) and where the shared real data lies."""

from __future__ import annotations

import os
from pathlib import Path


from diag.signal.toy import make_toy_dataset  # noqa: F401 -- re-exported for the tests


def shared_cwru() -> Path | None:
    """The CWRU 12 kHz folder of ../shared/data (or $DIAG_SHARED_DATA), None when absent."""
    env = os.environ.get("DIAG_SHARED_DATA")
    root = Path(__file__).resolve().parents[1]
    for base in ([Path(env)] if env else []) + [root.parent / "shared" / "data"]:
        for cand in (base / "cwru12k", base):
            if (cand / "0HP").is_dir():
                return cand
    return None
