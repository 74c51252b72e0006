"""Dense, Flatten and Dropout: forward against their definitions, float64 central-difference
gradient checks (DESIGN section 7), shapes and messages."""
import numpy as np
import pytest

from gatescope.compute.layers import ShapeError, create
from gradcheck import check_layer, numeric_grad


@pytest.mark.parametrize("bias", [True, False])
def test_dense_is_x_w_plus_b_and_its_gradients_match_finite_differences(bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    layer = create("Dense", {"units": 3, "bias": bias})
    layer.build([(5,)], rng, np, np.float64)
    if bias:
        layer.params["b"][...] = rng.standard_normal(3)
    expected = x @ layer.params["W"] + (layer.params["b"] if bias else 0)
    np.testing.assert_allclose(layer.forward([x], False), expected, rtol=1e-14)
    check_layer(layer, [x], build=False)
    assert layer.param_formula([(5,)]) == ("3 x (5 + 1) = 18" if bias else "3 x 5 = 15")


def test_dense_needs_a_vector():
    with pytest.raises(ShapeError):
        create("Dense", {"units": 3}).output_shape([(2, 8, 8)])


@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 5)])
def test_flatten_keeps_the_order_of_values_and_passes_gradients_back(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2,) + shape)
    layer = create("Flatten")
    np.testing.assert_array_equal(layer.forward([x], False), x.reshape(2, -1))
    check_layer(layer, [x])
    with pytest.raises(ShapeError, match="flat already"):
        layer.output_shape([(7,)])


def test_dropout_drops_the_rate_scales_the_rest_and_is_the_identity_at_inference():
    x = np.ones((200, 50))
    layer = create("Dropout", {"rate": 0.3})
    y = layer.forward([x], True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    np.testing.assert_array_equal(layer.forward([x], False), x)
    np.testing.assert_array_equal(layer.backward(np.full_like(x, 2.0))[0], 2.0)   # inference: identity


def test_dropout_gradients_match_finite_differences_for_a_fixed_mask():
    rng = np.random.default_rng(2)
    x, weights = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    layer = create("Dropout", {"rate": 0.4})

    def forward():
        layer.set_rng(np.random.default_rng(9))        # the same mask on every evaluation
        return layer.forward([x], True)

    forward()
    analytic = layer.backward(weights)[0]
    np.testing.assert_allclose(analytic, numeric_grad(lambda: float((forward() * weights).sum()), x),
                               rtol=1e-6, atol=1e-9)
    assert (analytic == 0).any() and (analytic != 0).any()
