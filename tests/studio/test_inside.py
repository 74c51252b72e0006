"""The inside-the-network controller on small real models: what the panels show, overrides,
training events, text generation, the convolution panel, and installing into a window."""

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal

from gatescope.compute.datasets import load
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.train import Trainer, TrainSettings
from gatescope.studio.inside import LIVE_BUDGET, InsideController, install_inside_panels
from gatescope.studio.inside_math import gate_health, health_findings, sample_probe
from gatescope.studio.project import Project



STEPS = 12


def adding_project(**lstm) -> tuple[Project, object]:
    spec = GraphSpec.chain(("Input", {"shape": (STEPS, 2)}), ("LSTM", dict({"hidden_size": 6}, **lstm)),
                           ("Dense", {"units": 1}), ("Regress", {}))
    dataset = load({"kind": "builtin", "name": "adding", "params": {"n": 80, "length": STEPS}})
    project = Project(name="adding-lstm", graph=spec,
                      dataset={"kind": "builtin", "name": "adding", "params": {"n": 80, "length": STEPS}},
                      training=TrainSettings(epochs=2, batch_size=16, learning_rate=1e-2))
    return project, dataset


def settle(qtbot, controller):
    qtbot.waitUntil(lambda: not controller.busy and controller.last_result is not None, timeout=10000)


@pytest.fixture
def controller(qtbot):
    c = InsideController()
    for panel in c.panels.values():
        qtbot.addWidget(panel)
    yield c
    c.shutdown()


def test_probe_run_fills_gates_cell_state_and_gradients(qtbot, controller):
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    assert controller.last_error is None
    gates = controller.gates
    assert not gates.is_empty and list(gates.images) == ["input", "forget", "candidate", "output"]
    # An independent run of the same model on the same test sample gives the same gate values.
    model = Model(project.graph, seed=project.training.seed)
    model.layers["b1"].probe = [0]
    x = controller._pool[0][controller.sample:controller.sample + 1]
    model.forward(x)
    reference = sample_probe(model.layers["b1"].probe_data)
    for name, values in reference.gates.items():
        np.testing.assert_allclose(gates.images[name].image, values.T, rtol=1e-5, atol=1e-6)
    assert gates.input_plot is not None                           # the adding problem's two inputs
    np.testing.assert_allclose(controller.cell_state.cell, reference.cell, rtol=1e-5, atol=1e-6)
    curves = controller.gradients.curves
    assert {"adding-lstm/b1/grad_h", "adding-lstm/b1/grad_c"} <= set(curves)
    assert len(curves["adding-lstm/b1/grad_h"].values) == STEPS and (curves["adding-lstm/b1/grad_h"].values > 0).all()
    assert not controller.gate_health.is_empty
    assert controller.text_generation.is_empty                   # not a character model


