"""Issue 18: every damaged file, odd input and fault met with one clear line, and nothing lost.

Each case of ``damaged_files.CASES`` is generated here and run as a person would meet it:
opened (``load_project``), trained, predicted from and exported on the command line, and opened
in the window. Every run must refuse it in one line (one dialog in the window, the previous
project still open) whose words the case names, leave the file byte-identical, and write nothing
else. The faults of saving (a kill in the middle, a full disk, a folder that cannot be written)
and the odd inputs of ``predict`` follow the table.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QStandardPaths

from damaged_files import CASES, input_batch, make, members, meta, snapshot, zip_of
from fake_dialogs import FakeDialogs
from gatescope.studio import atomic
from gatescope.studio.cli import main
from gatescope.studio.project import Project, ProjectError, load_project, parse_project, save_project

QStandardPaths.setTestModeEnabled(True)

COMMANDS = ("train", "predict", "export")
CLI_RUNS = [(case, command) for case in sorted(CASES) for command in COMMANDS
            if "open" in CASES[case].refused_by or command in CASES[case].refused_by]
OPEN_CASES = sorted(case for case in CASES if "open" in CASES[case].refused_by)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The folder the case's files live in; the process's own writes (caches) go elsewhere."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.setenv("GATESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(folder)
    return folder


def argv(command: str, path: Path, folder: Path) -> list[str]:
    if command == "train":
        return ["train", str(path), "--epochs", "1"]
    if command == "predict":
        return ["predict", str(path), "--input", str(input_batch(folder)), "--output", str(folder / "y.npy")]
    return ["export", str(path), "-o", str(folder / "model.onnx")]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gatescope: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("case", OPEN_CASES)
def test_opening_refuses_in_one_sentence(case, work):
    path = make(case, work)
    before = snapshot(work)
    with pytest.raises(ProjectError) as refused:
        load_project(path)
    message = str(refused.value)
    assert re.search(CASES[case].message, message), message
    assert "\n" not in message and "Traceback" not in message
    assert snapshot(work) == before


@pytest.mark.parametrize("case, command", CLI_RUNS)
def test_commands_refuse_in_one_line_and_change_nothing(case, command, work, capsys):
    path = make(case, work)
    args = argv(command, path, work)
    before = snapshot(work)
    assert main(args) == 1
    out, err = capsys.readouterr()
    line = one_line(err)
    assert re.search(CASES[case].message, line), line
    assert "SECRET" not in line and "daemon" not in line, "a private file is named, never quoted"
    assert snapshot(work) == before, "the file is byte-identical and nothing else is written"


# ----------------------------------------------------------------------------- the window
@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    """One window for every case (building one takes seconds), holding a project of its own."""
    from gatescope.studio.app import MainWindow
    folder = tmp_path_factory.mktemp("window")
    win = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.IniFormat),
                     dialogs=FakeDialogs(), autosave_dir=folder / "autosave", extra_panels=False)
    win.resize(1280, 800)
    win.show()
    previous = folder / "previous.gscope"
    previous.write_bytes(zip_of(members()))
    assert win.open_path(previous)
    yield win
    win.document.undo_stack.setClean()
    win.close()
    win.deleteLater()


@pytest.mark.parametrize("case", OPEN_CASES)
def test_the_window_refuses_with_one_dialog_and_keeps_the_open_project(case, window, work):
    path = make(case, work)
    before = snapshot(work)
    kept_path, kept_graph = window.project.path, window.project.graph.to_dict()
    errors = len(window.dialogs.errors)
    assert not window.open_path(path)
    new = window.dialogs.errors[errors:]
    assert len(new) == 1 and new[0][0] == "Cannot open the project", new
    assert re.search(CASES[case].message, new[0][1]) and "Traceback" not in new[0][1]
    assert window.project.path == kept_path and window.project.graph.to_dict() == kept_graph
    assert snapshot(work) == before


@pytest.mark.parametrize("case", ["dataset /dev/zero", "dataset a FIFO", "moving shapes n 10^9",
                                  "csv of a private file"])
def test_the_window_opens_a_project_whose_data_cannot_be_read_and_says_why(case, window, work, qtbot):
    """The project opens (its model is fine); the data panel says why the data cannot be had,
    promptly: a FIFO or /dev/zero never blocks the loader."""
    path = make(case, work)
    before = snapshot(work)
    errors = len(window.dialogs.errors)
    assert window.open_path(path)
    qtbot.waitUntil(lambda: not window.data_panel.error.isHidden(), timeout=5000)  # its view may be another
    message = window.data_panel.error.text()
    assert re.search(CASES[case].message.rstrip("$"), message), message
    assert "SECRET" not in message and "daemon" not in message
    assert window.dialogs.errors[errors:] == [] and window.train_blocker() is not None
    assert snapshot(work) == before


# ----------------------------------------------------------------------------- saving
def test_an_id_that_could_not_be_opened_again_is_never_saved(tmp_path):
    """The audit's worst case: a block id with '/' was accepted, and saving in place replaced a
    good file with one that could not be opened. Every save checks first."""
    path = tmp_path / "good.gscope"
    path.write_bytes(zip_of(members()))
    good = path.read_bytes()
    project = load_project(path)
    for bad in ("b/1", "b\x001", "b" * 70_000, ""):
        project.graph.blocks[1].id = bad
        with pytest.raises(ProjectError, match="cannot be used"):
            save_project(project, path)
        assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["good.gscope"]


def test_a_value_a_project_cannot_hold_is_refused_before_the_old_file_is_touched(tmp_path):
    path = tmp_path / "good.gscope"
    path.write_bytes(zip_of(members()))
    good = path.read_bytes()
    project = load_project(path)
    project.panels["probe"] = float("nan")
    with pytest.raises(ProjectError, match="cannot save"):
        save_project(project, path)
    project.panels["probe"] = 1
    project.history.append({"epoch": 2, "train_loss": "low"})
    with pytest.raises(ProjectError, match="train_loss must be a number or null"):
        save_project(project, path)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["good.gscope"]


def test_everything_opened_saves_and_opens_again(tmp_path):
    """What opening accepts, saving accepts: the dataset's dropped cache_dir and positions of
    blocks no longer in the graph included."""
    m = meta()
    m["dataset"] = {"kind": "builtin", "name": "video-folder",
                    "params": {"folder": "clips", "frames": 8, "cache_dir": "/etc/evil"}}
    m["positions"]["gone"] = [1.0, 2.0]
    path = tmp_path / "old.gscope"
    path.write_bytes(zip_of({**members(), "project.json": json.dumps(m)}))
    project = load_project(path)
    assert project.dataset["params"] == {"folder": "clips", "frames": 8}, "cache_dir is ignored"
    assert "gone" not in project.positions
    again = load_project(save_project(project, tmp_path / "new.gscope"))
    assert again.dataset == project.dataset and again.graph == project.graph


KILLED_SAVE = textwrap.dedent("""
    import os, sys, time
    from gatescope.studio import atomic
    from gatescope.studio.project import load_project, save_project
    real_fsync = os.fsync
    def stall(fd):
        real_fsync(fd)
        print("writing", flush=True)
        time.sleep(600)
    atomic.os.fsync = stall
    project = load_project(sys.argv[1])
    project.name = "changed"
    save_project(project, sys.argv[1])
