"""What a new user hit in the window (issue 14), each driven as they met it.

Views one click and one shortcut away and remembered; the model locked while it trains; Pause
saying "Paused"; the bar staying where a run stopped, also after reopening; a regression showing
what fits it; a replaced wire announced; problems naming blocks as the canvas does; Help with a
getting-started page and the shortcuts; examples with their descriptions; pastes beside the
original; zoom keys; the test result after a run; a confusion-matrix cell opened.
"""
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, QStandardPaths, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from gatescope.assets import example_path
from gatescope.compute.graph import GraphSpec
from gatescope.studio.app import LOCKED_MESSAGE, MainWindow
from gatescope.studio.project import Project, load_project
from gatescope.widgets.canvas import BLOCK_WIDTH
from fake_dialogs import FakeDialogs


QStandardPaths.setTestModeEnabled(True)




@pytest.fixture
def make_window(qtbot, tmp_path):
    def make():
        window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat),
                            dialogs=FakeDialogs(), autosave_dir=tmp_path / "autosave")
        qtbot.addWidget(window)
        window.resize(1280, 800)
        window.show()
        qtbot.waitExposed(window)
        return window
    yield make


@pytest.fixture
def window(make_window):
    win = make_window()
    yield win
    win.stop_training_and_wait()


def key(window, k, modifiers=Qt.ControlModifier):
    """A key press in the active window, as a person at the keyboard gives it."""
    if not window.isActiveWindow():
        window.activateWindow()
        for _ in range(200):
            if window.isActiveWindow():
                break
            QTest.qWait(10)
    target = QApplication.focusWidget() or window
    QTest.keyClick(target, k, modifiers)


def small_classifier(epochs=1) -> Project:
    graph = GraphSpec.chain(("Input", {"shape": (64,)}), ("Dense", {"units": 16}), ("ReLU", {}),
                            ("Dense", {"units": 10}), ("Classify", {}))
    project = Project(name="small", graph=graph, dataset={"kind": "builtin", "name": "digits",
                                                          "params": {"layout": "vector"}})
    project.training = replace(project.training, epochs=epochs, batch_size=64)
    return project


def test_each_view_is_one_click_and_one_shortcut_away_and_remembered(make_window, qtbot):
    window = make_window()
    for view, shortcut in (("train", Qt.Key_2), ("inside", Qt.Key_3), ("video", Qt.Key_4), ("build", Qt.Key_1)):
        key(window, shortcut)
        assert window.current_view == view
    button = window.toolbar.widgetForAction(window._view_actions["inside"])
    QTest.mouseClick(button, Qt.LeftButton)
    assert window.current_view == "inside"
    window.close()
    again = make_window()                            # the next run opens where the last one was
    assert again.current_view == "inside"


def test_reset_layout_brings_a_floated_and_a_closed_panel_back(window):
    window.show_view("inside")
    window.views.docks["Cell state"].setFloating(True)
    window.views.docks["Gate health"].close()
    window.reset_layout_action.trigger()
    assert not window.views.docks["Cell state"].isFloating()
    assert window.views.docks["Gate health"].isVisibleTo(window)


def test_the_model_is_locked_while_it_trains_and_the_canvas_says_why(window, qtbot):
    window.set_project(small_classifier(epochs=200))
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    window.canvas.select(["b1"])
    assert window.start_training()
    qtbot.waitUntil(lambda: bool(window.training_control.info), timeout=15000)
    assert window.canvas.locked_message == LOCKED_MESSAGE
    assert not window.inspector.form.isEnabled() and window.inspector.locked_label.isVisibleTo(window)
    before = window.project.graph.to_dict()
    window.inspector.form.editors["units"].setValue(3)         # a disabled editor's signal, if any
    window._on_block_dropped("Dense", QPointF(0, 0))
    window.document.set_setting("b1", "units", 5)
    window.paste()
    assert window.project.graph.to_dict() == before             # nothing reached the graph
    assert not window.undo_action.isEnabled() and not window.palette.isEnabled()
    window.stop_training_and_wait()
    assert window.canvas.locked_message == "" and window.inspector.form.isEnabled()
    window.document.set_setting("b1", "units", 5)
    assert window.project.graph.block("b1").settings["units"] == 5


