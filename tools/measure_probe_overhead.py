"""How much the inside-the-network panels slow training down, measured in the real window.

    .venv/bin/python tools/measure_probe_overhead.py [EXAMPLE] [--steps N] [--rounds R]

Trains the example (default adding-lstm) for N steps in a ``studio.app.MainWindow`` with its
panels following training (probes recorded, gates and gradients redrawn) and in one without
them (``extra_panels=False``), alternating R rounds, each run in a fresh process, the recurrent block selected in both.
Prints the median training time of each and the slowdown in percent.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
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


def train_once(example: str, steps: int, panels: bool, work: Path) -> float:
    window = MainWindow(settings=QSettings(str(work / "settings.ini"), QSettings.IniFormat),
                        dialogs=QuietDialogs(None), autosave_dir=work / "autosave", extra_panels=panels)
    show_at_size(window)
    window.open_path(example_path(example), as_example=True)
    wait_until_settled(window)
    recurrent = [b.id for b in window.project.graph.blocks if b.type in ("LSTM", "GRU", "SimpleRNN")]
    if recurrent:
        window.canvas.select(recurrent[:1])
    if panels:
        window.show_view("inside")      # the gates on screen while it trains
    window.project.training.steps_per_epoch = steps
    window.training_panel.form.editors["epochs"].setValue(1)
    done = QEventLoop()
    window.trainingEnded.connect(lambda kind, message: done.quit())
    started = time.perf_counter()
    window.start_training()
    QTimer.singleShot(600_000, done.quit)
    done.exec()
    seconds = time.perf_counter() - started
    window.close()
    QApplication.processEvents()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("example", nargs="?", default="adding-lstm")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=("panels", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # one measurement in a fresh process, so no window of an earlier run lingers
        app = QApplication.instance() or QApplication([])
        work = Path(tempfile.mkdtemp(prefix="gatescope-overhead-"))
        print(train_once(args.example, args.steps, args.one == "panels", work))
        del app
        return 0
    times = {"bare": [], "panels": []}
    for _ in range(args.rounds):
        for mode in ("bare", "panels"):
            out = subprocess.run([sys.executable, __file__, args.example, "--steps", str(args.steps), "--one", mode],
                                 capture_output=True, text=True, check=True).stdout
            times[mode].append(float(out.strip().splitlines()[-1]))
    off, on = statistics.median(times["bare"]), statistics.median(times["panels"])
    print(f"{args.example}, {args.steps} steps: without panels {off:.2f} s, with panels following training "
          f"{on:.2f} s (medians of {args.rounds}); slowdown {100 * (on / off - 1):+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
