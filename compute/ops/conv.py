"""Conv2D's math: Winograd F(4x4, 3x3) where it is faster, im2col + one GEMM everywhere else.

Cross-correlation, as the lectures define the layer: ``y[n, f, i, j] = b[f] +
sum_{c, u, v} W[f, c, u, v] * xpad[n, c, i*s + u, j*s + v]``.

Which algorithm runs is :func:`algorithm`, a rule on the shape (see there for the
measurements behind it); ``conv2d_forward`` returns what its ``conv2d_backward`` needs, and
backward runs the same algorithm.

im2col + GEMM (layout chosen so every GEMM is one contiguous matrix product):

- ``x`` is NCHW. ``im2col`` fills ``col`` of shape ``(C, kh, kw, N, Ho, Wo)`` from ``x``,
  writing only the part of each window that falls inside the image: the padding is the part
  of a reused, zero-initialised buffer that no copy ever writes, so there is no padded copy of
  ``x``. Viewed as a matrix ``col`` is ``(C*kh*kw, N*Ho*Wo)`` and C-contiguous.
- The bias rides in the GEMM: ``col`` is the top of a ``(C*kh*kw + 1, N*Ho*Wo)`` matrix whose
  last row is ones, and ``W`` gains ``b`` as a last column, so ``W @ col`` adds the bias and
  ``dy @ col^T`` returns ``db`` as its last column (no separate pass over the output for either).
- Forward is ``y = W @ col`` with ``W`` viewed as ``(F, C*kh*kw)``: on small maps one GEMM
  whose long side is every output pixel of the batch, ``(F, N, Ho, Wo)``, then reordered into
  ``y`` (N, F, Ho, Wo) in one copy; on maps of 16x16 and more one GEMM per image straight into
  ``y`` (:func:`_per_image` has the measurements).
- Backward: ``dW = dy @ col.T`` and ``dcol = W.T @ dy`` (the transposes are BLAS flags, not
  copies; per image, the same way, on larger maps), then ``col2im`` adds ``dcol`` back onto
  the pixels.

On the CPU the copies (im2col, col2im, the reorders) are the NumPy copies of
``compute.ops.im2col``, run on every core. On CuPy arrays (or with a host
kernel backend installed) im2col and col2im are the ``compute.kernels`` kernels of the same
layout: im2col writes straight into the top rows of the column matrix, col2im is a gather
(each pixel sums its own contributors).

Every function takes an optional ``workspace`` dict, where scratch buffers are kept between
calls of the same shape so repeated steps do not allocate (and page-fault) them again.
"""
from __future__ import annotations

from typing import Any

import numpy

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.ops import winograd
from gatescope.compute.ops.dispatch import kernel_path
from gatescope.compute.ops.im2col import col2im_into, im2col_into, swap_leading, tap_ranges
from gatescope.compute.ops.threads import run
from gatescope.compute.ops.windows import output_size
from gatescope.compute.ops.workspace import buffer, zero_bordered

IM2COL = "im2col"
WINOGRAD = "winograd F(4x4,3x3)"
ALGORITHMS = (IM2COL, WINOGRAD)


