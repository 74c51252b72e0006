"""Lock-step comparison: proven, not assumed. Identical variants give bit-identical curves; each
variant's curve is the one it gets trained alone with compute.train.Trainer; the batches are the
same; initial weights are shared exactly where they can be; the variants move step by step."""
from dataclasses import replace

import numpy as np
import pytest

from gatescope.compute.datasets import load
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.lockstep import LockStep, Variant
from gatescope.compute.train import Control, Trainer, TrainSettings


@pytest.fixture(scope="module")
def rows():
    return load({"kind": "builtin", "name": "digits", "params": {"layout": "rows"}})


def recurrent(block_type="LSTM", **settings):
    return GraphSpec.chain(("Input", {"shape": [8, 8]}), (block_type, {"hidden_size": 12, **settings}),
                           ("Dense", {"units": 10}), ("Classify", {}))


SETTINGS = TrainSettings(epochs=2, batch_size=16, learning_rate=5e-3, steps_per_epoch=6, seed=4)


def run(lockstep, epochs=None, control=None):
    return list(lockstep.run(epochs, control))


def test_two_identical_variants_give_bit_identical_curves(rows):
    lockstep = LockStep([Variant("a", recurrent(), SETTINGS), Variant("b", recurrent(), SETTINGS)], rows)
    events = run(lockstep)
    a, b = (t.state for t in lockstep.trainers)
    assert len(a.step_losses) == 12 and a.step_losses == b.step_losses
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    for name, value in lockstep.models[0].state_dict().items():
        np.testing.assert_array_equal(lockstep.models[1].state_dict()[name], value, err_msg=name)
    assert [i for i, e in events if e.kind == "finished"] == [0, 1]


@pytest.mark.parametrize("swap", ["GRU", "SimpleRNN"])
def test_each_variant_trains_as_it_would_alone(rows, swap):
    variants = [Variant("LSTM", recurrent(), SETTINGS), Variant(swap, recurrent(swap), SETTINGS),
                Variant("clipped", recurrent(), replace(SETTINGS, clip_norm=0.5, learning_rate=1e-2))]
    lockstep = LockStep(variants, rows)
    run(lockstep)
    for i, variant in enumerate(variants):
        alone = Model(variant.graph, seed=variant.settings.seed)
        alone.load_state_dict(lockstep.initial_weights[i])
        trainer = Trainer(alone, rows, variant.settings)
        list(trainer.run())
        assert trainer.state.step_losses == lockstep.trainers[i].state.step_losses, variant.label
        assert trainer.state.history[-1]["val_loss"] == lockstep.trainers[i].state.history[-1]["val_loss"]
    # The first variant shares nothing: it is exactly the model a fresh project would train.
    fresh = Model(variants[0].graph, seed=SETTINGS.seed).state_dict()
    for name, value in fresh.items():
        np.testing.assert_array_equal(lockstep.initial_weights[0][name], value)


def test_the_variants_move_step_by_step_together(rows):
    lockstep = LockStep([Variant("LSTM", recurrent(), SETTINGS), Variant("GRU", recurrent("GRU"), SETTINGS)], rows)
    steps = [(i, e.data["global_step"]) for i, e in run(lockstep) if e.kind == "step"]
    assert steps == [(i, s) for s in range(12) for i in (0, 1)]
    assert lockstep.steps_done == [12, 12] and all(s > 0 for s in lockstep.seconds)
    assert lockstep.seconds[0] == pytest.approx(sum(lockstep.step_seconds[0]))
    assert lockstep.seconds_per_step(0) == pytest.approx(float(np.median(lockstep.step_seconds[0])))


def test_a_variant_with_fewer_steps_per_epoch_keeps_pace_by_share_of_its_run(rows):
    half = replace(SETTINGS, steps_per_epoch=3, batch_size=32)
    lockstep = LockStep([Variant("16", recurrent(), SETTINGS), Variant("32", recurrent(), half)], rows)
    order = [i for i, e in run(lockstep) if e.kind == "step"]
    assert order.count(0) == 12 and order.count(1) == 6
    # at every point, neither is more than one step (of its own) ahead of the other's share
    done = [0, 0]
    for i in order:
        done[i] += 1
        assert abs(done[0] / 12 - done[1] / 6) <= 1 / 6 + 1e-9


def test_same_batches_is_checked_on_the_batches(rows):
    same = LockStep([Variant("a", recurrent(), SETTINGS), Variant("b", recurrent("GRU"), SETTINGS)], rows)
    assert same.same_batches(2)
    np.testing.assert_array_equal(np.stack(list(same.trainers[0].epoch_batches(1))),
                                  np.stack(list(same.trainers[1].epoch_batches(1))))
    for other in (replace(SETTINGS, seed=5), replace(SETTINGS, batch_size=8), replace(SETTINGS, val_fraction=0.2)):
        pair = [Variant("a", recurrent(), SETTINGS), Variant("b", recurrent(), other)]
        assert not LockStep(pair, rows).same_batches(2)


