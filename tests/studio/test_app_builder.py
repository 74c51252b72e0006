"""The main window driven as a person would: drop blocks, wire, break and undo, train, save, reopen.

Dialogs are replaced by ``FakeDialogs``, so nothing ever waits on a modal window.
"""
import shutil
import sys

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QSettings, QStandardPaths, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel

from gatescope.assets import example_path
from gatescope.compute.graph import GraphSpec
from gatescope.studio.app import MainWindow, install_exception_hook, run_app
from gatescope.studio.project import Project, load_project, save_project
from gatescope.studio.viewspec import VIEW_KEYS
from fake_dialogs import FakeDialogs


QStandardPaths.setTestModeEnabled(True)




@pytest.fixture
def make_window(qtbot, tmp_path):
    def make():
        dialogs = FakeDialogs()
        window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat),
                            dialogs=dialogs, autosave_dir=tmp_path / "autosave")
        qtbot.addWidget(window)
        window.resize(1400, 900)
        window.show()
        qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=10000)
        return window
    return make


@pytest.fixture
def window(make_window):
    return make_window()


def drop_block(window, block_type, view_pos):
    """A real drop event of the palette's drag payload on the canvas viewport."""
    mime = window.palette.mime_data_for(block_type)
    viewport = window.canvas.viewport()
    enter = QDragEnterEvent(view_pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewport, enter)
    drop = QDropEvent(QPointF(view_pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewport, drop)
    return window.canvas.selected_ids()[0]


def drag_wire(window, src, dst, port=0):
    canvas = window.canvas
    start, end = canvas.port_position(src, -1), canvas.port_position(dst, port)
    QTest.mousePress(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, start)
    QTest.mouseMove(canvas.viewport(), (start + end) / 2)
    QTest.mouseMove(canvas.viewport(), end)
    QTest.mouseRelease(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, end)


def build_small_cnn(window):
    """Input -> Conv2D -> Flatten -> Dense(10) -> Classify, by drops and wire drags."""
    window.canvas.set_zoom(0.6)
    ids = []
    for i, block_type in enumerate(["Input", "Conv2D", "Flatten", "Dense", "Classify"]):
        ids.append(drop_block(window, block_type, QPoint(90 + 130 * i, 120 + 40 * (i % 2))))
    for a, b in zip(ids, ids[1:]):
        drag_wire(window, a, b)
    return ids


def key(window, k, modifiers=Qt.ControlModifier):
    """A key press on the canvas of the active window, as a person at the keyboard gives it."""
    if not window.isActiveWindow():
        window.activateWindow()
        for _ in range(200):
            if window.isActiveWindow():
                break
            QTest.qWait(10)
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, k, modifiers)


