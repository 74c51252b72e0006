"""Scratch buffers kept between calls of the same shape, so repeated training steps do not
allocate (and page-fault) them again.

A layer owns a ``workspace`` dict and passes it to its ops; an op asks for its buffers by name.
Buffers hold nothing a caller may keep: outputs an op returns are new arrays.
"""
from __future__ import annotations

import numpy


def buffer(workspace: dict | None, name: str, shape: tuple[int, ...], dtype, xp, zero: bool = False):
    """A scratch array from ``workspace`` (reused when shape and dtype match) or a new one
    (zero-filled with ``zero``; a reused one keeps what it held)."""
    key = (name, shape, xp.dtype(dtype).str)
    if workspace is not None and key in workspace:
        return workspace[key]
    buf = xp.zeros(shape, dtype=dtype) if zero else xp.empty(shape, dtype=dtype)
    if workspace is not None:
        # One buffer per name: drop a stale one of another shape so memory does not grow.
        for stale in [k for k in workspace if isinstance(k, tuple) and k[0] == name]:
            del workspace[stale]
        workspace[key] = buf
    return buf


def zero_bordered(workspace: dict | None, name: str, shape: tuple[int, ...], dtype, xp, geometry):
    """A buffer whose entries outside the part every call writes must be zero: zero-filled when
    created and cleared again when ``geometry`` (what decides which part is written) changes,
    so steps of one shape never pay for zeroing it."""
    buf = buffer(workspace, name, shape, dtype, xp, zero=True)
    if workspace is not None:
        if workspace.get((name, "geometry"), geometry) != geometry:
            buf.fill(0)
        workspace[(name, "geometry")] = geometry
    return buf


def spread_rows(workspace: dict | None, name: str, rows: int, length: int, dtype):
    """A ``(rows, stride)`` C-contiguous float array with ``stride >= length`` chosen so that
    consecutive rows start an odd number of 64-byte lines apart.

    The Winograd kernels write one value to each of the 36 rows per tile: with a row length
    that is a multiple of 4 KiB (64 channels of 64 images' 4x4 tiles: 256 KiB rows) every row
    maps to the same L1 cache set and the writes evict each other (4K aliasing). Measured on
    8x8x64, N=64, in an F(2x2, 3x3) prototype (16 rows): its input transform took 4.67 ms into
    aligned rows and 0.58 ms into spread ones.
    """
    itemsize = numpy.dtype(dtype).itemsize
    line = 64 // itemsize                       # entries per 64-byte line
    stride = -(-length // line) * line
    if (stride // line) % 2 == 0:
        stride += line
    return buffer(workspace, name, (rows, stride), dtype, numpy)


def row_blocks(spread, blocks: int, block_length: int):
    """The ``(rows, blocks, block_length)`` view of the first ``blocks * block_length`` entries
    of each row of a :func:`spread_rows` array: a stack of C-contiguous matrices for matmul."""
    itemsize = spread.itemsize
    return numpy.lib.stride_tricks.as_strided(
        spread, (spread.shape[0], blocks, block_length),
        (spread.strides[0], block_length * itemsize, itemsize), writeable=True)
