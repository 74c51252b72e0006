"""Fused CUDA kernels for the hot spots, and the Python functions that launch them.

Each ``*.cu`` file in this folder is a module of ``extern "C" __global__`` kernels (names do
not mangle). Every launch function below takes arrays, checks their shapes, allocates the
outputs, computes the grid and block from the sizes and passes the arguments in the kernel's
order with the kernel's exact types (``numpy.int32``/``int64``/``float32`` scalars: CuPy
would pass a bare Python int as 64 bits and a float as a double). ``reference.py`` holds a
NumPy twin of every launch function with the same signature and results: it is the
reference the tests hold the kernels to, and what a layer calls when it computes on the CPU.

Who runs a kernel is a *kernel backend*: an object with ``function(module, kernel)``
returning a callable ``(grid, block, args)``, ``empty(xp, shape, dtype)``,
``gemm(a, b, out, beta)`` (one float32 GEMM, see :func:`gemm`) and ``capture(body, buffers)``
(a CUDA graph of what ``body`` launches; see ``compute/kernels/graphs.py``).

- CuPy arrays go to :class:`CupyBackend`: ``cupy.RawModule`` built from the source,
  named and memoized per module.
- NumPy arrays go to the host backend installed with :func:`use_host_backend` (the tests
  install the CPU emulator from ``tests/compute/kernel_emulator``, which compiles the same
  ``.cu`` source with g++ and runs the grid as loops). With none installed, NumPy arrays are
  refused: on the CPU a layer calls ``reference`` (see :func:`implementation_for`).

Layouts are documented on each function and in ``README.md`` next to this file.
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

LSTM_VARIANTS = {"standard": 0, "peephole": 1, "coupled": 2}
LSTM_GATES = {"standard": "ifgo", "peephole": "ifgo", "coupled": "fgo"}
RNN_ACTIVATIONS = {"tanh": 0, "relu": 1}
LEARNED = -1.0  # the pin value that means "not pinned"

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
        """The ``cupy.RawKernel`` for ``kernel``; called as ``(grid, block, args)``."""
        return self._module(module).get_function(kernel)

    def empty(self, xp, shape, dtype):
        return xp.empty(shape, dtype=dtype)

    def gemm(self, a, b, out, beta: float) -> None:
        """``out = a @ b + beta * out`` as one ``cublasSgemm`` on the current stream, straight on
        the operands' memory (no copy, so nothing is allocated: safe inside a graph capture).

        cuBLAS is column-major; a row-major (M, N) ``out`` with row stride ldc is the
        column-major ``out^T`` (N, M), so the call computes ``out^T = b^T a^T``. The call and
        the pointer-mode handling follow ``cupy.cublas.gemm``; unlike it, operands with a
        leading dimension (a column slice of a wider matrix) are passed as they are.
        NOT RUN ON A GPU YET: only its argument translation is tested, against a column-major
        stand-in for cuBLAS (tests/compute/test_gpu_graphs.py).
        """
        from cupy.cuda import device
        from cupy_backends.cuda.libs import cublas
        op_a, lda = _blas_layout(a, "a")
        op_b, ldb = _blas_layout(b, "b")
        _, ldc = _blas_layout(out, "out")
        m, k = a.shape
        n = b.shape[1]
        ops = {"N": cublas.CUBLAS_OP_N, "T": cublas.CUBLAS_OP_T}
        scalars = numpy.array([1.0, beta], dtype=numpy.float32)   # host memory, read at the call
        handle = device.get_cublas_handle()
        mode = cublas.getPointerMode(handle)
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        try:
            cublas.sgemm(handle, ops[op_b], ops[op_a], n, m, k, scalars.ctypes.data, b.data.ptr, ldb,
                         a.data.ptr, lda, scalars.ctypes.data + 4, out.data.ptr, ldc)
        finally:
            cublas.setPointerMode(handle, mode)

    def capture(self, body, buffers):
        """Capture what ``body()`` launches into a CUDA graph (nothing runs); see
        ``compute.kernels.graphs.CupyGraph``."""
        from gatescope.compute.kernels.graphs import capture_cupy
        return capture_cupy(body)


_CUPY_BACKEND = CupyBackend()
_host_backend = None


def use_host_backend(backend):
    """Install ``backend`` for kernels launched on NumPy arrays; returns the previous one.

    ``None`` removes it. The CPU emulator in the tests is such a backend.
    """
    global _host_backend
    previous, _host_backend = _host_backend, backend
    return previous


@contextlib.contextmanager
def host_backend(backend):
    """``with host_backend(emulator): ...`` runs kernels on NumPy arrays through ``backend``."""
    previous = use_host_backend(backend)
    try:
        yield backend
    finally:
        use_host_backend(previous)


def _is_gpu_array(array) -> bool:
    cupy = _backend_module.cupy
    return cupy is not None and isinstance(array, cupy.ndarray)


def _backend_for(array):
    if _is_gpu_array(array):
        return _CUPY_BACKEND
    if _host_backend is not None:
        return _host_backend
    raise TypeError("the CUDA kernels take CuPy arrays; for NumPy arrays call the twin in "
                    "compute.kernels.reference (implementation_for(...) picks it)")


def implementation_for(*arrays):
    """The module whose functions fit ``arrays``: this one on the GPU, ``reference`` otherwise.

    Both expose the same functions with the same arguments and results, so a layer writes
    ``impl = implementation_for(x)`` once and calls ``impl.lstm_forward(...)``.
    """
    import sys

    from gatescope.compute.kernels import reference
    if any(_is_gpu_array(a) for a in arrays) or _host_backend is not None:
        return sys.modules[__name__]
    return reference


def _launch(module: str, kernel: str, threads: int, args: tuple, like) -> None:
    """Run ``kernel`` over ``threads`` work items as a 1D grid of :data:`BLOCK_SIZE` blocks."""
    if threads == 0:
        return  # a grid of zero blocks is a launch error on the GPU
    grid = min(math.ceil(threads / BLOCK_SIZE), MAX_BLOCKS)
    _backend_for(like).function(module, kernel)((grid,), (BLOCK_SIZE,), args)


def _empty(like, shape, dtype=numpy.float32):
    """An output buffer on ``like``'s device (the emulator fills it with NaN, so an element a
    kernel forgets to write cannot pass for a correct zero)."""
    return _backend_for(like).empty(get_array_module(like), tuple(shape), dtype)


def _f32(value) -> numpy.float32:
    return numpy.float32(value)


def _i32(value) -> numpy.int32:
    return numpy.int32(value)


def _i64(value) -> numpy.int64:
    return numpy.int64(value)


def _check(array, name: str, shape=None, dtype=numpy.float32):
    """``array`` as a C-contiguous array of ``dtype``; shape checked against ``shape``."""
    if array.dtype != dtype:
        raise TypeError(f"{name} must be {numpy.dtype(dtype).name}, not {array.dtype}")
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(array.shape)}, expected {tuple(shape)}")
    return get_array_module(array).ascontiguousarray(array)


def _output(out, like, shape, name: str, dtype=numpy.float32):
    """The buffer a kernel writes: ``out`` when the caller gives one (a C-contiguous ``dtype``
    array of ``shape``, e.g. one timestep's slice of a layer's ``(T, ...)`` buffer, so a step
    loop allocates nothing and copies nothing), else a new one on ``like``'s device."""
    if out is None:
        return _empty(like, shape, dtype)
    if out.dtype != dtype or tuple(out.shape) != tuple(shape) or not out.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {numpy.dtype(dtype).name} array of shape "
                         f"{tuple(shape)}, written in place; got {out.dtype} {tuple(out.shape)}")
    return out


