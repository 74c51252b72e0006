"""Convolution as im2col + one GEMM, and its backward as two GEMMs + col2im.

Layout (chosen so every GEMM is one contiguous matrix product):

- ``x`` is NCHW. ``im2col`` copies it once into a zero-padded, channel-major buffer
  ``(C, N, Hp, Wp)``, then fills ``col`` of shape ``(C, kh, kw, N, Ho, Wo)`` with kh*kw strided
  slice copies (Chainer's ``chainer/utils/conv.py``). Viewed as a matrix ``col`` is
  ``(C*kh*kw, N*Ho*Wo)`` and C-contiguous.
- Forward is ``y = W @ col`` with ``W`` viewed as ``(F, C*kh*kw)``: one GEMM whose long side is
  every output pixel of the whole batch, giving ``(F, N, Ho, Wo)``.
- Backward: ``dW = dy @ col.T`` and ``dcol = W.T @ dy`` (the transposes are BLAS flags, not
  copies), then ``col2im`` adds ``dcol`` back with the reverse kh*kw strided adds.

Cross-correlation, as the lectures define the layer: ``y[n, f, i, j] = b[f] +
sum_{c, u, v} W[f, c, u, v] * xpad[n, c, i*s + u, j*s + v]``.

Every function takes an optional ``workspace`` dict, where scratch buffers are kept between
calls of the same shape so repeated steps do not allocate (and page-fault) them again.
"""
from __future__ import annotations

from typing import Any

import numpy

from compute.backend import get_array_module


def output_size(n: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """Output length ``floor((n + p_before + p_after - f) / s) + 1`` (the lectures' formula)."""
    return (n + pad_before + pad_after - kernel) // stride + 1


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


def im2col(x, kh: int, kw: int, stride: int, pads: tuple[int, int, int, int],
           workspace: dict | None = None):
    """Patches of ``x`` as columns.

    Takes ``x`` (N, C, H, W) (any strides), the kernel size, the stride and
    ``pads = (top, bottom, left, right)``. Returns ``col`` (C, kh, kw, N, Ho, Wo) where
    ``col[c, u, v, n, i, j] = xpad[n, c, i*s + u, j*s + v]``. With a ``workspace`` the returned
    array is a reused buffer, valid until the next call with the same workspace.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    ho = output_size(h, kh, stride, top, bottom)
    wo = output_size(w, kw, stride, left, right)
    source = x.transpose(1, 0, 2, 3)  # channel-major, so each slice copy below is (C, N, Ho, Wo)
    if any(pads):
        # The border of a reused buffer stays zero: only the interior is ever written.
        padded = _buffer(workspace, "padded", (c, n, h + top + bottom, w + left + right), x.dtype, xp, zero=True)
        padded[:, :, top:top + h, left:left + w] = source
        source = padded
    col = _buffer(workspace, "col", (c, kh, kw, n, ho, wo), x.dtype, xp)
    for u in range(kh):
        for v in range(kw):
            col[:, u, v] = source[:, :, u:u + stride * ho:stride, v:v + stride * wo:stride]
    return col


def col2im(col, x_shape: tuple[int, int, int, int], stride: int, pads: tuple[int, int, int, int],
           workspace: dict | None = None):
    """The adjoint of ``im2col``: adds every column entry back onto the pixel it came from.

    Takes ``col`` (C, kh, kw, N, Ho, Wo), the input shape (N, C, H, W), stride and pads.
    Returns a new C-contiguous ``dx`` (N, C, H, W).
    """
    xp = get_array_module(col)
    c, kh, kw, n, ho, wo = col.shape
    _, _, h, w = x_shape
    top, bottom, left, right = pads
    padded = _buffer(workspace, "dpadded", (c, n, h + top + bottom, w + left + right), col.dtype, xp)
    padded.fill(0)
    # A strided add costs a fixed overhead per innermost run. Rows of Wo pixels are that run;
    # when they are very short (small feature maps), running over the batch innermost instead
    # is about twice as fast on NumPy (measured on 8x8 maps, N=64).
    # (CuPy ufuncs take no iteration order; its kernels run elementwise anyway.)
    batch_inner = xp is numpy and wo <= 8 < n
    for u in range(kh):
        for v in range(kw):
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
    ``pads = (top, bottom, left, right)``. Returns ``(y, col)``: ``y`` (N, F, Ho, Wo), a new
    array, and ``col`` (C, kh, kw, N, Ho, Wo), what ``conv2d_backward`` needs.
    """
    xp = get_array_module(x)
    f, _, kh, kw = weight.shape
    col = im2col(x, kh, kw, stride, pads, workspace)
    c, _, _, n, ho, wo = col.shape
    product = _buffer(workspace, "product", (f, n * ho * wo), x.dtype, xp)
    xp.matmul(weight.reshape(f, c * kh * kw), col.reshape(c * kh * kw, n * ho * wo), out=product)
    # (F, N, Ho, Wo) -> (N, F, Ho, Wo); the bias is added in the same pass as the reordering copy.
    y = xp.empty((n, f, ho, wo), dtype=x.dtype)
    ordered = product.reshape(f, n, ho, wo).transpose(1, 0, 2, 3)
    if bias is None:
        y[...] = ordered
    else:
        xp.add(ordered, bias.reshape(1, f, 1, 1), out=y)
    return y, col


def conv2d_backward(grad_y, col, weight, x_shape: tuple[int, int, int, int], stride: int,
                    pads: tuple[int, int, int, int], need_input_grad: bool = True,
                    workspace: dict | None = None) -> tuple[Any, Any, Any]:
    """Gradients of ``conv2d_forward``.

    Takes ``grad_y`` = dL/dy (N, F, Ho, Wo), the ``col`` that forward returned, ``weight``
    (F, C, kh, kw) and the input shape (N, C, H, W). Returns ``(dx, dW, db)``: dL/dx
    (N, C, H, W) (None unless ``need_input_grad``), dL/dW (F, C, kh, kw) and dL/db (F,).
    """
    xp = get_array_module(grad_y)
    f, c, kh, kw = weight.shape
    n, _, ho, wo = grad_y.shape
    rows = c * kh * kw
    dy = _buffer(workspace, "grad_rows", (f, n, ho, wo), grad_y.dtype, xp)
    dy[...] = grad_y.transpose(1, 0, 2, 3)
    dy = dy.reshape(f, n * ho * wo)
    grad_bias = dy.sum(axis=1)
    grad_weight = (dy @ col.reshape(rows, n * ho * wo).T).reshape(weight.shape)  # dW = dy col^T
    if not need_input_grad:
        return None, grad_weight, grad_bias
    dcol = _buffer(workspace, "dcol", (c, kh, kw, n, ho, wo), grad_y.dtype, xp)
    xp.matmul(weight.reshape(f, rows).T, dy, out=dcol.reshape(rows, n * ho * wo))  # dcol = W^T dy
    return col2im(dcol, x_shape, stride, pads, workspace), grad_weight, grad_bias
