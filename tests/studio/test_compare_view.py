"""The Compare view driven through the real window: press Compare, watch the variants grow
together, read the table, save every panel's picture and data, open a variant as a project or
make it the project's model; the run history records runs, overlays and restores them."""
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QStandardPaths, Qt
from PySide6.QtTest import QTest

from gatescope.compute.graph import GraphSpec
from gatescope.compute.train import TrainSettings
from gatescope.studio.app import MainWindow
from gatescope.studio.compare_choice import CompareChoice
from gatescope.studio.dialogs import QuietDialogs
from gatescope.studio.project import Project, load_project, save_project
from gatescope.studio.viewspec import VIEW_KEYS

QStandardPaths.setTestModeEnabled(True)

ROWS = {"kind": "builtin", "name": "digits", "params": {"layout": "rows"}}


def small_project(tmp_path, epochs=2, steps=4) -> Path:
    graph = GraphSpec.chain(("Input", {"shape": [8, 8]}), ("LSTM", {"hidden_size": 8}), ("Dense", {"units": 10}),
                            ("Classify", {}))
    project = Project(name="rows", graph=graph, dataset=ROWS,
                      training=TrainSettings(epochs=epochs, batch_size=16, steps_per_epoch=steps, learning_rate=5e-3))
    return save_project(project, tmp_path / "rows.gscope")


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat),
                     dialogs=QuietDialogs(None), autosave_dir=tmp_path / "autosave")
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    assert win.open_path(small_project(tmp_path))
    qtbot.waitUntil(lambda: win.current_dataset() is not None, timeout=15000)
    yield win
    win.stop_training_and_wait()
    win.compare.stop()
    win.close()


def compare(qtbot, window, timeout=60000):
    """Press Compare in the Compare view and wait for the comparison's end."""
    window.show_view("compare")
    with qtbot.waitSignal(window.compare.ended, timeout=timeout) as ended:
        QTest.mouseClick(window.compare.setup.compare_button, Qt.LeftButton)
    return ended.args


def test_the_compare_view_is_a_view_with_its_panels(window):
    assert "compare" in VIEW_KEYS and window._view_actions["compare"].shortcut().toString() == "Ctrl+5"
    for name in ("Compare", "Curves compared", "Gradients compared", "Gates compared", "Run history",
                 "Final metrics"):
        assert window.views.view_of[name] == "compare"
    window.show_view("compare")
    assert not window.document.modified                   # opening a project and the view changes nothing
    setup = window.compare.setup
    assert setup.mode == "swap" and setup.block_combo.currentData() == "b1"
    assert setup.checked_options() == ["SimpleRNN", "LSTM", "GRU"]         # the lectures' three, by default
    labels = [setup.options_list.item(r).text() for r in range(setup.options_list.count())]
    assert labels == ["SimpleRNN", "LSTM", "peephole LSTM", "coupled LSTM", "GRU"]


def test_compare_fills_every_panel_and_keeps_each_variant_as_a_run(window, qtbot, tmp_path):
    kind, _message = compare(qtbot, window)
    assert kind == "finished"
    controller = window.compare
    results = controller.results
    assert [r.label for r in results] == ["SimpleRNN", "LSTM", "GRU"]
    # The curves shown are each variant's own steps, exactly.
    for index, result in enumerate(results):
        np.testing.assert_array_equal(controller.curves.steps[index], np.arange(8))
        np.testing.assert_allclose(controller.curves.step_losses[index], result.state.step_losses)
        assert np.all(controller.curves.grad_norms[index] > 0)
        assert [r["epoch"] for r in controller.curves.epochs[index]] == [1, 2]
    gradients = controller.gradients.curves
    assert {"SimpleRNN/b1/grad_h", "LSTM/b1/grad_h", "LSTM/b1/grad_c", "GRU/b1/grad_h"} <= set(gradients)
    assert "GRU/b1/grad_c" not in gradients and len(gradients["LSTM/b1/grad_h"].values) == 8
    assert controller.gradients.plot.getAxis("left").logMode                 # one log axis for all
    gates = controller.gates
    assert gates.health[0] == {} and list(gates.health[1]) == ["input", "forget", "candidate", "output"]
    assert list(gates.health[2]) == ["reset", "update", "candidate"]
    table = controller.results_panel.table
    assert table.rowCount() == 3
    rows = controller.results_panel.rows
    assert [r["parameters"] for r in rows] == [r.parameters for r in results]
    assert all(0 <= r["test_accuracy"] <= 1 and r["seconds_per_step"] > 0 for r in rows)
    # Every panel saves its picture and its data.
    for panel in (controller.curves, controller.gradients, controller.gates, controller.results_panel,
                  controller.history.panel):
        name = panel.title_label.text().split()[0].lower()
        picture = panel.export_picture(tmp_path / f"{name}.png")
        assert picture.stat().st_size > 1000
        data = np.loadtxt(panel.export_data(tmp_path / f"{name}.csv"), delimiter=",", skiprows=1, ndmin=2)
        assert len(data) >= 3
    # The run history keeps the three variants, overlaid, and the project file keeps them too.
    history = window.project.runs
    assert [(r.kind, r.label) for r in history] == [("compare", "SimpleRNN"), ("compare", "LSTM"), ("compare", "GRU")]
    assert controller.history.panel.overlaid == [1, 2, 3]
    assert window.document.modified
    window.document.save(tmp_path / "saved.gscope")
    assert [r.label for r in load_project(tmp_path / "saved.gscope").runs] == ["SimpleRNN", "LSTM", "GRU"]


