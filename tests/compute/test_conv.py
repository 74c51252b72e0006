"""Conv1D / Conv2D: forward against a direct nested-loop cross-correlation, gradients against
central differences, shapes and messages as the lectures state them."""
import numpy as np
import pytest
from scipy.signal import correlate

from conftest import block_matches_float64
from conv_reference import loop_conv2d, loop_conv2d_grads
from gradcheck import check_layer

from gatescope.compute import jit
from gatescope.compute.layers import ShapeError, create
from gatescope.compute.ops import conv as conv_ops
from gatescope.compute.ops import im2col


def build(layer, shape, dtype=np.float64, seed=0):
    layer.build([shape], np.random.default_rng(seed), np, dtype)
    return layer


def test_lecture_example_is_cross_correlation():
    # The 6x6 image and 3x3 kernel of the lecture notes; output[0, 0] = sum(window * kernel) = -5.
    image = np.array([[3, 0, 1, 2, 7, 4], [1, 5, 8, 9, 3, 1], [2, 7, 2, 5, 1, 3],
                      [0, 1, 3, 1, 7, 8], [4, 2, 1, 6, 2, 8], [2, 4, 5, 2, 3, 9]], dtype=float)
    kernel = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=float)
    layer = build(create("Conv2D", {"filters": 1, "kernel_size": 3, "bias": False}), (1, 6, 6))
    layer.params["W"][...] = kernel
    y = layer.forward([image[None, None]], training=False)
    np.testing.assert_allclose(y[0, 0], correlate(image, kernel, mode="valid"))
    assert y[0, 0, 0, 0] == -5


