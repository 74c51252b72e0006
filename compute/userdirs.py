"""The one place GateScope writes on its own account: the user's cache directory.

Caches (numba's compiled kernels, decoded video clips) live here and nowhere else, never at a
path read from a project or data file (DESIGN section 5). The folder is the platform's: XDG's
``$XDG_CACHE_HOME`` (default ``~/.cache``) on Linux and other Unix, ``~/Library/Caches`` on
macOS, ``%LOCALAPPDATA%`` on Windows; ``GATESCOPE_CACHE_DIR`` overrides all of them (tests,
and people who keep caches elsewhere).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    """``<the platform's cache folder>/gatescope/<parts...>`` (not created; see ``ensure``)."""
    override = os.environ.get("GATESCOPE_CACHE_DIR")
    if override:
        base = Path(override).expanduser()
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "gatescope" / "Cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "gatescope"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "gatescope"
    return base.joinpath(*parts)


def ensure(path: Path) -> Path:
    """Create ``path`` (a folder under ``user_cache_dir``) if needed; returns it."""
    path.mkdir(parents=True, exist_ok=True)
    return path