def _outs(out, count: int):
    """``out`` as a tuple of ``count`` optional buffers (None: allocate them all)."""
    if out is None:
        return (None,) * count
    if len(out) != count:
        raise ValueError(f"out must be a tuple of {count} arrays (or None)")
    return tuple(out)


def _optional(array, name: str, shape, dtype=numpy.float32):
    return None if array is None else _check(array, name, shape, dtype)


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
        if value is None or value < 0:
            values.append(LEARNED)
        else:
            values.append(float(value))
    return tuple(values)


def _lstm_pins(pins, variant: str) -> tuple[numpy.float32, ...]:
    """The kernel's four pin arguments (i, f, g, o); the coupled cell has no pin of its own
    for i, which follows f."""
    values = dict(zip(LSTM_GATES[variant], pin_values(pins, LSTM_GATES[variant])))
    return tuple(_f32(values.get(gate, LEARNED)) for gate in "ifgo")


def _lstm_variant(variant: str) -> int:
    if variant not in LSTM_VARIANTS:
        raise ValueError(f"unknown LSTM variant {variant!r}; choose one of {', '.join(LSTM_VARIANTS)}")
    return LSTM_VARIANTS[variant]


# --------------------------------------------------------------------------- GEMM

def _blas_layout(x, name: str) -> tuple[str, int]:
    """How cuBLAS addresses the row-major (R, C) operand ``x`` in :meth:`CupyBackend.gemm`:
    ``("N", ld)`` when its rows are unit-stride (a C-contiguous block, or a column slice of a
    wider matrix, ld = its row stride), ``("T", ld)`` when its columns are (a transposed view
    such as ``U.T``). Anything else would need a copy, which is refused."""
    rows, cols = x.shape
    if any(s % x.itemsize or s < 0 for s in x.strides):
        raise ValueError(f"gemm: {name} has strides {x.strides} that cuBLAS cannot address")
    s0, s1 = (s // x.itemsize for s in x.strides)
    if cols <= 1 or s1 == 1:
        ld = s0 if rows > 1 else cols
        if ld < cols:
            raise ValueError(f"gemm: the rows of {name} overlap (strides {x.strides})")
        return "N", max(ld, 1)
    if rows <= 1 or s0 == 1:
        ld = s1 if cols > 1 else rows
        if ld < rows:
            raise ValueError(f"gemm: the columns of {name} overlap (strides {x.strides})")
        return "T", max(ld, 1)
    raise ValueError(f"gemm: {name} (strides {x.strides}) must be unit-stride along one axis: a "
                     "row-major block, a column slice of one, or a transposed view")


def gemm(a, b, out, accumulate: bool = False):
    """``out = a @ b``, or ``out += a @ b`` with ``accumulate`` (cuBLAS's beta = 1), as one GEMM.

    ``a`` (M, K), ``b`` (K, N), ``out`` (M, N), all float32 and 2-D. ``a`` and ``b`` may be
    transposed views (``U.T``) or column slices of a wider matrix (``d_gates[:, :2H]``);
    ``out``'s rows must be unit-stride. Nothing is copied or allocated, so a step loop can
    call it inside a CUDA graph capture. ``out`` must not overlap ``a`` or ``b``. With
    ``accumulate`` the recurrent product lands straight in the step's pre-activation (no
    separate add). Returns ``out``.
    """
    for name, array in (("a", a), ("b", b), ("out", out)):
        if array.dtype != numpy.float32 or array.ndim != 2:
            raise TypeError(f"gemm: {name} must be a 2-D float32 array, not {array.dtype} {tuple(array.shape)}")
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2 or tuple(out.shape) != (m, n):
        raise ValueError(f"gemm: shapes {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)} do not fit")
    _blas_layout(a, "a")
    _blas_layout(b, "b")
    if _blas_layout(out, "out")[0] != "N":
        raise ValueError(f"gemm: the rows of out must be unit-stride (strides {out.strides})")
    if out.size:
        _backend_for(out).gemm(a, b, out, 1.0 if accumulate else 0.0)
    return out


# --------------------------------------------------------------------------- LSTM / ConvLSTM

def lstm_forward(pre, c_prev, peephole=None, variant: str = "standard", pins=None,
                 keep_tanh_c: bool = False, out=None):
    """Gate math of one LSTM step, fused.

    Takes ``pre`` (B, G*U): the pre-activations x W + h_prev U + b, stacked ``i, f, g, o``
    (G = 4) or, for ``variant="coupled"``, ``f, g, o`` (G = 3); ``c_prev`` (B, U);
    ``peephole`` (3, U) = stacked ``w_ci, w_cf, w_co`` for ``variant="peephole"``; ``pins``
    a mapping gate letter -> constant (see :func:`pin_values`).
    Returns ``(gates, c, h, tanh_c)``: activated gates (B, G*U) in the same order, the cell
    state and hidden state (B, U), and tanh(c) (B, U) when ``keep_tanh_c`` else None.
    ``out``: optional ``(gates, c, h, tanh_c)`` buffers to write instead (``tanh_c`` None
    unless ``keep_tanh_c``); they must not overlap the inputs.
    """
    code = _lstm_variant(variant)
    batch, units = c_prev.shape
    n_gates = len(LSTM_GATES[variant])
    pre = _check(pre, "pre", (batch, n_gates * units))
    c_prev = _check(c_prev, "c_prev")
    if variant == "peephole":
        if peephole is None:
            raise ValueError("the peephole LSTM needs its peephole weights (3, U)")
        peephole = _check(peephole, "peephole", (3, units))
    else:
        peephole = None  # never read by the other variants
    out_gates, out_c, out_h, out_tanh_c = _outs(out, 4)
    gates = _output(out_gates, pre, pre.shape, "gates")
    c = _output(out_c, pre, (batch, units), "c")
    h = _output(out_h, pre, (batch, units), "h")
    tanh_c = _output(out_tanh_c, pre, (batch, units), "tanh_c") if keep_tanh_c else None
    _launch("lstm", "lstm_forward", batch * units,
            (pre, c_prev, peephole, gates, c, h, tanh_c, _i64(batch * units), _i32(units),
             _i32(code), *_lstm_pins(pins, variant)), pre)
    return gates, c, h, tanh_c


def lstm_backward(dh, dc_next, gates, c_prev, c, peephole=None, variant: str = "standard",
                  pins=None, out=None, dh_next=None):
    """Backward through the gate math of one LSTM step.

    Takes ``dh`` (B, U) = dL/dh_t from above, ``dh_next`` (B, U) = the part carried back from
    step t+1 through its recurrent GEMM (None at the last step; the kernel adds the two),
    ``dc_next`` (B, U) = dL/dC_t carried back from step t+1 (None at the last step), and from
    the forward ``gates`` (B, G*U), ``c_prev`` and ``c`` (B, U), ``peephole`` (3, U), with the
    same ``variant`` and ``pins``. Returns ``(d_pre, dc_prev)``: the gradient of the
    pre-activations (B, G*U), in gate order, zero for pinned gates, and dL/dC_{t-1} (B, U).
    The caller forms dW, dU, db and dh_prev = d_pre U^T with GEMMs; peephole weight
    gradients come from :func:`lstm_peephole_grad`. ``out``: optional ``(d_pre, dc_prev)``
    buffers to write instead.
    """
    code = _lstm_variant(variant)
    batch, units = c_prev.shape
    n_gates = len(LSTM_GATES[variant])
    dh = _check(dh, "dh", (batch, units))
    dh_next = _optional(dh_next, "dh_next", (batch, units))
    dc_next = _optional(dc_next, "dc_next", (batch, units))
    gates = _check(gates, "gates", (batch, n_gates * units))
    c_prev = _check(c_prev, "c_prev")
    c = _check(c, "c", (batch, units))
    if variant == "peephole":
        if peephole is None:
            raise ValueError("the peephole LSTM needs its peephole weights (3, U)")
        peephole = _check(peephole, "peephole", (3, units))
    else:
        peephole = None
    out_d_pre, out_dc_prev = _outs(out, 2)
    d_pre = _output(out_d_pre, dh, gates.shape, "d_pre")
    dc_prev = _output(out_dc_prev, dh, (batch, units), "dc_prev")
    _launch("lstm", "lstm_backward", batch * units,
            (dh, dh_next, dc_next, gates, c_prev, c, peephole, d_pre, dc_prev, _i64(batch * units),
             _i32(units), _i32(code), *_lstm_pins(pins, variant)), dh)
    return d_pre, dc_prev


def lstm_peephole_grad(d_pre, c_prev, c, out=None):
    """Peephole weight gradients of one step, summed over the batch, added into ``out``.

    Takes ``d_pre`` (B, 4U) from :func:`lstm_backward` (peephole variant), ``c_prev`` and
    ``c`` (B, U), and ``out`` (3, U) to accumulate into (a zeroed one is made when None).
    Returns ``out``: rows ``dw_ci += sum_b da_i C_prev``, ``dw_cf += sum_b da_f C_prev``,
    ``dw_co += sum_b da_o C``.
    """
    batch, units = c_prev.shape
    d_pre = _check(d_pre, "d_pre", (batch, 4 * units))
    c_prev = _check(c_prev, "c_prev")
    c = _check(c, "c", (batch, units))
    if out is None:
        out = get_array_module(d_pre).zeros((3, units), dtype=numpy.float32)
    elif out.dtype != numpy.float32 or out.shape != (3, units) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {(3, units)}")
    _launch("lstm", "lstm_peephole_grad", 3 * units,
            (d_pre, c_prev, c, out, _i32(batch), _i32(units)), d_pre)
    return out


def _flat_maps(array, name: str):
    """(B, K, H, W) maps as the (B, K*H*W) matrix the LSTM kernels address (a view)."""
    if array.ndim != 4:
        raise ValueError(f"{name} must be (B, channels, H, W), not {tuple(array.shape)}")
    return array.reshape(array.shape[0], -1)


def convlstm_forward(pre, c_prev, peephole, variant: str = "peephole", pins=None,
                     keep_tanh_c: bool = False):
    """Gate math of one ConvLSTM step: the LSTM kernel over feature maps.

    Takes ``pre`` (B, G*F, H, W): the two convolutions plus bias, channel blocks stacked
    ``i, f, g, o`` (each F channels); ``c_prev`` (B, F, H, W); ``peephole`` (3, F, H, W) =
    per-channel-per-pixel ``w_ci, w_cf, w_co`` (None unless ``variant="peephole"``).
    Returns ``(gates (B, G*F, H, W), c, h (B, F, H, W), tanh_c or None)``. Unit u of the
    kernel is (f, y, x) flattened, so U = F*H*W and the memory layout is unchanged.
    """
    batch, channels, height, width = c_prev.shape
    flat_peephole = None if peephole is None else peephole.reshape(3, -1)
    gates, c, h, tanh_c = lstm_forward(_flat_maps(pre, "pre"), _flat_maps(c_prev, "c_prev"),
                                       flat_peephole, variant, pins, keep_tanh_c)
    maps = (batch, channels, height, width)
    return (gates.reshape(pre.shape), c.reshape(maps), h.reshape(maps),
            None if tanh_c is None else tanh_c.reshape(maps))


def convlstm_backward(dh, dc_next, gates, c_prev, c, peephole, variant: str = "peephole",
                      pins=None):
    """Backward of :func:`convlstm_forward`: ``(d_pre (B, G*F, H, W), dc_prev (B, F, H, W))``.

    Arguments as :func:`lstm_backward`, with maps instead of matrices.
    """
    flat_peephole = None if peephole is None else peephole.reshape(3, -1)
    d_pre, dc_prev = lstm_backward(
        _flat_maps(dh, "dh"), None if dc_next is None else _flat_maps(dc_next, "dc_next"),
        _flat_maps(gates, "gates"), _flat_maps(c_prev, "c_prev"), _flat_maps(c, "c"),
        flat_peephole, variant, pins)
    return d_pre.reshape(gates.shape), dc_prev.reshape(c_prev.shape)


def convlstm_peephole_grad(d_pre, c_prev, c, out=None):
    """Peephole gradients (3, F, H, W) of one ConvLSTM step, summed over the batch, added
    into ``out`` when given. ``d_pre`` (B, 4F, H, W), ``c_prev`` and ``c`` (B, F, H, W)."""
    flat_out = None if out is None else out.reshape(3, -1)
    flat = lstm_peephole_grad(_flat_maps(d_pre, "d_pre"), _flat_maps(c_prev, "c_prev"),
                              _flat_maps(c, "c"), flat_out)
    return flat.reshape((3,) + tuple(c_prev.shape[1:]))


# --------------------------------------------------------------------------- SimpleRNN

def _rnn_activation(activation: str) -> int:
    if activation not in RNN_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(RNN_ACTIVATIONS)}")
    return RNN_ACTIVATIONS[activation]