@pytest.mark.parametrize("stride,padding", [(1, "valid"), (2, 1), (1, "same"), (2, "same"), (3, 2)])
def test_conv2d_forward_matches_nested_loops(stride, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    layer = build(create("Conv2D", {"filters": 4, "kernel_size": 3, "stride": stride, "padding": padding}),
                  (3, 7, 6))
    layer.params["b"][...] = rng.standard_normal(4)
    y = layer.forward([x], training=False)
    pads = layer._all_pads(7, 6)
    np.testing.assert_allclose(y, loop_conv2d(x, layer.params["W"], layer.params["b"], stride, pads), atol=1e-12)
    assert y.shape[1:] == layer.output_shape([(3, 7, 6)])


def test_output_size_formula():
    layer = create("Conv2D", {"filters": 2, "kernel_size": 3, "stride": 2, "padding": 1})
    # floor((7 + 2 - 3) / 2) + 1 = 4 and floor((8 + 2 - 3) / 2) + 1 = 4
    assert layer.output_shape([(1, 7, 8)]) == (2, 4, 4)
    for n in range(3, 12):
        for s in (1, 2, 3):
            same = create("Conv2D", {"kernel_size": 3, "stride": s, "padding": "same"})
            assert same.output_shape([(1, n, n)])[1:] == (-(-n // s),) * 2


def test_float32_is_kept_and_default():
    layer = create("Conv2D", {"filters": 2})
    layer.build([(1, 5, 5)], np.random.default_rng(0))
    assert layer.params["W"].dtype == np.float32
    assert layer.forward([np.ones((1, 1, 5, 5), np.float32)], True).dtype == np.float32


def test_parameter_formula_of_the_lectures():
    layer = create("Conv2D", {"filters": 5, "kernel_size": 3})
    assert layer.param_formula([(3, 32, 32)]) == "5 x (3x3x3 + 1) = 140"
    assert layer.param_count([(3, 32, 32)]) == 140
    no_bias = create("Conv2D", {"filters": 8, "kernel_size": 5, "bias": False})
    assert no_bias.param_formula([(3, 32, 32)]) == "8 x 5x5x3 = 600"
    conv1d = create("Conv1D", {"filters": 4, "kernel_size": 3})
    assert conv1d.param_formula([(20, 2)]) == "4 x (3x2 + 1) = 28"
    assert conv1d.param_count([(20, 2)]) == 28


def test_he_uniform_initialisation():
    layer = create("Conv2D", {"filters": 64, "kernel_size": 3})
    layer.build([(16, 8, 8)], np.random.default_rng(0), np, np.float64)
    limit = np.sqrt(6.0 / (3 * 3 * 16))
    w = layer.params["W"]
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert abs(w.var() - 2.0 / (3 * 3 * 16)) < 0.1 * 2.0 / (3 * 3 * 16)
    assert not layer.params["b"].any()


def test_kernel_larger_than_input_is_explained():
    layer = create("Conv2D", {"kernel_size": 5})
    with pytest.raises(ShapeError, match="kernel 5 is larger than the 3x3 input; use padding or a smaller kernel"):
        layer.output_shape([(1, 3, 3)])
    padded = create("Conv2D", {"kernel_size": 6, "padding": 1})
    with pytest.raises(ShapeError, match=r"even padded \(5x5\)"):
        padded.output_shape([(1, 3, 3)])
    assert create("Conv2D", {"kernel_size": 5, "padding": "same"}).output_shape([(1, 3, 3)]) == (8, 3, 3)
    with pytest.raises(ShapeError, match="kernel 4 is larger than the 2 sequence"):
        create("Conv1D", {"kernel_size": 4}).output_shape([(2, 5)])
    with pytest.raises(ShapeError, match="expects an image"):
        create("Conv2D", {}).output_shape([(10,)])


def test_conv2d_gradients_stride_two_padded():
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 5))
    check_layer(create("Conv2D", {"filters": 3, "kernel_size": 3, "stride": 2, "padding": 1}), [x])


def test_conv2d_gradients_same_odd_padding_no_bias():
    x = np.random.default_rng(3).standard_normal((2, 2, 4, 5))
    check_layer(create("Conv2D", {"filters": 2, "kernel_size": 2, "stride": 2, "padding": "same", "bias": False}), [x])


def test_conv1d_forward_and_gradients():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 3))  # (N, T, F): F channels along time
    layer = build(create("Conv1D", {"filters": 4, "kernel_size": 3, "stride": 2, "padding": 1}), (9, 3))
    layer.params["b"][...] = rng.standard_normal(4)
    y = layer.forward([x], training=False)
    assert y.shape == (2, 5, 4) and layer.output_shape([(9, 3)]) == (5, 4)
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    for n in range(2):
        for f in range(4):
            # correlate each channel along time, sum over channels, keep every 2nd output
            full = sum(correlate(padded[n, :, c], layer.params["W"][f, c], mode="valid") for c in range(3))
            np.testing.assert_allclose(y[n, :, f], full[::2] + layer.params["b"][f], atol=1e-12)
    check_layer(create("Conv1D", {"filters": 2, "kernel_size": 3, "stride": 2, "padding": 1}), [x[:, :7, :2]])
    check_layer(create("Conv1D", {"filters": 2, "kernel_size": 2, "padding": "same"}), [x[:, :5, :2]])


def test_gradients_accumulate():
    layer = build(create("Conv2D", {"filters": 2, "kernel_size": 3}), (1, 4, 4))
    x = np.random.default_rng(5).standard_normal((1, 1, 4, 4))
    y = layer.forward([x], True)
    layer.backward(np.ones_like(y))
    first = layer.grads["W"].copy()
    layer.forward([x], True)
    layer.backward(np.ones_like(y))
    np.testing.assert_allclose(layer.grads["W"], 2 * first)


def test_im2col_col2im_are_adjoint():
    # <im2col(x), c> == <x, col2im(c)> for any x, c: col2im is the transpose of im2col.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 6, 5))
    pads = (1, 2, 0, 1)
    col = conv_ops.im2col(x, 3, 2, 2, pads).copy()
    c = rng.standard_normal(col.shape)
    back = conv_ops.col2im(c, x.shape, 2, pads)
    assert np.isclose((col * c).sum(), (x * back).sum())


