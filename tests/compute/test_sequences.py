"""Sequence datasets and one-to-many generation."""
from __future__ import annotations

import numpy as np
import pytest

from gatescope.compute import datasets
from gatescope.compute.datasets import DataError
from gatescope.compute.datasets.sequences import load_text
from gatescope.compute.generate import generate, sample_index
from gatescope.compute.graph import GraphSpec, Model


def test_registered():
    assert {"adding", "copy", "sine", "hello", "text"} <= set(datasets.builtin_names())


def test_adding_targets_are_the_marked_sums():
    ds = datasets.load({"kind": "builtin", "name": "adding", "params": {"n": 50, "length": 20, "seed": 3}})
    assert ds.x.shape == (50, 20, 2) and ds.y.shape == (50, 1) and ds.task == "regression"
    assert np.all(ds.x[..., 1].sum(axis=1) == 2)
    np.testing.assert_allclose(ds.y[:, 0], (ds.x[..., 0] * ds.x[..., 1]).sum(axis=1), rtol=1e-6)
    again = datasets.load({"kind": "builtin", "name": "adding", "params": {"n": 50, "length": 20, "seed": 3}})
    np.testing.assert_array_equal(ds.x, again.x)


def test_copy_targets_repeat_the_symbols_after_the_delay():
    ds = datasets.BUILTINS["copy"][0](n=10, symbols=3, delay=4, vocabulary=5, seed=1)
    assert ds.x.shape == (10, 10, 7) and ds.y.shape == (10, 10)
    shown = ds.x[:, :3].argmax(-1)
    np.testing.assert_array_equal(ds.y[:, 7:], shown)
    assert np.all(ds.y[:, :7] == 0) and np.all(ds.x[:, 6, 6] == 1)


def test_sine_targets_are_one_step_ahead():
    ds = datasets.BUILTINS["sine"][0](n=4, length=30, noise=0.0, seed=2)
    np.testing.assert_allclose(ds.x[:, 1:, 0], ds.y[:, :-1, 0], atol=1e-6)
    with pytest.raises(DataError):
        datasets.BUILTINS["sine"][0](noise=-1)


def test_hello():
    ds = datasets.BUILTINS["hello"][0](n=3)
    assert ds.x.shape == (3, 4, 4) and ds.vocab == ["h", "e", "l", "o"]
    assert "".join(ds.vocab[i] for i in ds.x[0].argmax(-1)) == "hell"
    assert "".join(ds.vocab[i] for i in ds.y[0]) == "ello"


def test_text_windows_come_from_the_bundled_text():
    corpus = load_text()
    assert len(corpus) > 100_000 and "\r" not in corpus
    ds = datasets.BUILTINS["text"][0](n=5, length=12, seed=1)
    assert ds.x.shape == (5, 12, len(ds.vocab)) and ds.y.shape == (5, 12)
    for row_x, row_y in zip(ds.x, ds.y):
        window = "".join(ds.vocab[i] for i in row_x.argmax(-1))
        assert window in corpus
        assert window[1:] + ds.vocab[row_y[-1]] in corpus


def test_generate_feeds_predictions_back():
    vocab = ["h", "e", "l", "o"]
    spec = GraphSpec.chain(("Input", {"shape": (4, 4)}),
                           ("LSTM", {"hidden_size": 6, "return_sequences": True}),
                           ("Dense", {"units": 4}), ("Classify", {}))
    model = Model(spec, seed=0)
    text, probs = generate(model, vocab, "he", 5, temperature=1.0, rng=np.random.default_rng(0))
    assert len(text) == 7 and text.startswith("he") and set(text) <= set(vocab)
    assert probs.shape == (5, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    greedy, greedy_probs = generate(model, vocab, "h", 3, temperature=0)
    assert all(greedy[k + 1] == vocab[int(np.argmax(greedy_probs[k]))] for k in range(3))
    with pytest.raises(ValueError, match="does not know"):
        generate(model, vocab, "hx", 2)


def test_sample_index_temperature():
    probs = np.array([0.1, 0.7, 0.2])
    assert sample_index(probs, 0, np.random.default_rng(0)) == 1
    draws = [sample_index(probs, 0.05, np.random.default_rng(i)) for i in range(20)]
    assert set(draws) == {1}


def test_word_order_pairs_every_run_with_a_shuffle_of_the_same_words():
    dataset = datasets.load({"kind": "builtin", "name": "word_order", "params": {"words": 8, "vocabulary": 300}})
    for x, y in ((dataset.x, dataset.y), (dataset.x_test, dataset.y_test)):
        half = len(x) // 2
        assert (y[:half] == 1).all() and (y[half:] == 0).all()            # in order, then their shuffles
        np.testing.assert_array_equal(np.sort(x[:half], axis=1), np.sort(x[half:], axis=1))
        assert (x[:half] != x[half:]).any(axis=1).all()                    # every shuffle differs
        assert x.dtype == np.float32 and (x == np.floor(x)).all() and x.min() >= 0 and x.max() < 300
    words = dataset.meta["words"]
    assert len(words) == 300 and words[0] == "<rare>" and words[1] == "the"
    assert dataset.class_names == ["shuffled", "in order"]


def test_word_order_tests_on_a_part_of_the_book_training_never_sees():
    dataset = datasets.load({"kind": "builtin", "name": "word_order", "params": {"words": 12, "stride": 1}})
    train = {tuple(row) for row in dataset.x[dataset.y == 1].astype(int).tolist()}
    test = [tuple(row) for row in dataset.x_test[dataset.y_test == 1].astype(int).tolist()]
    assert sum(row in train for row in test) <= len(test) // 100   # only runs the book itself repeats


@pytest.mark.parametrize("params,message", [({"words": 1}, "words"), ({"vocabulary": 1}, "vocabulary"),
                                            ({"test_share": 0.9}, "test_share"), ({"stride": "2"}, "stride")])
def test_word_order_refuses_bad_settings(params, message):
    with pytest.raises(DataError, match=message):
        datasets.load({"kind": "builtin", "name": "word_order", "params": params})
