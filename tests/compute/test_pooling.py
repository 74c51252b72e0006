"""Pooling: forward against nested loops, argmax routing (first on ties), gradient checks."""
import numpy as np
import pytest

from conftest import block_matches_float64
from gradcheck import check_layer

from gatescope.compute import jit
from gatescope.compute.layers import ShapeError, create
from gatescope.compute.ops import pooling as pool_ops


def loop_pool2d(x, size, stride, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = reduce(x[:, :, i * stride:i * stride + size, j * stride:j * stride + size], axis=(2, 3))
    return y


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "twins"])
@pytest.mark.parametrize("kind,reduce", [("MaxPool2D", np.max), ("AvgPool2D", np.mean)])
@pytest.mark.parametrize("size,stride", [(2, 0), (3, 2), (2, 1), (3, 3)])
def test_pool2d_forward_matches_loops(kind, reduce, size, stride, numba_on):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8))
    layer = create(kind, {"size": size, "stride": stride})
    with jit.use_numba(numba_on):
        y = layer.forward([x], True)
    np.testing.assert_allclose(y, loop_pool2d(x, size, stride or size, reduce))
    assert y.shape[1:] == layer.output_shape([(3, 7, 8)])


def test_lecture_max_pool_example():
    x = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], float)[None, None]
    np.testing.assert_array_equal(create("MaxPool2D", {"size": 2}).forward([x], False)[0, 0], [[9, 2], [6, 3]])


def test_max_pool_backward_routes_to_first_maximum_on_ties():
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    layer = create("MaxPool2D", {"size": 2})
    layer.forward([x], True)
    (dx,) = layer.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_overlapping_max_windows_add_their_gradients():
    x = np.array([[[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]]])
    layer = create("MaxPool2D", {"size": 2, "stride": 1})
    layer.forward([x], True)
    (dx,) = layer.backward(np.ones((1, 1, 2, 2)))
    assert dx[0, 0, 1, 1] == 4 and dx.sum() == 4


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "twins"])
@pytest.mark.parametrize("kind", ["MaxPool2D", "AvgPool2D"])
def test_pool2d_gradients(kind, numba_on):
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5))  # distinct values: max is differentiable
    with jit.use_numba(numba_on):
        check_layer(create(kind, {"size": 2, "stride": 0}), [x])
        check_layer(create(kind, {"size": 3, "stride": 1}), [x])


@pytest.mark.parametrize("kind,reduce", [("MaxPool1D", np.max), ("AvgPool1D", np.mean)])
def test_pool1d_over_time_per_feature(kind, reduce):
    x = np.random.default_rng(2).standard_normal((2, 7, 3))  # (N, T, F)
    layer = create(kind, {"size": 3, "stride": 2})
    y = layer.forward([x], True)
    assert y.shape == (2, 3, 3) and layer.output_shape([(7, 3)]) == (3, 3)
    for t in range(3):
        np.testing.assert_allclose(y[:, t], reduce(x[:, 2 * t:2 * t + 3], axis=1))
    check_layer(create(kind, {"size": 3, "stride": 2}), [x])


def test_global_avg_pool():
    rng = np.random.default_rng(3)
    image = rng.standard_normal((2, 3, 4, 5))
    sequence = rng.standard_normal((2, 6, 4))
    layer = create("GlobalAvgPool")
    assert layer.output_shape([(3, 4, 5)]) == (3,) and layer.output_shape([(6, 4)]) == (4,)
    np.testing.assert_allclose(layer.forward([image], True), image.mean(axis=(2, 3)))
    np.testing.assert_allclose(layer.forward([sequence], True), sequence.mean(axis=1))
    check_layer(create("GlobalAvgPool"), [image])
    check_layer(create("GlobalAvgPool"), [sequence])
    assert layer.time_distributed([(5, 3, 4, 4)])
    with pytest.raises(ShapeError, match="nothing to average over"):
        layer.output_shape([(10,)])


def test_pool_errors_and_no_parameters():
    with pytest.raises(ShapeError, match="pooling window 3 is larger than the 2x2 input"):
        create("MaxPool2D", {"size": 3}).output_shape([(4, 2, 2)])
    with pytest.raises(ShapeError, match="expects a sequence"):
        create("MaxPool1D").output_shape([(1, 8, 8)])
    assert create("MaxPool2D").param_count([(4, 8, 8)]) == 0
    assert create("MaxPool2D").param_formula([(4, 8, 8)]) == "no parameters"


@pytest.mark.parametrize("type_name,settings,in_shape,expect", [
    ("MaxPool2D", dict(size=2), (3, 6, 7), ("max_pool2d_forward", "max_pool2d_backward")),
    ("MaxPool2D", dict(size=3, stride=2), (2, 7, 7), ("max_pool2d_forward", "max_pool2d_backward")),
    ("AvgPool2D", dict(size=2), (3, 6, 6), ("avg_pool2d_forward", "avg_pool2d_backward")),
    ("AvgPool2D", dict(size=3, stride=1), (2, 5, 6), ("avg_pool2d_forward", "avg_pool2d_backward")),
    ("MaxPool1D", dict(size=2), (9, 4), ("max_pool2d_forward", "max_pool2d_backward")),
    ("AvgPool1D", dict(size=3, stride=2), (9, 4), ("avg_pool2d_forward", "avg_pool2d_backward")),
])
def test_pooling_matches_float64_on_every_backend(backend, type_name, settings, in_shape, expect):
    block_matches_float64(backend, type_name, settings, in_shape, expect=expect)


@pytest.mark.skipif(not jit.available(), reason="numba is not installed here")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,window,strides", [((6, 7, 8), (2, 2), (2, 2)), ((3, 9, 9), (3, 3), (2, 1)),
                                                  ((4, 7, 3), (3, 1), (2, 1))])
def test_pool_kernels_match_their_twins(dtype, shape, window, strides):
    rng = np.random.default_rng(4)
    planes = rng.integers(-3, 4, shape).astype(dtype)       # many ties: the first maximum must win
    (kh, kw), (sy, sx) = window, strides
    out_shape = (shape[0], (shape[1] - kh) // sy + 1, (shape[2] - kw) // sx + 1)
    grad = rng.standard_normal(out_shape).astype(dtype)
    results = []
    halves = ((0, shape[0] // 2), (shape[0] // 2, shape[0]))
    for run, ranges in ((lambda k: k, [(0, shape[0])]), (lambda k: k.twin, [(0, shape[0])]), (lambda k: k, halves)):
        best, where = np.empty(out_shape, dtype), np.empty(out_shape, np.int32)
        max_dx, mean, avg_dx = np.empty(shape, dtype), np.empty(out_shape, dtype), np.empty(shape, dtype)
        for part in ranges:     # parts of a call write what the whole call writes
            run(pool_ops.max_forward)(planes, kh, kw, sy, sx, best, where, *part)
            run(pool_ops.max_backward)(grad, where, kh, kw, sy, sx, max_dx, *part)
            run(pool_ops.avg_forward)(planes, kh, kw, sy, sx, mean, *part)
            run(pool_ops.avg_backward)(grad, kh, kw, sy, sx, avg_dx, *part)
        results.append((best, where, max_dx, mean, avg_dx))
    for got, twin, in_parts in zip(*results):
        np.testing.assert_allclose(got, twin, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(in_parts, got)
    assert all(k.compiled for k in (pool_ops.max_forward, pool_ops.max_backward, pool_ops.avg_forward,
                                    pool_ops.avg_backward))