@pytest.mark.parametrize("type_name,settings,in_shape", [
    ("Conv2D", dict(filters=4, kernel_size=3, padding="same"), (3, 8, 7)),
    ("Conv2D", dict(filters=5, kernel_size=3, stride=2, padding=1, bias=False), (2, 9, 9)),
    ("Conv2D", dict(filters=2, kernel_size=5, padding="valid"), (1, 9, 10)),
    # a sequence is an image of height 1 seen through a transposed view
    ("Conv1D", dict(filters=4, kernel_size=3, padding="same"), (9, 3)),
])
def test_conv_matches_float64_on_every_backend(backend, type_name, settings, in_shape):
    block_matches_float64(backend, type_name, settings, in_shape, expect=("im2col", "col2im"))


# --------------------------------------------------------------------------- every algorithm

# (x shape, filters, kernel, stride, padding, bias): odd sizes, valid/same/number padding,
# bias on and off, one channel, one filter, a single tile.
CASES = [
    ((2, 3, 7, 6), 4, 3, 1, "valid", True),
    ((2, 1, 5, 9), 3, 3, 1, "same", False),
    ((3, 2, 6, 5), 1, 3, 1, 2, True),
    ((1, 4, 3, 3), 2, 3, 1, 1, True),
    ((2, 2, 9, 4), 3, 3, 1, 3, False),
    ((2, 3, 9, 7), 2, 5, 1, "same", True),
    ((2, 2, 7, 8), 3, 3, 2, 1, True),
    ((2, 2, 6, 7), 2, 2, 2, "same", False),
    ((2, 2, 17, 16), 3, 3, 1, "same", True),       # maps of 16x16 and more: im2col per image
    ((2, 1, 20, 20), 2, 5, 1, "valid", False),
]


def _pads(x_shape, kernel, stride, padding):
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return conv_ops.same_padding(x_shape[2], kernel, stride) + conv_ops.same_padding(x_shape[3], kernel, stride)
    return (padding,) * 4


def _methods(kernel, stride):
    return conv_ops.ALGORITHMS if (kernel, stride) == (3, 1) else (conv_ops.IM2COL,)


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "twins"])
@pytest.mark.parametrize("x_shape,filters,kernel,stride,padding,bias", CASES)
def test_every_algorithm_matches_the_loops_forward_and_backward(x_shape, filters, kernel, stride, padding,
                                                                 bias, numba_on):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((filters, x_shape[1], kernel, kernel))
    b = rng.standard_normal(filters) if bias else None
    pads = _pads(x_shape, kernel, stride, padding)
    expected = loop_conv2d(x, w, b, stride, pads)
    dy = rng.standard_normal(expected.shape)
    dx_ref, dw_ref, db_ref = loop_conv2d_grads(x, w, dy, stride, pads)
    for method in _methods(kernel, stride):
        with jit.use_numba(numba_on):
            workspace = {}
            y, saved = conv_ops.conv2d_forward(x, w, b, stride, pads, workspace, method)
            dx, dw, db = conv_ops.conv2d_backward(dy, saved, w, x.shape, stride, pads, True, workspace)
        np.testing.assert_allclose(y, expected, atol=1e-12, err_msg=method)
        np.testing.assert_allclose(dx, dx_ref, atol=1e-12, err_msg=method)
        np.testing.assert_allclose(dw, dw_ref, atol=1e-11, err_msg=method)
        if bias:
            np.testing.assert_allclose(db, db_ref, atol=1e-12, err_msg=method)
        else:
            assert db is None


@pytest.mark.parametrize("method", conv_ops.ALGORITHMS)
@pytest.mark.parametrize("settings,shape", [
    ({"filters": 3, "kernel_size": 3, "padding": "same"}, (2, 5, 7)),
    ({"filters": 1, "kernel_size": 3, "padding": 1, "bias": False}, (3, 4, 4)),
    ({"filters": 2, "kernel_size": 3}, (1, 6, 5)),
])
def test_conv2d_gradients_by_each_algorithm(monkeypatch, method, settings, shape):
    monkeypatch.setattr(conv_ops, "algorithm", lambda *args: method)
    layer = create("Conv2D", settings)
    check_layer(layer, [np.random.default_rng(12).standard_normal((2,) + shape)])
    assert layer.algorithm == method


