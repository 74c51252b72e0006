"""Files: new, open, save, the recent list, autosave and recovery, without the window.

``FilesController`` owns the policy; the window gives it three things to call:
``may_close`` (stop a run first: the training controller's business), ``store_layout(project)``
(put the window's panel layout into the project before it is written) and
``show_status(text, ms)``. It emits ``projectLoaded(project)`` when a project should replace the
open one (the window then shows it everywhere).

Autosave: every ``AUTOSAVE_INTERVAL_MS`` a project with unsaved changes is written beside its
file (``NAME.gscope.autosave``) or, untitled, into ``autosave_dir``. Each copy this process
writes is held by a lock file (``QLockFile``: the owner's process id, stale once that process
is gone), so a second running GateScope never offers the first one's autosave as work left
by a crash; only copies whose owner has died are offered.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QLockFile, QObject, QSettings, QTimer, Signal

from gatescope.studio.document import Document
from gatescope.studio.project import SUFFIX, Project, ProjectError, load_project

AUTOSAVE_INTERVAL_MS = 3 * 60 * 1000
AUTOSAVE_SUFFIX = ".autosave"
LOCK_SUFFIX = ".lock"
MAX_RECENT = 8


class FilesController(QObject):
    """New, open, save and autosave for one ``Document`` (see the module docstring)."""

    projectLoaded = Signal(object)

    def __init__(self, document: Document, dialogs, settings: QSettings, autosave_dir: Path,
                 may_close: Callable[[], bool], store_layout: Callable[[Project], None],
                 show_status: Callable[[str, int], None], parent: QObject | None = None):
        super().__init__(parent)
        self.document, self.dialogs, self.settings = document, dialogs, settings
        self.autosave_dir = Path(autosave_dir)
        self._may_close_run = may_close
        self._store_layout = store_layout
        self._status = show_status
        self._untitled_autosave = self.autosave_dir / f"untitled-{os.getpid()}-{int(time.time())}{SUFFIX}"
        self._locks: dict[Path, QLockFile] = {}
        self.timer = QTimer(self)
        self.timer.setInterval(AUTOSAVE_INTERVAL_MS)
        self.timer.timeout.connect(self.autosave)
        self.timer.start()

    @property
    def project(self) -> Project:
        return self.document.project

    # ----------------------------------------------------------------- closing, opening, saving
    def may_close_project(self) -> bool:
        """Ask before the open project goes: stop a run, save changes. False if the person cancels."""
        if not self._may_close_run():
            return False
        if self.document.modified:
            name = self.project.path.name if self.project.path else "this untitled project"
            answer = self.dialogs.ask_save(f"Save the changes to {name}?")
            if answer == "cancel":
                return False
            if answer == "save" and not self.save():
                return False
        return True

    def new_project(self, project: Project | None = None) -> bool:
        """Replace the open project with ``project`` (default: an empty one), asking first."""
        if not self.may_close_project():
            return False
        self.remove_autosave()
        self.projectLoaded.emit(project or Project())
        return True

    def open_dialog(self) -> bool:
        path = self.dialogs.open_path()
        return bool(path) and self.open_path(path)

    def open_path(self, path, as_example: bool = False) -> bool:
        """Open the project at ``path``; a file that cannot be opened leaves the open project as it was.

        The file is read and checked before anything is asked about the open project, so a
        file that is not a project costs no "save your changes?" question. ``as_example``: opened
        as an untitled copy, so saving never overwrites the bundled example.
        """
        try:
            project = load_project(path)
        except ProjectError as exc:
            self.dialogs.error("Cannot open the project", str(exc))
            return False
        if not self.may_close_project():
            return False
        self.remove_autosave()
        if as_example:
            project.path = None
        else:
            self.remember_recent(Path(path))
        self.projectLoaded.emit(project)
        self._status(f"Opened {Path(path).name}", 5000)
        return True

    def save(self) -> bool:
        """Save to the project's file (asking for one if it has none). True when saved."""
        if self.project.path is None:
            return self.save_as()
        return self.save_to(self.project.path)

    def save_as(self) -> bool:
        suggested = str(self.project.path or Path.home() / f"{self.project.name or 'untitled'}{SUFFIX}")
        path = self.dialogs.save_path(suggested)
        return bool(path) and self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        self._store_layout(self.project)
        old_autosave = self.autosave_path()
        try:
            weights_kept = self.document.save(path)
        except ProjectError as exc:
            self.dialogs.error("Cannot save", str(exc))
            return False
        self._drop(old_autosave)
        self.remove_autosave()
        self.remember_recent(Path(path))
        note = "" if weights_kept else " (without weights: the model changed since it was trained)"
        self._status(f"Saved {Path(path).name}{note}", 5000)
        return True

    # ----------------------------------------------------------------- recent files
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def remember_recent(self, path: Path) -> None:
        path = Path(path).resolve()
        recent = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        self.settings.setValue("recent_files", recent[:MAX_RECENT])

    # ----------------------------------------------------------------- autosave and recovery
    def autosave_path(self) -> Path:
        """Where this project is autosaved: beside its file, or in the app data folder when untitled."""
        if self.project.path is not None:
            return self.project.path.with_name(self.project.path.name + AUTOSAVE_SUFFIX)
        return self._untitled_autosave

    def autosave(self) -> Path | None:
        """Write the project to its autosave file when it has unsaved changes; the path written, or None."""
        if not self.document.modified:
            return None
        path = self.autosave_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._hold(path)
            self._store_layout(self.project)
            self.document.write_copy(path)
        except (ProjectError, OSError) as exc:
            self._status(f"Autosave failed: {exc}", 8000)
            return None
        self._status("Autosaved", 2000)
        return path

    def remove_autosave(self) -> None:
        self._drop(self.autosave_path())

    def shutdown(self) -> None:
        """The window closes cleanly: no autosave is left to recover."""
        self.timer.stop()
        self.remove_autosave()
        for path in list(self._locks):
            self._drop(path)

    def _hold(self, path: Path) -> None:
        """Lock ``path``'s autosave for this process (another process then never offers it)."""
        if path in self._locks:
            return
        lock = QLockFile(str(path) + LOCK_SUFFIX)
        lock.setStaleLockTime(0)   # stale only when its process is gone, however old
        if lock.tryLock(0):
            self._locks[path] = lock

    def _drop(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        lock = self._locks.pop(path, None)
        if lock is not None:
            lock.unlock()

    @staticmethod
    def _owned_elsewhere(path: Path) -> bool:
        """True when a running process holds ``path``'s lock (its autosave is live work, not a crash's)."""
        lock = QLockFile(str(path) + LOCK_SUFFIX)
        lock.setStaleLockTime(0)
        if lock.tryLock(0):        # free, or stale (its owner died): ours to offer
            lock.unlock()
            return False
        return lock.error() == QLockFile.LockFailedError

    def recovery_candidates(self, opened: Path | None) -> list[Path]:
        """Autosaved copies left by a session that did not end cleanly (not by one still running)."""
        found = sorted(self.autosave_dir.glob(f"*{SUFFIX}")) if self.autosave_dir.is_dir() else []
        if opened is not None:
            side = opened.with_name(opened.name + AUTOSAVE_SUFFIX)
            if side.exists() and (not opened.exists() or side.stat().st_mtime >= opened.stat().st_mtime):
                found.append(side)
        return [p for p in found if p not in self._locks and not self._owned_elsewhere(p)]

    def offer_recovery(self, opened: Path | None = None) -> bool:
        """Offer autosaved copies; open the chosen one (marked unsaved). True if one was recovered."""
        candidates = self.recovery_candidates(opened)
        if not candidates:
            return False
        chosen = self.dialogs.offer_recovery(candidates)
        recovered = False
        if chosen is not None:
            try:
                project = load_project(chosen)
            except ProjectError as exc:
                self.dialogs.error("Cannot recover", str(exc))
            else:
                if chosen.name.endswith(AUTOSAVE_SUFFIX):
                    project.path = chosen.with_name(chosen.name[:-len(AUTOSAVE_SUFFIX)])
                else:
                    project.path = None
                    self._untitled_autosave = chosen
                self.projectLoaded.emit(project)
                self.document.mark_modified()
                self._hold(chosen)
                recovered = True
        for path in candidates:
            if path != chosen:
                path.unlink(missing_ok=True)
                Path(str(path) + LOCK_SUFFIX).unlink(missing_ok=True)
        return recovered
