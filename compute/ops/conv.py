"""Convolution as im2col + one GEMM, and its backward as two GEMMs + col2im.

Layout (chosen so every GEMM is one contiguous matrix product):

- ``x`` is NCHW. ``im2col`` fills ``col`` of shape ``(C, kh, kw, N, Ho, Wo)`` with kh*kw
  strided slice copies straight from ``x`` (Chainer's ``chainer/utils/conv.py``), each copying
  only the part of its window that falls inside the image: the padding is the part of a
  reused, zero-initialised buffer that no copy ever writes, so there is no padded copy of
  ``x``. Viewed as a matrix ``col`` is ``(C*kh*kw, N*Ho*Wo)`` and C-contiguous.
- The bias rides in the GEMM: ``col`` is the top of a ``(C*kh*kw + 1, N*Ho*Wo)`` matrix whose
  last row is ones, and ``W`` gains ``b`` as a last column, so ``W @ col`` adds the bias and
  ``dy @ col^T`` returns ``db`` as its last column (no separate pass over the output for either).
- Forward is ``y = W @ col`` with ``W`` viewed as ``(F, C*kh*kw)``: one GEMM whose long side
  is every output pixel of the batch, ``(F, N, Ho, Wo)``, then reordered into ``y``
  (N, F, Ho, Wo) in one copy. (A batched GEMM per sample straight into ``y`` saves the copy
  but is slower on every shape of the bench set with 2 BLAS threads: 4.33 ms against
  3.84 + 0.19 on 16x16x32->64, N=64.)
- Backward: ``dW = dy @ col.T`` and ``dcol = W.T @ dy`` (the transposes are BLAS flags, not
  copies), then ``col2im`` adds ``dcol`` back with the reverse kh*kw strided adds.

Cross-correlation, as the lectures define the layer: ``y[n, f, i, j] = b[f] +
sum_{c, u, v} W[f, c, u, v] * xpad[n, c, i*s + u, j*s + v]``.

On CuPy arrays (or with a host kernel backend installed) im2col and col2im are the
``compute.kernels`` kernels of the same layout: im2col writes straight into the top rows of
the column matrix, col2im is a gather (each pixel sums its own contributors).

Every function takes an optional ``workspace`` dict, where scratch buffers are kept between
calls of the same shape so repeated steps do not allocate (and page-fault) them again.
"""
from __future__ import annotations

from typing import Any

import numpy

from gatescope.compute import kernels
from gatescope.compute.backend import get_array_module
from gatescope.compute.ops.dispatch import kernel_path
from gatescope.compute.ops.windows import output_size


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


def _buffer(workspace: dict | None, name: str, shape: tuple[int, ...], dtype, xp, zero: bool = False):
    """A scratch array from ``workspace`` (reused when shape and dtype match) or a new one."""
    key = (name, shape, xp.dtype(dtype).str)
    if workspace is not None and key in workspace:
        return workspace[key]
    buf = xp.zeros(shape, dtype=dtype) if zero else xp.empty(shape, dtype=dtype)
    if workspace is not None:
        # One buffer per name: drop a stale one of another shape so memory does not grow.
        for stale in [k for k in workspace if k[0] == name]:
            del workspace[stale]
        workspace[key] = buf
    return buf


