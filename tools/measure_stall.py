"""How long the GUI thread stalls while the main window trains an example on the CPU.

    .venv/bin/python tools/measure_stall.py [EXAMPLE] [--epochs N]

Opens the example (default digits-cnn) in a real ``studio.app.MainWindow`` offscreen, presses
Train, and records with ``studio.responsiveness.StallProbe`` (a 10 ms timer that measures its
own lateness) until training ends. Prints the worst stall, the 99th percentile and the
median in milliseconds, and the training time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gatescope.assets import example_path  # noqa: E402
from gatescope.studio.app import MainWindow, show_at_size, wait_until_settled  # noqa: E402
from gatescope.studio.dialogs import QuietDialogs  # noqa: E402
from gatescope.studio.responsiveness import StallProbe  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("example", nargs="?", default="digits-cnn")
    parser.add_argument("--epochs", type=int, help="override the example's epochs")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="gatescope-stall-"))
    window = MainWindow(settings=QSettings(str(work / "settings.ini"), QSettings.IniFormat),
                        dialogs=QuietDialogs(None), autosave_dir=work / "autosave")
    show_at_size(window)
    window.open_path(example_path(args.example), as_example=True)
    wait_until_settled(window)
    if args.epochs:
        window.training_panel.form.editors["epochs"].setValue(args.epochs)
    done = QEventLoop()
    window.trainingEnded.connect(lambda kind, message: done.quit())
    probe = StallProbe()
    probe.start()
    started = time.perf_counter()
    if not window.start_training():
        print("training did not start", file=sys.stderr)
        return 1
    QTimer.singleShot(600_000, done.quit)
    done.exec()
    seconds = time.perf_counter() - started
    probe.stop()
    print(f"{args.example}: trained in {seconds:.1f} s; GUI stall worst {probe.worst_ms:.0f} ms, "
          f"p99 {probe.percentile(99):.1f} ms, median {probe.percentile(50):.1f} ms over "
          f"{len(probe.lateness_ms)} ticks")
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
