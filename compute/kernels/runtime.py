"""What every kernel launcher shares: the ``.cu`` modules, who runs a kernel, argument checks.

Each ``*.cu`` file in this folder is a module of ``extern "C" __global__`` kernels (names do
not mangle), listed in :data:`MODULES`. A launcher module beside it (``lstm.py`` beside
``lstm.cu``) holds the public functions of the kernel contract; each decides once per call
where the work runs (:func:`on_device`):

- CuPy float32 arrays: the CUDA kernel, launched through :class:`CupyBackend`
  (``cupy.RawModule`` built from the source, memoized per module).
- NumPy float32 arrays with a *host kernel backend* installed (:func:`host_backend`; the tests
  install the CPU emulator of ``tests/compute/kernel_emulator``, which compiles the same
  ``.cu`` source with g++ and runs the grid as loops): the CUDA kernel, emulated.
- Anything else: the CPU kernel (:func:`cpu`): the numba kernel for NumPy float32 arrays, the
  NumPy twin for other dtypes (float64 gradient checks) and wherever numba is unavailable.

A kernel backend is an object with ``function(module, kernel)`` returning a callable
``(grid, block, args)``, ``empty(xp, shape, dtype)``, ``gemm(a, b, out, beta)`` (one float32
GEMM, see ``compute.kernels.gemm``) and ``capture(body, buffers)`` (a CUDA graph of what
``body`` launches; see ``compute/kernels/graphs.py``).

Launches pass arguments in the kernel's order with the kernel's exact types
(``numpy.int32``/``int64``/``float32`` scalars: CuPy would pass a bare Python int as 64 bits
and a float as a double); :func:`f32`, :func:`i32`, :func:`i64` make them.
"""
from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy

from gatescope.compute import backend as _backend_module
from gatescope.compute.backend import get_array_module

KERNEL_DIR = Path(__file__).resolve().parent

#: Module name -> kernels it defines. The tests check this list against the sources.
MODULES = {
    "lstm": ("lstm_forward", "lstm_backward", "lstm_peephole_grad"),
    "rnn": ("simple_rnn_forward", "simple_rnn_backward"),
    "gru": ("gru_pytorch_forward", "gru_pytorch_backward", "gru_cho_forward_rz",
            "gru_cho_forward_n", "gru_cho_backward_n", "gru_cho_backward_r"),
    "conv": ("im2col", "col2im"),
    "pool": ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
             "avg_pool2d_backward"),
    "loss": ("softmax_forward", "cross_entropy_loss", "softmax_cross_entropy_backward"),
    "optim": ("sgd_update", "adam_update"),
}

#: NVRTC options used by CuPy and by the compile test alike.
COMPILE_OPTIONS = ("--std=c++14",)

#: Threads per block for the one-dimensional launches (a multiple of the 32-thread warp).
BLOCK_SIZE = 256
#: Upper bound on blocks per launch: every kernel is a grid-stride loop, and a few thousand
#: blocks fill any current GPU. The tests lower it to exercise the wrap-around.
MAX_BLOCKS = 4096

LEARNED = -1.0  # the pin value that means "not pinned"

#: What a launch on the GPU passes for a NULL pointer (an optional input left out): a 64-bit
#: zero. CuPy before 14.0 turned ``None`` into a garbage pointer (0xffffffff, cupy/cupy#9046),
#: which a kernel testing ``ptr != nullptr`` would read from.
NULL = numpy.uint64(0)

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.MULTILINE)


def source_path(module: str) -> Path:
    """The ``.cu`` file of ``module`` (a key of :data:`MODULES`)."""
    if module not in MODULES:
        raise KeyError(f"no kernel module {module!r}; known: {', '.join(MODULES)}")
    return KERNEL_DIR / f"{module}.cu"


@functools.cache
def kernel_source(module: str) -> str:
    """The source of ``module`` with local ``#include "..."`` headers pasted in.

    This is the exact text NVRTC compiles. Pasting the headers (instead of passing an include
    path) makes CuPy's compile cache, keyed on the source text, notice edits to them.
    """
    seen: set[str] = set()

    def expand(text: str) -> str:
        def paste(match: re.Match) -> str:
            name = match.group(1)
            if name in seen:
                return ""
            seen.add(name)
            return expand((KERNEL_DIR / name).read_text())
        return _INCLUDE.sub(paste, text)

    return expand(source_path(module).read_text())