def test_the_epoch_batches_are_the_batches_the_trainer_reads(rows):
    """Trainer.epoch_batches is what a run reads: the batches the model is fed, recorded as they
    arrive, are the samples the plan names, step by step."""
    model = Model(GraphSpec.chain(("Input", {"shape": [8, 8]}), ("Flatten", {}), ("Dense", {"units": 10}),
                                  ("Classify", {})), seed=0)
    seen = []
    original = model.forward

    def spy(x, training=False):
        if training:
            seen.append(np.asarray(x).copy())
        return original(x, training)

    model.forward = spy
    trainer = Trainer(model, rows, SETTINGS)
    list(trainer.run(epochs=2))
    planned = [indices for e in range(2) for indices in trainer.epoch_batches(e)]
    assert len(seen) == len(planned) == 12
    for batch, indices in zip(seen, planned):
        np.testing.assert_array_equal(batch, rows.x[indices])


def test_initial_weights_are_shared_where_they_can_be(rows):
    variants = [Variant("LSTM", recurrent(), SETTINGS), Variant("GRU", recurrent("GRU"), SETTINGS),
                Variant("peephole", recurrent(variant="peephole"), SETTINGS),
                Variant("bias 3", recurrent(forget_bias_init=3.0), SETTINGS),
                Variant("other seed", recurrent("GRU"), replace(SETTINGS, seed=9))]
    lockstep = LockStep(variants, rows)
    head = {"b2/W", "b2/b"}
    assert lockstep.shared[0] == []
    assert set(lockstep.shared[1]) == head                                  # the GRU's own arrays differ
    assert {"b1/W", "b1/U", "b1/b"} | head <= set(lockstep.shared[2])
    assert "b1/b" not in lockstep.shared[3] and {"b1/W", "b1/U"} | head <= set(lockstep.shared[3])
    assert lockstep.shared[4] == []                                         # another seed: nothing shared
    w = lockstep.initial_weights
    np.testing.assert_array_equal(w[1]["b2/W"], w[0]["b2/W"])
    assert not np.array_equal(w[3]["b1/b"], w[0]["b1/b"])
    assert np.allclose(w[3]["b1/b"][12:24], 3.0)                          # its forget bias is its own


def test_probe_events_carry_gradients_through_time(rows):
    variants = [Variant("LSTM", recurrent(), SETTINGS), Variant("RNN", recurrent("SimpleRNN"), SETTINGS)]
    lockstep = LockStep(variants, rows)
    probes = [(i, e.data) for i, e in run(lockstep) if e.kind == "probe"]
    assert [(i, d["epoch"]) for i, d in probes] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    lstm = probes[0][1]["probes"]["b1"]
    assert lstm["grad_hidden_norm"].shape == (8, 8) and np.all(lstm["grad_hidden_norm"] > 0)
    assert "grad_hidden_norm" in probes[1][1]["probes"]["b1"]
    assert all(layer.probe is None for m in lockstep.models for layer in m.layers.values() if hasattr(layer, "probe"))


def test_a_failing_variant_drops_out_and_the_others_finish(rows):
    lockstep = LockStep([Variant("ok", recurrent(), SETTINGS), Variant("diverges", recurrent("GRU"), SETTINGS),
                         Variant("also ok", recurrent("SimpleRNN"), SETTINGS)], rows)
    model, calls = lockstep.models[1], []
    forward = model.forward

    def diverging(x, training=False):             # from its fourth training step on, the loss is NaN
        calls.append(training)
        return forward(x * np.nan if calls.count(True) >= 4 else x, training)

    model.forward = diverging
    events = run(lockstep)
    endings = {i: e.kind for i, e in events if e.kind in ("finished", "failed")}
    assert endings == {0: "finished", 1: "failed", 2: "finished"}
    assert lockstep.steps_done == [12, 3, 12]
    assert "NaN at epoch 1, step 4" in next(e.data["message"] for i, e in events if e.kind == "failed")


def test_stop_ends_every_variant(rows):
    lockstep = LockStep([Variant("a", recurrent(), SETTINGS), Variant("b", recurrent("GRU"), SETTINGS)], rows)
    control = Control()
    kinds = []
    for i, event in lockstep.run(control=control):
        kinds.append((i, event.kind))
        if event.kind == "step" and event.data["global_step"] == 2:
            control.stop()
    assert [k for k in kinds if k[1] == "stopped"] == [(0, "stopped"), (1, "stopped")]
    assert lockstep.steps_done == [3, 3]
