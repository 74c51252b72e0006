"""The one home of the window arithmetic that convolutions and pooling share."""
from __future__ import annotations


def output_size(n: int, kernel: int, stride: int, pad_before: int = 0, pad_after: int = 0) -> int:
    """How many windows of ``kernel`` moving by ``stride`` fit in ``n`` padded by ``pad_before``
    and ``pad_after``: ``floor((n + p_before + p_after - f) / s) + 1``, the lectures' formula.
    Below 1 when none fits (callers say why in their own words)."""
    return (n + pad_before + pad_after - kernel) // stride + 1
