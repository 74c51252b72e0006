"""Add and Concat: forward by hand, gradient checks, shape rules and their messages."""
import numpy as np
import pytest

from gradcheck import check_layer

from gatescope.compute.layers import ShapeError, create


def test_add_sums_and_passes_gradient_to_all():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((2, 3, 4, 4)) for _ in range(3))
    layer = create("Add")
    np.testing.assert_allclose(layer.forward([a, b, c], True), a + b + c)
    assert layer.output_shape([(3, 4, 4)] * 3) == (3, 4, 4)
    check_layer(create("Add"), [a[:, :2, :2, :2], b[:, :2, :2, :2]])


def test_add_of_unequal_shapes_is_explained():
    with pytest.raises(ShapeError) as info:
        create("Add").output_shape([(16, 8, 8), (32, 8, 8)])
    assert str(info.value) == "Add needs inputs of equal shape; got 16x8x8 and 32x8x8"


@pytest.mark.parametrize("shapes,expected", [
    ([(3,), (5,)], (8,)),                           # vectors: features
    ([(6, 3), (6, 2)], (6, 5)),                     # sequences: features per step
    ([(2, 4, 4), (3, 4, 4)], (5, 4, 4)),            # images: channels
    ([(5, 2, 4, 4), (5, 1, 4, 4)], (5, 3, 4, 4)),   # clips: channels of every frame
])
def test_concat_axis(shapes, expected):
    rng = np.random.default_rng(1)
    layer = create("Concat")
    assert layer.output_shape(shapes) == expected
    xs = [rng.standard_normal((2,) + s) for s in shapes]
    y = layer.forward(xs, True)
    axis = {1: 1, 2: 2, 3: 1, 4: 2}[len(shapes[0])]
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    check_layer(create("Concat"), [x[..., :2] if x.ndim > 3 else x for x in xs])


def test_concat_errors():
    with pytest.raises(ShapeError, match="Concat joins along the channel axis, so every other size must match; "
                                         "got 2x4x4 and 3x5x5"):
        create("Concat").output_shape([(2, 4, 4), (3, 5, 5)])
    with pytest.raises(ShapeError, match="same kind; got 3 and 2x4x4"):
        create("Concat").output_shape([(3,), (2, 4, 4)])
