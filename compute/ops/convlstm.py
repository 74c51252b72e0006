"""im2col / col2im for ConvLSTM2D's 'same'-padded, stride-1 convolutions, channels-last.

ConvLSTM keeps its states as rows of pixels ``(B, H*W, F)`` so the LSTM kernels of
``compute.kernels`` apply unchanged; these helpers turn a channels-last batch into the matrix a
GEMM multiplies by a kernel ``(k, k, C, G)`` reshaped to ``(k*k*C, G)``, and back: pad once,
then k*k strided slice copies (Chainer's ``utils/conv.py`` habit), as array code on either
device (which is why ConvLSTM2D's step loop is not captured as a CUDA graph).
"""
from __future__ import annotations

from gatescope.compute.backend import get_array_module


def im2col_same(x, k: int, out=None):
    """``x`` ``(B, H, W, C)`` -> columns ``(B*H*W, k*k*C)``, ordered ``(ky, kx, c)``.

    Row ``(b, y, x)`` holds the k x k neighbourhood of pixel (y, x), zero outside the frame
    (padding ``k // 2``). ``out``: an optional ``(B*H*W, k*k*C)`` buffer to write into.
    """
    xp = get_array_module(x)
    b, h, w, c = x.shape
    pad = k // 2
    padded = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    if out is None:
        out = xp.empty((b * h * w, k * k * c), dtype=x.dtype)
    cols = out.reshape(b, h, w, k, k, c)
    for dy in range(k):
        for dx in range(k):
            cols[:, :, :, dy, dx, :] = padded[:, dy:dy + h, dx:dx + w, :]
    return out


def col2im_same(cols, shape: tuple[int, int, int, int], k: int):
    """The adjoint of ``im2col_same``: columns ``(B*H*W, k*k*C)`` -> ``(B, H, W, C)``.

    Each pixel receives the sum of every column entry that copied it (the gradient of im2col).
    """
    xp = get_array_module(cols)
    b, h, w, c = shape
    pad = k // 2
    padded = xp.zeros((b, h + 2 * pad, w + 2 * pad, c), dtype=cols.dtype)
    blocks = cols.reshape(b, h, w, k, k, c)
    for dy in range(k):
        for dx in range(k):
            padded[:, dy:dy + h, dx:dx + w, :] += blocks[:, :, :, dy, dx, :]
    return padded[:, pad:pad + h, pad:pad + w, :] if pad else padded
