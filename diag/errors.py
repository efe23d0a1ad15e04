"""User-facing errors.

Every problem a user can cause (missing file, corrupt ``.mat``, NaN samples, signal shorter than a
window, unknown label, wrong sampling rate, bad option) raises :class:`DiagError` with a one-line
message that names the file or option and says what to do. The CLI prints it without a traceback and
exits with status 2. Anything else escaping is a bug in diag.
"""

from __future__ import annotations


class DiagError(Exception):
    """An error caused by the user's input, with a one-line message that says how to fix it."""

    def __init__(self, message: str):
        # Keep the message on one line: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


def describe(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` of an exception on one line, cut at a word boundary (never mid-word)."""
    text = " ".join(str(exc).split()) or "no details"
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"