def test_a_variant_opens_as_its_own_project_or_becomes_the_projects_model(window, qtbot):
    compare(qtbot, window)
    results = window.compare.results
    panel = window.compare.results_panel
    panel.table.selectRow(next(r for r in range(3) if panel.table.row_key(r) == 2))   # GRU
    QTest.mouseClick(panel.adopt_button, Qt.LeftButton)
    project = window.project
    assert project.graph.block("b1").type == "GRU" and project.path.name == "rows.gscope"
    for name, value in results[2].weights.items():
        np.testing.assert_array_equal(project.weights[name], value)
    assert len(project.runs) == 3 and window.document.modified
    assert window.compare.results is results                                     # the comparison stays shown
    panel.table.selectRow(next(r for r in range(3) if panel.table.row_key(r) == 0))   # SimpleRNN
    QTest.mouseClick(panel.open_button, Qt.LeftButton)
    opened = window.project
    assert opened.name == "rows-simplernn" and opened.path is None and opened.graph.block("b1").type == "SimpleRNN"
    assert [r.label for r in opened.runs] == ["SimpleRNN"]
    assert window.compare.results is None                                        # another project: put away


def test_a_training_run_is_recorded_and_a_run_restored(window, qtbot):
    with qtbot.waitSignal(window.trainingEnded, timeout=60000):
        assert window.start_training()
    (run,) = window.project.runs
    assert (run.kind, run.ended, run.first_epoch, len(run.epochs)) == ("train", "finished", 0, 2)
    assert run.weights and run.test["samples"] > 0
    compare(qtbot, window)
    history = window.compare.history
    assert [r.number for r in window.project.runs] == [1, 2, 3, 4]
    assert window.project.runs[3].describe_changes() == "vs run 3: b1: LSTM → GRU"
    assert history.panel.table.rowCount() == 4
    assert history.restore(3)                                                    # the LSTM variant
    project = window.project
    assert project.graph.block("b1").type == "LSTM" and project.trainer["epochs_done"] == 2
    for name, value in project.runs[2].weights.items():
        np.testing.assert_array_equal(project.weights[name], value)
    history.delete([1, 2])
    assert [r.number for r in window.project.runs] == [3, 4]
    history.panel.keep_box.setChecked(False)
    assert window.project.keep_run_weights is False


def test_stop_ends_every_variant_after_the_same_steps(window, qtbot, tmp_path):
    project = load_project(small_project(tmp_path, epochs=30, steps=10))
    window.set_project(project)
    window.show_view("compare")
    controller = window.compare
    controller.setup.set_epochs(30)
    with qtbot.waitSignal(controller.ended, timeout=60000) as ended:
        assert controller.start()
        qtbot.waitUntil(lambda: len(controller.curves.steps) == 3 and len(controller.curves.steps[2]) >= 3,
                        timeout=30000)
        QTest.mouseClick(controller.setup.stop_button, Qt.LeftButton)
    assert ended.args[0] == "stopped"
    steps = {r.steps for r in controller.results}
    assert len(steps) == 1 and steps.pop() < 300


def test_a_choice_that_cannot_be_made_says_what_can_and_choices_are_saved(window):
    controller = window.compare
    assert not controller.start({"kind": "swap", "block": "b1", "types": ["Dense", "GRU"]})
    assert "it can be swapped for SimpleRNN, LSTM, LSTM:peephole, LSTM:coupled or GRU" in \
        controller.setup.status_label.text()
    setup = controller.setup
    setup.mode_combo.setCurrentIndex(setup.mode_combo.findData("vary"))
    setup.block_combo.setCurrentIndex(setup.block_combo.findData("training"))
    setup.setting_combo.setCurrentText("clip_norm")
    setup.values_edit.setText("0, 1")
    setup.values_edit.editingFinished.emit()
    assert window.project.compare == CompareChoice("vary", "training", (0.0, 1.0), setting="clip_norm", epochs=2)
