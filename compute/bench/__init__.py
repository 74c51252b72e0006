"""``gatescope bench``: timings of our layers beside references measured in the same run.

Benchmarks are not tests: nothing here asserts on time. Each case warms up, then reports the
median of several repeats, and a ratio against a reference timed in the same run (the bare
GEMMs of the same layer, and PyTorch where it is importable), because absolute times on a
shared machine drift from run to run (``shared/BENCHMARKS.md``).

A benchmark module registers cases with ``@case(group)``; a case is a function
``(device, quick) -> list[Row]``.
"""
from __future__ import annotations

import importlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from gatescope.compute.backend import Device
from gatescope.compute.ops.threads import cpu_threads


@dataclass
class Row:
    """One measured line: our median seconds and the references' medians (None if absent)."""

    group: str
    name: str
    ours_s: float
    gemm_s: float | None = None
    torch_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def vs_gemm(self) -> float | None:
        return self.ours_s / self.gemm_s if self.gemm_s else None

    @property
    def torch_speedup(self) -> float | None:
        """PyTorch time / our time: above 1 means we are faster."""
        return self.torch_s / self.ours_s if self.torch_s else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vs_gemm"], d["torch_speedup"] = self.vs_gemm, self.torch_speedup
        return d


CaseFn = Callable[[Device, bool], list[Row]]
CASES: dict[str, list[CaseFn]] = {}
_MODULES: tuple[str, ...] = ("conv", "recurrent")


def case(group: str) -> Callable[[CaseFn], CaseFn]:
    def deco(fn: CaseFn) -> CaseFn:
        CASES.setdefault(group, []).append(fn)
        return fn
    return deco


def median_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 2,
                sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_or_none():
    """PyTorch if importable (never a dependency), configured single-precision and TF32 off,
    with as many CPU threads as our BLAS and kernels use."""
    try:
        import torch  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(cpu_threads())
    return torch


def groups() -> list[str]:
    for mod in _MODULES:
        importlib.import_module(f"gatescope.compute.bench.{mod}")
    return sorted(CASES)


def run(device: Device, only: list[str] | None = None, quick: bool = False,
        progress: Callable[[Row], None] | None = None) -> list[Row]:
    """Run every registered case (or the groups in ``only``) and return the rows."""
    rows: list[Row] = []
    for group in groups():
        if only and group not in only:
            continue
        for fn in CASES[group]:
            for row in fn(device, quick):
                rows.append(row)
                if progress:
                    progress(row)
    return rows


def geometric_mean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    return statistics.geometric_mean(values) if values else None


#: The groups whose geometric means the speed goals speak of together (shared/BENCHMARKS.md).
FAMILIES = {"convolution": ("conv2d",), "recurrent": ("gru", "lstm", "rnn")}


def summaries(rows: list[Row]) -> dict[str, dict[str, float | None]]:
    """Geometric means of ``ours / GEMM`` and ``PyTorch / ours`` per group, per family of
    groups (when more than one of its groups ran) and over all rows (``"all"``)."""
    def means(selected):
        return {"geomean_vs_gemm": geometric_mean([r.vs_gemm for r in selected if r.vs_gemm]),
                "geomean_torch_over_ours": geometric_mean([r.torch_speedup for r in selected if r.torch_speedup])}
    out = {group: means([r for r in rows if r.group == group]) for group in dict.fromkeys(r.group for r in rows)}
    for family, members in FAMILIES.items():
        if sum(group in out for group in members) > 1:
            out[family] = means([r for r in rows if r.group in members])
    out["all"] = means(rows)
    return out