class CupyBackend:
    """Runs kernels on the GPU through ``cupy.RawModule``, one module per ``.cu`` file."""

    name = "cupy"

    @functools.cache
    def _module(self, module: str):
        cupy = _backend_module.cupy
        # Compiled on first use and cached by CuPy on disk, keyed on the source text.
        return cupy.RawModule(code=kernel_source(module), options=COMPILE_OPTIONS)

    def function(self, module: str, kernel: str):
        """``kernel`` of ``module`` as a callable ``(grid, block, args)`` launching the
        ``cupy.RawKernel``; None among the arguments is sent as :data:`NULL`."""
        raw = self._module(module).get_function(kernel)

        def launch(grid, block, args):
            raw(grid, block, tuple(NULL if a is None else a for a in args))
        return launch

    def empty(self, xp, shape, dtype):
        return xp.empty(shape, dtype=dtype)

    def gemm(self, a, b, out, beta: float) -> None:
        """One ``cublasSgemm`` (``compute.kernels.gemm.cublas_gemm``)."""
        from gatescope.compute.kernels.gemm import cublas_gemm
        cublas_gemm(a, b, out, beta)

    def capture(self, body, buffers):
        """Capture what ``body()`` launches into a CUDA graph (nothing runs); see
        ``compute.kernels.graphs.CupyGraph``."""
        from gatescope.compute.kernels.graphs import capture_cupy
        return capture_cupy(body)


_CUPY_BACKEND = CupyBackend()
_host_backend = None


def use_host_backend(backend):
    """Install ``backend`` for kernels launched on NumPy arrays; returns the previous one.

    ``None`` removes it (NumPy arrays then go to the CPU kernels). The CPU emulator in the
    tests is such a backend.
    """
    global _host_backend
    previous, _host_backend = _host_backend, backend
    return previous


@contextlib.contextmanager
def host_backend(backend):
    """``with host_backend(emulator): ...`` runs the CUDA kernels on NumPy arrays through
    ``backend``."""
    previous = use_host_backend(backend)
    try:
        yield backend
    finally:
        use_host_backend(previous)


def is_gpu_array(array) -> bool:
    cupy = _backend_module.cupy
    return cupy is not None and isinstance(array, cupy.ndarray)


def on_device(*arrays) -> bool:
    """True where the CUDA kernels run for ``arrays``: all float32, and CuPy arrays or a host
    kernel backend installed. (Called once or twice per kernel call: the CPU case, no CuPy and
    no host backend, answers first.)"""
    cupy = _backend_module.cupy
    if _host_backend is None and cupy is None:
        return False
    if not arrays or any(a.dtype != numpy.float32 for a in arrays):
        return False
    return _host_backend is not None or any(isinstance(a, cupy.ndarray) for a in arrays)


def backend_for(array):
    """The kernel backend that runs CUDA kernels on ``array``'s device."""
    if is_gpu_array(array):
        return _CUPY_BACKEND
    if _host_backend is not None:
        return _host_backend
    raise TypeError("the CUDA kernels take CuPy arrays (or NumPy arrays with a host kernel "
                    "backend installed); on the CPU the launchers run their CPU kernels")


def launch(module: str, kernel: str, threads: int, args: tuple, like) -> None:
    """Run ``kernel`` over ``threads`` work items as a 1D grid of :data:`BLOCK_SIZE` blocks."""
    if threads == 0:
        return  # a grid of zero blocks is a launch error on the GPU
    grid = min(math.ceil(threads / BLOCK_SIZE), MAX_BLOCKS)
    backend_for(like).function(module, kernel)((grid,), (BLOCK_SIZE,), args)


def cpu(kernel, like, *args):
    """Run the CPU kernel ``kernel`` (a ``compute.jit.Kernel``): compiled for NumPy float32
    arrays like ``like``, its NumPy twin for any other dtype or array type (the twin is exact
    in float64, which the gradient checks need; the numba kernels approximate tanh to float32)."""
    if like.dtype == numpy.float32 and type(like) is numpy.ndarray:
        return kernel(*args)
    return kernel.twin(*args)


def empty(like, shape, dtype=numpy.float32):
    """A new buffer on ``like``'s device (the emulator fills it with NaN, so an element a
    kernel forgets to write cannot pass for a correct zero)."""
    xp = get_array_module(like)
    if on_device(like):
        return backend_for(like).empty(xp, tuple(shape), dtype)
    return xp.empty(tuple(shape), dtype=dtype)


