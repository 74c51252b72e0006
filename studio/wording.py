"""How numbers read in GateScope's sentences: counts with their noun, durations.

One home for these so that no message says "1 units" or "1 epochs trained in all" again.
"""
from __future__ import annotations

from gatescope.compute.layers.base import with_article as article  # noqa: F401 - one home, used here by name


def plural(count: int, word: str, words: str | None = None) -> str:
    """``plural(1, "epoch")`` -> ``'1 epoch'``; ``plural(3, "epoch")`` -> ``'3 epochs'``;
    ``plural(2, "matrix", "matrices")`` -> ``'2 matrices'``. Thousands are separated."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def format_duration(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; ``4000`` -> ``'1 h 07 min'``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


