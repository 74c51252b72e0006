"""Embedding and GlobalMaxPool1D: forward against closed forms (one-hot times W, max over time),
float64 finite differences, the scatter-add kernel against its twin, and bad ids in words."""
import numpy as np
import pytest

from conftest import Backend, block_matches_float64, close, seeded_layer
from gradcheck import check_layer, numeric_grad

from gatescope.compute import jit
from gatescope.compute.datasets import Dataset, DataError
from gatescope.compute.graph import GraphSpec, Model, analyse
from gatescope.compute.layers import SettingsError, ShapeError, create
from gatescope.compute.ops import embedding as embedding_ops
from gatescope.compute.train import Trainer, TrainSettings


def _built(settings, steps=6, seed=0, dtype=np.float64):
    layer = create("Embedding", settings)
    layer.build([(steps,)], np.random.default_rng(seed), np, dtype)
    return layer


def test_embedding_is_one_hot_times_the_table():
    layer = _built({"vocabulary": 7, "dimension": 3})
    ids = np.random.default_rng(1).integers(0, 7, (4, 6)).astype(np.float64)
    one_hot = np.eye(7)[ids.astype(int)]                         # (N, T, V)
    np.testing.assert_allclose(layer.forward([ids], True), one_hot @ layer.params["W"])
    assert layer.output_shape([(6,)]) == (6, 3)
    assert layer.param_count([(6,)]) == 21 and layer.param_formula([(6,)]) == "7 x 3 = 21"


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "twins"])
@pytest.mark.parametrize("padding_id", [-1, 2])
def test_embedding_weight_gradient_matches_finite_differences(numba_on, padding_id):
    layer = _built({"vocabulary": 5, "dimension": 4, "padding_id": padding_id})
    ids = np.array([[0, 1, 1, 2, 4, 1], [2, 2, 3, 0, 1, 4]], dtype=np.float64)   # repeats: the adds must add
    weights = np.random.default_rng(2).standard_normal((2, 6, 4))

    def loss():
        return float((layer.forward([ids], True) * weights).sum())

    with jit.use_numba(numba_on):
        layer.zero_grads()
        layer.forward([ids], True)
        (d_ids,) = layer.backward(weights.copy())
        analytic = layer.grads["W"].copy()
    numeric = numeric_grad(loss, layer.params["W"])
    if padding_id >= 0:
        np.testing.assert_array_equal(analytic[padding_id], 0.0)     # the padding row never learns
        numeric[padding_id] = 0.0
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(d_ids, np.zeros_like(ids))         # ids have no gradient


def test_padding_row_starts_at_zero_and_stays_there_through_training_steps():
    layer = _built({"vocabulary": 4, "dimension": 3, "padding_id": 0}, dtype=np.float32)
    np.testing.assert_array_equal(layer.params["W"][0], 0.0)
    ids = np.array([[0, 0, 1, 3, 2, 0]], dtype=np.float32)
    layer.forward([ids], True)
    layer.backward(np.ones((1, 6, 3), np.float32))
    assert layer.grads["W"][0].tolist() == [0.0, 0.0, 0.0] and layer.grads["W"][1].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.skipif(not jit.available(), reason="numba is not installed here")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("skip", [-1, 0, 9])
def test_scatter_kernel_matches_its_twin(dtype, skip):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 10, 500)
    grad = rng.standard_normal((500, 7)).astype(dtype)
    start = rng.standard_normal((10, 7)).astype(dtype)          # adds into what is there (+=)
    kernel_out, twin_out = start.copy(), start.copy()
    embedding_ops.scatter_rows(ids, grad, kernel_out, skip)
    embedding_ops.scatter_rows.twin(ids, grad, twin_out, skip)
    np.testing.assert_allclose(kernel_out, twin_out, rtol=1e-5, atol=1e-5)
    reference = start.astype(np.float64)
    for r, row in enumerate(ids):
        if row != skip:
            reference[row] += grad[r]
    np.testing.assert_allclose(twin_out, reference, rtol=1e-5, atol=1e-5)
    assert embedding_ops.scatter_rows.compiled


@pytest.mark.parametrize("ids,message", [
    ([[1, 2, 9]], "token id 9 is outside the Embedding's vocabulary of 5 .*at least 10"),
    ([[1, 2.5, 3]], "whole numbers from 0 to 4, but the data holds 2.5"),
    ([[1, -2, 3]], "token id -2 is negative"),
    ([[1, np.nan, 3]], "whole numbers from 0 to 4, but the data holds nan"),
])
def test_bad_ids_are_named(ids, message):
    layer = _built({"vocabulary": 5, "dimension": 2}, steps=3)
    with pytest.raises(ValueError, match=message):
        layer.forward([np.array(ids, dtype=np.float32)], False)