def output_size_formula(n: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> str:
    """``output_size`` written out as the lectures write it: ``floor((8 + 2x1 - 3) / 1) + 1 = 8``
    (padding ``p`` on both sides), ``floor((8 + 0 + 1 - 2) / 2) + 1 = 4`` when 'same' padding
    puts the odd zero after."""
    pads = f"2x{pad_before}" if pad_before == pad_after else f"{pad_before} + {pad_after}"
    return f"floor(({n} + {pads} - {kernel}) / {stride}) + 1 = {output_size(n, kernel, stride, pad_before, pad_after)}"


def same_padding(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding ``(before, after)`` that makes the output ``ceil(n / s)`` long.

    The total ``(ceil(n/s) - 1) * s + f - n`` is split with the odd pixel after, as
    TensorFlow and Keras do.
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def _winograd_pays(channels: int, out_h: int, out_w: int) -> bool:
    """Whether Winograd F(4x4, 3x3) beats im2col + GEMM for ``channels`` input channels and
    an Ho x Wo output: the rule :func:`algorithm` applies, read off these measurements
    (forward+backward, Winograd time / im2col time, CPU time of one thread with one BLAS
    thread, on the 2-core development machine while other work loaded it):

    - 16 to 128 channels: 0.50-0.98 on 4x4 to 32x32 maps, N = 16 to 64, 1 to 128 filters;
    - 8 channels: 0.50-0.68 on 8x8 and 16x16 maps, but 1.05 on 32x32 (K=32, N=64);
    - 4 or 6 channels: 0.85-0.99 on 8x8 and 16x16, 1.5 on 32x32; 3 or fewer: 1.09-2.1;
    - 2x2 and 1x1 maps: 1.3-1.7 and 4.5 (a 4x4 tile computes 16 outputs for 4 or 1).
    """
    if min(out_h, out_w) < WINOGRAD_MIN_SIDE:
        return False
    return channels >= 16 or (channels >= WINOGRAD_MIN_CHANNELS and out_h * out_w <= 16 * 16)


WINOGRAD_MIN_CHANNELS = 8
WINOGRAD_MIN_SIDE = 4


def algorithm(x, weight_shape, stride: int, pads: tuple[int, int, int, int]) -> str:
    """Which algorithm ``conv2d_forward`` runs for ``x`` (N, C, H, W) and filters
    ``weight_shape`` (F, C, kh, kw): :data:`WINOGRAD` or :data:`IM2COL`.

    Winograd needs a 3x3 kernel, stride 1, NumPy arrays and numba (its twins are the reference,
    not a fast path); it runs where the rule :func:`_winograd_pays` says it is faster. The
    choice is a rule on the shape, not a timing taken at run time, so a run is reproducible
    from its seed: the two algorithms round differently.
    """
    _, c, kh, kw = weight_shape
    if (kh, kw) != (3, 3) or stride != 1 or get_array_module(x) is not numpy or kernel_path(x):
        return IM2COL
    if not winograd.available():
        return IM2COL
    _, _, h, w = x.shape
    top, bottom, left, right = pads
    out_h, out_w = h + top + bottom - 2, w + left + right - 2
    return WINOGRAD if _winograd_pays(c, out_h, out_w) else IM2COL


def im2col(x, kh: int, kw: int, stride: int, pads: tuple[int, int, int, int],
           workspace: dict | None = None):
    """Patches of ``x`` as columns.

    Takes ``x`` (N, C, H, W) (any strides), the kernel size, the stride and
    ``pads = (top, bottom, left, right)``. Returns ``col`` (C, kh, kw, N, Ho, Wo) where
    ``col[c, u, v, n, i, j] = xpad[n, c, i*s + u, j*s + v]``. With a ``workspace`` the returned
    array is a reused buffer, valid until the next call with the same workspace.
    """
    return _columns(x, kh, kw, stride, pads, workspace, ones_row=False)[0]


def _columns(x, kh: int, kw: int, stride: int, pads, workspace, ones_row: bool, name: str = "col"):
    """``(col, matrix)``: ``col`` (C, kh, kw, N, Ho, Wo) as :func:`im2col`, and the matrix
    ``(C*kh*kw [+ 1], N*Ho*Wo)`` it is the top of (with a last row of ones if ``ones_row``),
    kept in ``workspace`` under ``name``."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    ho = output_size(h, kh, stride, top, bottom)
    wo = output_size(w, kw, stride, left, right)
    rows = c * kh * kw
    # The padding entries are zero from the buffer's creation and no copy writes them.
    matrix = zero_bordered(workspace, name, (rows + ones_row, n * ho * wo), x.dtype, xp,
                           (tuple(x.shape), kh, kw, stride, tuple(pads)))
    if ones_row:
        matrix[rows] = 1
    col = matrix[:rows].reshape(c, kh, kw, n, ho, wo)
    if kernel_path(x):
        kernels.im2col(x, kh, kw, stride, pads, out=col)   # writes the padding zeros itself
    else:
        run(im2col_into, xp, n, col.size, x, stride, top, left, tap_ranges(kh, ho, h, top, stride),
             tap_ranges(kw, wo, w, left, stride), col)
    return col, matrix


def col2im(col, x_shape: tuple[int, int, int, int], stride: int, pads: tuple[int, int, int, int],
           workspace: dict | None = None):
    """The adjoint of ``im2col``: adds every column entry back onto the pixel it came from.

    Takes ``col`` (C, kh, kw, N, Ho, Wo), the input shape (N, C, H, W), stride and pads.
    Returns a new C-contiguous ``dx`` (N, C, H, W).
    """
    if kernel_path(col):
        return kernels.col2im(col, tuple(x_shape), stride, pads)
    xp = get_array_module(col)
    c, _, _, n, _, _ = col.shape
    _, _, h, w = x_shape
    top, bottom, left, right = pads
    padded = buffer(workspace, "dpadded", (c, n, h + top + bottom, w + left + right), col.dtype, xp)
    dx = xp.empty(tuple(x_shape), dtype=col.dtype)
    run(col2im_into, xp, n, col.size, col, stride, pads, padded, dx)
    return dx


def _reorder(source, out, xp) -> None:
    """``out[b, a] = source[a, b]`` over the two leading axes of (A, B, ...) arrays."""
    a, b = source.shape[:2]
    run(swap_leading, xp, b, source.size, source.reshape(a, b, -1), out.reshape(b, a, -1))


def conv2d_forward(x, weight, bias, stride: int, pads: tuple[int, int, int, int],
                   workspace: dict | None = None, method: str | None = None) -> tuple[Any, Any]:
    """2-D cross-correlation.

    Takes ``x`` (N, C, H, W), ``weight`` (F, C, kh, kw), ``bias`` (F,) or None, the stride and
    ``pads = (top, bottom, left, right)``; ``method`` forces one of :data:`ALGORITHMS` (default:
    :func:`algorithm`'s choice). Returns ``(y, saved)``: ``y`` (N, F, Ho, Wo), a new array, and
    ``saved``, what ``conv2d_backward`` needs (for im2col, the column matrix ``(C*kh*kw [+ 1
    with a bias], N*Ho*Wo)`` whose top rows are ``im2col(x)``; for Winograd its tiles).
    """
    method = method or algorithm(x, weight.shape, stride, pads)
    if method == WINOGRAD:
        return winograd.forward(x, weight, bias, pads, workspace)
    xp = get_array_module(x)
    f, c, kh, kw = weight.shape
    has_bias = bias is not None
    col, matrix = _columns(x, kh, kw, stride, pads, workspace, ones_row=has_bias)
    _, _, _, n, ho, wo = col.shape
    w_mat = weight.reshape(f, c * kh * kw)
    if has_bias:
        w_mat = xp.concatenate([w_mat, bias.reshape(f, 1).astype(w_mat.dtype, copy=False)], axis=1)
    y = xp.empty((n, f, ho, wo), dtype=x.dtype)
    if _per_image(xp, ho, wo):
        xp.matmul(w_mat, _image_blocks(matrix, n), out=y.reshape(n, f, ho * wo))
    else:
        product = buffer(workspace, "product", (f, n * ho * wo), x.dtype, xp)
        xp.matmul(w_mat, matrix, out=product)
        _reorder(product.reshape(f, n, ho * wo), y, xp)          # (F, N, ..) -> (N, F, ..)
    return y, matrix


def conv2d_backward(grad_y, saved, weight, x_shape: tuple[int, int, int, int], stride: int,
                    pads: tuple[int, int, int, int], need_input_grad: bool = True,
                    workspace: dict | None = None) -> tuple[Any, Any, Any]:
    """Gradients of ``conv2d_forward``, by the algorithm it ran.

    Takes ``grad_y`` = dL/dy (N, F, Ho, Wo), the ``saved`` that forward returned, ``weight``
    (F, C, kh, kw) and the input shape (N, C, H, W). Returns ``(dx, dW, db)``: dL/dx
    (N, C, H, W) (None unless ``need_input_grad``), dL/dW (F, C, kh, kw) and dL/db (F,)
    (None when forward had no bias).
    """
    if isinstance(saved, winograd.Saved):
        return winograd.backward(grad_y, saved, need_input_grad, workspace)
    xp = get_array_module(grad_y)
    f, c, kh, kw = weight.shape
    n, _, ho, wo = grad_y.shape
    rows = c * kh * kw
    per_image = _per_image(xp, ho, wo)
    if per_image:
        dy = grad_y.reshape(n, f, ho * wo)
        grad_all = xp.matmul(dy, _image_blocks(saved, n).transpose(0, 2, 1)).sum(axis=0)
    else:
        dy = buffer(workspace, "grad_rows", (f, n, ho, wo), grad_y.dtype, xp)
        _reorder(grad_y, dy, xp)
        dy = dy.reshape(f, n * ho * wo)
        grad_all = dy @ saved.T                         # [dW | db] = dy [col; 1]^T, one GEMM
    grad_weight = grad_all[:, :rows].reshape(weight.shape)
    grad_bias = grad_all[:, rows] if saved.shape[0] > rows else None
    if not need_input_grad:
        return None, grad_weight, grad_bias
    if _correlate_input_grad(xp, f, c, kh, kw, stride, pads, x_shape, (ho, wo)):
        return _input_grad_by_correlation(grad_y, weight, x_shape, pads, workspace), grad_weight, grad_bias
    dcol = buffer(workspace, "dcol", (c, kh, kw, n, ho, wo), grad_y.dtype, xp)
    dcol_rows = dcol.reshape(rows, n * ho * wo)
    xp.matmul(weight.reshape(f, rows).T, dy, out=_image_blocks(dcol_rows, n) if per_image else dcol_rows)
    return col2im(dcol, x_shape, stride, pads, workspace), grad_weight, grad_bias


def _per_image(xp, out_h: int, out_w: int) -> bool:
    """Whether im2col's products run per image, ``W @ col[:, image]`` straight into that image's
    ``y`` (and ``dy[image]`` back), instead of one product over the batch and a reorder of its
    (F, N, Ho*Wo) rows. Per image measured faster (CPU time, one BLAS thread, the loaded
    development machine) on maps of 16x16 and more with 1 to 16 channels: forward 0.33-0.97 of the time, dW 0.76-0.92 (1.04-1.30 with 32
    channels), dx's product 0.39-1.03 (32x32x3->32, N=64: 4.4 ms against 8.4 forward); on
    smaller maps the per-image products get too narrow for BLAS.
    (With 2 BLAS threads, the per-image forward measured 1.07x slower on 16x16x32->64, now a
    Winograd shape: 4.33 ms against 3.84 + 0.19.)"""
    return xp is numpy and out_h * out_w >= 16 * 16


def _image_blocks(matrix, n: int):
    """The (N, rows, Ho*Wo) view of a (rows, N*Ho*Wo) column matrix: one matrix per image."""
    rows, total = matrix.shape
    item = matrix.itemsize
    return numpy.lib.stride_tricks.as_strided(matrix, (n, rows, total // n),
                                              (total // n * item, total * item, item), writeable=True)


def _correlate_input_grad(xp, filters, channels, kh, kw, stride, pads, x_shape, out_hw) -> bool:
    """Whether dL/dx is cheaper as a correlation of dy with the flipped kernel (NumPy, stride
    1, no more filters than channels) than as ``W^T dy`` + col2im: both GEMMs cost the same,
    but an im2col of dy (F*kh*kw rows) is a plain copy where col2im (C*kh*kw rows) adds
    kh*kw times (measured on 8x8x64->64 3x3, N=64: 1.7 ms against 3.8 ms)."""
    top, bottom, left, right = pads
    return (xp is numpy and stride == 1 and filters <= channels
            and max(top, bottom) < kh and max(left, right) < kw
            and tuple(out_hw) == (x_shape[2] + top + bottom - kh + 1, x_shape[3] + left + right - kw + 1))


def _input_grad_by_correlation(grad_y, weight, x_shape, pads, workspace):
    """dL/dx for stride 1: ``dx[n, c] = sum_f dy[n, f] (*) flip(W[f, c])``, i.e. im2col of dy
    padded by ``k - 1 - pad`` on each side, times the flipped kernel (C, F*kh*kw)."""
    f, c, kh, kw = weight.shape
    n = grad_y.shape[0]
    _, _, h, w = x_shape
    top, bottom, left, right = pads
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, f * kh * kw)
    dy_pads = (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right)
    _, matrix = _columns(grad_y, kh, kw, 1, dy_pads, workspace, ones_row=False, name="dycol")
    dx = numpy.empty((n, c, h, w), dtype=grad_y.dtype)
    product = buffer(workspace, "dx_rows", (c, n * h * w), grad_y.dtype, numpy)
    numpy.matmul(flipped, matrix, out=product)
    _reorder(product.reshape(c, n, h * w), dx, numpy)
    return dx
