"""The training loop: learning, reproducibility, resume, the NaN guard, pause and stop, data checks."""
import numpy as np
import pytest

from gatescope.compute.datasets import DataError, Dataset, load
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.optim import Adam
from gatescope.compute.train import Control, Trainer, TrainSettings, TrainState, evaluate


def mlp(dropout=0.0, inputs=64, classes=10):
    blocks = [("Input", {"shape": [inputs]}), ("Dense", {"units": 32}), ("ReLU", {})]
    if dropout:
        blocks.append(("Dropout", {"rate": dropout}))
    return GraphSpec.chain(*blocks, ("Dense", {"units": classes}), ("Classify", {}))


def digits_vectors():
    return load({"kind": "builtin", "name": "digits", "params": {"layout": "vector"}})


def run_all(trainer, epochs=None, control=None):
    return list(trainer.run(epochs, control))


def test_mlp_learns_the_digits():
    ds = digits_vectors()
    trainer = Trainer(Model(mlp(), seed=0), ds, TrainSettings(epochs=8, batch_size=32, learning_rate=3e-3))
    events = run_all(trainer)
    assert events[0].kind == "start" and events[-1].kind == "finished"
    epochs = [e.data for e in events if e.kind == "epoch"]
    assert len(epochs) == 8 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    test = trainer.test_metrics()
    assert test.accuracy >= 0.93
    assert test.confusion.sum() == len(trainer.split.test) and test.confusion.shape == (10, 10)


def test_regression_head_fits_a_linear_map():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    ds = Dataset("linear", x, y, task="regression")
    spec = GraphSpec.chain(("Input", {"shape": [3]}), ("Dense", {"units": 1}), ("Regress", {}))
    trainer = Trainer(Model(spec, seed=0), ds, TrainSettings(epochs=30, batch_size=20, learning_rate=0.05))
    run_all(trainer)
    assert trainer.test_metrics().loss < 1e-3


def test_three_then_two_epochs_end_where_five_in_one_go_would():
    ds = digits_vectors()
    settings = TrainSettings(epochs=5, batch_size=64, schedule="cosine", seed=3)
    one_go = Model(mlp(dropout=0.2), seed=3)
    run_all(Trainer(one_go, ds, settings))

    first = Model(mlp(dropout=0.2), seed=3)
    trainer = Trainer(first, ds, settings)
    run_all(trainer, epochs=3)
    weights, state = first.state_dict(), trainer.state
    resumed = Model(mlp(dropout=0.2), seed=99)  # fresh weights, replaced by the saved ones
    resumed.load_state_dict(weights)
    saved_state = TrainState(state.epochs_done, {k: v.copy() for k, v in state.optimizer.items()}, list(state.history))
    run_all(Trainer(resumed, ds, settings, saved_state), epochs=2)
    for name, value in one_go.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_every_step_loss_is_kept_and_a_restarted_epoch_replaces_its_steps():
    ds = digits_vectors()
    settings = TrainSettings(epochs=3, batch_size=64, seed=1)
    trainer = Trainer(Model(mlp(), seed=1), ds, settings)
    events = run_all(trainer, epochs=1)
    steps = [e.data for e in events if e.kind == "step"]
    per_epoch = steps[0]["steps"]
    assert trainer.state.step_numbers == list(range(per_epoch)) and trainer.state.steps_per_epoch == per_epoch
    assert trainer.state.step_losses == [float(d["loss"]) for d in steps]
    # Stopped after 3 steps of the second epoch: those are recorded, then that epoch starts again.
    control = Control()
    for event in trainer.run(epochs=1, control=control):
        if event.kind == "step" and event.data["step"] == 2:
            control.stop()
    assert trainer.state.step_numbers[-1] == per_epoch + 2 and trainer.state.epochs_done == 1
    events = run_all(trainer, epochs=1)
    assert trainer.state.step_numbers == list(range(2 * per_epoch))
    assert trainer.state.step_losses[per_epoch:] == [float(e.data["loss"]) for e in events if e.kind == "step"]
    # A larger batch: fewer steps per epoch, so the old step numbers would not fit the axis.
    settings.batch_size = 128
    events = run_all(trainer, epochs=1)
    fewer = [e.data for e in events if e.kind == "step"]
    assert trainer.state.step_numbers == [2 * len(fewer) + k for k in range(len(fewer))]


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32) * 10
    ds = Dataset("diverging", x, x.sum(axis=1, keepdims=True), task="regression")
    spec = GraphSpec.chain(("Input", {"shape": [4]}), ("Dense", {"units": 1}), ("Regress", {}))
    model = Model(spec, seed=0)
    # far too large a learning rate: the weights grow by orders of magnitude every step until overflow
    trainer = Trainer(model, ds, TrainSettings(epochs=50, optimizer="sgd", momentum=0.0, learning_rate=5.0))
    events = run_all(trainer)
    failed = [e for e in events if e.kind == "failed"]
    assert failed and "Lower the learning rate" in failed[0].data["message"]
    assert all(np.isfinite(v).all() for v in model.state_dict().values())
    assert [e for e in events if e.kind == "step"], "good steps ran before the blow-up"


