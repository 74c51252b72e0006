"""Widget tests with known data: canvas, palette, forms, inspector, curves, confusion matrix, panels."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from gatescope.widgets.canvas import ModelCanvas
from gatescope.widgets.curves import ConfusionMatrixView, CurvesPanel
from gatescope.widgets.data_panel import DataPanel
from gatescope.widgets.forms import SettingsForm, parse_shape
from gatescope.widgets.inspector import Inspector
from gatescope.widgets.palette import BLOCK_MIME, BlockPalette
from gatescope.widgets.run_controls import RunControls
from gatescope.widgets.training_panel import TrainingPanel

BLOCKS = [
    {"id": "in1", "type": "Input", "category": "Input", "detail": "1x8x8", "inputs": 0, "has_output": True,
     "x": 0, "y": 0},
    {"id": "dense1", "type": "Dense", "category": "Dense", "detail": "10 units", "inputs": 1, "has_output": True,
     "x": 300, "y": 0},
    {"id": "add1", "type": "Add", "category": "Merge", "detail": "", "inputs": 3, "has_output": True,
     "x": 600, "y": 0},
]


@pytest.fixture
def canvas(qtbot):
    view = ModelCanvas()
    qtbot.addWidget(view)
    view.resize(1000, 500)
    view.show()
    view.set_graph(BLOCKS, [("in1", "dense1", 0)])
    view.fit_to_view()
    return view


def test_canvas_shows_blocks_ports_and_status(canvas):
    assert set(canvas.blocks) == {"in1", "dense1", "add1"}
    assert len(canvas.blocks["add1"].input_ports) == 3
    assert canvas.blocks["in1"].input_ports == []
    assert set(canvas.wires) == {("in1", "dense1", 0)}
    canvas.set_status({"dense1": {"shape": "vector 10", "params": "650 parameters", "error": None, "warning": None},
                       "add1": {"shape": "", "params": "", "error": "needs two or more inputs", "warning": None}})
    assert canvas.blocks["dense1"].shape_text == "vector 10"
    assert canvas.blocks["add1"].error == "needs two or more inputs"
    assert "needs two or more inputs" in canvas.blocks["add1"].toolTip()


def test_canvas_wire_by_dragging_port_to_port(canvas, qtbot):
    start = canvas.port_position("dense1", -1)
    end = canvas.port_position("add1", 1)
    with qtbot.waitSignal(canvas.wireRequested) as signal:
        QTest.mousePress(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, start)
        QTest.mouseMove(canvas.viewport(), (start + end) / 2)
        QTest.mouseMove(canvas.viewport(), end)
        QTest.mouseRelease(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, end)
    assert signal.args == ["dense1", "add1", 1]


def test_canvas_move_select_delete(canvas, qtbot):
    grab = canvas.block_position("dense1")
    with qtbot.waitSignal(canvas.blocksMoved) as moved:
        QTest.mousePress(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, grab)
        for step in range(1, 6):
            QTest.mouseMove(canvas.viewport(), grab + QPointF(10 * step, 6 * step).toPoint())
        QTest.mouseRelease(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, grab + QPointF(50, 30).toPoint())
    (block_id, (x, y)), = moved.args[0].items()
    assert block_id == "dense1" and x > 300 and y > 0
    assert canvas.selected_ids() == ["dense1"]
    with qtbot.waitSignal(canvas.deleteRequested) as deleted:
        canvas.request_delete()
    assert deleted.args == [["dense1"], []]


def test_a_fitted_canvas_stays_fitted_as_it_is_resized_until_the_person_zooms(canvas):
    # A project is fitted when it opens, before the window and its docks take their final size.
    def all_visible():
        seen = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
        return all(seen.contains(item.sceneBoundingRect()) for item in canvas.blocks.values())

    for size in ((700, 360), (1400, 700), (760, 420)):
        canvas.resize(*size)
        assert all_visible(), size
    canvas.zoom_by(1.5)
    zoom = canvas.zoom()
    canvas.resize(900, 500)
    assert canvas.zoom() == pytest.approx(zoom)          # the person's own zoom is kept
    canvas.fit_to_view()
    canvas.resize(720, 380)
    assert all_visible()


def test_canvas_zoom_and_fit(canvas):
    canvas.set_zoom(1.0)
    canvas.set_zoom(100.0)
    assert canvas.zoom() == pytest.approx(3.0)
    canvas.fit_to_view()
    rect = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    for item in canvas.blocks.values():
        assert rect.contains(item.sceneBoundingRect())


def test_palette_groups_and_drag_payload(qtbot):
    palette = BlockPalette()
    qtbot.addWidget(palette)
    palette.set_blocks([{"type": "Dense", "category": "Dense", "summary": "Fully connected."},
                        {"type": "Input", "category": "Input", "summary": "Where samples enter."}],
                       ["Input", "Dense", "Output"])
    assert palette.block_types() == ["Input", "Dense"]
    assert "Fully connected." in palette.item_for("Dense").toolTip(0)
    assert bytes(palette.mime_data_for("Dense").data(BLOCK_MIME)) == b"Dense"


def test_form_validates_as_typed(qtbot):
    fields = [{"name": "shape", "kind": "shape", "label": "Shape"},
              {"name": "rate", "kind": "float", "label": "Rate", "minimum": 0.0, "maximum": 0.95},
              {"name": "units", "kind": "int", "label": "Units", "minimum": 1, "maximum": 100},
              {"name": "padding", "kind": "padding", "label": "Padding"}]
    form = SettingsForm(fields)
    qtbot.addWidget(form)
    form.set_values({"shape": (1, 8, 8), "rate": 0.5, "units": 10, "padding": "valid"})
    edits = []
    form.valueEdited.connect(lambda name, value: edits.append((name, value)))
    form.editors["shape"].clear()
    QTest.keyClicks(form.editors["shape"], "3, 28, 28")
    assert edits[-1] == ("shape", (3, 28, 28))
    form.editors["rate"].clear()
    QTest.keyClicks(form.editors["rate"], "1.5")
    assert "rate" in form.problems and edits[-1][0] != "rate" or edits[-1] != ("rate", 1.5)
    assert form.editors["rate"].property("invalid") == "true"
    form.editors["units"].setValue(500)
    assert form.values()["units"] == 100  # the spin box keeps to the range
    form.editors["padding"].setEditText("2")
    assert edits[-1] == ("padding", 2)
    assert parse_shape("1x8x8") == (1, 8, 8) and parse_shape("0, 3") is None and parse_shape("a") is None


def test_inspector_keeps_form_while_block_stays(qtbot):
    inspector = Inspector()
    qtbot.addWidget(inspector)
    fields = [{"name": "units", "kind": "int", "label": "Units", "minimum": 1, "maximum": 1000}]
    inspector.show_block("dense1", "Dense", "Fully connected.", fields, {"units": 10})
    form = inspector.form
    inspector.show_block("dense1", "Dense", "Fully connected.", fields, {"units": 20})
    assert inspector.form is form and form.editors["units"].value() == 20
    with qtbot.waitSignal(inspector.settingEdited) as edited:
        form.editors["units"].setValue(32)
    assert edited.args == ["dense1", "units", 32]
    inspector.show_result("", "", "", "kernel 9 is larger than the 8x8 input", None)
    assert inspector.error_label.isVisibleTo(inspector)
    assert "larger than" in inspector.error_label.text()


def test_curves_read_back_epochs_and_steps(qtbot):
    curves = CurvesPanel()
    qtbot.addWidget(curves)
    curves.set_steps_per_epoch(10)
    curves.add_steps(np.arange(10), np.linspace(2, 1, 10))
    curves.add_epoch({"epoch": 1, "train_loss": 1.5, "val_loss": 1.4, "train_accuracy": 0.5, "val_accuracy": 0.6})
    curves.add_epoch({"epoch": 2, "train_loss": 1.0, "val_loss": 1.1, "train_accuracy": 0.7, "val_accuracy": None})
    x, y = curves.curve_data("train_loss")
    assert list(x) == [1, 2] and list(y) == [1.5, 1.0]
    assert list(curves.curve_data("val_accuracy")[1]) == [0.6]
    assert curves.curve_data("train_loss_steps")[0].size == 0  # the step curve shows in the step view
    curves.axis_choice.setCurrentText("by step")
    x, y = curves.curve_data("train_loss_steps")
    assert len(x) == 10 and y[0] == 2.0
    assert list(curves.curve_data("val_loss")[0]) == [10, 20]
    curves.set_steps_per_epoch(10)                      # the same count: the steps stay
    assert len(curves.curve_data("train_loss_steps")[0]) == 10
    curves.set_steps_per_epoch(5)                       # a new batch size: counted otherwise, dropped
    assert curves.curve_data("train_loss_steps")[0].size == 0
    curves.clear()
    assert curves.curve_data("train_loss")[0].size == 0


def test_small_losses_read_as_themselves_on_the_axis(qtbot):
    # pyqtgraph's default would write "loss (x0.001)" and label a loss of 0.05 as 50.
    curves = CurvesPanel()
    qtbot.addWidget(curves)
    curves.resize(700, 300)
    curves.show()
    curves.add_epoch({"epoch": 1, "train_loss": 0.05, "val_loss": 0.04})
    curves.add_epoch({"epoch": 2, "train_loss": 0.01, "val_loss": 0.02})
    qtbot.wait(10)
    axis = curves.loss_plot.getAxis("left")
    assert axis.autoSIPrefixScale == 1.0 and "x0.001" not in axis.labelString()
    assert "x0.001" not in curves.loss_plot.getAxis("bottom").labelString()


def test_confusion_matrix(qtbot):
    view = ConfusionMatrixView()
    qtbot.addWidget(view)
    matrix = np.array([[5, 1], [0, 4]])
    view.set_matrix(matrix, ["cat", "dog"])
    assert np.array_equal(view.matrix, matrix)
    assert "9 of 10" in view.caption.text()
    assert view.counts.counts.shape == (2, 2) and view.counts.bright[0, 0]
    view.set_matrix(None, [])
    assert view.matrix.size == 0


def test_run_controls_states_blocking_and_progress(qtbot):
    controls = RunControls()
    qtbot.addWidget(controls)
    controls.set_blocked("Conv2D conv2d1: kernel too large")
    assert not controls.train_button.isEnabled()
    assert "kernel too large" in controls.train_button.toolTip()
    controls.set_blocked(None)
    assert controls.train_button.isEnabled()
    controls.set_state("running")
    assert not controls.train_button.isEnabled() and controls.pause_button.isEnabled() and controls.stop_button.isEnabled()
    controls.set_state("paused")
    assert controls.resume_button.isEnabled() and not controls.pause_button.isEnabled()
    controls.set_progress(0.5, "Epoch 3 of 20")
    assert controls.progress.value() == 500 and controls.progress.format() == "Epoch 3 of 20 · 50%"
    controls.set_progress(0.0, "Ready")
    assert controls.progress.format() == "Ready"


def test_training_panel_locks_its_form_and_says_why_train_is_off(qtbot):
    panel = TrainingPanel([{"name": "epochs", "kind": "int", "label": "Epochs", "minimum": 1, "maximum": 100}])
    qtbot.addWidget(panel)
    panel.set_blocked("Conv2D conv2d1: kernel too large")
    assert "kernel too large" in panel.blocked_label.text() and not panel.blocked_label.isHidden()
    panel.set_locked(True)
    assert not panel.form.isEnabled()
    panel.set_result("Test accuracy 98.9% on 360 held-out test samples.")
    assert not panel.result.isHidden()
    panel.set_result("")
    assert panel.result.isHidden()


def test_data_panel_shows_dataset_and_errors(qtbot):
    panel = DataPanel()
    qtbot.addWidget(panel)
    panel.set_sources([{"name": "digits", "description": "8x8 digits", "params": {"layout": "image"},
                        "choices": {"layout": ["image", "rows"]}}])
    with qtbot.waitSignal(panel.datasetRequested) as requested:
        panel.load_button.click()
    assert requested.args[0] == {"kind": "builtin", "name": "digits", "params": {"layout": "image"}}
    samples = [np.random.default_rng(i).random((8, 8)) for i in range(4)]
    panel.show_dataset({"title": "digits", "lines": ["4 samples"], "class_counts": [2, 2],
                        "class_names": ["0", "1"]}, samples, ["0", "1", "0", "1"])
    assert len(panel.shown_samples) == 4 and "4 samples" in panel.summary.text()
    panel.show_error("digits layout must be one of image, vector, rows")
    assert panel.error.isVisibleTo(panel) and "4 samples" in panel.summary.text()
    panel.choose_file = lambda parent, what: "/data/my.npz"
    panel.source.setCurrentText("Your own data…")
    with qtbot.waitSignal(panel.datasetRequested) as requested:
        panel.file_button.click()
    assert requested.args[0] == {"kind": "file", "path": "/data/my.npz", "params": {}}


def test_data_panel_shows_each_formats_options_and_keeps_them_per_path(qtbot):
    panel = DataPanel()
    qtbot.addWidget(panel)
    panel.set_sources([{"name": "digits", "description": "", "params": {"max_windows": 0}}])
    assert panel.params_form.labelForField(panel._param_editors["max_windows"]).text() == "Max windows"
    formats = {"csv": ["task", "label_column"], "videos": ["frames", "stride", "size", "grey"]}
    panel.set_formats(formats, lambda path: "videos" if path.endswith("clips") else "csv")
    # An older project's video-folder reference is shown as own data, its options in the controls.
    panel.set_reference({"kind": "builtin", "name": "video-folder",
                         "params": {"folder": "/data/clips", "frames": 6, "size": 12, "channels": 3}})
    assert panel.source.currentText() == "Your own data…"
    assert panel.file_options() == {"frames": 6, "stride": 0, "size": [12, 12], "grey": False}
    requested = []
    panel.datasetRequested.connect(requested.append)
    panel.choose_file = lambda parent, what: "/data/t.csv"
    panel.file_button.click()
    assert requested[-1] == {"kind": "file", "path": "/data/t.csv", "format": "csv",
                             "params": {"task": "classification", "label_column": -1}}
    panel.option_editors["label_column"].setValue(2)
    panel.choose_file = lambda parent, what: "/data/clips"
    panel.video_button.click()
    assert requested[-1]["params"]["frames"] == 6          # what was set for the clips is back
    panel.choose_file = lambda parent, what: "/data/t.csv"
    panel.file_button.click()
    assert requested[-1]["params"]["label_column"] == 2
    assert panel.option_editors["label_column"].specialValueText() == "last"


@pytest.mark.parametrize("checked", [False, True])
def test_a_checkbox_shows_its_box_on_the_dark_theme_and_checked_differs_from_unchecked(qtbot, checked):
    # The dark style sheet once drew no box at all for an unchecked check box ("Augment: mirror",
    # the Compare view's list): nothing told a person there was something to click.
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QCheckBox, QStyle, QStyleOptionButton

    from gatescope.widgets import theme
    box = QCheckBox("Augment: mirror")
    box.setStyleSheet(theme.STYLE_SHEET + f"QCheckBox {{ background: {theme.BACKGROUND}; }}")
    box.setChecked(checked)
    qtbot.addWidget(box)
    box.show()
    qtbot.waitExposed(box)
    option = QStyleOptionButton()
    box.initStyleOption(option)
    rect = box.style().subElementRect(QStyle.SE_CheckBoxIndicator, option, box)
    image = box.grab().toImage()
    background = QColor(theme.BACKGROUND).rgb()
    colours = {image.pixel(x, y) for x in range(rect.left(), rect.right() + 1)
               for y in range(rect.top(), rect.bottom() + 1)}
    assert colours - {background}, "the indicator is invisible"
    inside = QColor(image.pixel(rect.center())).name()
    assert (inside == theme.ACCENT.lower()) == checked
