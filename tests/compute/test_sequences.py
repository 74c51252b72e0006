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


def test_addition_questions_answers_and_teacher_forcing():
    from gatescope.compute.datasets.sequences import ADDITION_VOCAB
    dataset = datasets.load({"kind": "builtin", "name": "addition", "params": {"n": 300, "digits": 3}})
    assert dataset.x.shape == (300, 12, 14) and dataset.y.shape == (300, 5)
    text = lambda ids: "".join(ADDITION_VOCAB[int(i)] for i in ids)       # noqa: E731
    for x, y in zip(dataset.x[:50], dataset.y[:50]):
        ids = x.argmax(axis=1)
        assert (x.sum(axis=1) == 1).all()                                  # one-hot every step
        question = text(ids[:7])[::-1].strip()                              # written backwards
        a, b = question.split("+")
        answer = text(y)
        assert answer == f"{int(a) + int(b)}.".ljust(5, ".")
        assert text(ids[7:]) == "=" + answer[:-1]                          # the target shifted by one step
    recipe = dataset.meta["answer"]
    assert (recipe["start_step"], recipe["steps"]) == (7, 5) and ADDITION_VOCAB[recipe["end_id"]] == "."
    assert len({tuple(row) for row in dataset.x[:, :7].argmax(axis=2).tolist()}) == 300   # distinct questions
    with pytest.raises(DataError, match="at most 50"):
        datasets.load({"kind": "builtin", "name": "addition", "params": {"n": 60, "digits": 1}})


class _NextTokenModel:
    """A stand-in decoder whose step k predicts (the token it reads at step k) + 1: right answers
    come out only if each answer is fed back as the next step's input."""

    def __init__(self, start, vocabulary):
        self.start, self.vocabulary = start, vocabulary

    def predict(self, x, batch_size=256):
        read = x[:, self.start:].argmax(axis=2)
        return np.eye(self.vocabulary, dtype=np.float32)[(read + 1) % self.vocabulary]


def test_greedy_answers_are_fed_back_step_by_step():
    from gatescope.compute.generate import answer_greedily, sequence_accuracy
    x = np.zeros((2, 6, 5), np.float32)
    x[:, 3:, 4] = 1.0                                   # teacher forcing's answer: must be ignored
    recipe = {"start_step": 3, "steps": 3, "start_id": 1, "end_id": 0}
    answers, probs = answer_greedily(_NextTokenModel(3, 5), x, recipe)
    np.testing.assert_array_equal(answers, [[2, 3, 4], [2, 3, 4]])
    assert probs.shape == (2, 3, 5)
    targets = np.array([[2, 3, 4], [2, 0, 0]])
    assert sequence_accuracy(answers, targets, end_id=0) == 0.5
    assert sequence_accuracy(np.array([[2, 0, 3]]), np.array([[2, 0, 0]]), end_id=0) == 1.0   # after the end


class _EndAtOnce:
    """A stand-in decoder that writes the end token at once and keeps what it was asked."""

    def __init__(self, end, vocabulary):
        self.end, self.vocabulary, self.seen = end, vocabulary, None

    def predict(self, x, batch_size=256):
        self.seen = x.copy()
        return np.tile(np.eye(self.vocabulary, dtype=np.float32)[self.end], x.shape[:1] + (3, 1))


def test_a_typed_question_is_written_as_the_dataset_writes_them():
    from gatescope.compute.generate import ask
    recipe = {"start_step": 4, "steps": 3, "start_id": 3, "end_id": 4, "vocab": list("12+=. "), "pad": " ",
              "reversed_question": True}
    model = _EndAtOnce(4, 6)
    text, probs = ask(model, recipe, "1+2")
    assert text == "." and probs.shape == (1, 6)
    assert "".join(recipe["vocab"][i] for i in model.seen[0, :4].argmax(axis=1)) == " 2+1"   # padded, reversed
    assert model.seen[0, 4].argmax() == 3                                                   # the start token
    with pytest.raises(ValueError, match="written with '12\\+'; '=' is not among them"):
        ask(model, recipe, "1=2")
    with pytest.raises(ValueError, match="at most 4 characters"):
        ask(model, recipe, "12+12")
