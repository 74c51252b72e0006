"""Winograd's minimal filtering F(4x4, 3x3): a 3x3, stride-1 convolution with 36
multiplications per 4x4 output tile where direct convolution needs 144 (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016; what NNPACK and oneDNN do for 3x3).

For every 6x6 input tile ``d`` (tiles 4 apart, overlapping by 2) and every filter ``g``:

    Y = A^T [ sum_c (G g G^T) * (B^T d B) ] A          (* elementwise; 6x6 -> 4x4)

with the matrices below (interpolation points 0, 1, -1, 2, -2, infinity). The sum over
channels of the elementwise products is, for each of the 36 positions ``e`` of a transformed
tile, one matrix product ``M[e] = U[e] V[e]``: ``U[e]`` (K x C) the transformed filters,
``V[e]`` (C x P) the transformed tiles, P = N * tiles per image. Those 36 products run in BLAS;
the transforms around them are numba kernels (``compute.jit``) with NumPy twins.

Backward is the adjoint of each step, in reverse: ``dM = A dY A^T`` per tile, ``dU[e] = dM[e]
V[e]^T`` (then ``dW = G^T dU G``), ``dV[e] = U[e]^T dM[e]`` and ``dx = B dV B^T`` added onto
the overlapping tiles; ``db`` is the sum of dy. Forward keeps ``V`` for ``dU``. Each kernel
runs its outermost loop (channels or filters) on every core (``compute.ops.threads``).

Layout. The transforms vectorise over the batch: their innermost loops run over the N images
with unit stride, whatever the image size (an 8x8 map has only 2x2 tiles; a loop over tiles
would be two iterations long). The input is first copied into ``xt`` (C, Hp, Wp, N) with its
padding; transformed tiles are rows ``(36, C * P)`` with P ordered (tile row, tile column,
image). The output transform writes NCHW ``y`` itself (cropped to Ho x Wo), the output
adjoint reads NCHW ``dy`` and the input adjoint adds onto NCHW ``dx``: going through a
batch-innermost copy there measured up to 1.5x slower on the bench's shapes and within 15%
either way on the examples' small ones (a copy that moves the batch innermost costs 1-3 ns a
value on this machine, a plain copy 0.2); reading ``x`` tile by tile instead of through
``xt`` measured up to 1.8x slower.

Accuracy. The transforms' coefficients (up to 8 in A, 5 in B, 1/24 in G) amplify float32
rounding. On He-uniform weights and unit-normal inputs and output gradients, the largest error
of y, dx and dW in float32 against a float64 direct convolution, relative to the largest |value|
of each, measured 0.7e-6 to 8.3e-6 over C = 1 to 512 (growing slowly with C), where im2col +
GEMM measured 0.7e-7 to 6.5e-7: about ten times more. :data:`ERROR_BOUND` is the bound stated
and tested (``tests/compute/test_winograd.py``). Float64 runs the same code (the gradient
checks), with errors around 1e-14.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gatescope.compute import jit
from gatescope.compute.ops.threads import split
from gatescope.compute.ops.workspace import row_blocks, spread_rows, zero_bordered

# F(4x4, 3x3): B^T (6x6), G (6x3), A^T (4x6), Lavin and Gray's points 0, +-1, +-2, infinity.
INPUT_T = np.array([[4, 0, -5, 0, 1, 0],
                    [0, -4, -4, 1, 1, 0],
                    [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0],
                    [0, 2, -1, -2, 1, 0],
                    [0, 4, 0, -5, 0, 1]], dtype=np.float64)
FILTER_T = np.array([[1 / 4, 0, 0],
                     [-1 / 6, -1 / 6, -1 / 6],
                     [-1 / 6, 1 / 6, -1 / 6],
                     [1 / 24, 1 / 12, 1 / 6],
                     [1 / 24, -1 / 12, 1 / 6],
                     [0, 0, 1]], dtype=np.float64)
OUTPUT_T = np.array([[1, 1, 1, 1, 1, 0],
                     [0, 1, -1, 2, -2, 0],
                     [0, 1, 1, 4, 4, 0],
                     [0, 1, -1, 8, -8, 1]], dtype=np.float64)
M, ALPHA = 4, 6          # output tile side, input tile side (M + 3 - 1)
TILE = ALPHA * ALPHA     # transformed entries per tile
#: float32: max |error| / max |exact| of y, dx and dW on He-uniform weights (module docstring).
ERROR_BOUND = 2e-5
# The kernels' constants as float32: an integer literal would promote float32 math to float64.
TWO, FOUR, FIVE, EIGHT = (np.float32(v) for v in (2, 4, 5, 8))


@dataclass(frozen=True)
class Tiling:
    """How a batch (N, C, H, W) padded by ``pads`` is cut into 4x4 output tiles."""

    n: int
    c: int
    h: int
    w: int
    filters: int
    top: int
    left: int
    out_h: int
    out_w: int

    @property
    def tiles_h(self) -> int:
        return -(-self.out_h // M)

    @property
    def tiles_w(self) -> int:
        return -(-self.out_w // M)

    @property
    def tiles(self) -> int:
        """P: tiles of the whole batch, the columns of each of the 36 products."""
        return self.tiles_h * self.tiles_w * self.n

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``xt``: (C, 4 tH + 2, 4 tW + 2, N), the padded input, batch innermost."""
        return self.c, M * self.tiles_h + 2, M * self.tiles_w + 2, self.n


