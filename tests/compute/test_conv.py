"""Conv1D / Conv2D: forward against a direct nested-loop cross-correlation, gradients against
central differences, shapes and messages as the lectures state them."""
import numpy as np
import pytest
from scipy.signal import correlate

from conftest import block_matches_float64
from gradcheck import check_layer

from gatescope.compute.layers import ShapeError, create
from gatescope.compute.ops import conv as conv_ops


def loop_conv2d(x, w, b, stride, pads):
    """The textbook definition, one output pixel at a time: y = b + sum W * window."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
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
