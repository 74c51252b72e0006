"""Run a CPU kernel's outermost loop on every core, with plain Python threads.

The convolution and pooling kernels are serial numba functions compiled with ``nogil``
(``compute.jit``), written over a range ``[first, last)`` of their outermost loop (channels,
filters, images or planes) so that parts of it can run at once: :func:`split` calls the kernel
on one part in the calling thread and on the others in a small pool of threads, and returns
when all are done. Between the kernels the BLAS products use the same cores with BLAS's own
threads, so a layer alternates between two kinds of parallel work and never runs both at once.

The transforms around Winograd's products took 60-85% of its time on the bench's Conv2D shapes
and the examples' (CPU time, one BLAS thread), the copies around im2col's product 38-66%: left
serial while BLAS uses every core, they would cost more than the products.

Why not numba's ``parallel=True``: with no TBB or OpenMP library numba uses its ``workqueue``
threading layer, which aborts the process when two Python threads launch parallel kernels at
once (a training run beside the video panel's predictions), and its threads spin beside
OpenBLAS's (``compute.jit``: 11-85x slower than the GEMM in the recurrent step loop).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

#: Below this many values touched, a kernel runs in one piece: handing a part to a thread
#: costs tens of microseconds.
MIN_SPLIT_WORK = 1 << 16

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def cpu_threads() -> int:
    """The threads CPU work uses: what BLAS is told to use (``OPENBLAS_NUM_THREADS``,
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``), else every core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return max(1, int(os.environ[var]))
    return os.cpu_count() or 1


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < count:
            _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="gatescope-cpu")
            _pool_size = count
        return _pool


def split(kernel: Callable, count: int, work: int, *args) -> None:
    """``kernel(*args, first, last)`` over ``[0, count)``, cut into as many parts as there are
    CPU threads (one part when ``work``, the values the whole call touches, is small)."""
    parts = min(cpu_threads(), count) if work >= MIN_SPLIT_WORK else 1
    if parts <= 1:
        kernel(*args, 0, count)
        return
    bounds = [count * i // parts for i in range(parts + 1)]
    pool = _workers(parts - 1)
    others = [pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    kernel(*args, bounds[0], bounds[1])
    for part in others:
        part.result()


def run(kernel: Callable, xp, count: int, work: int, *args) -> None:
    """``kernel(*args, first, last)`` over ``[0, count)`` for arrays of module ``xp``: on every
    core (:func:`split`) for NumPy arrays; for CuPy ones the kernel's NumPy twin, which is array
    code and runs there too, in one piece."""
    if xp.__name__ == "numpy":
        split(kernel, count, work, *args)
    else:
        getattr(kernel, "twin", kernel)(*args, 0, count)