def available() -> bool:
    """True when the transforms run compiled (numba present, switched on, none failed to
    compile): their twins are the reference, not a fast path."""
    return all(k.compiled for k in (to_batch_inner, input_transform, output_transform,
                                    output_adjoint, input_adjoint))


def tiling(x_shape, filters: int, pads: tuple[int, int, int, int]) -> Tiling:
    n, c, h, w = x_shape
    top, bottom, left, right = pads
    return Tiling(n, c, h, w, filters, top, left, h + top + bottom - 2, w + left + right - 2)


@dataclass
class Saved:
    """What :func:`backward` needs from :func:`forward`: the tiling, the transformed input
    ``V`` (a workspace buffer, valid until the next forward or backward) and filters ``U``."""

    tiling: Tiling
    tiles: np.ndarray
    filters: np.ndarray
    has_bias: bool


def filter_transform(weight):
    """``U = G g G^T`` for every filter (K, C, 3, 3): returns U (36, K, C), C-contiguous."""
    k, c = weight.shape[:2]
    g = FILTER_T.astype(weight.dtype)
    right = (weight.reshape(-1, 3) @ g.T).reshape(k * c, 3, ALPHA)       # g G^T
    u = np.tensordot(g, right, axes=(1, 1))                             # (6, KC, 6): G g G^T
    return np.ascontiguousarray(u.transpose(0, 2, 1)).reshape(TILE, k, c)


def filter_adjoint(grad_u):
    """``dW = G^T dU G``: dU (36, K, C) back to dW (K, C, 3, 3)."""
    _, k, c = grad_u.shape
    g = FILTER_T.astype(grad_u.dtype)
    d = grad_u.reshape(ALPHA, ALPHA, k * c)
    left = np.tensordot(g, d, axes=(0, 0))                               # (3, 6, KC): G^T dU
    full = np.tensordot(left, g, axes=(1, 0))                            # (3, KC, 3): G^T dU G
    return np.ascontiguousarray(full.transpose(1, 0, 2)).reshape(k, c, 3, 3)


def forward(x, weight, bias, pads: tuple[int, int, int, int], workspace: dict | None = None):
    """3x3, stride-1 cross-correlation of ``x`` (N, C, H, W) (NumPy) with ``weight`` (K, C, 3,
    3) and ``bias`` (K,) or None, padded by ``pads`` = (top, bottom, left, right). Returns
    ``(y, saved)``: ``y`` (N, K, Ho, Wo), a new array, and what :func:`backward` needs."""
    t = tiling(x.shape, weight.shape[0], pads)
    xt = zero_bordered(workspace, "winograd_x", t.input_shape, x.dtype, np, (t.top, t.left, t.h, t.w))
    split(to_batch_inner, t.c, x.size, x, t.top, t.left, xt)
    v = spread_rows(workspace, "winograd_v", TILE, t.c * t.tiles, x.dtype)
    split(input_transform, t.c, v.size, xt, v)
    u = filter_transform(weight.astype(x.dtype, copy=False))
    m = spread_rows(workspace, "winograd_m", TILE, t.filters * t.tiles, x.dtype)
    np.matmul(u, row_blocks(v, t.c, t.tiles), out=row_blocks(m, t.filters, t.tiles))
    offsets = np.zeros(t.filters, x.dtype) if bias is None else bias.astype(x.dtype, copy=False)
    y = np.empty((t.n, t.filters, t.out_h, t.out_w), dtype=x.dtype)
    split(output_transform, t.filters, m.size, m, offsets, y)
    return y, Saved(t, v, u, bias is not None)


