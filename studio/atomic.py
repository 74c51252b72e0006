"""Writing a file so that a crash, a kill or a full disk never leaves it half-written.

``write_atomically(path, payload)``: the bytes go to a temporary file in the same folder,
``.NAME.PID-XXXXXXXX.tmp``, are flushed to disk, get the old file's mode (or the umask's), and
are renamed over ``path``, so the old file stays whole until the new one is complete (an export
written in place was left truncated at 4,096 bytes by a full disk). Every file GateScope writes
for a person (projects, autosaves, ONNX exports, predictions) goes through it.

``remove_stale_temporaries(path)``: a killed save cannot remove its temporary file, so the next
save or open of the same file removes the ones its name pattern says are GateScope's and that
no running process is writing: those of a process that has ended (the PID in the name), and any
older than a day (for names without a PID, from earlier versions, and for folders shared
between machines, where a PID says nothing).
"""
from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

STALE_AFTER_S = 24 * 3600
_TEMPORARY = re.compile(r"(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp")  # mkstemp's 8 random characters


def write_atomically(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file and a rename; returns the path.

    OSError (the temporary file removed) when the folder cannot be written or the disk is full;
    ``path`` is then exactly as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; keep the old file's mode or the umask's
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | os.PathLike) -> None:
    """OSError when ``path``'s folder cannot take a new file (read-only, missing, no permission):
    asked before hours of training, not after. Nothing is left behind."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the stale temporary files of ``path`` (see the module docstring); returns them.

    Only regular files named ``.NAME.[PID-]XXXXXXXX.tmp`` beside ``path`` are considered;
    one that cannot be removed is left as it is.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    removed = []
    try:
        candidates = [entry for entry in os.scandir(folder) if entry.name.startswith(prefix)]
    except OSError:
        return removed
    now = time.time()
    for entry in candidates:
        match = _TEMPORARY.fullmatch(entry.name[len(prefix):])
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        pid = match.group("pid")
        old = now - info.st_mtime > STALE_AFTER_S
        if old or (pid is not None and int(pid) != os.getpid() and not _process_running(int(pid))):
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def _process_running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (True where that cannot be known)."""
    if sys.platform == "win32":  # os.kill there would terminate the process, not probe it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a PID this system cannot hold
    return True


def _file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
