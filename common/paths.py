"""Output paths, checked before any compute and written so that a crash never leaves half a file.

Every CLI that writes a result (trainers.run, theory.solve, orchestrator.sweep, and
analysis.report) asks here first, so that a bad --out or storage path costs one line and
exit 2 instead of the finished computation. The check is a real write: parents are created
and a probe file is made and removed, since permission bits alone lie for root and for
pseudo file systems (/proc accepts access(W_OK) and refuses mkdir).

Like the rest of `common`, this module imports neither torch, Ray nor MLflow.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written; the message is one line naming it."""


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create `path` (and parents) if needed and prove a file can be written in it."""
    d = Path(path).expanduser()
    if d.exists() and not d.is_dir():
        raise OutputPathError(f"{what}: {d} exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(f"{what}: cannot write in {d} ({_reason(e)})") from None
    return d


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Validate a file to be written later: a real file name in a writable directory."""
    raw = os.fspath(path)
    p = Path(raw).expanduser()
    if not raw.strip() or raw.endswith(("/", os.sep)) or p.name in ("", ".", ".."):
        raise OutputPathError(f"{what}: {raw!r} is not a file name")
    if p.is_dir():
        raise OutputPathError(f"{what}: {p} is a directory")
    check_writable_dir(p.parent, what)
    return p


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp_path) on a sibling temporary file, then rename it onto `path`.

    A crash or a failing writer leaves any previous `path` untouched (rename is atomic
    within one file system, which a sibling guarantees).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
