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
