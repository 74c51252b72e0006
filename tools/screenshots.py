"""Render the README's screenshots from the real main window, offscreen.

    .venv/bin/python tools/screenshots.py [--out docs] [--work DIR] [--device cpu] [--retrain]

The bundled examples are untrained, so the models the pictures need are trained first with
``compute.train`` directly (no window): digits-cnn and hello-lstm fully (both take seconds),
adding-lstm and adding-rnn for the same budget (``ADDING_EPOCHS``), enough for the LSTM to
solve the task (its gradient highway shows) while the RNN's gradient vanishes. The trained
copies are kept in ``--work`` (default: a ``gatescope-screenshots`` folder in the temp
directory) and reused on the next run unless ``--retrain``.

Then each project is opened in a ``studio.app.MainWindow`` at 1500x950 and the window is
saved as PNG:

``screenshot.png``      the builder on digits-cnn: curves with its epochs, confusion matrix.
``gates.png``           the gates and gradients-through-time panels on adding-lstm, with the
                        RNN's gradient pinned as a reference beside the LSTM's.
``text-generation.png`` the text-generation panel on hello-lstm continuing "h", beside its gates.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gatescope.assets import example_path  # noqa: E402
from gatescope.compute.backend import select_device  # noqa: E402
from gatescope.compute.train import Trainer  # noqa: E402
from gatescope.studio.app import MainWindow, QuietDialogs, show_at_size, wait_until_settled  # noqa: E402
from gatescope.studio.project import load_project, save_project  # noqa: E402
from gatescope.studio.session import load_dataset  # noqa: E402
from gatescope.widgets.theme import apply_dark_theme  # noqa: E402

ADDING_EPOCHS = 20    # adding-lstm's own budget: by then its cell state carries the marked values
BUDGETS = {"digits-cnn": None, "hello-lstm": None, "adding-lstm": ADDING_EPOCHS, "adding-rnn": ADDING_EPOCHS}
MAX_PNG_BYTES = 400_000


def train_copy(name: str, work: Path, device: str, retrain: bool) -> Path:
    """Train a copy of the example ``name`` for its budget (None: its own epochs) into ``work``."""
    out = work / f"{name}.gscope"
    project = load_project(example_path(name))
    epochs = BUDGETS[name] or project.training.epochs
    done = 0
    if out.exists() and not retrain:
        project = load_project(out)                 # go on from the copy trained last time
        done = project.trainer.get("epochs_done", 0) if project.weights else 0
        if done >= epochs:
            return out
    dev = select_device(device)
    dataset = load_dataset(project)
    model = project.build_model(xp=dev.xp)
    trainer = Trainer(model, dataset, project.training, project.train_state() if done else None, dev.name)
    started = time.perf_counter()
    for event in trainer.run(epochs - done):
        if event.kind == "epoch" and (epochs <= 20 or event.data["epoch"] % 25 == 0):
            d = event.data
            print(f"  {name} epoch {d['epoch']}: loss {d['train_loss']:.4f}"
                  + (f", val {d['val_loss']:.4f}" if d["val_loss"] is not None else ""), flush=True)
        elif event.kind in ("failed", "stopped"):
            raise SystemExit(f"{name}: training {event.kind}: {event.data.get('message')}")
    project.take_train_state(trainer.state, model.state_dict())
    project.path = None
    save_project(project, out)
    print(f"trained {name} for {epochs} epochs in {time.perf_counter() - started:.0f} s -> {out}", flush=True)
    return out


def open_settled(window: MainWindow, path: Path) -> None:
    """Open ``path`` as an untitled copy and wait until every panel has what it shows."""
    if not window.open_path(path, as_example=True):
        raise SystemExit(f"cannot open {path}")
    if not wait_until_settled(window, 60.0):
        print(f"warning: {path.name} did not settle within 60 s", file=sys.stderr)
    window.canvas.fit_to_view()
    QApplication.processEvents()


def pump(seconds: float = 0.4) -> None:
    """Let Qt finish laying out and painting (dock moves and resizes are applied in steps)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)


def show_docks(window: MainWindow, *names: str) -> None:
    for name in names:
        window.panels[name].show()
        window.panels[name].raise_()
    pump()


