"""The views a person chooses between and the window sizes they ask for, without Qt.

The command line checks ``--view`` and ``--size`` here before anything imports Qt;
``studio.views`` builds the views from ``VIEWS``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewSpec:
    key: str
    title: str
    shortcut: str
    tip: str


VIEWS = (
    ViewSpec("build", "Build", "Ctrl+1", "Design the model: drag blocks, wire them, change their settings"),
    ViewSpec("train", "Train", "Ctrl+2", "Train it: settings, data, loss and accuracy curves, confusion matrix"),
    ViewSpec("inside", "Inside", "Ctrl+3", "Look inside while it learns: gates, cell state, gradients through "
                                           "time, filters"),
    ViewSpec("video", "Video", "Ctrl+4", "Classify a webcam stream or a video file live"),
    ViewSpec("compare", "Compare", "Ctrl+5", "Train variants side by side on the same batches (an RNN, an LSTM "
                                             "and a GRU, say); every run of the project"),
)
VIEW_KEYS = tuple(v.key for v in VIEWS)


def parse_size(text: str) -> tuple[int, int]:
    """``'1280x800'`` -> ``(1280, 800)``; ValueError with the reason for anything else."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--size takes WIDTHxHEIGHT in pixels, such as 1280x800, not {text!r}")
    width, height = (int(p) for p in parts)
    if not (640 <= width <= 7680 and 480 <= height <= 4320):
        raise ValueError(f"--size {text}: the window must be 640x480 to 7680x4320 pixels")
    return width, height
