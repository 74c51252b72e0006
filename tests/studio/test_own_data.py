"""Own data from the window, as a person brings it: the Data panel's buttons and loader options for
an .npz, tables (.csv, .tsv, .txt; the label not last; regression), an image folder of mixed
sizes (resize) and a video folder; the Input's "use the data's shape"; a failed load that keeps
the previous dataset; data paths saved relative to the project's folder."""
import json
import zipfile

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QSettings, QStandardPaths

from gatescope.compute.graph import GraphSpec
from gatescope.studio.app import MainWindow
from gatescope.studio.project import Project
from fake_dialogs import FakeDialogs


QStandardPaths.setTestModeEnabled(True)




@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat), dialogs=FakeDialogs(),
                   autosave_dir=tmp_path / "autosave", extra_panels=False)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitUntil(lambda: w.current_dataset() is not None, timeout=10000)
    yield w
    w.data.shutdown()


def pick(window, qtbot, path, what="file"):
    """Choose ``path`` with the panel's button for ``what`` and wait for the load to end."""
    panel = window.data_panel
    panel.choose_file = lambda parent, kind: str(path)
    panel.source.setCurrentText("Your own data…")
    button = {"file": panel.file_button, "images": panel.folder_button, "videos": panel.video_button}[what]
    button.click()
    qtbot.waitUntil(lambda: not window.data.busy, timeout=20000)


def load(window, qtbot):
    window.data_panel.load_button.click()
    qtbot.waitUntil(lambda: not window.data.busy, timeout=20000)


def test_an_npz_and_the_inputs_use_the_data_shape(window, qtbot, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "points.npz", x=rng.standard_normal((50, 6)), y=np.arange(50) % 2)
    window.set_project(Project(graph=GraphSpec.chain(("Input", {"shape": [4]}), ("Dense", {"units": 2}),
                                                     ("Classify", {}))))
    qtbot.waitUntil(lambda: window.current_dataset() is not None, timeout=10000)
    pick(window, qtbot, tmp_path / "points.npz")
    assert window.current_dataset().sample_shape == (6,)
    assert "set the Input's shape to 6" in window.train_blocker()
    assert list(window.data_panel.option_editors) == ["task"]
    window.canvas.select(["b0"])
    button = window.inspector.data_shape_button
    assert button.isVisibleTo(window.inspector) and button.text() == "Use the data's shape: 6"
    button.click()
    assert window.project.graph.block("b0").settings["shape"] == (6,) and window.train_blocker() is None
    assert not button.isVisibleTo(window.inspector)
    window.undo_action.trigger()
    assert window.project.graph.block("b0").settings["shape"] == (4,)


def test_tables_with_the_label_first_and_regression(window, qtbot, tmp_path):
    panel = window.data_panel
    table = tmp_path / "flowers.csv"
    table.write_text("kind,length,width\n" + "".join(f"{i % 3},{1.5 + i * 0.1:.2f},{0.2 * i:.2f}\n" for i in range(30)))
    pick(window, qtbot, table)
    assert "class labels must be whole numbers" in panel.error.text()
    assert "Not loaded: the project keeps the bundled digits data" in panel.error.text()
    assert window.current_dataset().name == "digits"            # the previous dataset stays in use
    assert window.project.dataset["kind"] == "builtin"
    # The file stays shown with its options, to be mended: the label is the first column.
    panel.option_editors["label_column"].setValue(0)
    load(window, qtbot)
    data = window.current_dataset()
    assert data.name == "flowers" and data.sample_shape == (2,) and data.class_names == ["0", "1", "2"]
    assert window.project.dataset["params"] == {"task": "classification", "label_column": 0}
    # Picked again: the label column chosen for it is still there.
    (tmp_path / "other.txt").write_text("1 0\n2 1\n3 0\n")
    pick(window, qtbot, tmp_path / "other.txt")
    assert panel.option_editors["label_column"].value() == -1 and window.current_dataset().name == "other"
    pick(window, qtbot, table)
    assert panel.option_editors["label_column"].value() == 0 and window.current_dataset().name == "flowers"
    # Regression from a .tsv: the label column holds measurements.
    measured = tmp_path / "measured.tsv"
    measured.write_text("".join(f"{i}\t{i * 0.3:.3f}\t{i * 3 + 100}\n" for i in range(40)))
    pick(window, qtbot, measured)
    assert "choose Regression" in panel.warnings.text() and panel.warnings.isVisibleTo(panel)
    panel.option_editors["task"].setCurrentIndex(panel.option_editors["task"].findData("regression"))
    load(window, qtbot)
    assert window.current_dataset().task == "regression" and window.current_dataset().y.dtype == np.float32
    assert "Task: regression" in panel.summary.text() and panel.warnings.isHidden()