def simple_rnn_forward(pre, activation: str = "tanh", out=None):
    """h_t = act(pre) for one SimpleRNN step; ``pre`` (B, H) = x W + h_prev U + b. Returns h
    (B, H), written into ``out`` when given."""
    code = _rnn_activation(activation)
    pre = _check(pre, "pre")
    h = _output(out, pre, pre.shape, "h")
    _launch("rnn", "simple_rnn_forward", pre.size, (pre, h, _i64(pre.size), _i32(code)), pre)
    return h


def simple_rnn_backward(dh, h, activation: str = "tanh", out=None, dh_next=None):
    """d_pre = (dh + dh_next) * act'(pre), the slope read off the output ``h``; all (B, H).
    ``dh`` comes from above, ``dh_next`` (None: zero) from step t+1's recurrent GEMM. Returns
    d_pre, written into ``out`` when given."""
    code = _rnn_activation(activation)
    h = _check(h, "h")
    dh = _check(dh, "dh", h.shape)
    dh_next = _optional(dh_next, "dh_next", h.shape)
    d_pre = _output(out, dh, h.shape, "d_pre")
    _launch("rnn", "simple_rnn_backward", h.size, (dh, dh_next, h, d_pre, _i64(h.size), _i32(code)), dh)
    return d_pre