def test_algorithm_rule():
    def chosen(c, f, k=3, stride=1, n=8, size=8, dtype=np.float32):
        return conv_ops.algorithm(np.zeros((n, c, size, size), dtype), (f, c, k, k), stride, (1, 1, 1, 1))
    winograd_here = conv_ops.WINOGRAD if jit.available() else conv_ops.IM2COL
    assert chosen(64, 64) == winograd_here
    assert chosen(64, 64, k=5) == conv_ops.IM2COL
    assert chosen(64, 64, stride=2) == conv_ops.IM2COL
    assert chosen(1, 16) == conv_ops.IM2COL          # the first layer of an image model
    assert chosen(64, 64, size=2) == conv_ops.IM2COL  # a 2x2 output: one tile for 4 pixels
    with jit.use_numba(False):                      # the twins are the reference, not a fast path
        assert chosen(64, 64) == conv_ops.IM2COL
    layer = build(create("Conv2D", {"filters": 64, "padding": "same"}), (64, 8, 8), np.float32)
    layer.forward([np.zeros((2, 64, 8, 8), np.float32)], False)
    assert layer.algorithm == winograd_here
    conv1d = build(create("Conv1D", {"filters": 64, "kernel_size": 3}), (9, 64), np.float32)
    conv1d.forward([np.zeros((2, 9, 64), np.float32)], False)
    assert conv1d.algorithm == conv_ops.IM2COL


@pytest.mark.parametrize("size,stride,pads", [(6, 1, (1, 1, 1, 1)), (7, 2, (0, 1, 2, 0)), (9, 1, (0, 0, 0, 0))])
def test_im2col_copies_in_parts_are_the_whole(size, stride, pads):
    # compute.ops.threads cuts the images into parts; the parts must write what one call
    # writes, for im2col, col2im (its assigned first tap, its batch-innermost adds for maps
    # of 8 or fewer columns) and the reorder alike.
    rng = np.random.default_rng(15)
    n = 12
    x = rng.standard_normal((n, 2, size, size))
    top, bottom, left, right = pads
    ho, wo = conv_ops.output_size(size, 3, stride, top, bottom), conv_ops.output_size(size, 3, stride, left, right)
    rows, cols = im2col.tap_ranges(3, ho, size, top, stride), im2col.tap_ranges(3, wo, size, left, stride)
    d_col = rng.standard_normal((2, 3, 3, n, ho, wo))
    padded = np.empty((2, n, size + top + bottom, size + left + right))
    results = []
    for ranges in ([(0, n)], [(0, 5), (5, n)]):
        col, dx, swapped = np.zeros((2, 3, 3, n, ho, wo)), np.empty_like(x), np.empty((n, 2, size * size))
        for first, last in ranges:
            im2col.im2col_into(x, stride, top, left, rows, cols, col, first, last)
            im2col.col2im_into(d_col, stride, pads, padded, dx, first, last)
            im2col.swap_leading(x.reshape(n, 2, -1).transpose(1, 0, 2), swapped, first, last)
        results.append((col, dx, swapped))
    for whole, parts in zip(*results):
        np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(results[0][2], x.reshape(n, 2, -1))
    # col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)>.
    np.testing.assert_allclose((results[0][0] * d_col).sum(), (x * results[0][1]).sum())


@pytest.mark.parametrize("method", conv_ops.ALGORITHMS)
def test_a_new_geometry_with_the_same_buffers_starts_from_clean_padding(method):
    # 8x8 'valid' and 6x6 padded by 1 share the column matrix's shape, all three the Winograd
    # buffers' shapes; none may see an earlier call's pixels where its padding is.
    rng = np.random.default_rng(14)
    w = rng.standard_normal((3, 2, 3, 3))
    workspace = {}
    for size, pads in ((8, (0, 0, 0, 0)), (6, (1, 1, 1, 1)), (7, (1, 1, 1, 1))):
        x = rng.standard_normal((2, 2, size, size))
        y, _ = conv_ops.conv2d_forward(x, w, None, 1, pads, workspace, method)
        np.testing.assert_allclose(y, loop_conv2d(x, w, None, 1, pads), atol=1e-12)
