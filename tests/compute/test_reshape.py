"""Reshape: NumPy's row-major reshape per sample (the closed form), its gradient, and the
messages that point a person at it."""
import numpy as np
from gradcheck import check_layer

from gatescope.compute import layers
from gatescope.compute.graph import GraphSpec, Model, analyse


def test_forward_is_numpy_reshape_per_sample_and_backward_its_inverse():
    x = np.arange(2 * 40, dtype=np.float64).reshape(2, 40)
    layer = layers.create("Reshape", {"shape": [40, 1]})
    assert layer.output_shape([(40,)]) == (40, 1)
    y = layer.forward([x], training=True)
    np.testing.assert_array_equal(y, x.reshape(2, 40, 1))
    assert y[1, 7, 0] == x[1, 7]                      # sample 1's value 7 is its step 7
    grad = np.random.default_rng(0).standard_normal((2, 40, 1))
    np.testing.assert_array_equal(layer.backward(grad)[0], grad.reshape(2, 40))


def test_gradient_matches_finite_differences():
    x = np.random.default_rng(1).standard_normal((3, 2, 6))
    check_layer(layers.create("Reshape", {"shape": [3, 4]}), [x])


def test_a_shape_with_another_count_is_explained():
    info = analyse(GraphSpec.chain(("Input", {"shape": [40]}), ("Reshape", {"shape": [8, 8]}),
                                   ("Flatten", {}), ("Dense", {"units": 2}), ("Classify", {}))).info
    assert info["b1"].error == ("Reshape to 8x8 needs 64 values per sample, but is fed a vector 40 (40 values); "
                                "set its shape to sizes that multiply to 40, such as 40, 1")


def test_a_recurrent_block_fed_vectors_points_at_reshape():
    info = analyse(GraphSpec.chain(("Input", {"shape": [40]}), ("GRU", {"hidden_size": 4}),
                                   ("Dense", {"units": 2}), ("Classify", {}))).info
    assert "put a Reshape block before it with shape 40, 1" in info["b1"].error
    assert "reads each vector 40 as a sequence 40x1" in info["b1"].error
    conv = analyse(GraphSpec.chain(("Input", {"shape": [64]}), ("Conv2D", {}), ("Flatten", {}),
                                   ("Dense", {"units": 2}), ("Classify", {}))).info
    assert "with shape 1, 8, 8" in conv["b1"].error


def test_vectors_train_through_reshape_into_a_gru():
    rng = np.random.default_rng(0)
    graph = GraphSpec.chain(("Input", {"shape": [6]}), ("Reshape", {"shape": [6, 1]}),
                            ("GRU", {"hidden_size": 5}), ("Dense", {"units": 2}), ("Classify", {}))
    model = Model(graph, seed=0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    model.forward(x, training=True)
    model.loss(np.array([0, 1, 0, 1]))
    model.backward()
    assert all(np.abs(g).sum() > 0 for _, _, g in model.parameters())