def test_an_image_folder_of_mixed_sizes_is_resized(window, qtbot, tmp_path):
    panel = window.data_panel
    root = tmp_path / "pets"
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            size = (10 + 3 * i, 12 + 2 * i)
            cv2.imwrite(str(root / name / f"{i}.png"), np.full(size + (3,), 60 * k + 20 * i, np.uint8))
    pick(window, qtbot, root, "images")
    assert "different sizes" in panel.error.text() and "Resize to" in panel.error.text()
    assert list(panel.option_editors) == ["resize", "grey"]
    resize = panel.option_editors["resize"]
    resize.enabled.setChecked(True)
    resize.height_spin.setValue(8)
    resize.width_spin.setValue(6)
    panel.option_editors["grey"].setChecked(True)
    load(window, qtbot)
    data = window.current_dataset()
    assert data.sample_shape == (1, 8, 6) and data.class_names == ["cat", "dog"]
    assert window.project.dataset == {"kind": "file", "path": str(root), "format": "images",
                                      "params": {"resize": [8, 6], "grey": True}}


def write_clip(path, frames, direction):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (24, 24))
    for t in range(frames):
        frame = np.full((24, 24, 3), 15, np.uint8)
        x = 4 + 2 * t if direction > 0 else 20 - 2 * t
        frame[:, max(0, x - 2):x + 2] = 230
        writer.write(frame)
    writer.release()


def test_a_video_folder_with_its_frames_stride_and_size(window, qtbot, tmp_path):
    panel = window.data_panel
    root = tmp_path / "gestures"
    for name, direction in (("left", -1), ("right", 1)):
        (root / name).mkdir(parents=True)
        write_clip(root / name / f"{name}.avi", 9, direction)
    (root / "right" / "broken.avi").write_bytes(b"not a video at all")
    pick(window, qtbot, root, "images")          # the image button on a folder of videos: read as videos
    assert list(panel.option_editors) == ["frames", "stride", "size", "grey"]
    data = window.current_dataset()
    assert data.sample_shape == (8, 1, 16, 16) and data.class_names == ["left", "right"]
    assert "broken.avi" in panel.warnings.text()
    panel.option_editors["frames"].setValue(4)
    panel.option_editors["stride"].setValue(2)
    panel.option_editors["size"].set_value([12, 10])
    load(window, qtbot)
    data = window.current_dataset()
    assert data.sample_shape == (4, 1, 12, 10) and data.class_counts().tolist() == [3, 3]
    ref = window.project.dataset
    assert ref["format"] == "videos" and "cache_dir" not in json.dumps(ref)
    assert ref["params"] == {"frames": 4, "stride": 2, "size": [12, 10], "grey": True}


def test_data_beside_the_project_is_saved_relative_to_it(window, qtbot, tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    np.savez(folder / "d.npz", x=np.ones((20, 3)), y=np.arange(20) % 2)
    pick(window, qtbot, folder / "d.npz")
    window.dialogs.save_to = str(folder / "model.gscope")
    assert window.save_as()
    saved = json.loads(zipfile.ZipFile(folder / "model.gscope").read("project.json"))
    assert saved["dataset"]["path"] == "d.npz"
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert window.open_path(moved / "model.gscope")
    qtbot.waitUntil(lambda: window.current_dataset() is not None and not window.data.busy, timeout=10000)
    assert window.current_dataset().name == "d" and window.data_panel.error.isHidden()


def test_new_from_data_shows_what_was_found_then_writes_and_opens_the_project(window, qtbot, tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    rng = np.random.default_rng(3)
    np.savez(folder / "signals.npz", x=rng.standard_normal((90, 12)), y=np.repeat([2, 5, 9], 30))
    window.new_from_data()
    controller = window.new_from_data_controller
    dialog = controller.dialog
    assert not dialog.create_button.isEnabled()
    dialog.data.choose_file = lambda parent, what: str(folder / "signals.npz")
    dialog.data.file_button.click()
    qtbot.waitUntil(lambda: controller.dataset is not None, timeout=10000)
    found = dialog.found.text()
    assert "90 samples, each a vector 12" in found and "3 classes: 2 30, 5 30, 9 30" in found
    assert "numbered as classes 0 to 2" in found
    assert [dialog.template.itemText(i) for i in range(dialog.template.count())] == ["mlp", "cnn1d", "gru", "lstm"]
    assert dialog.template.currentText() == "mlp" and dialog.create_button.isEnabled()
    dialog.template.setCurrentText("cnn1d")
    dialog.epochs.setValue(3)
    assert window.current_dataset().name == "digits"          # nothing changes before Create
    window.dialogs.save_to = str(folder / "signals.gscope")
    assert controller.suggested_path() == str(folder / "signals.gscope")
    dialog.create_button.click()
    qtbot.waitUntil(lambda: window.current_dataset() is not None and window.current_dataset().name == "signals",
                    timeout=10000)
    project = window.project
    assert project.path == folder / "signals.gscope" and project.training.epochs == 3
    assert [b.type for b in project.graph.blocks][:3] == ["Input", "BatchNorm", "Reshape"]
    assert project.graph.blocks[-1].settings["class_names"] == "2,5,9"
    assert window.train_blocker() is None
    saved = json.loads(zipfile.ZipFile(folder / "signals.gscope").read("project.json"))
    assert saved["dataset"]["path"] == "signals.npz"