def test_pause_says_paused_and_keeps_the_buttons_in_place_and_stop_keeps_the_bar(window, qtbot, tmp_path):
    window.set_project(small_classifier(epochs=300))
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    positions = {b: b.pos() for b in (window.run_controls.pause_button, window.run_controls.stop_button)}
    assert window.start_training()
    qtbot.waitUntil(lambda: window.run_controls.fraction > 0, timeout=20000)
    window.pause_training()
    assert window.training_panel.status.text().startswith("Paused")
    assert "ETA" not in window.training_panel.status.text()
    assert "Paused" in window.run_controls.progress.format()
    assert all(button.pos() == place for button, place in positions.items())
    window.resume_training()
    qtbot.wait(200)
    window.stop_training_and_wait()
    done = window.project.trainer["epochs_done"]
    assert 0 < done < 300
    stopped_at = window.run_controls.fraction
    assert stopped_at == pytest.approx(done / 300, abs=0.01) and stopped_at < 1.0
    window.dialogs.save_to = str(tmp_path / "stopped.gscope")
    assert window.save_as()
    window.open_path(tmp_path / "stopped.gscope")                # reopened: the same place, not 100%
    assert window.run_controls.fraction == pytest.approx(done / 300, abs=0.01)
    assert f"{done} of 300 epochs" in window.run_controls.progress.format()
    assert load_project(tmp_path / "stopped.gscope").trainer["last_run"]["planned_epochs"] == 300


def test_the_curves_x_axis_choice_comes_back_with_the_project(window, tmp_path):
    window.set_project(small_classifier())
    window.curves.set_x_axis("step")
    window.dialogs.save_to = str(tmp_path / "axis.gscope")
    assert window.save_as()
    window.curves.set_x_axis("epoch")
    window.open_path(tmp_path / "axis.gscope")
    assert window.curves.x_axis == "step"


def test_a_regression_shows_its_loss_and_predictions_not_an_accuracy_chart(window, qtbot):
    assert window.open_path(example_path("adding-lstm"), as_example=True)
    assert window.curves.task == "regression" and not window.curves.accuracy_plot.isVisibleTo(window)
    assert "mean squared error" in window.curves.loss_plot.getAxis("left").labelText
    assert "Regression" in window.confusion.caption.text()
    window.project.training = replace(window.project.training, epochs=1, steps_per_epoch=3, val_fraction=0.05)
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    with qtbot.waitSignal(window.trainingEnded, timeout=60000):
        window.start_training()
    predicted, true = window.confusion.points.getData()
    assert len(predicted) == len(window.validation_split()) > 0
    assert "root mean squared error" in window.confusion.caption.text()
    assert window.training_panel.result.text().startswith("Test loss (mean squared error)")


def test_a_replaced_wire_is_announced_and_problems_name_blocks_as_the_canvas_does(window):
    graph = GraphSpec.chain(("Input", {"shape": (64,)}), ("Dense", {"units": 4}), ("Dense", {"units": 10}),
                            ("Classify", {}))
    window.set_project(Project(name="wires", graph=graph))
    window._on_wire_requested("b0", "b2", 0)                    # b2's input had b1's wire
    assert "replaced" in window.statusBar().currentMessage()
    assert "Dense b1" in window.statusBar().currentMessage() and "Dense b2" in window.statusBar().currentMessage()
    window.document.connect_blocks("b2", "b1", 0)               # b1 <- b2 ...
    window.document.connect_blocks("b1", "b2", 0)               # ... and b2 <- b1: a cycle
    assert window.train_blocker().startswith("Dense b1: is part of a cycle")   # not "b1: ..."


def test_help_has_a_getting_started_page_on_f1_and_the_shortcuts(window):
    key(window, Qt.Key_F1, Qt.NoModifier)
    title, page = window.dialogs.help_pages[-1]
    assert title == "Getting started" and "Build" in page and "Inside" in page and "Train" in page
    window.shortcuts_action.trigger()
    title, page = window.dialogs.help_pages[-1]
    assert title == "Keyboard shortcuts"
    for words in ("Train", "F5", "Ctrl+1", "Zoom In", "Undo"):
        assert words in page


