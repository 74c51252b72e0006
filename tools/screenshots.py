"""Render the README's pictures with the contract command, as a person gets the window.

    .venv/bin/python tools/screenshots.py [--out docs] [--work DIR] [--retrain] [--size 1600x1000]

Trains copies of the examples headless (``gatescope train``; kept in ``--work``, by default a
``gatescope-screenshots`` folder in the temp directory, and reused unless ``--retrain``), then
renders each picture with ``gatescope --screenshot OUT FILE --view V --size WxH``: the real
default layout at that size, nothing arranged for the picture. Prints what the layout audit
(``studio.layout_audit``) finds in each rendered view, which should be nothing.

``screenshot.png``      digits-cnn after training, Train view: curves, confusion matrix.
``build.png``           digits-cnn, Build view: palette, canvas with shapes and parameters, inspector.
``gates.png``           adding-lstm after training, Inside view: the gates, the cell state.
``text-generation.png`` hello-lstm after training, Inside view: the gates and the text panel.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATESCOPE = [sys.executable, "-m", "gatescope.studio.cli"]
# (picture, example, epochs to train (None: its own setting; 0: untrained), view)
PICTURES = (
    ("screenshot.png", "digits-cnn", None, "train"),
    ("build.png", "digits-cnn", None, "build"),
    ("gates.png", "adding-lstm", 20, "inside"),
    ("text-generation.png", "hello-lstm", None, "inside"),
)


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return result.stdout


def trained_copy(name: str, epochs: int | None, work: Path, retrain: bool) -> Path:
    """A copy of example ``name`` trained for ``epochs`` (once; reused unless ``retrain``)."""
    from gatescope.assets import example_path
    out = work / f"{name}.gscope"
    if out.exists() and not retrain:
        return out
    shutil.copy(example_path(name), out)
    command = GATESCOPE + ["train", str(out), "--json"] + ([] if epochs is None else ["--epochs", str(epochs)])
    result = json.loads(run(command).strip().splitlines()[-1])
    score = result.get("test_accuracy") if result.get("test_accuracy") is not None else result.get("test_loss")
    print(f"trained {name}: {result['epochs']} epochs in {result['seconds']:.0f} s, test {score}", flush=True)
    return out


def audit(project: Path, view: str, size: str) -> list[str]:
    """What the layout audit finds in ``view`` of ``project`` at ``size`` (one process per render)."""
    code = ("import sys, os; os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen');"
            "from PySide6.QtWidgets import QApplication; app = QApplication(sys.argv[:1]);"
            "from gatescope.widgets.theme import apply_dark_theme; apply_dark_theme(app);"
            "from gatescope.studio.screenshot import window_as_a_person_sees_it;"
            "from gatescope.studio.layout_audit import audit;"
            f"w, h = {tuple(int(v) for v in size.split('x'))};"
            f"ctx = window_as_a_person_sees_it({str(project)!r}, {view!r}, (w, h)); win = ctx.__enter__();"
            "print('\\n'.join(audit(win))); ctx.__exit__(None, None, None)")
    return [line for line in run([sys.executable, "-c", code]).splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNG files")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "gatescope-screenshots"),
                        help="folder for the trained copies of the examples")
    parser.add_argument("--retrain", action="store_true", help="train again even when trained copies exist")
    parser.add_argument("--size", default="1600x1000", help="window size of every picture (WxH)")
    args = parser.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    copies: dict[tuple[str, int | None], Path] = {}
    for picture, name, epochs, view in PICTURES:
        if (name, epochs) not in copies:
            copies[name, epochs] = trained_copy(name, epochs, work, args.retrain)
        project = copies[name, epochs]
        run(GATESCOPE + ["--screenshot", str(out / picture), str(project), "--view", view, "--size", args.size])
        problems = audit(project, view, args.size)
        print(f"wrote {out / picture} ({(out / picture).stat().st_size // 1000} KB): "
              + ("the layout audit finds nothing" if not problems else "\n  " + "\n  ".join(problems)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