# --------------------------------------------------------------------------- GRU

def _gru_pins(pins, gates: str):
    values = dict(zip("rzn", pin_values(pins, "rzn")))
    return tuple(_f32(values[g]) for g in gates)


def gru_pytorch_forward(x_gates, h_gates, h_prev, pins=None, out=None, b_hn=None):
    """One GRU step in PyTorch's form: n = tanh(xn + r * (hn + b_hn)).

    Takes ``x_gates`` (B, 3H) = x W + b and ``h_gates`` (B, 3H) = h_prev U (the GEMM's output
    as it is), both stacked ``r, z, n``; ``h_prev`` (B, H); ``b_hn`` (H,) the recurrent
    candidate bias, added inside the kernel (None: zero). Returns ``(gates, h)``: activated
    ``r, z, n`` (B, 3H) and h = (1 - z) * h_prev + z * n (B, H). ``out``: optional
    ``(gates, h)`` buffers to write instead.
    """
    batch, units = h_prev.shape
    x_gates = _check(x_gates, "x_gates", (batch, 3 * units))
    h_gates = _check(h_gates, "h_gates", (batch, 3 * units))
    b_hn = _optional(b_hn, "b_hn", (units,))
    h_prev = _check(h_prev, "h_prev")
    out_gates, out_h = _outs(out, 2)
    gates = _output(out_gates, x_gates, x_gates.shape, "gates")
    h = _output(out_h, x_gates, (batch, units), "h")
    _launch("gru", "gru_pytorch_forward", batch * units,
            (x_gates, h_gates, b_hn, h_prev, gates, h, _i64(batch * units), _i32(units),
             *_gru_pins(pins, "rzn")), x_gates)
    return gates, h