def backward(grad_y, saved: Saved, need_input_grad: bool = True, workspace: dict | None = None):
    """Gradients of :func:`forward`, once per forward (it reuses forward's buffers). Takes
    dL/dy (N, K, Ho, Wo). Returns ``(dx, dW, db)``: dL/dx (N, C, H, W) (None unless
    ``need_input_grad``), dL/dW (K, C, 3, 3), dL/db (K,) (None when forward had no bias)."""
    t = saved.tiling
    dtype = grad_y.dtype
    dm = spread_rows(workspace, "winograd_m", TILE, t.filters * t.tiles, dtype)   # M is spent
    grad_bias = np.empty(t.filters, dtype)
    split(output_adjoint, t.filters, dm.size, grad_y, dm, grad_bias)
    dm_blocks, v_blocks = row_blocks(dm, t.filters, t.tiles), row_blocks(saved.tiles, t.c, t.tiles)
    grad_weight = filter_adjoint(np.matmul(dm_blocks, v_blocks.transpose(0, 2, 1)))
    grad_bias = grad_bias if saved.has_bias else None
    if not need_input_grad:
        return None, grad_weight, grad_bias
    np.matmul(saved.filters.transpose(0, 2, 1), dm_blocks, out=v_blocks)          # dV, over V
    dx = np.empty((t.n, t.c, t.h, t.w), dtype=dtype)
    split(input_adjoint, t.c, saved.tiles.size, saved.tiles, t.tiles_h, t.tiles_w, t.top, t.left, dx)
    return dx, grad_weight, grad_bias


# --------------------------------------------------------------------------- NumPy twins

def _tiles_of(planes, size: int, step: int):
    """Windows ``size`` x ``size``, ``step`` apart, of ``planes`` (C, H, W, N): a view
    (C, tH, tW, N, size, size)."""
    windows = np.lib.stride_tricks.sliding_window_view(planes, (size, size), axis=(1, 2))
    return windows[:, ::step, ::step]


def _batch_inner_twin(x, top, left, out, first, last):
    _, _, h, w = x.shape
    out[first:last, top:top + h, left:left + w, :] = x[:, first:last].transpose(1, 2, 3, 0)


def _input_transform_twin(xt, out, first, last):
    d = _tiles_of(xt[first:last], ALPHA, M)
    per_plane = d.shape[1] * d.shape[2] * d.shape[3]
    v = np.einsum("ab,ctsnbq,dq->adctsn", INPUT_T, d, INPUT_T, optimize=True).reshape(TILE, -1)
    out[:, first * per_plane:last * per_plane] = v