def _tap_range(out_len: int, in_len: int, offset: int, stride: int) -> tuple[int, int]:
    """Output indices ``[lo, hi)`` whose input index ``i*stride + offset`` lies in ``[0, in_len)``."""
    lo = max(0, -(offset // stride))                   # ceil(-offset / stride) when offset < 0
    hi = min(out_len, (in_len - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


def _im2col_into(x, col, stride: int, top: int, left: int) -> None:
    """Fills the in-image part of ``col`` (C, kh, kw, N, Ho, Wo) from ``x`` (N, C, H, W); the
    rest (where a window hangs over the padding) is left as it is, i.e. zero."""
    c, kh, kw, n, ho, wo = col.shape
    _, _, h, w = x.shape
    source = x.transpose(1, 0, 2, 3)  # channel-major, so each tap's copy is (C, N, Ho', Wo')
    for u in range(kh):
        i0, i1 = _tap_range(ho, h, u - top, stride)
        for v in range(kw):
            j0, j1 = _tap_range(wo, w, v - left, stride)
            if i0 < i1 and j0 < j1:
                ys, xs = i0 * stride + u - top, j0 * stride + v - left
                col[:, u, v, :, i0:i1, j0:j1] = source[:, :, ys:ys + stride * (i1 - i0):stride,
                                                       xs:xs + stride * (j1 - j0):stride]


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
    matrix = _buffer(workspace, name, (rows + ones_row, n * ho * wo), x.dtype, xp, zero=True)
    # The padding entries are zero from the buffer's creation and no copy writes them; only
    # another geometry with the same matrix shape (another input size) could have, so a change
    # of geometry clears the buffer.
    geometry = (tuple(x.shape), kh, kw, stride, tuple(pads))
    if workspace is not None:
        if workspace.get(name + "_geometry", geometry) != geometry:
            matrix.fill(0)
        workspace[name + "_geometry"] = geometry
    if ones_row:
        matrix[rows] = 1
    col = matrix[:rows].reshape(c, kh, kw, n, ho, wo)
    if kernel_path(x):
        kernels.im2col(x, kh, kw, stride, pads, out=col)   # writes the padding zeros itself
    else:
        _im2col_into(x, col, stride, top, left)
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
    c, kh, kw, n, ho, wo = col.shape
    _, _, h, w = x_shape
    top, bottom, left, right = pads
    padded = _buffer(workspace, "dpadded", (c, n, h + top + bottom, w + left + right), col.dtype, xp)
    # With stride 1 and an output as large as the input ('same'), tap (top, left) covers the
    # whole image exactly: it is assigned, not added, and only the padding frame is zeroed,
    # which saves a pass of zeros over the whole buffer.
    first = (top, left) if stride == 1 and (ho, wo) == (h, w) and top < kh and left < kw else None
    if first is None:
        padded.fill(0)
    else:
        padded[:, :, :top] = 0
        padded[:, :, top + h:] = 0
        padded[:, :, top:top + h, :left] = 0
        padded[:, :, top:top + h, left + w:] = 0
        padded[:, :, top:top + h, left:left + w] = col[:, top, left]
    # A strided add costs a fixed overhead per innermost run. Rows of Wo pixels are that run;
    # when they are very short (small feature maps), running over the batch innermost instead
    # is about twice as fast on NumPy (measured on 8x8 maps, N=64).
    # (CuPy ufuncs take no iteration order; its kernels run elementwise anyway.)
    batch_inner = xp is numpy and wo <= 8 < n
    for u in range(kh):
        for v in range(kw):
            if (u, v) == first:
                continue
            target = padded[:, :, u:u + stride * ho:stride, v:v + stride * wo:stride]
            if batch_inner:
                target = target.transpose(0, 2, 3, 1)
                numpy.add(target, col[:, u, v].transpose(0, 2, 3, 1), out=target, order="C")
            else:
                target += col[:, u, v]
    return xp.ascontiguousarray(padded[:, :, top:top + h, left:left + w].transpose(1, 0, 2, 3))


def conv2d_forward(x, weight, bias, stride: int, pads: tuple[int, int, int, int],
                   workspace: dict | None = None) -> tuple[Any, Any]:
    """2-D cross-correlation.

    Takes ``x`` (N, C, H, W), ``weight`` (F, C, kh, kw), ``bias`` (F,) or None, the stride and
    ``pads = (top, bottom, left, right)``. Returns ``(y, cols)``: ``y`` (N, F, Ho, Wo), a new
    array, and ``cols``, what ``conv2d_backward`` needs: the column matrix
    ``(C*kh*kw [+ 1 with a bias], N*Ho*Wo)`` whose top rows are ``im2col(x)``.
    """
    xp = get_array_module(x)
    f, c, kh, kw = weight.shape
    has_bias = bias is not None
    col, matrix = _columns(x, kh, kw, stride, pads, workspace, ones_row=has_bias)
    _, _, _, n, ho, wo = col.shape
    w_mat = weight.reshape(f, c * kh * kw)
    if has_bias:
        w_mat = xp.concatenate([w_mat, bias.reshape(f, 1).astype(w_mat.dtype, copy=False)], axis=1)
    y = xp.empty((n, f, ho, wo), dtype=x.dtype)
    product = _buffer(workspace, "product", (f, n * ho * wo), x.dtype, xp)
    xp.matmul(w_mat, matrix, out=product)
    y[...] = product.reshape(f, n, ho, wo).transpose(1, 0, 2, 3)   # (F, N, ..) -> (N, F, ..)
    return y, matrix


def conv2d_backward(grad_y, cols, weight, x_shape: tuple[int, int, int, int], stride: int,
                    pads: tuple[int, int, int, int], need_input_grad: bool = True,
                    workspace: dict | None = None) -> tuple[Any, Any, Any]:
    """Gradients of ``conv2d_forward``.

    Takes ``grad_y`` = dL/dy (N, F, Ho, Wo), the ``cols`` that forward returned, ``weight``
    (F, C, kh, kw) and the input shape (N, C, H, W). Returns ``(dx, dW, db)``: dL/dx
    (N, C, H, W) (None unless ``need_input_grad``), dL/dW (F, C, kh, kw) and dL/db (F,)
    (None when forward had no bias).
    """
    xp = get_array_module(grad_y)
    f, c, kh, kw = weight.shape
    n, _, ho, wo = grad_y.shape
    rows = c * kh * kw
    dy = _buffer(workspace, "grad_rows", (f, n, ho, wo), grad_y.dtype, xp)
    dy[...] = grad_y.transpose(1, 0, 2, 3)
    dy = dy.reshape(f, n * ho * wo)
    grad_all = dy @ cols.T                              # [dW | db] = dy [col; 1]^T, one GEMM
    grad_weight = grad_all[:, :rows].reshape(weight.shape)
    grad_bias = grad_all[:, rows] if cols.shape[0] > rows else None
    if not need_input_grad:
        return None, grad_weight, grad_bias
    if _correlate_input_grad(xp, f, c, kh, kw, stride, pads, x_shape, (ho, wo)):
        return _input_grad_by_correlation(grad_y, weight, x_shape, pads, workspace), grad_weight, grad_bias
    dcol = _buffer(workspace, "dcol", (c, kh, kw, n, ho, wo), grad_y.dtype, xp)
    xp.matmul(weight.reshape(f, rows).T, dy, out=dcol.reshape(rows, n * ho * wo))  # dcol = W^T dy
    return col2im(dcol, x_shape, stride, pads, workspace), grad_weight, grad_bias


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
    product = _buffer(workspace, "dx_rows", (c, n * h * w), grad_y.dtype, numpy)
    numpy.matmul(flipped, matrix, out=product)
    dx[...] = product.reshape(c, n, h, w).transpose(1, 0, 2, 3)
    return dx