def gru_pytorch_backward(dh, gates, h_prev, h_gates, pins=None, out=None, dh_next=None,
                         b_hn=None):
    """Backward of :func:`gru_pytorch_forward`.

    Takes ``dh`` (B, H) from above and ``dh_next`` (B, H) carried from step t+1 (None: zero;
    the kernel adds the two), the forward's ``gates`` (B, 3H), ``h_prev`` (B, H), ``h_gates``
    (B, 3H) and ``b_hn`` (H,) or None. Returns ``(d_x_gates, d_h_gates, dh_prev)``: gradients
    of both pre-activation inputs (B, 3H) (the n block of ``d_h_gates`` is also the gradient
    of ``b_hn``) and the direct part dh * (1 - z) of dL/dh_prev (B, H); the caller adds
    d_h_gates U^T. ``out``: optional ``(d_x_gates, d_h_gates, dh_prev)`` buffers.
    """
    batch, units = h_prev.shape
    dh = _check(dh, "dh", (batch, units))
    dh_next = _optional(dh_next, "dh_next", (batch, units))
    b_hn = _optional(b_hn, "b_hn", (units,))
    gates = _check(gates, "gates", (batch, 3 * units))
    h_prev = _check(h_prev, "h_prev")
    h_gates = _check(h_gates, "h_gates", (batch, 3 * units))
    out_dx, out_dh_gates, out_dh_prev = _outs(out, 3)
    d_x_gates = _output(out_dx, dh, gates.shape, "d_x_gates")
    d_h_gates = _output(out_dh_gates, dh, gates.shape, "d_h_gates")
    dh_prev = _output(out_dh_prev, dh, (batch, units), "dh_prev")
    _launch("gru", "gru_pytorch_backward", batch * units,
            (dh, dh_next, gates, h_prev, h_gates, b_hn, d_x_gates, d_h_gates, dh_prev, _i64(batch * units),
             _i32(units), *_gru_pins(pins, "rzn")), dh)
    return d_x_gates, d_h_gates, dh_prev


def gru_cho_forward_rz(x_gates, h_rz, h_prev, pins=None, out=None):
    """Cho-form GRU step, part 1 (before the GEMM with U_n).

    Takes ``x_gates`` (B, 3H) = x W + b stacked ``r, z, n``, ``h_rz`` (B, 2H) = h_prev U_rz,
    ``h_prev`` (B, H). Returns ``(gates, r_h_prev)``: ``gates`` (B, 3H) with its r and z
    blocks filled (the n block is filled by :func:`gru_cho_forward_n`), and r * h_prev (B, H),
    which the caller multiplies by U_n. ``out``: optional ``(gates, r_h_prev)`` buffers.
    """
    batch, units = h_prev.shape
    x_gates = _check(x_gates, "x_gates", (batch, 3 * units))
    h_rz = _check(h_rz, "h_rz", (batch, 2 * units))
    h_prev = _check(h_prev, "h_prev")
    out_gates, out_r_h_prev = _outs(out, 2)
    gates = _output(out_gates, x_gates, x_gates.shape, "gates")
    r_h_prev = _output(out_r_h_prev, x_gates, (batch, units), "r_h_prev")
    _launch("gru", "gru_cho_forward_rz", batch * units,
            (x_gates, h_rz, h_prev, gates, r_h_prev, _i64(batch * units), _i32(units),
             *_gru_pins(pins, "rz")), x_gates)
    return gates, r_h_prev