def test_a_bidirectional_block_shows_either_direction(qtbot, controller):
    project, dataset = adding_project(bidirectional=True)
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    combo = controller.gates.block_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["LSTM b1 (6 units), forward",
                                                                 "LSTM b1 (6 units), backward"]
    model = Model(project.graph, seed=project.training.seed)
    model.layers["b1"].probe = [0]
    model.forward(controller._pool[0][controller.sample:controller.sample + 1])
    forward = sample_probe(model.layers["b1"].probe_data)
    backward = sample_probe(model.layers["b1"].probe_data, direction="_rev")
    assert not np.allclose(forward.cell, backward.cell)              # two layers, two memories
    for name, values in forward.gates.items():
        np.testing.assert_allclose(controller.gates.images[name].image, values.T, rtol=1e-5, atol=1e-6)
    assert "(forward direction)" in controller.gates.caption_label.text()
    combo.setCurrentIndex(1)                                       # what the person picks
    assert controller.recurrent_direction == "_rev"
    for name, values in backward.gates.items():
        np.testing.assert_allclose(controller.gates.images[name].image, values.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(controller.cell_state.cell, backward.cell, rtol=1e-5, atol=1e-6)
    assert "backward direction" in controller.gates.caption_label.text()
    assert "backward direction" in controller.gate_health.caption_label.text()
    curves = controller.gradients.curves
    assert {"adding-lstm/b1/grad_h", "adding-lstm/b1_rev/grad_h", "adding-lstm/b1_rev/grad_c"} <= set(curves)
    # The backward direction reads the sequence from its end: its ||dL/dh_t|| is recorded per
    # step in the sequence's own order, like the forward one's.
    assert len(curves["adding-lstm/b1_rev/grad_h"].values) == STEPS
    controller.select_blocks(["b2"])                               # a Dense: the choice stays
    assert controller.recurrent_direction == "_rev"
    combo.setCurrentIndex(0)
    assert controller.recurrent_direction == ""
    np.testing.assert_allclose(controller.cell_state.cell, forward.cell, rtol=1e-5, atol=1e-6)


def test_next_sample_changes_the_probe(qtbot, controller):
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    before = controller.gates.images["input"].image.copy()
    controller.gates.next_button.click()
    settle(qtbot, controller)
    assert controller.sample == 1 and controller.gates.sample_spin.value() == 1
    assert not np.allclose(before, controller.gates.images["input"].image)


def test_forget_one_input_zero_freezes_the_cell_state(qtbot, controller):
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    assert controller.cell_state.cell.std(axis=0).max() > 1e-3     # a learned LSTM's memory moves
    block = project.graph.block("b1")
    block.settings.update(pin_forget="1", pin_input="0")          # what the inspector does
    controller.graph_changed()
    settle(qtbot, controller)
    cell = controller.cell_state.cell
    np.testing.assert_allclose(cell, np.zeros_like(cell), atol=1e-7)   # C_t = 1 * C_(t-1) + 0, from C_0 = 0
    np.testing.assert_array_equal(controller.gates.images["forget"].image, 1.0)
    np.testing.assert_array_equal(controller.gates.images["input"].image, 0.0)
    assert "pinned to 1" in controller.gates.plots["forget"].titleLabel.text
    grad_c = controller.gradients.curves["adding-lstm/b1/grad_c"].values
    np.testing.assert_allclose(grad_c, grad_c[-1], rtol=1e-5)      # f = 1: the highway passes dL/dC_t unchanged
    assert "pinned" in controller.gate_health.caption_label.text()
    assert not any("forget" in f or "input" in f for f in controller.gate_health.findings)


def test_training_events_update_the_panels_and_health(qtbot, controller):
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    model = project.build_model()
    trainer = Trainer(model, dataset, project.training)
    trainer.probe_interval_s = 0.0
    controller.set_model(model)
    controller.live_interval_s, controller.live_budget = 0.0, float("inf")   # a refresh on every step
    seen_probes = 0
    first = controller.gradients.curves["adding-lstm/b1/grad_h"].values.copy()
    for event in trainer.run(epochs=2):
        seen_probes += "probes" in event.data
        controller.on_training_event(event)
        qtbot.waitUntil(lambda: not controller.busy, timeout=10000)
    assert seen_probes > 0
    assert not controller.training
    assert "samples of the training batch" not in controller.gate_health.caption_label.text()
    assert "last training run" in controller.gates.caption_label.text()
    after = controller.gradients.curves["adding-lstm/b1/grad_h"].values
    assert not np.allclose(first, after)                           # the weights changed what reaches each t


def test_live_refreshes_stay_within_their_time_budget(qtbot, controller):
    """While training, refreshes come no more often than keeps their measured cost (probe run
    plus filling the panels) within ``live_budget`` of the time."""
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    cost = controller._refresh_cost_s
    assert 0 < cost < 5
    assert controller.live_interval() == max(1.0, cost / LIVE_BUDGET)
    controller.live_interval_s = 0.0
    assert controller.live_interval() == pytest.approx(cost / LIVE_BUDGET)
    runs = []
    controller.refreshed.connect(lambda: runs.append(1))
    controller.on_training_event(("start", {}))
    controller.on_training_event(("step", {"global_step": 0}))      # training just began: not yet
    controller.on_training_event(("epoch", {}))                     # a short epoch: not yet either
    assert not controller.busy and not runs
    controller.live_budget = float("inf")                            # an interval of 0 from now
    controller.on_training_event(("step", {"global_step": 1}))
    qtbot.waitUntil(lambda: bool(runs) and not controller.busy, timeout=10000)
    controller.live_budget = 1e-6                                    # the next one is far off
    for step in range(2, 20):
        controller.on_training_event(("step", {"global_step": step}))
    assert not controller.busy and len(runs) == 1
    controller.on_training_event(("finished", {}))                  # after training: at once
    qtbot.waitUntil(lambda: len(runs) == 2 and not controller.busy, timeout=10000)


def test_health_during_training_comes_from_the_batch(qtbot, controller):
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    model = project.build_model()
    controller.set_model(model)
    model.forward(dataset.x[:16], training=True)
    probes = {"b1": dict(model.layers["b1"].probe_data)}
    controller.on_training_event(("start", {}))
    controller.on_training_event(("step", {"global_step": 4, "probes": probes}))
    assert "8 samples of the training batch at step 5" in controller.gate_health.caption_label.text()


def test_gate_health_math_and_flags(qtbot, controller):
    stuck = np.full((2, 10, 4), 0.99)
    moving = np.tile(np.linspace(0.1, 0.9, 10)[None, :, None], (2, 1, 4))
    probes = {"gates": {"forget": stuck, "input": moving}}
    health = gate_health(probes)
    assert health["forget"] == {"saturated_low": 0.0, "saturated_high": 1.0, "saturated": 1.0, "frozen_units": 1.0}
    assert health["input"]["saturated"] == 0.0 and health["input"]["frozen_units"] == 0.0
    findings = health_findings(health)
    assert len(findings) == 2 and all(f.startswith("forget gate f_t") for f in findings)
    assert health_findings(health, {"forget": "1"}) == []
    flagged = []
    controller.blockFlagged.connect(lambda bid, message: flagged.append((bid, message)))
    project, dataset = adding_project()
    controller.set_project(project, dataset)
    settle(qtbot, controller)
    controller.on_training_event(("step", {"global_step": 0, "probes": {"b1": probes}}))
    assert flagged and flagged[-1][0] == "b1" and "forget gate f_t" in flagged[-1][1]
    assert controller.flags["b1"] == flagged[-1][1]


def test_text_generation_on_the_hello_model(qtbot, controller):
    spec = GraphSpec.chain(("Input", {"shape": (4, 4)}), ("LSTM", {"hidden_size": 8, "return_sequences": True}),
                           ("Dense", {"units": 4}), ("Classify", {}))
    project = Project(name="hello", graph=spec, dataset={"kind": "builtin", "name": "hello"})
    controller.set_project(project)
    settle(qtbot, controller)
    panel = controller.text_generation
    assert panel.generate_button.isEnabled()
    assert [label for _, label in controller.gates.plots["input"].getAxis("bottom")._tickLevels[0]] == list("hell")
    panel.prefix_edit.setText("he")
    panel.temperature_spin.setValue(0.0)
    panel.length_spin.setValue(5)
    panel.generate_button.click()
    qtbot.waitUntil(lambda: not controller.busy and bool(panel.generated), timeout=10000)
    assert len(panel.generated) == 5 and panel.probabilities.shape == (5, 4)
    np.testing.assert_allclose(panel.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    panel.prefix_edit.setText("hx")
    panel.generate_button.click()
    qtbot.waitUntil(lambda: not controller.busy and panel.error_label.isVisibleTo(panel), timeout=10000)
    assert "'x'" in panel.error_label.text()


def test_convolution_panel_shows_the_filters_and_maps(qtbot, controller):
    spec = GraphSpec.chain(("Input", {"shape": (1, 8, 8)}), ("Conv2D", {"filters": 4, "kernel_size": 3}),
                           ("Flatten", {}), ("Dense", {"units": 10}), ("Classify", {}))
    project = Project(name="digits", graph=spec)
    controller.set_project(project)
    settle(qtbot, controller)
    assert controller.gates.is_empty and "recurrent" in controller.gates.message.lower()
    panel = controller.convolution
    assert not panel.is_empty
    model = Model(spec, seed=project.training.seed)
    np.testing.assert_allclose(panel.filters, model.layers["b1"].params["W"])
    assert panel.maps.shape == (4, 6, 6)


def test_install_registers_docks_and_follows_the_window(qtbot):
    """The install function uses only the MainWindow's hooks (a stand-in with the same ones here;
    tests/studio/test_integration.py drives the real window)."""

    class FakeWindow(QObject):
        projectChanged = Signal(object)
        graphAnalysed = Signal(object)
        selectionChanged = Signal(list)
        datasetLoaded = Signal(object)
        trainingStarted = Signal(dict)
        trainingStep = Signal(dict)
        trainingEpoch = Signal(dict)
        trainingEnded = Signal(str, str)

        def __init__(self, project):
            super().__init__()
            self.project, self.docks, self.model_hooks, self.flags = project, {}, [], {}
            self.dataset = None

        def add_panel(self, name, widget, view, area):
            assert view == "inside"
            self.docks[name] = widget

        def raise_panel(self, name):
            assert name in self.docks

        def add_model_hook(self, hook):
            self.model_hooks.append(hook)

        def current_dataset(self):
            return self.dataset

        def selected_block(self):
            return None

        def set_block_flag(self, block_id, message):
            self.flags[block_id] = message

    project, dataset = adding_project()
    window = FakeWindow(project)
    controller = install_inside_panels(window)
    for panel in controller.panels.values():
        qtbot.addWidget(panel)
    assert set(window.docks) == {"Gates", "Cell state", "Gradients through time", "Gate health",
                                 "Filters and feature maps", "Text generation"}
    assert window.model_hooks == [controller.training_hook]
    assert "loading" in controller.gates.message                 # waits for the window's dataset
    window.dataset = dataset
    window.datasetLoaded.emit(dataset)
    settle(qtbot, controller)
    assert controller.recurrent_block == "b1" and not controller.gates.is_empty
    window.selectionChanged.emit(["b2"])                          # a Dense: the gates stay on b1
    assert controller.recurrent_block == "b1"
    project.graph.block("b1").settings.update(pin_forget="1", pin_input="0")
    window.graphAnalysed.emit(None)                               # an edit: recomputed at once
    settle(qtbot, controller)
    np.testing.assert_array_equal(controller.gates.images["forget"].image, 1.0)
    stuck = {"gates": {"output": np.full((2, 10, 4), 0.99)}}
    window.trainingStep.emit({"last": {"global_step": 0}, "probes": {"b1": stuck}})
    assert "output gate" in window.flags["b1"]
    controller.shutdown()


def test_an_encoder_decoder_answers_in_the_text_generation_panel(qtbot, controller):
    """The prefix is the question; the panel shows the answer it writes, its characters fed back,
    with the probabilities of every character it wrote (the end mark included)."""
    from gatescope.assets import example_path
    from gatescope.studio.project import load_project
    project = load_project(example_path("addition-seq2seq"))
    project.dataset["params"]["n"] = 200
    controller.set_project(project)
    settle(qtbot, controller)
    panel = controller.text_generation
    assert panel.generate_button.isEnabled()
    panel.prefix_edit.setText("12+7")
    panel.temperature_spin.setValue(0.0)
    panel.generate_button.click()
    qtbot.waitUntil(lambda: not controller.busy and bool(panel.generated), timeout=10000)
    assert 1 <= len(panel.generated) <= 5 and panel.probabilities.shape == (len(panel.generated), 14)
    assert set(panel.generated) <= set("0123456789+ =.")
    np.testing.assert_allclose(panel.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    panel.prefix_edit.setText("12*7")
    panel.generate_button.click()
    qtbot.waitUntil(lambda: not controller.busy and panel.error_label.isVisibleTo(panel), timeout=10000)
    assert "'*' is not among them" in panel.error_label.text()
