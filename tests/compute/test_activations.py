"""ReLU, LeakyReLU, Tanh, Sigmoid and Softmax: forward against their formulas, float64
central-difference gradient checks (DESIGN section 7)."""
import math

import numpy as np
import pytest

from gatescope.compute.layers import create
from gradcheck import check_layer

FORMULAS = {
    "ReLU": lambda v: max(v, 0.0),
    "LeakyReLU": lambda v: v if v > 0 else 0.1 * v,
    "Tanh": math.tanh,
    "Sigmoid": lambda v: 1 / (1 + math.exp(-v)),
}


def _inputs(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape) * 2
    x[np.abs(x) < 1e-3] = 0.5          # keep the kinks of ReLU and LeakyReLU out of the differences
    return x


@pytest.mark.parametrize("type_name", sorted(FORMULAS))
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 2, 3, 3)])
def test_elementwise_activations_match_their_formula_and_finite_differences(type_name, shape):
    settings = {"slope": 0.1} if type_name == "LeakyReLU" else {}
    x = _inputs(shape)
    layer = create(type_name, settings)
    np.testing.assert_allclose(layer.forward([x], True), np.vectorize(FORMULAS[type_name])(x), rtol=1e-14)
    check_layer(create(type_name, settings), [x])


def test_sigmoid_does_not_overflow():
    y = create("Sigmoid").forward([np.array([[-1e4, 0.0, 1e4]])], False)
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 3)])
def test_softmax_sums_to_one_per_row_and_its_gradients_match_finite_differences(shape):
    x = _inputs(shape, 1)
    y = create("Softmax").forward([x], True)
    exps = np.exp(x)
    np.testing.assert_allclose(y, exps / exps.sum(axis=-1, keepdims=True), rtol=1e-13)
    check_layer(create("Softmax"), [x])
    large = create("Softmax").forward([np.array([[1e4, 0.0]])], False)
    np.testing.assert_allclose(large, [[1.0, 0.0]])
