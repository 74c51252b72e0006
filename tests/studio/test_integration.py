"""The whole application as a person uses it: the real MainWindow with the inside-the-network
and video panels installed, on the bundled adding-lstm example.

Open the example, click the LSTM block, press Train, watch the gate and gradient panels fill,
pin the gates in the inspector (forget = 1, input = 0) and see the cell state stop moving.
"""
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QStandardPaths, Qt
from PySide6.QtTest import QTest

from gatescope.assets import example_path
from gatescope.studio.app import MainWindow
from gatescope.studio.views import DEFAULT_ARRANGEMENT
from fake_dialogs import FakeDialogs


QStandardPaths.setTestModeEnabled(True)

STEPS_PER_EPOCH = 6




@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat),
                     dialogs=FakeDialogs(), autosave_dir=tmp_path / "autosave")
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    yield win
    win.stop_training_and_wait()
    win.close()


def inside_settled(qtbot, window):
    qtbot.waitUntil(lambda: not window.inside.busy and window.inside.last_result is not None, timeout=15000)


def test_every_panel_has_its_place_in_a_view_and_a_view_menu_entry(window):
    docks = window.views.docks
    menu_entries = {a.text() for m in window._panel_menus.values() for a in m.actions()}
    for view, areas in DEFAULT_ARRANGEMENT.items():
        for stacks in areas.values():
            for stack in stacks:
                for name in stack:
                    assert name in docks and window.views.view_of[name] == view and name in menu_entries
    assert window.views.view_of["Gates"] == "inside" and window.views.view_of["Video"] == "video"
    window.show_view("inside")
    assert not window.panels["Gates"].visibleRegion().isEmpty()        # the gates in front
    assert window.views.current == "inside"


def test_adding_lstm_train_look_inside_and_pin_the_gates(window, qtbot):
    assert window.open_path(example_path("adding-lstm"), as_example=True)
    project = window.project
    project.training = replace(project.training, epochs=1, steps_per_epoch=STEPS_PER_EPOCH, batch_size=32,
                               val_fraction=0.02)
    window.training_panel.set_settings(project.training.to_dict())
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    inside = window.inside

    # The video panel is there and says what it needs.
    video = window.panels["Video"]
    assert "Preview only: the model is not trained yet" in video.model_status.text()

    # Click the LSTM block on the canvas: the gates and cell-state panels follow it.
    window.canvas.fit_to_view()
    QTest.mouseClick(window.canvas.viewport(), Qt.LeftButton, Qt.NoModifier,
                     window.canvas.block_position("lstm1"))
    assert window.selected_block() == "lstm1"
    assert inside.recurrent_block == "lstm1"
    assert window.inspector.block_id == "lstm1"

    # Train a few steps with the Train button; the trainer's probes reach the controller.
    steps = []
    window.trainingStep.connect(steps.append)
    with qtbot.waitSignal(window.trainingEnded, timeout=30000) as ended:
        window.run_controls.train_button.click()
    assert ended.args[0] == "finished"
    assert any("probes" in payload for payload in steps)
    inside_settled(qtbot, window)
    assert inside.last_error is None
    assert "last training run" in inside.gates.caption_label.text()
    forget = np.asarray(inside.gates.images["forget"].image)
    assert forget.shape == (64, 100) and 0.0 < forget.min() and forget.max() < 1.0
    assert np.isfinite(forget).all() and forget.std() > 0
    grad_h = inside.gradients.curves["adding-lstm/lstm1/grad_h"]
    assert len(grad_h.values) == 100 and (grad_h.values > 0).all()
    x, y = inside.gradients.items["adding-lstm/lstm1/grad_h"].getData()
    assert len(x) == 100 and np.isfinite(y).all()
    assert inside.cell_state.cell.std(axis=0).max() > 1e-3            # a learning memory moves

    # Pin forget = 1 and input = 0 in the inspector: the cell state is constant over time at once.
    editors = window.inspector.form.editors
    editors["pin_forget"].setCurrentText("1")
    editors["pin_input"].setCurrentText("0")
    assert window.project.graph.block("lstm1").settings["pin_forget"] == "1"
    inside_settled(qtbot, window)
    cell = inside.cell_state.cell
    np.testing.assert_allclose(cell, np.broadcast_to(cell[:1], cell.shape), atol=1e-7)
    np.testing.assert_array_equal(inside.gates.images["forget"].image, 1.0)
    np.testing.assert_array_equal(inside.gates.images["input"].image, 0.0)
    assert "pinned to 1" in inside.gates.plots["forget"].titleLabel.text
    assert not window.dialogs.errors and not window.dialogs.exceptions


def test_a_block_with_stuck_gates_is_flagged_on_the_canvas(window, qtbot):
    assert window.open_path(example_path("adding-lstm"), as_example=True)
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    inside_settled(qtbot, window)
    stuck = {"gates": {"forget": np.full((4, 100, 8), 0.995)}}
    window.trainingStep.emit({"global_steps": np.array([0]), "losses": np.array([0.1]),
                              "last": {"global_step": 0}, "probes": {"lstm1": stuck}})
    block = window.canvas.blocks["lstm1"]
    assert block.warning and "forget gate f_t" in block.warning and "saturated" in block.warning
    window.canvas.select(["lstm1"])
    assert "forget gate" in window.inspector.toolTip() + str(window.block_status()["lstm1"]["warning"])
    window.set_block_flag("lstm1", "")
    assert not window.canvas.blocks["lstm1"].warning
    window.set_block_flag("lstm1", "stuck")
    window.open_path(example_path("adding-rnn"), as_example=True)   # a new project starts unflagged
    assert not any(item.warning for item in window.canvas.blocks.values())


def test_selecting_a_conv_block_shows_its_filters(window, qtbot):
    assert window.open_path(example_path("digits-cnn"), as_example=True)
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    inside_settled(qtbot, window)
    window.canvas.select(["conv2d3"])
    inside_settled(qtbot, window)
    panel = window.inside.convolution
    assert not panel.is_empty and panel.filters.shape == (32, 16, 3, 3)
    assert window.inside.gates.is_empty and "recurrent" in window.inside.gates.message.lower()
    assert "Preview only: the model is not trained yet" in window.video.panel.model_status.text()