def _output_transform_twin(m, bias, out, first, last):
    n, _, ho, wo = out.shape
    th, tw = -(-ho // M), -(-wo // M)
    per_plane, count = th * tw * n, last - first
    z = m[:, first * per_plane:last * per_plane].reshape(ALPHA, ALPHA, count, th, tw, n)
    y = np.einsum("ia,abktsn,jb->nktisj", OUTPUT_T, z, OUTPUT_T, optimize=True)
    out[:, first:last] = y.reshape(n, count, M * th, M * tw)[:, :, :ho, :wo] + bias[first:last].reshape(1, count, 1, 1)


def _output_adjoint_twin(dy, out, grad_bias, first, last):
    n, _, ho, wo = dy.shape
    th, tw = -(-ho // M), -(-wo // M)
    count = last - first
    g = np.zeros((n, count, M * th, M * tw), dy.dtype)  # the last tiles' rows past Ho: no gradient
    g[:, :, :ho, :wo] = dy[:, first:last]
    dm = np.einsum("ia,nktisj,jb->abktsn", OUTPUT_T, g.reshape(n, count, th, M, tw, M), OUTPUT_T,
                   optimize=True).reshape(TILE, -1)
    per_plane = th * tw * n
    out[:, first * per_plane:last * per_plane] = dm
    grad_bias[first:last] = dy[:, first:last].sum(axis=(0, 2, 3))


def _input_adjoint_twin(dv, tiles_h, tiles_w, top, left, dx, first, last):
    n, _, h, w = dx.shape
    per_plane, count = tiles_h * tiles_w * n, last - first
    v = dv[:, first * per_plane:last * per_plane].reshape(ALPHA, ALPHA, count, tiles_h, tiles_w, n)
    dd = np.einsum("ab,adctsn,dq->nctsbq", INPUT_T, v, INPUT_T, optimize=True)
    padded = np.zeros((n, count, M * tiles_h + 2, M * tiles_w + 2), dx.dtype)
    for b in range(ALPHA):          # overlapping tiles: add each tile position's share
        for q in range(ALPHA):
            padded[:, :, b:b + M * tiles_h:M, q:q + M * tiles_w:M] += dd[..., b, q]
    dx[:, first:last] = padded[:, :, top:top + h, left:left + w]


# --------------------------------------------------------------------------- numba kernels

@jit.kernel(twin=_batch_inner_twin)
def to_batch_inner(x, top, left, out, first, last):
    """``out[c, top + i, left + j, n] = x[n, c, i, j]`` for channels ``c`` in ``[first,
    last)``: NCHW into the batch-innermost layout (the rest of ``out`` is left as it is). Eight
    images at a time, so each row of ``out`` is written in runs of eight while eight rows of
    ``x`` are read."""
    n_count, _, h, w = x.shape
    for c in range(first, last):
        for i in range(h):
            for n0 in range(0, n_count, 8):
                n1 = min(n0 + 8, n_count)
                for j in range(w):
                    for n in range(n0, n1):
                        out[c, top + i, left + j, n] = x[n, c, i, j]


@jit.kernel(twin=_input_transform_twin)
def input_transform(xt, out, first, last):
    """``V = B^T d B`` for every 6x6 tile ``d`` (4 apart) of the planes of channels ``[first,
    last)`` of ``xt``, into their columns of the rows ``out`` (36, C*P)."""
    _, hp, wp, n_count = xt.shape
    th, tw = (hp - 2) // 4, (wp - 2) // 4
    for c in range(first, last):
        rows = np.empty((6, 6, n_count), xt.dtype)     # scratch, per plane
        for ti in range(th):
            for tj in range(tw):
                y0, x0 = 4 * ti, 4 * tj
                for q in range(6):      # B^T d: combine the tile's rows, column q
                    for n in range(n_count):
                        d0 = xt[c, y0, x0 + q, n]
                        d1 = xt[c, y0 + 1, x0 + q, n]
                        d2 = xt[c, y0 + 2, x0 + q, n]
                        d3 = xt[c, y0 + 3, x0 + q, n]
                        d4 = xt[c, y0 + 4, x0 + q, n]
                        d5 = xt[c, y0 + 5, x0 + q, n]
                        rows[0, q, n] = FOUR * d0 - FIVE * d2 + d4
                        rows[1, q, n] = d3 + d4 - FOUR * (d1 + d2)
                        rows[2, q, n] = d4 - d3 + FOUR * (d1 - d2)
                        rows[3, q, n] = d4 - d2 + TWO * (d3 - d1)
                        rows[4, q, n] = d4 - d2 - TWO * (d3 - d1)
                        rows[5, q, n] = FOUR * d1 - FIVE * d3 + d5
                base = (c * th * tw + ti * tw + tj) * n_count
                for a in range(6):      # (B^T d) B: combine the columns of row a
                    e = 6 * a
                    for n in range(n_count):
                        d0 = rows[a, 0, n]
                        d1 = rows[a, 1, n]
                        d2 = rows[a, 2, n]
                        d3 = rows[a, 3, n]
                        d4 = rows[a, 4, n]
                        d5 = rows[a, 5, n]
                        out[e, base + n] = FOUR * d0 - FIVE * d2 + d4
                        out[e + 1, base + n] = d3 + d4 - FOUR * (d1 + d2)
                        out[e + 2, base + n] = d4 - d3 + FOUR * (d1 - d2)
                        out[e + 3, base + n] = d4 - d2 + TWO * (d3 - d1)
                        out[e + 4, base + n] = d4 - d2 - TWO * (d3 - d1)
                        out[e + 5, base + n] = FOUR * d1 - FIVE * d3 + d5


@jit.kernel(twin=_output_transform_twin)
def output_transform(m, bias, out, first, last):
    """``Y = A^T M A + b`` for every tile of filters ``[first, last)``: rows (36, K*P) into
    ``out`` (N, K, Ho, Wo)."""
    n_count, _, ho, wo = out.shape
    th, tw = (ho + 3) // 4, (wo + 3) // 4
    for k in range(first, last):
        rows = np.empty((4, 6, n_count), out.dtype)     # scratch, per filter
        tile = np.empty((4, 4, n_count), out.dtype)
        b = bias[k]
        for ti in range(th):
            for tj in range(tw):
                base = (k * th * tw + ti * tw + tj) * n_count
                for q in range(6):      # A^T M: combine the rows, column q
                    for n in range(n_count):
                        m0 = m[q, base + n]
                        m1 = m[6 + q, base + n]
                        m2 = m[12 + q, base + n]
                        m3 = m[18 + q, base + n]
                        m4 = m[24 + q, base + n]
                        m5 = m[30 + q, base + n]
                        rows[0, q, n] = m0 + m1 + m2 + m3 + m4
                        rows[1, q, n] = m1 - m2 + TWO * (m3 - m4)
                        rows[2, q, n] = m1 + m2 + FOUR * (m3 + m4)
                        rows[3, q, n] = m1 - m2 + EIGHT * (m3 - m4) + m5
                for i in range(4):      # (A^T M) A: combine the columns of row i
                    for n in range(n_count):
                        m0 = rows[i, 0, n]
                        m1 = rows[i, 1, n]
                        m2 = rows[i, 2, n]
                        m3 = rows[i, 3, n]
                        m4 = rows[i, 4, n]
                        m5 = rows[i, 5, n]
                        tile[i, 0, n] = m0 + m1 + m2 + m3 + m4 + b
                        tile[i, 1, n] = m1 - m2 + TWO * (m3 - m4) + b
                        tile[i, 2, n] = m1 + m2 + FOUR * (m3 + m4) + b
                        tile[i, 3, n] = m1 - m2 + EIGHT * (m3 - m4) + m5 + b
                y0, x0 = 4 * ti, 4 * tj
                for n in range(n_count):   # the tile's pixels inside Ho x Wo, into NCHW
                    for i in range(min(4, ho - y0)):
                        for j in range(min(4, wo - x0)):
                            out[n, k, y0 + i, x0 + j] = tile[i, j, n]


@jit.kernel(twin=_output_adjoint_twin)
def output_adjoint(dy, out, grad_bias, first, last):
    """``dM = A dY A^T`` for every tile of filters ``[first, last)`` of ``dy`` (N, K, Ho, Wo),
    into rows (36, K*P) (pixels past Ho x Wo count as zero), and ``grad_bias`` (K,) = the sum of
    ``dy`` per filter."""
    n_count, _, ho, wo = dy.shape
    th, tw = (ho + 3) // 4, (wo + 3) // 4
    for k in range(first, last):
        tile = np.zeros((4, 4, n_count), dy.dtype)      # scratch, per filter
        rows = np.empty((6, 4, n_count), dy.dtype)
        total = 0.0
        for ti in range(th):
            for tj in range(tw):
                y0, x0 = 4 * ti, 4 * tj
                hi, wi = min(4, ho - y0), min(4, wo - x0)
                if hi < 4 or wi < 4:
                    tile[...] = 0
                for n in range(n_count):   # the tile's pixels, batch innermost
                    for i in range(hi):
                        for j in range(wi):
                            g = dy[n, k, y0 + i, x0 + j]
                            tile[i, j, n] = g
                            total += g
                for j in range(4):      # A dY: spread the rows, column j
                    for n in range(n_count):
                        g0 = tile[0, j, n]
                        g1 = tile[1, j, n]
                        g2 = tile[2, j, n]
                        g3 = tile[3, j, n]
                        rows[0, j, n] = g0
                        rows[1, j, n] = g0 + g1 + g2 + g3
                        rows[2, j, n] = g0 - g1 + g2 - g3
                        rows[3, j, n] = g0 + TWO * g1 + FOUR * g2 + EIGHT * g3
                        rows[4, j, n] = g0 - TWO * g1 + FOUR * g2 - EIGHT * g3
                        rows[5, j, n] = g3
                base = (k * th * tw + ti * tw + tj) * n_count
                for a in range(6):      # (A dY) A^T: spread the columns of row a
                    e = 6 * a
                    for n in range(n_count):
                        g0 = rows[a, 0, n]
                        g1 = rows[a, 1, n]
                        g2 = rows[a, 2, n]
                        g3 = rows[a, 3, n]
                        out[e, base + n] = g0
                        out[e + 1, base + n] = g0 + g1 + g2 + g3
                        out[e + 2, base + n] = g0 - g1 + g2 - g3
                        out[e + 3, base + n] = g0 + TWO * g1 + FOUR * g2 + EIGHT * g3
                        out[e + 4, base + n] = g0 - TWO * g1 + FOUR * g2 - EIGHT * g3
                        out[e + 5, base + n] = g3
        grad_bias[k] = total


@jit.kernel(twin=_input_adjoint_twin)
def input_adjoint(dv, tiles_h, tiles_w, top, left, dx, first, last):
    """``dd = B dV B^T`` for every tile of channels ``[first, last)``, added onto the
    (overlapping) tiles of the padded input and cropped: those channels of ``dx`` (N, C, H, W)
    are set to the sum over the tiles of each pixel."""
    n_count, _, h, w = dx.shape
    dx[:, first:last] = 0
    for c in range(first, last):
        rows = np.empty((6, 6, n_count), dx.dtype)      # scratch, per plane
        tile = np.empty((6, 6, n_count), dx.dtype)
        for ti in range(tiles_h):
            for tj in range(tiles_w):
                base = (c * tiles_h * tiles_w + ti * tiles_w + tj) * n_count
                for a2 in range(6):     # B dV: spread the rows, column a2
                    for n in range(n_count):
                        v0 = dv[a2, base + n]
                        v1 = dv[6 + a2, base + n]
                        v2 = dv[12 + a2, base + n]
                        v3 = dv[18 + a2, base + n]
                        v4 = dv[24 + a2, base + n]
                        v5 = dv[30 + a2, base + n]
                        rows[0, a2, n] = FOUR * v0
                        rows[1, a2, n] = FOUR * (v2 - v1 + v5) + TWO * (v4 - v3)
                        rows[2, a2, n] = -FIVE * v0 - FOUR * (v1 + v2) - v3 - v4
                        rows[3, a2, n] = v1 - v2 + TWO * (v3 - v4) - FIVE * v5
                        rows[4, a2, n] = v0 + v1 + v2 + v3 + v4
                        rows[5, a2, n] = v5
                for b in range(6):      # (B dV) B^T: spread the columns of row b
                    for n in range(n_count):
                        v0 = rows[b, 0, n]
                        v1 = rows[b, 1, n]
                        v2 = rows[b, 2, n]
                        v3 = rows[b, 3, n]
                        v4 = rows[b, 4, n]
                        v5 = rows[b, 5, n]
                        tile[b, 0, n] = FOUR * v0
                        tile[b, 1, n] = FOUR * (v2 - v1 + v5) + TWO * (v4 - v3)
                        tile[b, 2, n] = -FIVE * v0 - FOUR * (v1 + v2) - v3 - v4
                        tile[b, 3, n] = v1 - v2 + TWO * (v3 - v4) - FIVE * v5
                        tile[b, 4, n] = v0 + v1 + v2 + v3 + v4
                        tile[b, 5, n] = v5
                y0, x0 = 4 * ti - top, 4 * tj - left
                b0, b1 = max(0, -y0), min(6, h - y0)
                q0, q1 = max(0, -x0), min(6, w - x0)
                for n in range(n_count):   # the tile's pixels inside the image, into NCHW
                    for b in range(b0, b1):
                        for q in range(q0, q1):
                            dx[n, c, y0 + b, x0 + q] += tile[b, q, n]
