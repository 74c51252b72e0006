"""The bundled UCI handwritten digits (1,797 images of 8x8, CC BY 4.0; see assets/data/README.md)."""
from __future__ import annotations

import numpy as np

from gatescope.assets import DATA
from gatescope.compute.datasets import Dataset, register_builtin


def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / "digits.npz", allow_pickle=False) as f:
        return f["images"].astype(np.float32) / 16.0, f["labels"].astype(np.int64)


@register_builtin("digits", "UCI handwritten digits: 1,797 grey 8x8 images, 10 classes")
def digits(layout: str = "image") -> Dataset:
    """The digits as images ``(1, 8, 8)`` (``layout='image'``), vectors of 64, or sequences of
    8 rows of 8 pixels (``layout='rows'``, for reading a digit row by row with an RNN)."""
    images, labels = _load_raw()
    shapes = {"image": (1, 8, 8), "vector": (64,), "rows": (8, 8)}
    if layout not in shapes:
        from gatescope.compute.datasets import DataError
        raise DataError(f"digits layout must be one of {', '.join(shapes)}, not {layout!r}")
    x = images.reshape((len(images),) + shapes[layout])
    return Dataset("digits", x, labels, "classification", [str(i) for i in range(10)],
                   description="UCI handwritten digits, 8x8, values scaled to 0..1")


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@register_builtin("digit_names", "UCI handwritten digits with their names spelled out: one image in, a word out")
def digit_names() -> Dataset:
    """One-to-many (seed 001's image captioning, in miniature): each digit image ``(1, 8, 8)``
    with its name spelled one letter per step, then the end mark ``.``, padded with end marks to
    6 steps: ``y`` ``(1797, 6)`` labels of the letters of the names (class names: the letters,
    ``.`` last). The name is a fixed function of the class, so a model that reads the image
    right spells the word right; what it shows is a decoder writing a sequence from one vector."""
    images, labels = _load_raw()
    letters = sorted(set("".join(DIGIT_NAMES))) + ["."]
    index = {c: i for i, c in enumerate(letters)}
    spelled = np.array([[index[c] for c in (name + ".").ljust(6, ".")] for name in DIGIT_NAMES], dtype=np.int64)
    return Dataset("digit_names", images.reshape(-1, 1, 8, 8), spelled[labels], "classification", letters,
                   description="UCI handwritten digits, 8x8, each with its name spelled in 6 steps")