def test_open_example_shows_what_each_example_is(window):
    window.examples_menu.aboutToShow.emit()
    entries = {a.text().split(" — ")[0]: a for a in window.examples_menu.actions()}
    assert "digits-cnn" in entries and "adding-lstm" in entries
    assert "CNN" in entries["digits-cnn"].text() and "handwritten digits" in entries["digits-cnn"].toolTip()


def test_paste_lands_beside_the_original_and_zoom_keys_zoom(window):
    window.set_project(small_classifier())
    window.canvas.select(["b1"])
    window.copy()
    window.paste()
    pasted = window.canvas.selected_ids()[0]
    original, copy = window.project.positions["b1"], window.project.positions[pasted]
    assert copy != original and copy[0] - original[0] == copy[1] - original[1] > 0
    window.paste()
    again = window.project.positions[window.canvas.selected_ids()[0]]
    assert again[0] > copy[0]                                    # each paste one step further
    zoom = window.canvas.zoom()
    window.canvas.setFocus()
    window.zoom_in_action.trigger()
    assert window.canvas.zoom() > zoom
    window.zoom_out_action.trigger()
    window.zoom_out_action.trigger()
    assert window.canvas.zoom() < zoom
    QApplication.clipboard().clear()


def test_a_block_dropped_at_the_left_edge_lands_wholly_on_the_canvas(window):
    window.show_view("build")
    canvas = window.canvas
    edge = canvas.mapToScene(canvas.viewport().rect().topLeft())
    place = canvas.visible_block_position(edge)
    seen = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    assert place.x() >= seen.left() and place.y() >= seen.top()
    assert place.x() + BLOCK_WIDTH <= seen.right()


def test_after_training_the_test_result_shows_and_a_confusion_cell_opens_its_samples(window, qtbot):
    window.set_project(small_classifier(epochs=2))
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=15000)
    with qtbot.waitSignal(window.trainingEnded, timeout=60000):
        window.start_training()
    assert window.training_panel.result.text().startswith("Test accuracy")
    assert "held-out test sample" in window.training_panel.result.text()
    matrix = window.confusion.matrix
    true, predicted = np.argwhere(matrix == matrix.max())[0]
    window.show_view("train")
    window.confusion.cellClicked.emit(int(true), int(predicted))
    gallery = window.samples
    assert not gallery.is_empty and gallery.kind == "sequence"        # a vector dataset: drawn as lines
    assert len(gallery.samples) == min(int(matrix[true, predicted]), 24)
    targets = window.current_dataset().y[gallery.indices]
    assert (targets == true).all()


@pytest.mark.parametrize("outcome,shown", [
    ({"seconds": 31.7, "kernels": 24, "numba": True, "note": None}, "CPU kernels ready (compiled in 32 s)"),
    ({"seconds": 0.4, "kernels": 0, "numba": False, "note": "numba is not installed"},
     "The NumPy versions of the CPU kernels run (slower): numba is not installed"),
    (RuntimeError("LLVM ran out of memory"), "Could not prepare the CPU kernels ahead (RuntimeError: LLVM ran out"),
])
def test_the_kernels_compile_at_start_on_a_worker_and_the_status_bar_says_so(window, qtbot, monkeypatch,
                                                                              outcome, shown):
    import threading

    from gatescope.compute import kernels
    from gatescope.studio.app import PREPARING_KERNELS
    release, threads = threading.Event(), []

    def prepare():
        threads.append(threading.get_ident())
        release.wait(10)                  # compiling: the GUI thread must stay free meanwhile
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(kernels, "prepare", prepare)
    window.prepare_kernels()
    try:
        assert window.statusBar().currentMessage() == PREPARING_KERNELS
        qtbot.waitUntil(lambda: bool(threads))
        window.show_view("train")             # the window answers while the kernels compile
        assert window.current_view == "train" and threads[0] != threading.get_ident()
    finally:
        release.set()
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() != PREPARING_KERNELS)
    assert window.statusBar().currentMessage().startswith(shown)


def test_kernels_already_in_the_cache_say_nothing(window, qtbot, monkeypatch):
    from gatescope.compute import kernels
    from gatescope.studio.app import PREPARING_KERNELS
    monkeypatch.setattr(kernels, "prepare", lambda: {"seconds": 0.8, "kernels": 24, "numba": True, "note": None})
    window.prepare_kernels()
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() != PREPARING_KERNELS)
    assert window.statusBar().currentMessage() == ""
