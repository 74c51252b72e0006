"""Classify and Regress: the loss and its gradient against the definitions and float64 central
differences (DESIGN section 7), the loss of a badly wrong sample counted in full, and Classify
on every backend (it runs the loss kernels everywhere)."""
import math

import numpy as np
import pytest

import closed_forms as cf
from conftest import close
from gatescope.compute.layers import ShapeError, create
from gradcheck import numeric_grad


def _loss_and_grad(type_name, x, targets):
    head = create(type_name)
    head.forward([x], True)
    loss = head.loss(targets)
    return head, loss, head.backward()[0]


@pytest.mark.parametrize("shape,labels_shape", [((6, 4), (6,)), ((3, 5, 4), (3, 5))])
def test_classify_is_the_mean_cross_entropy_and_its_gradient_matches_finite_differences(shape, labels_shape):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape) * 3
    labels = rng.integers(0, shape[-1], labels_shape)
    head, loss, grad = _loss_and_grad("Classify", logits, labels)
    probs, losses = cf.cross_entropy(logits.reshape(-1, shape[-1]), labels.reshape(-1))
    np.testing.assert_allclose(head.forward([logits], False).reshape(probs.shape), probs, rtol=1e-12)
    assert loss == pytest.approx(losses.mean(), rel=1e-12)

    def value():
        return _loss_and_grad("Classify", logits, labels)[1]

    np.testing.assert_allclose(grad, numeric_grad(value, logits), rtol=1e-6, atol=1e-9)


def test_a_badly_wrong_sample_counts_in_full():
    """-log p for p = e^-60 is 60, not -log(1e-12) = 27.6 (the cap of a loss read off the
    probabilities understated every curve and early stopping for bad models)."""
    logits = np.array([[60.0, 0.0], [0.0, 0.0]], np.float32)
    _, loss, _ = _loss_and_grad("Classify", logits, np.array([1, 0]))
    assert loss == pytest.approx((60 + math.log1p(math.exp(-60)) + math.log(2)) / 2, rel=1e-6)


def test_classify_needs_class_scores():
    with pytest.raises(ShapeError, match="at least 2"):
        create("Classify").output_shape([(1,)])
    with pytest.raises(ShapeError, match="vector of class scores"):
        create("Classify").output_shape([(1, 8, 8)])


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)])
def test_regress_is_the_mean_squared_error_and_its_gradient_matches_finite_differences(shape):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    head, loss, grad = _loss_and_grad("Regress", pred, target)
    assert loss == pytest.approx(((pred - target) ** 2).mean(), rel=1e-14)
    np.testing.assert_array_equal(head.forward([pred], False), pred)
    np.testing.assert_allclose(grad, numeric_grad(lambda: _loss_and_grad("Regress", pred, target)[1], pred),
                               rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("shape,labels_shape", [((6, 5), (6,)), ((3, 4, 7), (3, 4))])
def test_classify_matches_float64_on_every_backend(backend, shape, labels_shape):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(shape) * 3
    labels = rng.integers(0, shape[-1], labels_shape)
    want = _loss_and_grad("Classify", logits, labels)
    with backend.active():
        head, loss, grad = _loss_and_grad("Classify", backend.array(logits), backend.xp.asarray(labels))
    if backend.name == "emulated":       # the softmax runs once: the loss gathers from its row stats
        assert [name for name, _, _ in backend.emulator.launches] == [
            "softmax_forward", "cross_entropy_loss", "softmax_cross_entropy_backward"]
    close(backend.host(head._probs), want[0]._probs, "probabilities")
    assert loss == pytest.approx(want[1], rel=1e-5)
    close(backend.host(grad), want[2], "gradient of the logits")
