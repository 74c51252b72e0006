"""BatchNorm: closed-form forward in training and inference, running statistics, buffers, gradients."""
import numpy as np
import pytest

from gradcheck import check_layer, numeric_grad

from gatescope.compute.layers import ShapeError, create


def built(shape, **settings):
    layer = create("BatchNorm", settings)
    layer.build([shape], np.random.default_rng(0), np, np.float64)
    return layer


def test_training_normalises_per_feature_and_per_channel():
    rng = np.random.default_rng(0)
    vectors = rng.normal(3.0, 2.0, (16, 5))
    y = built((5,)).forward([vectors], True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-4)
    images = rng.normal(-1.0, 3.0, (4, 3, 5, 5))
    layer = built((3, 5, 5))
    layer.params["gamma"][...] = [1.0, 2.0, 3.0]
    layer.params["beta"][...] = [0.0, 1.0, -1.0]
    y = layer.forward([images], True)
    mean = images.mean(axis=(0, 2, 3), keepdims=True)
    var = images.var(axis=(0, 2, 3), keepdims=True)
    expected = (images - mean) / np.sqrt(var + 1e-5) * np.array([1, 2, 3.0]).reshape(1, 3, 1, 1) \
        + np.array([0, 1, -1.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(y, expected, atol=1e-12)


def test_running_statistics_and_inference():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, (10, 4))
    layer = built((4,), momentum=0.8)
    mean_ref, var_ref = layer.params["running_mean"], layer.params["running_var"]
    layer.forward([x], True)
    np.testing.assert_allclose(layer.params["running_mean"], 0.2 * x.mean(axis=0))
    np.testing.assert_allclose(layer.params["running_var"], 0.8 + 0.2 * x.var(axis=0, ddof=1))
    assert layer.params["running_mean"] is mean_ref and layer.params["running_var"] is var_ref  # updated in place
    y = layer.forward([x], False)
    expected = (x - layer.params["running_mean"]) / np.sqrt(layer.params["running_var"] + 1e-5)
    np.testing.assert_allclose(y, expected)
    before = layer.params["running_mean"].copy()
    layer.forward([x], False)
    np.testing.assert_array_equal(layer.params["running_mean"], before)  # inference changes nothing


def test_buffers_are_saved_but_not_trainable():
    layer = create("BatchNorm")
    assert layer.buffers == ("running_mean", "running_var")
    assert create("Dense").buffers == ()
    assert set(layer.param_shapes([(8, 4, 4)])) == {"gamma", "beta", "running_mean", "running_var"}
    assert layer.param_formula([(8, 4, 4)]) == "4 x 8 = 32 (16 trainable scale and shift, 16 running statistics)"


def test_gradients_training_vector_sequence_image():
    rng = np.random.default_rng(2)
    check_layer(create("BatchNorm"), [rng.standard_normal((5, 3))], training=True)
    check_layer(create("BatchNorm"), [rng.standard_normal((3, 4, 2))], training=True)
    check_layer(create("BatchNorm"), [rng.standard_normal((3, 2, 3, 3))], training=True)


def test_gradients_inference():
    # check_layer would also differentiate the running statistics, which are constants here
    # (buffers get no gradient), so the input, gamma and beta are checked one by one.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 3, 3))
    layer = built((2, 3, 3))
    for name in layer.params:
        layer.params[name][...] = rng.uniform(0.5, 1.5, 2)
    weights = rng.standard_normal(x.shape)

    def loss():
        return float((layer.forward([x], False) * weights).sum())

    layer.forward([x], False)
    (dx,) = layer.backward(weights)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-8)
    for name in ("gamma", "beta"):
        np.testing.assert_allclose(layer.grads[name], numeric_grad(loss, layer.params[name]), rtol=1e-5, atol=1e-8)
    assert not layer.grads["running_mean"].any() and not layer.grads["running_var"].any()


def test_kind_of_tensor():
    layer = create("BatchNorm")
    assert layer.time_distributed([(5, 3, 8, 8)])
    assert layer.output_shape([(3, 8, 8)]) == (3, 8, 8)
    with pytest.raises(ShapeError, match="needs a vector, a sequence or an image"):
        layer.output_shape([(1, 2, 3, 4, 5)])