def gru_cho_forward_n(x_gates, h_n, h_prev, gates, pins=None, out=None):
    """Cho-form GRU step, part 2: n = tanh(xn + h_n), h = (1 - z) * h_prev + z * n.

    Takes ``x_gates`` (B, 3H), ``h_n`` (B, H) = (r * h_prev) U_n, ``h_prev`` (B, H) and the
    ``gates`` from part 1, whose n block is written in place. Returns ``(gates, h)``; ``h``
    is written into ``out`` when given.
    """
    batch, units = h_prev.shape
    x_gates = _check(x_gates, "x_gates", (batch, 3 * units))
    h_n = _check(h_n, "h_n", (batch, units))
    h_prev = _check(h_prev, "h_prev")
    if gates.dtype != numpy.float32 or gates.shape != (batch, 3 * units) or not gates.flags.c_contiguous:
        raise ValueError(f"gates must be part 1's C-contiguous float32 (B, 3H) = {(batch, 3 * units)}")
    h = _output(out, x_gates, (batch, units), "h")
    _launch("gru", "gru_cho_forward_n", batch * units,
            (x_gates, h_n, h_prev, gates, h, _i64(batch * units), _i32(units),
             *_gru_pins(pins, "n")), x_gates)
    return gates, h


def gru_cho_backward_n(dh, gates, h_prev, pins=None, out=None, dh_next=None):
    """Cho-form GRU backward, part 1.

    Takes ``dh`` (B, H) from above and ``dh_next`` (B, H) carried from step t+1 (None: zero;
    the kernel adds the two), the forward's ``gates`` (B, 3H) and ``h_prev`` (B, H). Returns
    ``(d_gates, dh_prev)``: ``d_gates`` (B, 3H) with its z and n blocks filled (the gradient
    of the x-projection and of the recurrent products alike; the r block is filled by part
    2) and dh_prev = dh * (1 - z). The caller then computes d_r_h_prev = d_gates[:, 2H:] U_n^T.
    ``out``: optional ``(d_gates, dh_prev)`` buffers to write instead.
    """
    batch, units = h_prev.shape
    dh = _check(dh, "dh", (batch, units))
    dh_next = _optional(dh_next, "dh_next", (batch, units))
    gates = _check(gates, "gates", (batch, 3 * units))
    h_prev = _check(h_prev, "h_prev")
    out_d_gates, out_dh_prev = _outs(out, 2)
    d_gates = _output(out_d_gates, dh, gates.shape, "d_gates")
    dh_prev = _output(out_dh_prev, dh, (batch, units), "dh_prev")
    _launch("gru", "gru_cho_backward_n", batch * units,
            (dh, dh_next, gates, h_prev, d_gates, dh_prev, _i64(batch * units), _i32(units),
             *_gru_pins(pins, "zn")), dh)
    return d_gates, dh_prev


def gru_cho_backward_r(d_r_h_prev, gates, h_prev, d_gates, dh_prev, pins=None):
    """Cho-form GRU backward, part 2.

    Takes ``d_r_h_prev`` (B, H) = dL/d(r * h_prev), the forward's ``gates`` and ``h_prev``,
    and part 1's ``d_gates`` and ``dh_prev``, updated in place: the r block of ``d_gates`` is
    written and ``dh_prev += d_r_h_prev * r``. Returns ``(d_gates, dh_prev)``; the caller
    finally adds d_gates[:, :2H] U_rz^T to dh_prev.
    """
    batch, units = h_prev.shape
    d_r_h_prev = _check(d_r_h_prev, "d_r_h_prev", (batch, units))
    gates = _check(gates, "gates", (batch, 3 * units))
    h_prev = _check(h_prev, "h_prev")
    for name, array, shape in (("d_gates", d_gates, (batch, 3 * units)), ("dh_prev", dh_prev, (batch, units))):
        if array.dtype != numpy.float32 or array.shape != shape or not array.flags.c_contiguous:
            raise ValueError(f"{name} must be part 1's C-contiguous float32 array of shape {shape}")
    _launch("gru", "gru_cho_backward_r", batch * units,
            (d_r_h_prev, gates, h_prev, d_gates, dh_prev, _i64(batch * units), _i32(units),
             *_gru_pins(pins, "r")), d_r_h_prev)
    return d_gates, dh_prev


# --------------------------------------------------------------------------- im2col / col2im

def _pair(stride) -> tuple[int, int]:
    if isinstance(stride, (int, numpy.integer)):
        return int(stride), int(stride)
    sy, sx = stride
    return int(sy), int(sx)


