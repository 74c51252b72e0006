"""The convolution of the lectures written out one output pixel at a time, in float64: the
reference every Conv2D path (im2col, Winograd, numba or NumPy, CPU or emulated GPU) is held to.

``loop_conv2d`` is the definition ``y = b + sum W * window``; ``loop_conv2d_grads`` its exact
gradients from the same loops (each output pixel's window receives ``dy * W`` and gives
``dy * window`` to ``W``), so they share no code with what they check.
"""
import numpy as np


def _padded(x, pads):
    top, bottom, left, right = pads
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))


def loop_conv2d(x, w, b, stride, pads):
    """The textbook definition, one output pixel at a time: y = b + sum W * window."""
    xp = _padded(x, pads)
    n, _, hp, wp = xp.shape
    f, _, kh, kw = w.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    y = np.zeros((n, f, ho, wo))
    for i in range(n):
        for o in range(f):
            for r in range(ho):
                for c in range(wo):
                    window = xp[i, :, r * stride:r * stride + kh, c * stride:c * stride + kw]
                    y[i, o, r, c] = (window * w[o]).sum() + (b[o] if b is not None else 0.0)
    return y


def loop_conv2d_grads(x, w, dy, stride, pads):
    """``(dx, dW, db)`` of ``sum(loop_conv2d(x, w, b, ...) * dy)``, accumulated window by window."""
    top, _, left, _ = pads
    xp = _padded(x, pads)
    w = np.asarray(w, np.float64)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    n, f, ho, wo = dy.shape
    _, _, kh, kw = w.shape
    for i in range(n):
        for o in range(f):
            for r in range(ho):
                for c in range(wo):
                    rows, cols = slice(r * stride, r * stride + kh), slice(c * stride, c * stride + kw)
                    dxp[i, :, rows, cols] += dy[i, o, r, c] * w[o]
                    dw[o] += dy[i, o, r, c] * xp[i, :, rows, cols]
    h, width = np.shape(x)[2:]
    return dxp[:, :, top:top + h, left:left + width], dw, dy.sum(axis=(0, 2, 3))
