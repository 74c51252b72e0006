"""The one float32 GEMM the step loops call: cuBLAS on the device, NumPy's BLAS on the CPU."""
from __future__ import annotations

import numpy

from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import runtime


def blas_layout(x, name: str) -> tuple[str, int]:
    """How cuBLAS addresses the row-major (R, C) operand ``x`` in :func:`cublas_gemm`:
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

    ``a`` (M, K), ``b`` (K, N), ``out`` (M, N), 2-D arrays. On the device (float32): ``a`` and
    ``b`` may be transposed views (``U.T``) or column slices of a wider matrix
    (``d_gates[:, :2H]``), ``out``'s rows must be unit-stride, and nothing is copied or
    allocated, so a step loop can call it inside a CUDA graph capture. On the CPU it is
    NumPy's ``matmul`` (with ``accumulate``, into a temporary that is then added), any float
    dtype. ``out`` must not overlap ``a`` or ``b``. Returns ``out``.
    """
    if not runtime.on_device(out):
        if a.shape[1] != b.shape[0] or out.shape != (a.shape[0], b.shape[1]):
            raise ValueError(f"gemm: shapes {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)} do not fit")
        if accumulate:
            out += a @ b
        else:
            get_array_module(out).matmul(a, b, out=out)
        return out
    for name, array in (("a", a), ("b", b), ("out", out)):
        if array.ndim != 2 or array.dtype.kind != "f" or array.dtype != out.dtype:
            raise TypeError(f"gemm: {name} must be a 2-D array of out's float dtype, not "
                            f"{array.dtype} {tuple(array.shape)}")
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2 or tuple(out.shape) != (m, n):
        raise ValueError(f"gemm: shapes {tuple(a.shape)} @ {tuple(b.shape)} -> {tuple(out.shape)} do not fit")
    blas_layout(a, "a")
    blas_layout(b, "b")
    if blas_layout(out, "out")[0] != "N":
        raise ValueError(f"gemm: the rows of out must be unit-stride (strides {out.strides})")
    if out.size:
        runtime.backend_for(out).gemm(a, b, out, 1.0 if accumulate else 0.0)
    return out


def cublas_gemm(a, b, out, beta: float) -> None:
    """``out = a @ b + beta * out`` as one ``cublasSgemm`` on the current stream, straight on
    the operands' memory (no copy, so nothing is allocated: safe inside a graph capture).

    cuBLAS is column-major; a row-major (M, N) ``out`` with row stride ldc is the column-major
    ``out^T`` (N, M), so the call computes ``out^T = b^T a^T``. The call and the pointer-mode
    handling follow ``cupy.cublas.gemm``; unlike it, operands with a leading dimension (a
    column slice of a wider matrix) are passed as they are. Its argument translation is tested
    against a column-major stand-in for cuBLAS (tests/compute/test_gpu_graphs.py).
    """
    from cupy.cuda import device
    from cupy_backends.cuda.libs import cublas
    op_a, lda = blas_layout(a, "a")
    op_b, ldb = blas_layout(b, "b")
    _, ldc = blas_layout(out, "out")
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
