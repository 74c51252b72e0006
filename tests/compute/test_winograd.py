"""Winograd F(4x4, 3x3): each numba kernel against its NumPy twin, and the float32 error bound
the module states, against a float64 direct convolution. (Exactness in float64, every
padding and the gradients through the layer are in test_conv.py, beside the other paths.)"""
import numpy as np
import pytest

from conv_reference import loop_conv2d, loop_conv2d_grads

from gatescope.compute import jit
from gatescope.compute.ops import conv as conv_ops
from gatescope.compute.ops import winograd
from gatescope.compute.ops.workspace import spread_rows

needs_numba = pytest.mark.skipif(not jit.available(), reason="numba is not installed here")


def _both(kernel, make_args, tol, last_args):
    """Run ``kernel`` compiled and as its twin on fresh copies of the same arguments; checks
    that the arrays among the ``last_args`` arguments agree and returns the kernel's last array."""
    got, twin = make_args(), make_args()
    kernel(*got)
    kernel.twin(*twin)
    arrays = [(a, b) for a, b in zip(got[-last_args:], twin[-last_args:]) if isinstance(a, np.ndarray)]
    for mine, theirs in arrays:
        np.testing.assert_allclose(mine, theirs, rtol=tol, atol=tol)
    assert kernel.compiled
    return arrays[-1][0]


@needs_numba
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("x_shape,filters,pads", [((3, 2, 7, 9), 5, (1, 1, 1, 1)),
                                                   ((1, 3, 4, 4), 1, (0, 0, 0, 0)),
                                                   ((9, 1, 10, 5), 2, (2, 0, 1, 3))])
def test_kernels_match_their_twins(dtype, tol, x_shape, filters, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    t = winograd.tiling(x_shape, filters, pads)

    def rows(count, seed):
        spread = spread_rows(None, "rows", winograd.TILE, count, dtype)
        spread[...] = np.random.default_rng(seed).standard_normal(spread.shape)
        return spread

    # Each kernel runs over a part [first, last) of its outer loop: parts of a call must
    # write what the whole call writes (as compute.ops.threads cuts it).
    def parts(kernel, count, make_args, outputs=1, tol=tol):
        whole = _both(kernel, lambda: make_args() + (0, count), tol, outputs + 2)
        pieces = make_args()
        for first, last in ((0, count // 2), (count // 2, count)):
            kernel(*pieces, first, last)
        np.testing.assert_allclose(pieces[-1], whole, rtol=tol, atol=tol)
        return whole

    xt = parts(winograd.to_batch_inner, t.c, lambda: (x, t.top, t.left, np.zeros(t.input_shape, dtype)), tol=0)
    np.testing.assert_array_equal(xt[:, t.top:t.top + t.h, t.left:t.left + t.w].transpose(3, 0, 1, 2), x)
    parts(winograd.input_transform, t.c, lambda: (xt, rows(t.c * t.tiles, 1)))
    bias = rng.standard_normal(filters).astype(dtype)
    y_shape = (t.n, filters, t.out_h, t.out_w)
    parts(winograd.output_transform, filters, lambda: (rows(filters * t.tiles, 2), bias, np.empty(y_shape, dtype)))
    dy = rng.standard_normal(y_shape).astype(dtype)
    grad_bias = parts(winograd.output_adjoint, filters,
                      lambda: (dy, rows(filters * t.tiles, 3), np.empty(filters, dtype)), outputs=2)
    np.testing.assert_allclose(grad_bias, dy.sum(axis=(0, 2, 3)), rtol=tol, atol=tol)
    parts(winograd.input_adjoint, t.c, lambda: (rows(t.c * t.tiles, 4), t.tiles_h, t.tiles_w, t.top, t.left,
                                                np.full(x_shape, 7.0, dtype)))


def test_filter_transform_and_its_adjoint():
    # <G g G^T, dU> == <g, G^T dU G>: the filter gradient is the adjoint of the transform.
    rng = np.random.default_rng(1)
    g, du = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((36, 4, 3))
    u = winograd.filter_transform(g)
    assert u.shape == (36, 4, 3) and u.flags.c_contiguous
    np.testing.assert_allclose((u * du).sum(), (g * winograd.filter_adjoint(du)).sum())
    # The centre of the transformed delta filter is G's centre column squared (e = 6a + b).
    delta = np.zeros((1, 1, 3, 3))
    delta[0, 0, 1, 1] = 1
    np.testing.assert_allclose(winograd.filter_transform(delta)[:, 0, 0],
                               np.outer(winograd.FILTER_T[:, 1], winograd.FILTER_T[:, 1]).ravel())


@needs_numba
@pytest.mark.parametrize("n,c,size,filters", [(4, 3, 17, 32), (8, 64, 8, 64), (2, 256, 6, 128)])
def test_float32_error_stays_within_the_stated_bound(n, c, size, filters):
    """He-uniform weights, unit-normal inputs and output gradients (module docstring)."""
    rng = np.random.default_rng(2)
    limit = np.sqrt(6 / (9 * c))
    x, w = rng.standard_normal((n, c, size, size)), rng.uniform(-limit, limit, (filters, c, 3, 3))
    b = rng.uniform(-0.5, 0.5, filters)
    pads = (1, 1, 1, 1)
    y_exact = loop_conv2d(x, w, b, 1, pads)
    dy = rng.standard_normal(y_exact.shape)
    exact = (y_exact,) + loop_conv2d_grads(x, w, dy, 1, pads)[:2]
    f32 = [a.astype(np.float32) for a in (x, w, b, dy)]
    errors = {}
    for method in conv_ops.ALGORITHMS:
        y, saved = conv_ops.conv2d_forward(*f32[:3], 1, pads, {}, method)
        dx, dw, _ = conv_ops.conv2d_backward(f32[3], saved, f32[1], x.shape, 1, pads, True, {})
        errors[method] = [np.abs(got - want).max() / np.abs(want).max() for got, want in zip((y, dx, dw), exact)]
    assert max(errors[conv_ops.WINOGRAD]) <= winograd.ERROR_BOUND, errors
    # The bound is Winograd's own: im2col + GEMM stays about ten times inside it.
    assert max(errors[conv_ops.IM2COL]) <= winograd.ERROR_BOUND / 10, errors


def test_backward_without_the_input_gradient():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3))
    y, saved = winograd.forward(x, w, None, (1, 1, 1, 1), {})
    dy = rng.standard_normal(y.shape)
    dx, dw, db = winograd.backward(dy, saved, need_input_grad=False, workspace={})
    assert dx is None and db is None
    np.testing.assert_allclose(dw, loop_conv2d_grads(x, w, dy, 1, (1, 1, 1, 1))[1], atol=1e-11)
