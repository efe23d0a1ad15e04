"""Files on disk: the one atomic write, hashes, JSON, metrics history, and the output-folder guard.

Bottom layer (imports only :mod:`diag.errors`). Every file diag writes goes through
:func:`atomic_file` (a temporary name in the same folder, fsync, then an atomic rename), so a reader
never sees a half-written file and a killed run leaves at most a ``.NAME.tmp-PID-*`` temporary,
which the next run of the same output removes.

Every output folder diag writes holds a marker, ``.diag-output`` (``{"kind": ..., "version": 1}``).
:func:`claim_output` is the one rule for replacing a folder (``--force``): only a folder that diag
itself wrote (its marker, or the marker file of an older diag: ``manifest.json`` of a prepared
dataset, ``config.json`` of a training run, ``pretrain.json`` of a pretraining) is ever replaced;
never a plain file, never a folder that holds the command's inputs or lies above them, never a
folder of someone else's files. A user's file is never deleted.

Output *files* (``predict --json/--csv``, ``export --onnx``, the report's files) follow the same rule with
:func:`claim_output_files`: each folder diag writes such a file into holds a small ledger,
``.diag-files.json`` (``{"version": 1, "files": {NAME: SHA256}}``), of the files diag wrote there
(:func:`write_output_file` / :func:`record_output_file`). ``--force`` replaces only a file named in the
ledger whose content is still what diag wrote; never an input of the same command (also through a link
or a second hard link), never a file inside a run, dataset or pretraining folder (or another folder the
command protects), and two outputs of one command never share a path.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from diag.errors import DiagError

MARKER = ".diag-output"
LEDGER = ".diag-files.json"
LEDGER_VERSION = 1
#: folders no output file of another command may go into (their own files are diag's records)
SEALED_KINDS = ("prepared", "train-run", "pretrain")
MARKER_VERSION = 1
KINDS = ("prepared", "train-run", "pretrain", "compare", "predict", "evaluate", "export")
# The marker files of outputs written before ``.diag-output`` existed, and a check of their content.
LEGACY_MARKERS = {"prepared": "manifest.json", "train-run": "config.json", "pretrain": "pretrain.json"}
NAMES = {"prepared": "prepared dataset", "train-run": "run", "pretrain": "pretraining", "compare": "comparison",
         "predict": "predictions", "evaluate": "evaluation", "export": "export"}


# ------------------------------------------------------------------------------------------------
# Atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: str | Path, directory: bool = False) -> None:
    """Give a file made by ``tempfile`` (0600, or 0700 for folders) the usual mode under the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{os.getpid()}-"


@contextmanager
def atomic_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error the file written
    there is flushed to disk and renamed over ``path`` in one step (else it is removed).

    >>> with atomic_file(out / "model.safetensors") as tmp:
    ...     save_file(tensors, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=suffix or ".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the ``.NAME.tmp-PID-*`` temporaries that killed processes (PID no longer alive) left beside
    ``path`` while writing it with :func:`atomic_file`; call it before writing ``path`` again. Only
    those of ``path`` itself, never another file's."""
    path = Path(path)
    removed: list[Path] = []
    try:
        names = [p.name for p in path.parent.iterdir()]
    except OSError:
        return removed
    for name in names:
        if name.startswith(f".{path.name}.tmp-") and _stale(name, path.name):
            (path.parent / name).unlink(missing_ok=True)
            removed.append(path.parent / name)
    return removed


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays and paths."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock beside ``path`` (``.<name>.lock``, POSIX ``flock``) for a
    read-modify-write of a small shared file, so that two diag processes filling one folder (two
    ``diag compare`` runs side by side) do not lose each other's update. Where ``fcntl`` does not
    exist (Windows) it does not lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(path).with_name(f".{Path(path).name}.lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: str | Path, what: str = "file", fix: str = "") -> Any:
    """A JSON file, or a one-line :class:`DiagError` naming it when it is missing or not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DiagError(f"{path}: missing ({what}){'; ' + fix if fix else ''}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DiagError(f"{path}: not valid JSON ({what}: {exc}){'; ' + fix if fix else ''}") from None


def write_history(out: str | Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl`` and ``metrics.csv`` in ``out``: one row per epoch."""
    out = Path(out)
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    buf = io.StringIO()
    if history:  # every column any row has (a run resumed from an older diag's rows lacks the newer ones)
        w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for h in history for k in h)))
        w.writeheader()
        w.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# Output folders: the marker, the guard, stale leftovers