def test_build_break_undo_train_save_reopen(make_window, tmp_path, qtbot):
    window = make_window()
    window.new_project()
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=10000)
    ids = build_small_cnn(window)
    input_id, conv_id, flatten_id, dense_id, head_id = ids
    graph = window.project.graph
    assert [b.type for b in graph.blocks] == ["Input", "Conv2D", "Flatten", "Dense", "Classify"]
    assert len(graph.wires) == 4
    assert window.document.analysis.ok
    canvas = window.canvas
    assert canvas.blocks[conv_id].shape_text == "image 8x6x6"
    assert canvas.blocks[dense_id].params_text == "2,890 parameters"
    assert window.run_controls.train_button.isEnabled()
    assert "parameters" in window.params_label.text()

    # Make it invalid in the inspector: a 9x9 kernel on an 8x8 image.
    window.canvas.select([conv_id])
    form = window.inspector.form
    form.editors["filters"].setValue(4)
    form.editors["kernel_size"].setValue(9)
    assert canvas.blocks[conv_id].error
    assert not window.run_controls.train_button.isEnabled()
    assert f"Conv2D {conv_id}" in window.training_panel.blocked_label.text()   # named as the canvas shows it
    assert window.inspector.error_label.isVisibleTo(window.inspector)
    key(window, Qt.Key_Z)  # undo: the kernel goes back to 3 (typing one setting is one step)
    assert window.project.graph.block(conv_id).settings["kernel_size"] == 3
    assert canvas.blocks[conv_id].error is None and window.run_controls.train_button.isEnabled()
    assert canvas.blocks[conv_id].shape_text == "image 4x6x6"

    # Train two epochs with the Train button; the curves get points and the weights come in.
    window.training_panel.form.editors["epochs"].setValue(2)
    window.training_panel.form.editors["batch_size"].setValue(64)
    with qtbot.waitSignal(window.trainingEnded, timeout=60000) as ended:
        QTest.mouseClick(window.run_controls.train_button, Qt.LeftButton)
    assert ended.args[0] == "finished", ended.args
    assert list(window.curves.curve_data("train_loss")[0]) == [1, 2]
    assert len(window.curves.curve_data("val_accuracy")[1]) == 2
    window.curves.axis_choice.setCurrentText("by step")
    steps_shown = window.curves.curve_data("train_loss_steps")
    assert len(steps_shown[0]) == 2 * window.project.steps_per_epoch > 0
    window.curves.axis_choice.setCurrentText("by epoch")
    assert window.confusion.matrix.sum() > 0
    assert window.project.trained and window.document.modified
    assert window.run_controls.progress.value() == 1000

    # Ctrl+S asks for a path (untitled), saves; the title loses its star.
    path = tmp_path / "small.gscope"
    window.dialogs.save_to = str(path)
    key(window, Qt.Key_S)
    assert not window.dialogs.errors, window.dialogs.errors
    assert path.exists() and not window.document.modified
    weights = {k: v.copy() for k, v in window.project.weights.items()}
    window.close()

    again = make_window()
    assert again.open_path(path)
    assert [b.type for b in again.project.graph.blocks] == ["Input", "Conv2D", "Flatten", "Dense", "Classify"]
    assert again.project.graph.to_dict() == load_project(path).graph.to_dict()
    assert set(again.project.weights) == set(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(again.project.weights[name], value)
    assert list(again.curves.curve_data("train_loss")[0]) == [1, 2]
    again.curves.axis_choice.setCurrentText("by step")      # every step's loss came back with the file
    for shown, saved in zip(again.curves.curve_data("train_loss_steps"), steps_shown):
        np.testing.assert_allclose(shown, saved, rtol=1e-6)
    assert list(again.curves.curve_data("val_loss")[0]) == [again.project.steps_per_epoch * k for k in (1, 2)]
    qtbot.waitUntil(lambda: again.confusion.matrix.size > 0, timeout=10000)


def small_project(path=None):
    spec = GraphSpec.chain(("Input", {"shape": (1, 8, 8)}), ("Flatten", {}), ("Dense", {"units": 10}),
                           ("Classify", {}))
    project = Project(name="tiny", graph=spec)
    if path is not None:
        save_project(project, path)
    return project


def test_keyboard_delete_undo_redo_copy_paste(window):
    window.set_project(small_project())
    canvas = window.canvas
    canvas.select(["b1", "b2"])
    key(window, Qt.Key_Delete, Qt.NoModifier)
    assert [b.id for b in window.project.graph.blocks] == ["b0", "b3"]
    assert window.project.graph.wires == []
    key(window, Qt.Key_Z)
    assert len(window.project.graph.blocks) == 4 and len(window.project.graph.wires) == 3
    key(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert len(window.project.graph.blocks) == 2
    key(window, Qt.Key_Z)
    key(window, Qt.Key_Y)
    assert len(window.project.graph.blocks) == 2
    key(window, Qt.Key_Z)

    canvas.select(["b1", "b2"])
    key(window, Qt.Key_C)
    key(window, Qt.Key_V)
    graph = window.project.graph
    assert len(graph.blocks) == 6
    new = canvas.selected_ids()
    assert len(new) == 2 and not {"b1", "b2"} & set(new)
    assert any(w.src == new[0] and w.dst == new[1] for w in graph.wires)  # the wire between them came along
    assert window.project.positions[new[0]][0] == window.project.positions["b1"][0] + 40
    key(window, Qt.Key_Z)
    assert len(window.project.graph.blocks) == 4


def test_move_wire_replace_auto_layout_are_undoable(window):
    window.set_project(small_project())
    doc = window.document
    doc.move({"b1": (500.0, 300.0)})
    assert window.project.positions["b1"] == (500.0, 300.0)
    assert window.canvas.blocks["b1"].pos() == QPointF(500, 300)
    doc.undo_stack.undo()
    assert window.project.positions["b1"] != (500.0, 300.0)
    doc.connect_blocks("b0", "b2", 0)  # replaces the wire b1 -> b2
    assert ("b0", "b2", 0) in window.canvas.wires and ("b1", "b2", 0) not in window.canvas.wires
    assert window.canvas.blocks["b1"].warning  # b1's output is no longer used
    doc.undo_stack.undo()
    assert ("b1", "b2", 0) in window.canvas.wires
    doc.move({"b3": (-900.0, 40.0)})
    window.layout_action.trigger()
    xs = [window.project.positions[f"b{i}"][0] for i in range(4)]
    assert xs == sorted(xs) and len(set(xs)) == 4
    doc.undo_stack.undo()
    assert window.project.positions["b3"] == (-900.0, 40.0)


def test_damaged_file_leaves_project_unchanged(window, tmp_path):
    window.set_project(small_project())
    before = window.project.graph.to_dict()
    bad = tmp_path / "broken.gscope"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    assert not window.open_path(bad)
    assert window.dialogs.errors and "broken.gscope" in window.dialogs.errors[-1][1]
    assert "Traceback" not in window.dialogs.errors[-1][1]
    assert window.project.graph.to_dict() == before


def test_unsaved_changes_are_asked_about(window, tmp_path):
    window.set_project(small_project())
    window.document.add_block("Dense", 0, 0)
    window.dialogs.save_answer = "cancel"
    window.new_project()
    assert len(window.project.graph.blocks) == 5 and window.dialogs.questions
    window.dialogs.save_answer = "save"
    window.dialogs.save_to = str(tmp_path / "kept.gscope")
    window.new_project()
    assert (tmp_path / "kept.gscope").exists() and window.project.graph.blocks == []
    assert len(load_project(tmp_path / "kept.gscope").graph.blocks) == 5


def test_autosave_and_recovery(make_window, tmp_path):
    window = make_window()
    window.set_project(small_project())
    window.document.add_block("Dropout", 10, 10)
    written = window.autosave()
    assert written is not None and written.exists() and written.parent == tmp_path / "autosave"
    window.autosave_timer.stop()
    # A second window while the first still runs: the first one's autosave is live work, not a crash's.
    second = make_window()
    assert second.files.recovery_candidates(None) == []
    # A session that crashed left its copy behind, with no live owner: that one is offered.
    left = written.with_name("untitled-1-1" + written.suffix)
    shutil.copy(written, left)
    second.dialogs.recover = left
    assert second.offer_recovery()
    assert [b.type for b in second.project.graph.blocks][-1] == "Dropout"
    assert second.document.modified
    saved = tmp_path / "recovered.gscope"
    second.dialogs.save_to = str(saved)
    assert second.save()
    assert not left.exists()     # a clean save removes the recovered autosaved copy
    assert written.exists()      # the first window's own copy is still its own


def test_dock_layout_saved_and_restored_and_panels_added(window, tmp_path):
    extra = QLabel("notes")
    dock = window.add_panel("Notes", extra, "train", "right")
    assert dock.toggleViewAction() in window._panel_menus["train"].actions()
    with pytest.raises(ValueError):
        window.add_panel("Gates", QLabel("twice"))                # installed with every window
    window.show_view("train")
    confusion = window.views.docks["Confusion matrix"]
    confusion.hide()
    window.views.docks["Data"].setFloating(True)
    window.set_project(small_project())
    window.dialogs.save_to = str(tmp_path / "layout.gscope")
    assert window.save_as()
    assert set(load_project(tmp_path / "layout.gscope").panels["views"]) == set(VIEW_KEYS)
    window.restore_default_layout()                               # View > Reset layout
    assert confusion.isVisible() and not window.views.docks["Data"].isFloating()
    window.open_path(tmp_path / "layout.gscope")                  # the project's own arrangement
    assert not confusion.isVisible()


def test_training_failure_keeps_weights_and_says_why(window, qtbot):
    project = small_project()
    window.set_project(project)
    window.training_panel.form.editors["epochs"].setValue(1)
    with qtbot.waitSignal(window.trainingEnded, timeout=30000):
        window.start_training()
    good = {k: v.copy() for k, v in window.project.weights.items()}
    window.training_panel.form.editors["optimizer"].setCurrentText("sgd")
    window._on_training_setting("learning_rate", 1e8)  # a learning rate that blows the loss up
    with qtbot.waitSignal(window.trainingEnded, timeout=30000) as ended:
        window.start_training()
    assert ended.args[0] == "failed"
    assert "Training failed" in window.training_panel.status.text()
    assert all(np.isfinite(v).all() for v in window.project.weights.values())
    assert set(window.project.weights) == set(good)


def test_pause_resume_stop(window, qtbot):
    window.set_project(small_project())
    window.training_panel.form.editors["epochs"].setValue(200)
    steps = []
    window.trainingStep.connect(steps.append)
    assert window.start_training()
    qtbot.waitUntil(lambda: len(steps) > 0, timeout=20000)
    window.pause_training()
    assert window.run_controls.resume_button.isEnabled()
    window.resume_training()
    with qtbot.waitSignal(window.trainingEnded, timeout=30000) as ended:
        window.stop_training()
    assert ended.args[0] == "stopped"
    assert window.project.trained and window.run_controls.train_button.isEnabled()
    assert steps[-1]["losses"].dtype == np.float64 and steps[-1]["last"]["samples_per_s"] > 0


def test_closing_while_training_asks_and_stops(window, qtbot):
    window.set_project(small_project())
    window.training_panel.form.editors["epochs"].setValue(500)
    assert window.start_training()
    qtbot.waitUntil(lambda: window.run_controls.progress.value() > 0, timeout=20000)
    window.dialogs.stop_answer = False
    assert not window.close()
    assert window.training
    window.dialogs.stop_answer = True
    window.dialogs.save_answer = "discard"
    assert window.close()
    assert not window.training and window.project.trained


def test_exception_hook_shows_details_and_keeps_running(window):
    old = sys.excepthook
    try:
        install_exception_hook(window)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.excepthook = old
    summary, details = window.dialogs.exceptions[-1]
    assert "boom" in summary and "Traceback" in details
    assert window.isVisible()


def test_export_without_module_is_a_message(window, monkeypatch):
    monkeypatch.setitem(sys.modules, "gatescope.studio.export_onnx", None)  # import fails as if not installed
    window.export_onnx()
    assert window.dialogs.errors and "ONNX" in window.dialogs.errors[-1][0]


def test_screenshot_renders_the_view_asked_for_at_the_size_asked_for(tmp_path, capsys):
    from PySide6.QtGui import QImage
    from gatescope.studio.cli import main
    path = tmp_path / "project.gscope"
    small_project(path)
    out = tmp_path / "shot.png"
    assert run_app(str(path), screenshot=str(out)) == 0
    assert out.exists() and out.stat().st_size > 10000
    assert main(["--screenshot", str(tmp_path / "inside.png"), str(example_path("adding-lstm")),
                 "--view", "inside", "--size", "1280x800"]) == 0
    image = QImage(str(tmp_path / "inside.png"))
    assert (image.width(), image.height()) == (1280, 800)
    settings = QSettings("GateScope", "GateScope")
    before = settings.value("view")
    assert main(["--screenshot", str(tmp_path / "train.png"), "--view", "train", "--size", "1600x1000"]) == 0
    assert settings.value("view") == before          # a picture never changes the person's settings
    with pytest.raises(SystemExit) as usage:
        main(["--screenshot", str(tmp_path / "x.png"), "--size", "big"])
    assert usage.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


def test_gui_stays_responsive_while_training(window, qtbot):
    from gatescope.studio.responsiveness import StallProbe
    spec = GraphSpec.chain(("Input", {"shape": (1, 8, 8)}), ("Conv2D", {"filters": 8, "kernel_size": 3}),
                           ("ReLU", {}), ("MaxPool2D", {"size": 2}), ("Flatten", {}), ("Dense", {"units": 10}),
                           ("Classify", {}))
    window.set_project(Project(name="cnn", graph=spec))
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=10000)
    window.training_panel.form.editors["epochs"].setValue(3)
    probe = StallProbe()
    probe.start()
    with qtbot.waitSignal(window.trainingEnded, timeout=60000):
        window.start_training()
    probe.stop()
    print(f"worst GUI stall {probe.worst_ms:.0f} ms, median {probe.percentile(50):.1f} ms")
    assert len(probe.lateness_ms) > 5
    assert probe.worst_ms < 500  # a loose guard: the goal is < 50 ms, measured at 25-40 ms on 2 cores (was 70-110)


def test_no_plot_in_the_window_rescales_its_axis_numbers(window, qtbot):
    """Every axis of every plot (curves, inside panels, data, video) shows the values
    themselves: pyqtgraph's automatic SI prefix would print "(x0.001)" beside a label and
    read a loss of 0.05 as 50. Guards plots added later, which must call theme.plain_axes."""
    import pyqtgraph as pg

    from gatescope.assets import example_path
    assert window.open_path(example_path("adding-lstm"), as_example=True)
    qtbot.waitUntil(lambda: window.inside.last_result is not None and not window.inside.gates.is_empty,
                    timeout=15000)
    axes = [item for view in window.findChildren(pg.GraphicsView) for item in view.scene().items()
            if isinstance(item, pg.AxisItem)]
    assert len(axes) > 20                                   # the panels' plots were all found
    rescaled = [(type(view.parent()).__name__, axis.orientation) for view in window.findChildren(pg.GraphicsView)
                for axis in view.scene().items() if isinstance(axis, pg.AxisItem) and axis.autoSIPrefix]
    assert rescaled == []


def test_a_state_wire_is_dragged_like_any_other_and_a_wrong_one_says_why(make_window, qtbot):
    """An LSTM's output dragged onto a GRU's second port ("initial state") makes a state wire;
    the GRU turns red with the reason, in words."""
    window = make_window()
    window.new_project()
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=10000)
    window.canvas.set_zoom(0.6)
    lstm = drop_block(window, "LSTM", QPoint(120, 120))
    gru = drop_block(window, "GRU", QPoint(420, 200))
    assert window.canvas.blocks[gru].input_ports[1].toolTip() == "input 2: initial state"
    drag_wire(window, lstm, gru, port=1)
    assert [(w.src, w.dst, w.port) for w in window.project.graph.wires] == [(lstm, gru, 1)]
    error = window.document.analysis.info[gru].error
    assert error == "input 1 is not connected; wire a block's output into it"
    source = window.document.add_block("Input", 0.0, 300.0)
    window.document.set_setting(source, "shape", (6, 3))
    window.document.connect_blocks(source, lstm, 0)
    window.document.connect_blocks(source, gru, 0)
    error = window.document.analysis.info[gru].error
    assert error is not None and error.startswith("an LSTM's state (h and C) cannot start a GRU, whose state is h alone")


def test_the_palette_lists_each_group_in_the_lectures_order(window):
    # The registry's order is the palette's: the recurrent cells come as the lectures
    # introduce them, not in the order their modules happen to be imported.
    blocks = window.palette.block_types()
    recurrent = [b for b in blocks if b in ("SimpleRNN", "LSTM", "GRU", "ConvLSTM2D")]
    assert recurrent == ["SimpleRNN", "LSTM", "GRU", "ConvLSTM2D"]
    assert blocks[0] == "Input"