""")


def test_a_killed_save_leaves_the_file_whole_and_its_temporary_file_is_removed_next_time(tmp_path):
    path = tmp_path / "p.gscope"
    path.write_bytes(zip_of(members()))
    good = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    left = [p.name for p in tmp_path.iterdir() if p.name != "p.gscope"]
    assert len(left) == 1 and re.fullmatch(rf"\.p\.gscope\.{child.pid}-[a-z0-9_]{{8}}\.tmp", left[0]), left
    assert path.read_bytes() == good, "the previous file survives the kill"
    assert load_project(path).name == "tiny"
    assert sorted(os.listdir(tmp_path)) == ["p.gscope"], "opening removes the dead process's temporary file"


def test_only_stale_temporaries_of_the_file_itself_are_removed(tmp_path):
    path = tmp_path / "p.gscope"
    path.write_bytes(zip_of(members()))
    mine = tmp_path / f".p.gscope.{os.getpid()}-abcdefgh.tmp"          # a save of this process, under way
    old_style = tmp_path / ".p.gscope.abcdefgh.tmp"                   # an earlier version's, fresh
    ancient = tmp_path / ".p.gscope.zyxwvuts.tmp"                     # an earlier version's, two days old
    other = tmp_path / ".q.gscope.12345678-abcdefgh.tmp"              # another file's
    look_alike = tmp_path / ".p.gscope.notes.tmp"                     # not a name GateScope makes
    for p in (mine, old_style, ancient, other, look_alike):
        p.write_bytes(b"x")
    os.utime(ancient, (time.time() - 2 * 86400,) * 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_one = tmp_path / f".p.gscope.{int(dead.stdout)}-abcdefgh.tmp"
    dead_one.write_bytes(b"x")
    removed = atomic.remove_stale_temporaries(path)
    assert sorted(removed) == sorted([ancient, dead_one])
    assert all(p.exists() for p in (mine, old_style, other, look_alike, path))


def test_a_full_disk_leaves_an_existing_export_and_project_as_they_were(tmp_path, monkeypatch, capsys):
    path = tmp_path / "p.gscope"
    path.write_bytes(zip_of(members()))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"an earlier export")
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    assert main(["export", str(path), "-o", str(onnx)]) == 1
    assert "No space left on device" in one_line(capsys.readouterr().err)
    with pytest.raises(ProjectError, match="No space left on device"):
        save_project(load_project(path), path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good


def test_a_folder_that_cannot_take_the_result_is_found_before_training(tmp_path, monkeypatch, capsys):
    path = tmp_path / "p.gscope"
    path.write_bytes(zip_of(members()))
    started = []
    from gatescope.compute import train
    monkeypatch.setattr(train.Trainer, "run", lambda *a, **k: started.append(1) or iter(()))
    assert main(["train", str(path), "--out", str(tmp_path / "missing" / "out.gscope")]) == 1
    assert "nothing was trained" in one_line(capsys.readouterr().err) and not started


def test_hello_lstm_without_a_test_split_trains_and_says_so(tmp_path, capsys):
    from gatescope.assets import example_path
    path = tmp_path / "hello.gscope"
    path.write_bytes(example_path("hello-lstm").read_bytes())
    assert main(["train", str(path), "--epochs", "2"]) == 0
    assert "no test samples (test_fraction is 0)" in capsys.readouterr().out
    assert load_project(path).trainer["epochs_done"] == 2


def test_steps_per_epoch_of_a_million_starts_at_once(tmp_path):
    """10^6 steps of 32 from 1,400 samples: the first step comes without 23,000 permutations first."""
    from gatescope.compute.datasets import load
    from gatescope.compute.train import Trainer, TrainSettings
    project = load_project(_written(tmp_path, zip_of(members())))
    settings = TrainSettings(batch_size=32, steps_per_epoch=1_000_000)
    trainer = Trainer(project.build_model(), load(project.dataset), settings)
    started = time.perf_counter()
    events = trainer.run(1)
    assert next(events).kind == "start" and next(events).kind == "step"
    assert time.perf_counter() - started < 5.0
    events.close()


def _written(folder: Path, data: bytes) -> Path:
    path = folder / "p.gscope"
    path.write_bytes(data)
    return path


def test_a_file_larger_than_opening_reads_is_refused_before_reading(tmp_path, monkeypatch):
    from gatescope.studio import project as project_module
    path = _written(tmp_path, zip_of(members()))
    monkeypatch.setattr(project_module, "MAX_FILE_BYTES", 1000)
    read = []
    monkeypatch.setattr(project_module, "parse_project", lambda *a: read.append(1))
    with pytest.raises(ProjectError, match="more than the 1 KB GateScope reads"):
        load_project(path)
    assert not read


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_a_project_path_that_is_not_a_regular_file_is_refused(special, tmp_path):
    path = Path(special) if special.startswith("/") else tmp_path / "p.gscope"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "folder":
        path.mkdir()
    with pytest.raises(ProjectError, match="not a regular file|is a folder"):
        load_project(path)


def test_a_video_folder_project_never_writes_where_it_says(tmp_path, monkeypatch):
    """Opening and loading a video-folder project with an old cache_dir: the named folder is
    never created; the decoded clips go to the user's cache directory only."""
    cv2 = pytest.importorskip("cv2")
    from gatescope.compute.datasets import load
    from gatescope.studio.session import dataset_reference
    clips = tmp_path / "clips"
    for name, sign in (("left", -1), ("right", 1)):
        (clips / name).mkdir(parents=True)
        writer = cv2.VideoWriter(str(clips / name / "a.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
        assert writer.isOpened()
        for t in range(10):
            frame = np.zeros((16, 16, 3), np.uint8)
            frame[:, (8 + sign * t) % 16] = 255
            writer.write(frame)
        writer.release()
    monkeypatch.setenv("GATESCOPE_CACHE_DIR", str(tmp_path / "user-cache"))
    evil = tmp_path / "evil"
    m = meta()
    m["graph"]["blocks"][0]["settings"]["shape"] = [4, 1, 8, 8]
    m["dataset"] = {"kind": "builtin", "name": "video-folder",
                    "params": {"folder": "clips", "frames": 4, "size": 8, "cache_dir": str(evil)}}
    path = _written(tmp_path, zip_of({"project.json": json.dumps(m)}))
    before = snapshot(clips)
    project = load_project(path)
    dataset = load(dataset_reference(project))
    assert dataset.x.shape[1:] == (4, 1, 8, 8)
    assert not evil.exists() and snapshot(clips) == before
    assert list((tmp_path / "user-cache" / "video").glob("*.npz"))


# ----------------------------------------------------------------------------- predict --input
def _npy_header(shape, descr="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _saved(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


rng = np.random.default_rng(0)
BAD_INPUTS = {
    "complex": (_saved(rng.random((3, 64)) + 1j), "complex numbers"),
    "near 1e300": (_saved(np.full((2, 64), 1e300)), "beyond float32's range"),
    "minus 1e300": (_saved(np.full((2, 64), -1e300)), "beyond float32's range"),
    "NaN": (_saved(np.full((2, 64), np.nan, np.float32)), "NaN or Inf"),
    "Inf": (_saved(np.full((2, 64), np.inf)), "NaN or Inf"),
    "header of 10^12 samples": (_npy_header((10**12, 1, 8, 8)) + bytes(64), r"declares shape \(1000000000000, 1, 8, 8\)"),
    "header of 10^12 for 64": (_npy_header((10**12, 64)) + bytes(256), "it is damaged"),
    "truncated data": (_saved(rng.random((5, 64)))[:-9], "it is damaged"),
    "object array": (_saved(np.array([{"a": 1}], dtype=object)), "object arrays"),
    "strings": (_saved(np.array(["a", "b"])), "<U1 values"),
    "structured": (_saved(np.zeros(3, dtype=[("a", "f4")])), "values; GateScope reads arrays of numbers"),
    "one number": (_saved(np.float32(3)), "a single number"),
    "wrong shape": (_saved(np.zeros((2, 7), np.float32)), r"the model takes numbers shaped \(N,\) \+ \(64,\)"),
    "empty file": (b"", "not a readable array"),
    "text": (b"1,2,3\n", "not a readable array"),
    "an npz": (zip_of({"x.npy": _saved(np.zeros(3))}), "not a readable array"),
    "garbage header": (b"\x93NUMPY\x01\x00\x10\x00{'descr': x}   \n", "its header is damaged"),
    "version 9": (b"\x93NUMPY\x09\x00" + bytes(20), "unknown array format"),
}
SPECIAL_INPUTS = {"/dev/zero": "not a regular file", "fifo": "not a regular file", "folder": "is a folder",
                  "missing": "does not exist"}


@pytest.fixture
def trained(work):
    return _written(work, zip_of(members()))


@pytest.mark.parametrize("case", sorted(BAD_INPUTS) + sorted(SPECIAL_INPUTS))
def test_predict_refuses_odd_inputs_in_one_line(case, trained, work, capsys):
    source = work / "x.npy"
    if case in BAD_INPUTS:
        source.write_bytes(BAD_INPUTS[case][0])
    elif case == "fifo":
        os.mkfifo(source)
    elif case == "folder":
        source.mkdir()
    elif case == "/dev/zero":
        source = Path("/dev/zero")
    message = BAD_INPUTS[case][1] if case in BAD_INPUTS else SPECIAL_INPUTS[case]
    before = snapshot(work)
    assert main(["predict", str(trained), "--input", str(source), "--output", str(work / "y.npy")]) == 1
    line = one_line(capsys.readouterr().err)
    assert re.search(message, line), line
    assert snapshot(work) == before, "no output is written"


def test_predict_never_writes_non_finite_probabilities(trained, work, capsys, monkeypatch):
    """Inputs finite in float32 can still overflow inside the model: nothing is written then."""
    arrays = dict(np.load(io.BytesIO(members()["weights.npz"])))
    arrays["b1/W"][:] = 1.0
    arrays["b3/W"][:] = 3e38  # finite weights whose class scores overflow to inf: softmax gives NaN
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    trained.write_bytes(zip_of({**members(), "weights.npz": buffer.getvalue()}))
    np.save(work / "x.npy", np.ones((2, 64), np.float32))
    before = snapshot(work)
    assert main(["predict", str(trained), "--input", str(work / "x.npy"), "--output", str(work / "y.npy")]) == 1
    assert "NaN or infinite" in one_line(capsys.readouterr().err)
    assert snapshot(work) == before


def test_a_screenshot_of_a_damaged_file_is_one_line(work, capsys):
    path = make("two project.json", work)
    before = snapshot(work)
    assert main(["--screenshot", str(work / "shot.png"), str(path)]) == 1
    assert "two members named 'project.json'" in one_line(capsys.readouterr().err)
    assert snapshot(work) == before


def test_a_real_process_prints_exactly_one_line(trained, work):
    """The in-process runs above, checked once as the shell sees them: exit 1, one line on stderr."""
    damaged = make("steps_per_epoch 10^9", work)
    result = subprocess.run([sys.executable, "-m", "gatescope.studio.cli", "train", str(damaged)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"gatescope: {damaged.name}: project.json training: steps_per_epoch "
                                          "must be from 0 to 1,000,000, not 1000000000"]


def test_opening_reads_the_file_member_by_member(work):
    """Opening reads from the file in pieces, never the whole file at once (4.8 GB were resident
    for a 5 GB file): here no read takes more than 1.1 MiB of a 3 MB project."""
    from gatescope.compute.graph import GraphSpec
    graph = GraphSpec.chain(("Input", {"shape": [64]}), ("Dense", {"units": 12000}), ("Dense", {"units": 10}),
                            ("Classify", {}))
    project = Project(graph=graph)
    project.weights = project.build_model().state_dict()
    path = save_project(project, work / "large.gscope")
    assert path.stat().st_size > 3 * 10**6

    class CountingReader(io.FileIO):
        largest = 0

        def read(self, size=-1):
            data = super().read(size)
            CountingReader.largest = max(CountingReader.largest, len(data))
            return data
    with CountingReader(path) as stream:
        assert parse_project(stream, path.name).trained
    assert CountingReader.largest < 1.1 * 2**20


def test_a_large_optimizer_state_of_zeros_opens(tmp_path):
    """Zeros deflate a thousandfold: weights and optimizer state are bounded by the model's size
    instead of a compression ratio, so SGD's untouched velocity of a large model is not a 'bomb'
    (both the old loader and the first version of this one refused it)."""
    from gatescope.compute.graph import GraphSpec
    graph = GraphSpec.chain(("Input", {"shape": [256]}), ("Dense", {"units": 30000}), ("Dense", {"units": 10}),
                            ("Classify", {}))
    project = Project(graph=graph)
    project.weights = project.build_model().state_dict()
    project.optimizer = {f"{k}/{slot}": np.zeros_like(v) for k, v in project.weights.items() for slot in "mv"}
    project.optimizer["step_count"] = np.array(3)
    path = save_project(project, tmp_path / "zeros.gscope")
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("optimizer.npz")
        assert info.file_size > 1000 * info.compress_size and info.file_size > 2**20
    assert load_project(path).optimizer["b1/W/m"].shape == (256, 30000)