def write_marker(folder: str | Path, kind: str) -> None:
    """Mark ``folder`` as a diag output of ``kind``."""
    assert kind in KINDS, kind
    atomic_write_json(Path(folder) / MARKER, {"kind": kind, "version": MARKER_VERSION})


def _marker_kind(folder: Path) -> str | None:
    """The kind named by ``folder``'s marker file, if it has a readable one."""
    try:
        m = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m["kind"] if isinstance(m, dict) and m.get("kind") in KINDS else None


def output_kind(folder: str | Path) -> str | None:
    """The kind of diag output ``folder`` holds (its marker, or an older diag's marker file), else None."""
    folder = Path(folder)
    marked = _marker_kind(folder)
    if marked is not None:
        return marked
    if not folder.is_dir():
        return None
    if (folder / "runs.csv").is_file() or (folder / "summary.md").is_file() or any(
            output_kind(p) == "train-run" for p in folder.iterdir() if p.is_dir() and p.name.split("-")[0] in
            ("scratch", "ssl", "imagenet")):
        return "compare"  # written by an older diag compare / report: its runs are named INIT-BUDGET-sSEED
    for kind, name in LEGACY_MARKERS.items():
        try:
            m = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict):
            continue
        if (kind == "prepared" and "format_version" in m and "fingerprint" in m) or \
                (kind == "train-run" and "train" in m and "dataset_fingerprint" in m) or \
                (kind == "pretrain" and str(m.get("format", "")).startswith("diag-ssl")):
            return kind
    return None


def _is_within(inner: Path, outer: Path) -> bool:
    try:
        inner.relative_to(outer)
        return True
    except ValueError:
        return False


def _listing(folder: Path, n: int = 3) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def claim_output(out: str | Path, kind: str, *, force: bool = False, inputs: Iterable[str | Path | None] = (),
                 option: str = "--out") -> bool:
    """Check that a command of ``kind`` may write the folder ``out``; returns whether ``out`` already
    holds a diag output of this kind (the caller reuses, resumes or, with ``force``, replaces it).

    Refused with a one-line :class:`DiagError`, ``force`` or not: a plain file at ``out``; a folder
    that is or contains one of ``inputs`` (e.g. ``--out`` equal to ``--data``); a non-empty folder
    that diag did not write, or that holds another kind of diag output. Stale temporaries of a
    killed earlier run of the same output are removed (:func:`clean_stale`).
    """
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise DiagError(f"{option} {out}: is a broken symbolic link; choose another {option}")
    if out.exists() and not out.is_dir():
        raise DiagError(f"{option} {out}: is a file, not a folder; diag never replaces a file; choose another {option}")
    here = out.resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        p = Path(inp).resolve()
        if _is_within(p, here):
            what = "is" if p == here else "holds"
            raise DiagError(f"{option} {out}: {what} the input {inp}; diag never writes over its inputs; "
                            f"choose another {option}")
    clean_stale(out)
    if not out.exists() or not any(out.iterdir()):
        return False
    found = output_kind(out)
    if found is None:
        raise DiagError(f"{option} {out}: not a {NAMES[kind]} folder of diag: it holds files diag did not write "
                        f"({_listing(out)}), and diag never deletes them; choose another {option} (a new or empty folder)")
    if found != kind:
        raise DiagError(f"{option} {out}: holds a diag {NAMES[found]} output, not a {NAMES[kind]}; "
                        f"choose another {option}")
    return True


