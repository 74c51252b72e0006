"""The bench's geometric means per group and per family of groups (arithmetic on given rows;
the timings themselves are measured, never asserted)."""
import pytest

from gatescope.compute.bench import Row, summaries


def test_means_per_group_per_family_and_over_all_rows():
    rows = [Row("lstm", "a", 2.0, 1.0, 1.0), Row("lstm", "b", 8.0, 1.0, 4.0),   # vs GEMM 2, 8
            Row("gru", "c", 3.0, 1.0, None),                                     # no PyTorch
            Row("conv2d", "d", 5.0, 2.0, 10.0)]
    means = summaries(rows)
    assert list(means) == ["lstm", "gru", "conv2d", "recurrent", "all"]        # one-group families left out
    assert means["lstm"]["geomean_vs_gemm"] == pytest.approx(4.0)               # sqrt(2 * 8)
    assert means["lstm"]["geomean_torch_over_ours"] == pytest.approx(0.5)       # sqrt(0.5 * 0.5)
    assert means["gru"]["geomean_torch_over_ours"] is None
    assert means["recurrent"]["geomean_vs_gemm"] == pytest.approx((2 * 8 * 3) ** (1 / 3))
    assert means["all"]["geomean_vs_gemm"] == pytest.approx((2 * 8 * 3 * 2.5) ** 0.25)
    assert means["all"]["geomean_torch_over_ours"] == pytest.approx((0.5 * 0.5 * 2) ** (1 / 3))