def test_embedding_shape_and_setting_errors_in_words():
    with pytest.raises(ShapeError, match="one token id per step.*sequence 20x73.*one-hot characters"):
        create("Embedding").output_shape([(20, 73)])
    with pytest.raises(ShapeError, match="fed an image 1x8x8"):
        create("Embedding").output_shape([(1, 8, 8)])
    with pytest.raises(SettingsError, match="Padding id 8 is outside the vocabulary of 8"):
        create("Embedding", {"vocabulary": 8, "padding_id": 8})


def _text_cnn_spec(vocabulary=6, steps=8):
    spec = GraphSpec.chain(("Input", {"shape": (steps,)}),
                           ("Embedding", {"vocabulary": vocabulary, "dimension": 4}),
                           ("Conv1D", {"filters": 5, "kernel_size": 3}), ("GlobalMaxPool1D", {}),
                           ("Dense", {"units": 2}), ("Classify", {}))
    return spec


def test_text_cnn_shapes_through_analysis():
    analysis = analyse(_text_cnn_spec())
    assert analysis.ok, analysis.errors()
    assert [analysis.info[f"b{i}"].out_shape for i in range(1, 5)] == [(8, 4), (6, 5), (5,), (2,)]
    assert analysis.info["b1"].param_formula == "6 x 4 = 24"
    assert analysis.info["b3"].size_formula == "the largest of 6 steps: 5 features -> 5 values"


def test_training_refuses_ids_outside_the_vocabulary_before_it_starts():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, (40, 8)).astype(np.float32)
    x[17, 3] = 11
    dataset = Dataset("ids", x, rng.integers(0, 2, 40))
    model = Model(_text_cnn_spec(), seed=0)
    with pytest.raises(DataError, match="b1 \\(Embedding\\): token id 11 is outside .*vocabulary of 6"):
        Trainer(model, dataset, TrainSettings(epochs=1, batch_size=8))


def test_global_max_pool_over_time():
    x = np.random.default_rng(6).standard_normal((3, 7, 4))
    layer = create("GlobalMaxPool1D")
    np.testing.assert_allclose(layer.forward([x], True), x.max(axis=1))
    assert layer.output_shape([(7, 4)]) == (4,) and layer.param_formula([(7, 4)]) == "no parameters"
    check_layer(create("GlobalMaxPool1D"), [x])                  # distinct values: max is differentiable


def test_global_max_pool_sends_the_gradient_to_the_first_maximum():
    x = np.array([[[1.0, 5.0], [3.0, 5.0], [3.0, 0.0]]])       # ties in both features
    layer = create("GlobalMaxPool1D")
    layer.forward([x], True)
    (dx,) = layer.backward(np.array([[2.0, 7.0]]))
    np.testing.assert_array_equal(dx, [[[0.0, 7.0], [2.0, 0.0], [0.0, 0.0]]])


def test_global_max_pool_shape_errors_in_words():
    with pytest.raises(ShapeError, match="fed an image 3x8x8; for an image use MaxPool2D"):
        create("GlobalMaxPool1D").output_shape([(3, 8, 8)])
    with pytest.raises(ShapeError, match="fed a vector 10"):
        create("GlobalMaxPool1D").output_shape([(10,)])


@pytest.mark.parametrize("padding_id", [-1, 3])
def test_embedding_matches_float64_on_every_backend(backend, padding_id):
    """On the GPU the backward is ``cupy.add.at``; on the CPU the numba kernel or its twin."""
    settings = {"vocabulary": 12, "dimension": 5, "padding_id": padding_id}
    ids = np.random.default_rng(8).integers(0, 12, (6, 9))
    dy = np.random.default_rng(9).standard_normal((6, 9, 5))
    results = []
    for run, dtype in ((backend, np.float32), (Backend("twin"), np.float64)):
        xp = run.xp if dtype == np.float32 else np
        layer = seeded_layer("Embedding", settings, (9,), xp, dtype)
        with run.active():
            y = layer.forward([xp.asarray(ids, dtype=dtype)], True)
            layer.backward(xp.asarray(dy, dtype=dtype))
        results.append([run.host(a).astype(np.float64) for a in (y, layer.grads["W"])])
    for got, want, what in zip(*results, ("output", "dW")):
        close(got, want, f"Embedding {settings}: {what}")


def test_global_max_pool_matches_float64_on_every_backend(backend):
    block_matches_float64(backend, "GlobalMaxPool1D", {}, (9, 4))