def remove_output(out: str | Path, kind: str) -> None:
    """Delete the diag output ``out`` of ``kind`` (checked again here), renaming it aside first so a
    crash midway never leaves a half-deleted folder under its name."""
    out = Path(out)
    if not out.exists():
        return
    if out.is_symlink() or not out.is_dir() or output_kind(out) != kind:
        raise DiagError(f"{out}: not a {NAMES[kind]} folder of diag; not deleted")
    aside = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str, stem: str) -> bool:
    """``name`` is ``.STEM.partial-PID-*``, ``.STEM.old-PID`` or ``.STEM.tmp-PID-*`` of a dead process."""
    for kind in ("partial", "old", "tmp"):
        prefix = f".{stem}.{kind}-"
        if name.startswith(prefix):
            pid = name[len(prefix):].split("-", 1)[0]
            return pid.isdigit() and not _pid_alive(int(pid))
    return False


def clean_stale(out: str | Path) -> list[Path]:
    """Remove what a killed run writing ``out`` left behind: ``.OUT.partial-*`` / ``.OUT.old-*``
    folders next to it and ``.FILE.tmp-*`` temporaries inside it (only those of dead processes)."""
    out = Path(out)
    removed: list[Path] = []
    places = []
    if out.parent.is_dir():
        places.append((out.parent, lambda n: _stale(n, out.name)))
    if out.is_dir() and not out.is_symlink():
        places.append((out, lambda n: n.startswith(".") and ".tmp-" in n and _stale(n, n[1:].split(".tmp-")[0])))
    for folder, test in places:
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError:
            continue
        for name in names:
            if test(name):
                p = folder / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def check_writable(out: str | Path, option: str = "--out") -> None:
    """Refuse (one line) an ``out`` whose folder cannot be created or written, before any work starts.

    Tries it: a temporary folder is made (and removed) in ``out`` or its nearest existing parent.
    """
    out = Path(out)
    probe_in = out if out.is_dir() else out.parent
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        if not probe_in.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(probe_in))
        tmp = tempfile.mkdtemp(dir=probe_in, prefix=f".{out.name}.probe-")
        os.rmdir(tmp)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise DiagError(f"{option} {out}: cannot write there ({why} in {probe_in}); choose a folder you can write "
                        "to") from None


# ------------------------------------------------------------------------------------------------
# Output files: the ledger, the guard


