"""The window's controllers without the window: the one worker pattern, files and autosave
locks, training runs' progress."""
import subprocess
import sys
import textwrap
import threading

import pytest
from PySide6.QtCore import QSettings, QStandardPaths

from gatescope.compute.graph import GraphSpec
from gatescope.studio.document import Document
from gatescope.studio.files import FilesController
from gatescope.studio.project import Project, save_project
from gatescope.studio.training_control import TrainingController, progress_of
from gatescope.studio.training_run import TrainingJob
from gatescope.studio.worker import Worker

QStandardPaths.setTestModeEnabled(True)


def test_a_worker_runs_functions_and_generators_in_order_off_the_gui_thread(qtbot):
    worker = Worker("test")
    seen, threads = [], []

    def count(n):
        threads.append(threading.current_thread())
        for i in range(n):
            yield i
        return "counted"

    def boom():
        raise ValueError("no such thing")

    first = worker.submit(count, 3, event=lambda v: seen.append(("event", v, threading.current_thread())),
                          done=lambda v: seen.append(("done", v, threading.current_thread())))
    second = worker.submit(boom, failed=lambda message, details: seen.append(("failed", message, details)))
    qtbot.waitUntil(lambda: first.finished and second.finished, timeout=5000)
    assert [s[:2] for s in seen[:4]] == [("event", 0), ("event", 1), ("event", 2), ("done", "counted")]
    assert all(s[2] is threading.main_thread() for s in seen[:4])      # delivered on the GUI thread
    assert threads[0] is not threading.main_thread()                    # run on the worker's
    assert seen[4][:2] == ("failed", "ValueError: no such thing") and "Traceback" in seen[4][2]
    assert not worker.busy
    assert worker.shutdown()
    with pytest.raises(RuntimeError):
        worker.submit(count, 1)


def _files(tmp_path, document=None):
    document = document or Document()
    return FilesController(document, dialogs=None, settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat),
                           autosave_dir=tmp_path / "autosave", may_close=lambda: True,
                           store_layout=lambda project: None, show_status=lambda text, ms: None)


def test_an_autosave_another_running_gatescope_holds_is_not_offered_until_that_one_dies(qtbot, tmp_path):
    autosave = tmp_path / "autosave" / "untitled-1-1.gscope"
    autosave.parent.mkdir()
    save_project(Project(name="theirs"), autosave)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from PySide6.QtCore import QLockFile
        lock = QLockFile({str(autosave) + '.lock'!r})
        lock.setStaleLockTime(0)
        print(lock.tryLock(0), flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        files = _files(tmp_path)
        assert files.recovery_candidates(None) == []       # its owner runs: live work, not a crash's
    finally:
        holder.kill()
        holder.wait()
    assert _files(tmp_path).recovery_candidates(None) == [autosave]   # its owner died: offered


def test_an_autosave_is_written_and_held_and_a_clean_close_removes_both(qtbot, tmp_path):
    document = Document(Project(name="mine"))
    files = _files(tmp_path, document)
    document.add_block("Input", 0, 0)
    written = files.autosave()
    assert written.exists() and (written.parent / (written.name + ".lock")).exists()
    assert files.recovery_candidates(None) == []           # its own, never offered to itself
    files.shutdown()
    assert not written.exists() and not (written.parent / (written.name + ".lock")).exists()


def test_progress_of_a_reopened_project():
    assert progress_of(0, 300) == 0.0
    assert progress_of(235, 300) == pytest.approx(235 / 300)
    assert progress_of(300, 300) == 1.0 and progress_of(12, None) == 1.0


def test_a_training_run_reports_progress_pauses_and_ends_with_its_weights(qtbot):
    from gatescope.compute.datasets import load
    from gatescope.compute.train import TrainSettings
    graph = GraphSpec.chain(("Input", {"shape": (64,)}), ("Dense", {"units": 10}), ("Classify", {}))
    job = TrainingJob(graph=graph, settings=TrainSettings(epochs=40, batch_size=16), dataset_ref={},
                      epochs=40, dataset=load({"kind": "builtin", "name": "digits", "params": {"layout": "vector"}}))
    runs = TrainingController()
    states, progress, ended = [], [], []
    runs.stateChanged.connect(states.append)
    runs.progressChanged.connect(lambda fraction, text: progress.append((fraction, text)))
    runs.ended.connect(lambda kind, message, result: ended.append((kind, result)))
    assert runs.start(job) and not runs.start(job)          # one run at a time
    qtbot.waitUntil(lambda: runs.fraction() > 0, timeout=20000)
    runs.pause()
    assert progress[-1][1].startswith("Paused at epoch") and "ETA" not in progress[-1][1]
    paused_for = runs.elapsed_s()
    qtbot.wait(300)
    assert runs.elapsed_s() == paused_for                   # a pause is not training time
    runs.resume()
    qtbot.waitUntil(lambda: "ETA" in progress[-1][1], timeout=20000)
    assert runs.stop_and_wait(30)
    assert states[:3] == ["running", "paused", "running"] and states[-1] == "idle"
    kind, result = ended[0]
    assert kind == "stopped" and set(result["weights"]) == {"b1/W", "b1/b"}
    runs.shutdown()