_zeros: dict = {}


def zeros(like, shape):
    """A zero array on ``like``'s device, of its dtype, kept for reuse: what the CPU kernels
    read where a launcher's optional input is None (nothing carried into the last step), so
    a numba kernel has one signature instead of one per combination of missing inputs. Never
    written: the kernels only read it."""
    key = (type(like), shape, like.dtype)
    found = _zeros.get(key)
    if found is None:
        if len(_zeros) > 64:
            _zeros.clear()
        found = _zeros[key] = get_array_module(like).zeros(shape, like.dtype)
    return found


def f32(value) -> numpy.float32:
    return numpy.float32(value)


def i32(value) -> numpy.int32:
    return numpy.int32(value)


def i64(value) -> numpy.int64:
    return numpy.int64(value)


def work_dtype(array, name: str, device: bool):
    """The dtype a launch works in: float32 on the device (the CUDA kernels' only type), the
    first array's float dtype on the CPU (the twins take float64 too)."""
    if device:
        return numpy.dtype(numpy.float32)
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array, not {array.dtype}")
    return array.dtype


def check(array, name: str, shape: tuple | None = None, dtype=numpy.float32):
    """``array`` as a C-contiguous array of ``dtype``; shape checked against ``shape`` (a
    tuple). A step loop calls this a few times per step, so the common case returns first."""
    if array.dtype != dtype:
        raise TypeError(f"{name} must be {numpy.dtype(dtype).name}, not {array.dtype}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {tuple(array.shape)}, expected {tuple(shape)}")
    if array.flags.c_contiguous:
        return array
    return get_array_module(array).ascontiguousarray(array)


def optional(array, name: str, shape, dtype=numpy.float32):
    return None if array is None else check(array, name, shape, dtype)


def output(out, like, shape, name: str, dtype=numpy.float32):
    """The buffer a kernel writes: ``out`` when the caller gives one (a C-contiguous ``dtype``
    array of ``shape``, e.g. one timestep's slice of a layer's ``(T, ...)`` buffer, so a step
    loop allocates nothing and copies nothing), else a new one on ``like``'s device."""
    if out is None:
        return empty(like, shape, dtype)
    if out.dtype != dtype or out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {numpy.dtype(dtype).name} array of shape "
                         f"{tuple(shape)}, written in place; got {out.dtype} {tuple(out.shape)}")
    return out


def outs(out, count: int):
    """``out`` as a tuple of ``count`` optional buffers (None: allocate them all)."""
    if out is None:
        return (None,) * count
    if len(out) != count:
        raise ValueError(f"out must be a tuple of {count} arrays (or None)")
    return tuple(out)


def in_place(array, name: str, shape, dtype=numpy.float32):
    """``array`` itself, which a kernel updates in place: C-contiguous, ``dtype``, ``shape``."""
    if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {numpy.dtype(dtype).name} array of shape "
                         f"{tuple(shape)}, updated in place; got {array.dtype} {tuple(array.shape)}")
    return array


def pin_values(pins: Mapping[str, float] | None, gate_names: str) -> tuple[float, ...]:
    """Gate overrides as one float per gate of ``gate_names`` (``LEARNED`` = -1 where free).

    ``pins`` maps a gate letter (``i f g o`` for LSTMs, ``r z n`` for GRUs) to the constant it
    is pinned to, e.g. ``{"f": 1.0, "i": 0.0}``.
    """
    pins = dict(pins or {})
    unknown = set(pins) - set(gate_names)
    if unknown:
        raise ValueError(f"cannot pin gate(s) {', '.join(sorted(unknown))}: this cell's gates "
                         f"are {', '.join(gate_names)}")
    values = []
    for gate in gate_names:
        value = pins.get(gate)
        values.append(LEARNED if value is None or value < 0 else float(value))
    return tuple(values)


_LEARNED_ONLY: dict = {}


def cpu_pins(pins: Mapping[str, float] | None, gate_names: str):
    """The pins as the CPU kernels take them: a float32 array, one value per gate of
    ``gate_names`` (kept for reuse when nothing is pinned, the common case)."""
    if not pins:
        if gate_names not in _LEARNED_ONLY:
            _LEARNED_ONLY[gate_names] = numpy.full(len(gate_names), LEARNED, numpy.float32)
        return _LEARNED_ONLY[gate_names]
    return numpy.array(pin_values(pins, gate_names), numpy.float32)
