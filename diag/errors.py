"""User-facing errors.

Every problem a user can cause (missing file, corrupt ``.mat``, NaN samples, signal shorter than a
window, unknown label, wrong sampling rate, bad option) raises :class:`DiagError` with a one-line
message that names the file or option and says what to do. The CLI prints it without a traceback and
exits with status 2. Anything else escaping is a bug in diag.
"""

from __future__ import annotations

import os


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


def _disk_full_errnos() -> tuple[int, int]:
    """(ENOSPC, EDQUOT): a write that found no room, the disk full or the user's quota spent."""
    import errno

    return errno.ENOSPC, getattr(errno, "EDQUOT", 122)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or an error raised from one) says the disk or the quota is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _disk_full_errnos():
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def disk_full_error(where: "str | os.PathLike[str]", exc: BaseException | None = None) -> DiagError:
    """The one-line error for a write that found the disk (or the quota) full: names the folder written
    and the file system holding it, with its free space."""
    import shutil

    path = os.fspath(where)
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip(os.sep)) or ("." if not os.path.isabs(probe) else os.sep)
    free = ""
    try:
        left = shutil.disk_usage(probe).free
        free = f", {left / 2**20:.0f} MB free" if left >= 10 * 2**20 else f", {left // 1024} KB free"
    except OSError:
        pass
    quota = isinstance(exc, OSError) and exc.errno == _disk_full_errnos()[1]
    why = "disk quota exceeded on the disk" if quota else "no space left on the disk"
    return DiagError(f"{path}: {why} holding it ({_mount_of(probe)}{free}); nothing was left that passes for a "
                     "finished output; free space there (or choose a folder on another disk) and run the command "
                     "again")


def _mount_of(path: str) -> str:
    """The mount point of the file system holding ``path``."""
    p = os.path.realpath(path)
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return f"file system mounted at {p}"


class disk_full_as_error:
    """``with disk_full_as_error(out): ...``: a write inside that finds the disk or quota full (ENOSPC /
    EDQUOT) becomes :func:`disk_full_error` naming ``out`` -- one line, never a traceback."""

    def __init__(self, where: "str | os.PathLike[str]"):
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, DiagError) and is_disk_full(exc):
            raise disk_full_error(self.where, exc) from None
        return False
