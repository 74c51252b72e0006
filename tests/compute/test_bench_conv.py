"""The Conv2D bench case says which algorithm each row ran (timings are measured, never asserted)."""
import numpy as np

from gatescope.compute import jit
from gatescope.compute.backend import select_device
from gatescope.compute.bench import conv as bench_conv
from gatescope.compute.ops import conv as conv_ops


def test_each_conv_row_names_the_algorithm_the_layer_ran(monkeypatch):
    monkeypatch.setattr(bench_conv, "CPU_SHAPES", (("8x8x16->16 3x3 N=4", 16, 8, 16, 3, 4, 1, 1),
                                                   ("9x9x2->3 5x5 N=2", 2, 9, 3, 5, 2, 1, 2)))
    rows = bench_conv.conv2d(select_device("cpu"), quick=True)
    assert [r.name for r in rows] == ["8x8x16->16 3x3 N=4 forward", "8x8x16->16 3x3 N=4 forward+backward",
                                      "9x9x2->3 5x5 N=2 forward", "9x9x2->3 5x5 N=2 forward+backward"]
    expected = conv_ops.algorithm(np.zeros((4, 16, 8, 8), np.float32), (16, 16, 3, 3), 1, (1, 1, 1, 1))
    assert expected == (conv_ops.WINOGRAD if jit.available() else conv_ops.IM2COL)
    assert [r.extra["algorithm"] for r in rows] == [expected, expected, conv_ops.IM2COL, conv_ops.IM2COL]
    assert all(r.ours_s > 0 and r.gemm_s > 0 for r in rows)