def side_by_side(window: MainWindow, left: tuple[str, str], right: tuple[str, str],
                 widths: tuple[int, int]) -> None:
    """Two panels tall in the bottom area: ``left[1]`` in the left column (tabbed with the
    ``left[0]`` dock already there), ``right[1]`` in the right one, ``widths`` pixels wide. The
    settings docks on the right make way (their minimum height would keep the area short)."""
    for name in ("Inspector", "Training", "Data"):
        window.panels[name].hide()
    for anchor, panel in (left, right):
        if window.panels[panel] not in window.tabifiedDockWidgets(window.panels[anchor]):
            window.tabifyDockWidget(window.panels[anchor], window.panels[panel])
    show_docks(window, left[1], right[1])
    window.resizeDocks([window.panels[left[1]]], [640], Qt.Vertical)
    window.resizeDocks([window.panels[left[1]], window.panels[right[1]]], list(widths), Qt.Horizontal)


def save(window: MainWindow, out: Path) -> None:
    """Save the window as PNG; re-save at a reduced palette if it is over ``MAX_PNG_BYTES``."""
    pump()
    image = window.grab().toImage()
    if not image.save(str(out)):
        raise SystemExit(f"cannot write {out}")
    if out.stat().st_size > MAX_PNG_BYTES:
        from PySide6.QtGui import QImage
        image.convertToFormat(QImage.Format_Indexed8, Qt.ThresholdDither).save(str(out))
    print(f"wrote {out} ({out.stat().st_size // 1000} KB)")


def builder_shot(window: MainWindow, digits: Path, out: Path) -> None:
    open_settled(window, digits)
    window.canvas.select(["conv2d1"])
    wait_until_settled(window)
    show_docks(window, "Curves", "Confusion matrix", "Inspector")
    save(window, out / "screenshot.png")


def gates_shot(window: MainWindow, rnn: Path, lstm: Path, out: Path) -> None:
    gradients = window.inside.gradients
    open_settled(window, rnn)
    gradients.pin_current_as_reference()
    open_settled(window, lstm)
    window.canvas.select(["lstm1"])
    wait_until_settled(window)
    side_by_side(window, ("Curves", "Gates"), ("Confusion matrix", "Gradients through time"), (780, 720))
    save(window, out / "gates.png")


def text_shot(window: MainWindow, hello: Path, out: Path) -> None:
    open_settled(window, hello)
    window.canvas.select(["lstm1"])
    wait_until_settled(window)
    side_by_side(window, ("Curves", "Text generation"), ("Confusion matrix", "Gates"), (760, 740))
    panel = window.inside.text_generation
    panel.prefix_edit.setText("h")
    panel.temperature_spin.setValue(0.0)
    panel.length_spin.setValue(4)
    panel.generate_button.click()
    deadline = time.perf_counter() + 30
    while (window.inside.busy or not panel.generated) and time.perf_counter() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    save(window, out / "text-generation.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNG files")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "gatescope-screenshots"),
                        help="folder for the trained copies of the examples")
    parser.add_argument("--device", default="cpu", help="device to train on (cpu, gpu, auto)")
    parser.add_argument("--retrain", action="store_true", help="train again even when trained copies exist")
    args = parser.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    trained = {name: train_copy(name, work, args.device, args.retrain) for name in BUDGETS}

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)
    settings_dir = Path(tempfile.mkdtemp(prefix="gatescope-shot-settings-"))
    shots = [lambda w: builder_shot(w, trained["digits-cnn"], out),
             lambda w: gates_shot(w, trained["adding-rnn"], trained["adding-lstm"], out),
             lambda w: text_shot(w, trained["hello-lstm"], out)]
    try:
        for shot in shots:          # a fresh window each: the default dock layout, nothing left over
            window = MainWindow(settings=QSettings(str(settings_dir / "settings.ini"), QSettings.IniFormat),
                                dialogs=QuietDialogs(None), autosave_dir=settings_dir / "autosave")
            show_at_size(window)
            try:
                shot(window)
            finally:
                window.close()
                window.deleteLater()
                pump(0.1)
    finally:
        shutil.rmtree(settings_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