def window_output_size(n: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """floor((n + pad_before + pad_after - kernel) / stride) + 1, the lectures' formula."""
    out = (n + pad_before + pad_after - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"a window of {kernel} with stride {stride} does not fit {n} pixels "
                         f"padded by {pad_before}+{pad_after}")
    return out


def _window_geometry(x_shape, kh: int, kw: int, stride, pads):
    _, _, height, width = x_shape
    sy, sx = _pair(stride)
    top, bottom, left, right = pads
    if min(kh, kw, sy, sx) < 1 or min(pads) < 0:
        raise ValueError("kernel and stride must be positive and pads not negative")
    return (sy, sx, top, left, window_output_size(height, kh, sy, top, bottom),
            window_output_size(width, kw, sx, left, right))


def im2col(x, kh: int, kw: int, stride, pads, out=None):
    """Patches of ``x`` as columns, for a convolution as one GEMM.

    Takes ``x`` (N, C, H, W), the kernel size, ``stride`` (int or (sy, sx)) and ``pads`` =
    (top, bottom, left, right). Returns ``col`` (C, kh, kw, N, Ho, Wo) with
    ``col[c, u, v, n, i, j] = xpad[n, c, i*sy + u, j*sx + v]`` (as ``compute.ops.conv``),
    written into ``out`` when given (e.g. the top rows of a larger column matrix).
    """
    x = _check(x, "x")
    batch, channels, height, width = x.shape
    sy, sx, top, left, out_h, out_w = _window_geometry(x.shape, kh, kw, stride, pads)
    col = _output(out, x, (channels, kh, kw, batch, out_h, out_w), "col")
    _launch("conv", "im2col", col.size,
            (x, col, _i64(col.size), _i32(batch), _i32(channels), _i32(height), _i32(width),
             _i32(kh), _i32(kw), _i32(sy), _i32(sx), _i32(top), _i32(left), _i32(out_h),
             _i32(out_w)), x)
    return col


def col2im(col, x_shape, stride, pads):
    """The adjoint of :func:`im2col`: each pixel gathers the column entries taken from it.

    Takes ``col`` (C, kh, kw, N, Ho, Wo), the image shape (N, C, H, W), ``stride`` and
    ``pads`` as for :func:`im2col`. Returns ``dx`` (N, C, H, W).
    """
    col = _check(col, "col")
    channels, kh, kw, batch, out_h, out_w = col.shape
    geometry = _window_geometry(x_shape, kh, kw, stride, pads)
    if tuple(x_shape[:2]) != (batch, channels) or geometry[4:] != (out_h, out_w):
        raise ValueError(f"col {tuple(col.shape)} does not match an image {tuple(x_shape)} "
                         f"with stride {stride} and pads {pads}")
    sy, sx, top, left = geometry[:4]
    _, _, height, width = x_shape
    x = _empty(col, tuple(x_shape))
    _launch("conv", "col2im", x.size,
            (col, x, _i64(x.size), _i32(batch), _i32(channels), _i32(height), _i32(width),
             _i32(kh), _i32(kw), _i32(sy), _i32(sx), _i32(top), _i32(left), _i32(out_h),
             _i32(out_w)), col)
    return x


# --------------------------------------------------------------------------- pooling

def _pool_geometry(x_shape, kh: int, kw: int, stride, pads):
    sy, sx, top, left, out_h, out_w = _window_geometry(x_shape, kh, kw, stride, pads)
    top, bottom, left, right = pads
    if max(top, bottom) >= kh or max(left, right) >= kw:
        raise ValueError(f"pooling pads {pads} must be smaller than the window {kh}x{kw}, so "
                         "every window holds a real pixel")
    return sy, sx, top, left, out_h, out_w


def _pool_args(x_shape, geometry, kh, kw):
    _, _, height, width = x_shape
    sy, sx, top, left, out_h, out_w = geometry
    return (_i32(height), _i32(width), _i32(kh), _i32(kw), _i32(sy), _i32(sx), _i32(top),
            _i32(left), _i32(out_h), _i32(out_w))


def max_pool2d_forward(x, kh: int, kw: int, stride, pads=(0, 0, 0, 0)):
    """Max pooling. Takes ``x`` (N, C, H, W), window, ``stride`` (int or pair) and ``pads``
    (top, bottom, left, right), each pad smaller than the window. Returns ``(y, argmax)``,
    both (N, C, Ho, Wo); ``argmax`` (int32) is the winner's offset u*kw + v in its window
    (the first maximum in row-major order)."""
    x = _check(x, "x")
    geometry = _pool_geometry(x.shape, kh, kw, stride, pads)
    shape = x.shape[:2] + geometry[4:]
    y = _empty(x, shape)
    argmax = _empty(x, shape, numpy.int32)
    _launch("pool", "max_pool2d_forward", y.size,
            (x, y, argmax, _i64(y.size), *_pool_args(x.shape, geometry, kh, kw)), x)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, kh: int, kw: int, stride, pads=(0, 0, 0, 0)):
    """Backward of :func:`max_pool2d_forward`: ``dy`` and ``argmax`` (N, C, Ho, Wo) ->
    ``dx`` (N, C, H, W), each pixel summing dy of the windows it won."""
    geometry = _pool_geometry(x_shape, kh, kw, stride, pads)
    out_shape = tuple(x_shape[:2]) + geometry[4:]
    dy = _check(dy, "dy", out_shape)
    argmax = _check(argmax, "argmax", out_shape, numpy.int32)
    dx = _empty(dy, tuple(x_shape))
    _launch("pool", "max_pool2d_backward", dx.size,
            (dy, argmax, dx, _i64(dx.size), *_pool_args(x_shape, geometry, kh, kw)), dy)
    return dx


def avg_pool2d_forward(x, kh: int, kw: int, stride, pads=(0, 0, 0, 0), count_pad: bool = True):
    """Average pooling of ``x`` (N, C, H, W) -> (N, C, Ho, Wo). With ``count_pad`` the divisor
    is kh*kw (padding counts as zeros, PyTorch's default), else the window's real pixels."""
    x = _check(x, "x")
    geometry = _pool_geometry(x.shape, kh, kw, stride, pads)
    y = _empty(x, x.shape[:2] + geometry[4:])
    _launch("pool", "avg_pool2d_forward", y.size,
            (x, y, _i64(y.size), *_pool_args(x.shape, geometry, kh, kw), _i32(bool(count_pad))), x)
    return y