def test_stop_and_pause_are_honoured_between_steps():
    ds = digits_vectors()
    control = Control()
    trainer = Trainer(Model(mlp(), seed=0), ds, TrainSettings(epochs=5))
    seen = []
    for event in trainer.run(control=control):
        seen.append(event.kind)
        if event.kind == "step" and event.data["step"] == 2:
            control.stop()
    assert seen[-1] == "stopped" and seen.count("step") == 3

    control = Control()
    control.pause()
    assert control.paused
    control.resume()
    assert not control.paused


def test_early_stopping_keeps_the_best_weights():
    ds = digits_vectors()
    # a huge learning rate makes validation loss worse after the first epochs
    trainer = Trainer(Model(mlp(), seed=0), ds, TrainSettings(epochs=30, early_stopping=2, learning_rate=0.05,
                                                              optimizer="sgd", momentum=0.9))
    events = run_all(trainer)
    assert events[-1].kind == "finished"
    if events[-1].data.get("early_stopped"):
        assert trainer.state.epochs_done < 30
        best = trainer.state.best_val_loss
        _, (xv, yv), _ = trainer._parts()
        assert evaluate(trainer.model, xv, yv).loss == pytest.approx(best, rel=1e-5)


def test_data_that_does_not_fit_the_model_is_named():
    ds = digits_vectors()
    with pytest.raises(DataError, match="are a vector 64 but the Input block expects a vector 32; "
                                        "set the Input's shape to 64"):
        Trainer(Model(mlp(inputs=32), seed=0), ds, TrainSettings())
    sequence_model = Model(GraphSpec.chain(("Input", {"shape": [64, 1]}), ("GRU", {"hidden_size": 4}),
                                           ("Dense", {"units": 10}), ("Classify", {})))
    with pytest.raises(DataError, match="set the Input's shape to 64 and put a Reshape block with shape 64, 1 "
                                        "right after it"):
        Trainer(sequence_model, ds, TrainSettings())
    with pytest.raises(DataError, match="10 classes but the model gives 5"):
        Trainer(Model(mlp(classes=5), seed=0), ds, TrainSettings())


def test_settings_are_checked():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainSettings.from_dict({"optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainSettings.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="batch_size must be a int"):
        TrainSettings.from_dict({"batch_size": "32"})
    assert TrainSettings.from_dict({"learning_rate": 1}).learning_rate == 1.0


def _adam_losses(spec, x, y, steps, backend, dtype):
    model = Model(spec, seed=0, xp=backend.xp if dtype == np.float32 else np, dtype=dtype)
    opt = Adam(model.parameters())
    losses = []
    with backend.active():
        for _ in range(steps):
            model.zero_grads()
            model.forward(x, True)
            losses.append(model.loss(y))
            model.backward()
            opt.step(0.01)
    return losses


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_short_training_runs_learn_alike_on_every_backend(backend, name):
    rng = np.random.default_rng(11)
    if name == "cnn":
        spec = GraphSpec.chain(("Input", {"shape": (1, 8, 8)}),
                               ("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same"}), ("ReLU", {}),
                               ("MaxPool2D", {"size": 2}), ("Flatten", {}), ("Dense", {"units": 3}),
                               ("Classify", {}))
        x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
        used = {"im2col", "max_pool2d_forward", "max_pool2d_backward", "softmax_forward",
                "cross_entropy_loss", "adam_update"}
    else:
        spec = GraphSpec.chain(("Input", {"shape": (5, 3)}), ("LSTM", {"hidden_size": 6}),
                               ("Dense", {"units": 3}), ("Classify", {}))
        x = rng.standard_normal((8, 5, 3)).astype(np.float32)
        used = {"lstm_forward", "lstm_backward", "softmax_cross_entropy_backward", "adam_update"}
    y = rng.integers(0, 3, 8)
    got = _adam_losses(spec, backend.array(x), backend.xp.asarray(y), 6, backend, np.float32)
    want = _adam_losses(spec, x.astype(np.float64), y, 6, backend, np.float64)
    if backend.name == "emulated":
        assert used <= {name for name, _, _ in backend.emulator.launches}
    assert want[-1] < want[0]                          # it learns
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("n, batch, steps", [(10, 3, 7), (5, 5, 4), (7, 32, 3), (100, 8, 12)])
def test_batches_are_slices_of_consecutive_permutations(n, batch, steps):
    """Drawn lazily, the batches are exactly the slices of the passes over range(n) drawn all at
    once (what the loop did before), so a seed gives the runs it gave."""
    from gatescope.compute.train import shuffled_batches
    got = list(shuffled_batches(np.random.default_rng([3, 1]), n, batch, steps))
    reference_rng = np.random.default_rng([3, 1])
    order = np.concatenate([reference_rng.permutation(n) for _ in range(-(-steps * batch // n))])
    assert len(got) == steps
    for step, idx in enumerate(got):
        np.testing.assert_array_equal(idx, order[step * batch:(step + 1) * batch])
