"""``gatescope --screenshot OUT.png [FILE] [--view V] [--size WxH]`` (a contract, DESIGN section 6).

Renders the main window offscreen exactly as a person opening FILE gets it after clicking view
V, at W x H: the real default layout (no arrangement made for pictures), the dataset loaded,
the saved model evaluated, the inside panels filled. For ``inside`` the first recurrent block
is selected (or the first convolution block of a model without one), as a person would click
it. The person's own settings are neither read nor changed: the window gets settings and an
autosave folder of its own, in a temporary folder removed afterwards.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from gatescope.studio.viewspec import VIEW_KEYS

SETTLE_S = 20.0


def select_for_view(window, view: str) -> None:
    """Click what a person clicks first in ``view``: for ``inside``, the first recurrent block
    (else the first convolution block)."""
    if view != "inside" or window.inside is None:
        return
    from gatescope.studio.inside import CONVOLUTION, RECURRENT, category_of
    blocks = window.project.graph.blocks
    target = next((b.id for b in blocks if category_of(b.type) == RECURRENT), None) or \
        next((b.id for b in blocks if category_of(b.type) == CONVOLUTION), None)
    if target is not None:
        window.canvas.select([target])


@contextlib.contextmanager
def window_as_a_person_sees_it(file, view: str, size: tuple[int, int]) -> Iterator:
    """The main window on ``file`` (None: the default example) in ``view`` at ``size``, settled,
    with settings and an autosave folder of its own; closed afterwards. Yields None when the
    file cannot be opened (the reason is in the log)."""
    from gatescope.studio.app import MainWindow, initial_project_path, show_at_size
    from gatescope.studio.dialogs import QuietDialogs

    if view not in VIEW_KEYS:
        raise ValueError(f"--view must be one of {', '.join(VIEW_KEYS)}, not {view!r}")
    app = QApplication.instance()
    with tempfile.TemporaryDirectory(prefix="gatescope-screenshot-") as scratch:
        settings = QSettings(str(Path(scratch) / "settings.ini"), QSettings.IniFormat)
        window = MainWindow(settings=settings, dialogs=QuietDialogs(None), autosave_dir=Path(scratch) / "autosave")
        try:
            path = initial_project_path(file)
            if path is not None and not window.open_path(path, as_example=file is None):
                yield None
                return
            show_at_size(window, size)
            show(window, view)
            yield window
        finally:
            window.close()          # QuietDialogs answers "discard" to unsaved changes
            window.deleteLater()
            app.processEvents()


def show(window, view: str) -> None:
    """Click ``view`` and what a person clicks first there, and wait until everything is drawn."""
    from gatescope.studio.app import wait_until_settled
    app = QApplication.instance()
    window.show_view(view)
    wait_until_settled(window, SETTLE_S)
    select_for_view(window, view)
    wait_until_settled(window, SETTLE_S)
    window.canvas.fit_to_view()
    for _ in range(3):
        app.processEvents()


def render(file, out: Path, view: str, size: tuple[int, int]) -> int:
    """Render the window (see the module docstring) to ``out``; 0 on success, 1 when the file
    cannot be opened or the picture cannot be written."""
    with window_as_a_person_sees_it(file, view, size) as window:
        if window is None:
            return 1
        return 0 if window.grab().save(str(out)) else 1