def avg_pool2d_backward(dy, x_shape, kh: int, kw: int, stride, pads=(0, 0, 0, 0),
                        count_pad: bool = True):
    """Backward of :func:`avg_pool2d_forward`: ``dy`` (N, C, Ho, Wo) -> ``dx`` (N, C, H, W)."""
    geometry = _pool_geometry(x_shape, kh, kw, stride, pads)
    dy = _check(dy, "dy", tuple(x_shape[:2]) + geometry[4:])
    dx = _empty(dy, tuple(x_shape))
    _launch("pool", "avg_pool2d_backward", dx.size,
            (dy, dx, _i64(dx.size), *_pool_args(x_shape, geometry, kh, kw), _i32(bool(count_pad))), dy)
    return dx


# --------------------------------------------------------------------------- loss

def _labels(labels, rows: int):
    if labels.shape != (rows,):
        raise ValueError(f"labels must be ({rows},), not {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, not {labels.dtype}")
    return get_array_module(labels).ascontiguousarray(labels, dtype=numpy.int32)


def softmax_forward(logits):
    """Softmax per row, numerically stable, computed once.

    Takes ``logits`` (N, K). Returns ``(probs, stats)``: the probabilities (N, K) and each
    row's ``(max, log sum exp(x - max))`` (N, 2), which :func:`cross_entropy_loss` turns into
    the loss by a gather.
    """
    logits = _check(logits, "logits")
    rows, classes = logits.shape
    probs = _empty(logits, logits.shape)
    stats = _empty(logits, (rows, 2))
    _launch("loss", "softmax_forward", rows,
            (logits, probs, stats, _i32(rows), _i32(classes)), logits)
    return probs, stats


def cross_entropy_loss(logits, stats, labels):
    """The cross-entropy of each row, ``log sum - (logits[label] - max)`` = -log softmax[label].

    Takes ``logits`` (N, K), ``stats`` (N, 2) from :func:`softmax_forward` and integer
    ``labels`` (N,). Returns ``loss`` (N,), NaN for a label outside [0, K).
    """
    logits = _check(logits, "logits")
    rows, classes = logits.shape
    stats = _check(stats, "stats", (rows, 2))
    labels = _labels(labels, rows)
    loss = _empty(logits, (rows,))
    _launch("loss", "cross_entropy_loss", rows,
            (logits, stats, labels, loss, _i32(rows), _i32(classes)), logits)
    return loss


def softmax_cross_entropy_forward(logits, labels):
    """Softmax and cross-entropy per row when the labels are known up front:
    :func:`softmax_forward` then :func:`cross_entropy_loss`. Returns ``(loss (N,), probs)``."""
    probs, stats = softmax_forward(logits)
    return cross_entropy_loss(logits, stats, labels), probs


def softmax_cross_entropy_backward(probs, labels, scale: float | None = None):
    """Gradient of the loss with respect to the logits: (probs - onehot(labels)) * scale.

    Takes ``probs`` (N, K) from the forward and ``labels`` (N,); ``scale`` defaults to 1/N,
    the gradient of the mean loss. Returns ``d_logits`` (N, K).
    """
    probs = _check(probs, "probs")
    rows, classes = probs.shape
    labels = _labels(labels, rows)
    d_logits = _empty(probs, probs.shape)
    _launch("loss", "softmax_cross_entropy_backward", probs.size,
            (probs, labels, d_logits, _i64(probs.size), _i32(classes),
             _f32(1.0 / rows if scale is None else scale)), probs)
    return d_logits


# --------------------------------------------------------------------------- optimizers

def _in_place(array, name: str, shape):
    if array.dtype != numpy.float32 or tuple(array.shape) != tuple(shape) or not array.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous float32 array of shape {tuple(shape)}, "
                         "updated in place")
    return array


def sgd_update(param, grad, velocity, lr: float, momentum: float = 0.0, nesterov: bool = False,
               weight_decay: float = 0.0):
    """SGD step in place, as ``compute.optim.SGD``: g' = g + wd p; v = momentum v + g';
    p -= lr v (Nesterov: p -= lr (g' + momentum v)). ``velocity`` (same shape as ``param``)
    is updated in place; pass None for plain SGD (momentum 0). Returns None."""
    _in_place(param, "param", param.shape)
    grad = _check(grad, "grad", param.shape)
    if velocity is not None:
        _in_place(velocity, "velocity", param.shape)
    elif momentum != 0:
        raise ValueError("momentum needs a velocity buffer")
    _launch("optim", "sgd_update", param.size,
            (param, grad, velocity, _i64(param.size), _f32(lr), _f32(momentum),
             _f32(weight_decay), _i32(bool(nesterov))), param)


def adam_update(param, grad, m, v, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, bias_correction1: float, bias_correction2: float,
                decoupled: bool = False):
    """Adam (``decoupled=False``, L2 weight decay) or AdamW step in place, as
    ``compute.optim.Adam``. ``m`` and ``v`` are the moment buffers (same shape as ``param``);
    ``bias_correction1`` = 1 - beta1^t and ``bias_correction2`` = 1 - beta2^t for step t.
    Returns None."""
    _in_place(param, "param", param.shape)
    grad = _check(grad, "grad", param.shape)
    _in_place(m, "m", param.shape)
    _in_place(v, "v", param.shape)
    _launch("optim", "adam_update", param.size,
            (param, grad, m, v, _i64(param.size), _f32(lr), _f32(beta1), _f32(beta2), _f32(eps),
             _f32(weight_decay), _f32(bias_correction1), _f32(bias_correction2),
             _i32(bool(decoupled))), param)