def _read_ledger(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of the files diag wrote in ``folder`` (empty when there is no valid ledger)."""
    try:
        doc = json.loads((folder / LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        return {}
    return {str(k): str(v) for k, v in files.items() if isinstance(v, str)}


def record_output_file(path: str | Path) -> None:
    """Name the file ``path`` (just written by diag) in its folder's ledger, with its sha256."""
    path = Path(path)
    digest = file_sha256(path)
    with locked(path.parent / LEDGER):
        files = _read_ledger(path.parent)
        files[path.name] = digest
        atomic_write_json(path.parent / LEDGER, {"version": LEDGER_VERSION, "files": dict(sorted(files.items()))})


def write_output_file(path: str | Path, data: str | bytes) -> None:
    """Write an output file atomically (it appears under its name whole or not at all), then record it
    in the ledger so that a later ``--force`` may replace it."""
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    record_output_file(path)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def sealed_folder(path: str | Path, protected: Iterable[str | Path | None] = ()) -> Path | None:
    """The folder among ``protected`` or the run / dataset / pretraining folder that ``path`` lies in
    (or is), if any: no output of another command goes there."""
    here = Path(path).resolve()
    for d in (Path(p) for p in protected if p is not None and str(p) != ""):
        if _is_within(here, d.resolve()):
            return d
    for folder in (here, *here.parents):
        kind = _folder_kind(folder)
        if kind in SEALED_KINDS:
            return folder
    return None


def _folder_kind(folder: Path) -> str | None:
    """The kind a folder's marker (or an older diag's marker file) names, without listing the folder."""
    marked = _marker_kind(folder)
    if marked is not None:
        return marked
    if any((folder / name).is_file() for name in LEGACY_MARKERS.values()):
        return output_kind(folder) if folder.is_dir() else None
    return None


def claim_output_files(outputs: Iterable[tuple[str, str | Path | None]], *, force: bool = False,
                       inputs: Iterable[str | Path | None] = (), protected_dirs: Iterable[str | Path | None] = (),
                       trusted_kinds: Sequence[str] = ()) -> None:
    """Check, before any work starts, that a command may write each output file ``(option, path)``
    (``None`` paths are skipped). Refused with a one-line :class:`DiagError`, ``force`` or not: two
    outputs on one path; an output that is one of ``inputs`` (resolved, or the same file by another
    name); an output inside one of ``protected_dirs`` or inside a run / dataset / pretraining folder;
    a folder, a symbolic link or the ledger at the path; a missing, non-folder or unwritable parent. An
    existing file is replaced only with ``force`` and only when the folder's ledger names it with its
    current content, or when its folder is a diag output of one of ``trusted_kinds`` (a folder only diag
    writes, e.g. a comparison, whose report an older diag wrote before the ledger). Stale temporaries of a killed earlier write of the same file are removed."""
    outs = [(opt, Path(p)) for opt, p in outputs if p is not None and str(p) != ""]
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    protected = [Path(p) for p in protected_dirs if p is not None and str(p) != ""]
    for i, (opt, p) in enumerate(outs):
        for opt2, q in outs[:i]:
            if _same_file(p, q):
                raise DiagError(f"{opt} {p} and {opt2} {q} name the same file; one would be lost under the other; "
                                f"give each output its own name")
        _claim_one(opt, p, force, ins, protected, trusted_kinds)


def claim_output_file(path: str | Path | None, force: bool = False, *, inputs: Iterable[str | Path | None] = (),
                      protected_dirs: Iterable[str | Path | None] = (), option: str = "--out") -> None:
    """:func:`claim_output_files` for one file."""
    claim_output_files([(option, path)], force=force, inputs=inputs, protected_dirs=protected_dirs)


def _claim_one(opt: str, p: Path, force: bool, ins: Sequence[Path], protected: Sequence[Path],
               trusted_kinds: Sequence[str] = ()) -> None:
    for inp in ins:
        if _same_file(p, inp):
            raise DiagError(f"{opt} {p}: is the input {inp} of this command; diag never writes over its inputs, "
                            f"even with --force; choose another {opt} name")
    if p.name == LEDGER or (p.name.startswith(".") and ".tmp-" in p.name):
        raise DiagError(f"{opt} {p}: a name diag keeps for itself; choose another {opt} name")
    sealed = sealed_folder(p, protected)
    if sealed is not None:
        raise DiagError(f"{opt} {p}: lies inside {sealed}, a folder diag keeps for its own records (a run, a prepared "
                        f"dataset or an input); choose a {opt} outside it")
    if p.is_symlink():
        raise DiagError(f"{opt} {p}: is a symbolic link; diag never writes through or over one; choose another {opt} name")
    if p.is_dir():
        raise DiagError(f"{opt} {p}: is a folder; give a file name")
    parent = p.parent
    if not parent.exists():
        raise DiagError(f"{opt} {p}: no such folder {parent}; create it first")
    if not parent.is_dir():
        raise DiagError(f"{opt} {p}: {parent}: is a file, not a folder, so {p.name} cannot go in it; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DiagError(f"{opt} {p}: folder {parent} is not writable; choose another folder")
    for name in [n.name for n in parent.iterdir() if n.name.startswith(f".{p.name}.tmp-")]:
        if _stale(name, p.name):
            (parent / name).unlink(missing_ok=True)
    if not p.exists():
        return
    if not force:
        raise DiagError(f"{opt} {p}: already exists; choose another name or pass --force to replace it")
    digest = _read_ledger(parent).get(p.name)
    if digest is None and trusted_kinds and _folder_kind(parent) in trusted_kinds:
        return
    if digest is None:
        raise DiagError(f"{opt} {p}: already exists and diag did not write it (not in {parent / LEDGER}); diag never "
                        f"replaces a user's file, even with --force; choose another {opt} name")
    if digest != file_sha256(p):
        raise DiagError(f"{opt} {p}: was changed since diag wrote it, so it may be someone's file; diag does not replace "
                        f"it, even with --force; choose another {opt} name")
