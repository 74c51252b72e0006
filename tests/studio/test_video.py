"""Live video: sources, the capture / inference pipeline, recording, the panel and `predict --video`.

Videos are written by the tests (cv2.VideoWriter into tmp_path); the camera is replaced by an
injected frame source. The classifier is a hand-weighted model: Flatten -> Dense(2) whose
weights score sum_t sum_x I(t, x) (x - centre) (t - middle), positive when brightness moves
right over time.
"""
import json
import threading
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from gatescope.compute.datasets import DataError  # noqa: E402
from gatescope.compute.graph import GraphSpec, Model  # noqa: E402
from gatescope.studio.project import Project, save_project  # noqa: E402
from gatescope.studio.video import (CallableSource, ClipFormat, ClipRecorder, RecordingError, SourceError,  # noqa: E402
                          VideoController, VideoFileSource, VideoPipeline, clip_counts, probe_cameras)
from gatescope.widgets.video_panel import VideoPanel  # noqa: E402

T, S = 6, 16


# ----------------------------------------------------------------------------- helpers
def motion_graph(frames=T, size=S) -> GraphSpec:
    return GraphSpec.chain(("Input", {"shape": [frames, 1, size, size], "normalize": "unit", "clip_stride": 1}),
                           ("Flatten", {}), ("Flatten", {}), ("Dense", {"units": 2}),
                           ("Classify", {"class_names": "left,right"}))


def motion_weights(frames=T, size=S, scale=0.03) -> dict[str, np.ndarray]:
    t = np.arange(frames) - (frames - 1) / 2
    x = np.arange(size) - (size - 1) / 2
    feature = (t[:, None, None, None] * x[None, None, None, :] * np.ones((1, 1, size, 1))).reshape(-1) * scale
    return {"b3/W": np.stack([-feature, feature], 1).astype(np.float32), "b3/b": np.zeros(2, np.float32)}


def motion_model() -> Model:
    model = Model(motion_graph())
    model.load_state_dict(motion_weights())
    return model


def bar_frames(n, direction, size=32, channels=3):
    """A bright vertical bar moving right (+1) or left (-1) one pixel a frame, BGR or grey uint8."""
    out = []
    for t in range(n):
        x = (4 + t) if direction > 0 else (size - 4 - t)
        frame = np.full((size, size), 20, np.uint8)
        frame[:, max(0, x - 2):x + 2] = 235
        out.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if channels == 3 else frame)
    return out


def write_video(path, frames, fps=20.0, codec="MJPG"):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def frames_source(frames, fps=0.0, live=True, then=None):
    """A stand-in camera: the given frames, then ``then()`` (default: end of stream)."""
    remaining = list(frames)

    def read():
        if remaining:
            return remaining.pop(0)
        return then() if then else None
    return CallableSource(read, fps=fps, live=live, name="test camera")


class SlowModel:
    """A model whose predict takes ``delay`` seconds: it cannot keep up with the camera."""

    def __init__(self, delay):
        self.delay, self.calls = delay, 0

    def predict(self, batch):
        self.calls += 1
        time.sleep(self.delay)
        return np.array([[0.25, 0.75]])


def collect(pipeline):
    predictions, messages = [], []
    pipeline.on_prediction = predictions.append
    pipeline.on_message = lambda text, error: messages.append((text, error))
    return predictions, messages


def wait_for(condition, timeout=10.0):
    """Let the event loop deliver what the workers send until ``condition()`` holds."""
    from PySide6.QtWidgets import QApplication
    end = time.time() + timeout
    while time.time() < end:
        QApplication.processEvents()
        if condition():
            return True
        time.sleep(0.01)
    return False


def run_events(seconds):
    wait_for(lambda: False, seconds)


@pytest.fixture
def pipeline(qtbot):
    p = VideoPipeline()
    yield p
    p.shutdown()


@pytest.fixture
def controller(qtbot):
    panel = VideoPanel()
    qtbot.addWidget(panel)
    ctl = VideoController(panel, camera_prober=lambda: [])
    yield ctl
    ctl.shutdown()


# ----------------------------------------------------------------------------- the pipeline
@pytest.mark.parametrize("direction,name", [(1, "right"), (-1, "left")])
def test_a_video_file_is_classified_window_by_window(pipeline, tmp_path, direction, name):
    path = write_video(tmp_path / f"{name}.avi", bar_frames(22, direction))
    predictions, messages = collect(pipeline)
    pipeline.set_model(motion_model(), ["left", "right"])
    pipeline.set_loop(False)
    pipeline.set_speed(4.0)  # 80 frames/s: the tiny model keeps up with every window
    pipeline.open(VideoFileSource(path))
    assert wait_for(lambda: any("end of" in m for m, _ in messages))
    assert wait_for(lambda: len(predictions) >= 10)
    assert all(p.class_name == name and p.confidence > 0.9 for p in predictions)
    assert [e for _, e in messages if e] == []


def test_a_slow_model_drops_windows_instead_of_queueing(pipeline, qtbot):
    slow = SlowModel(0.08)
    frames = bar_frames(1, 1)
    counter = {"n": 0}

    def camera():
        counter["n"] += 1
        time.sleep(0.002)
        return frames[0]

    pipeline.set_model(slow, ["left", "right"], ClipFormat(T, 1, S, S, "unit", 1))
    pipeline.open(CallableSource(camera, name="fast camera"))
    run_events(1.2)
    stats = pipeline.stats()
    waiting = pipeline.waiting
    pipeline.close_source()
    assert stats["frames"] > 100
    assert stats["inferences"] * 4 < stats["frames"]
    assert stats["windows_dropped"] > stats["inferences"]
    assert stats["most_waiting"] <= 1 and waiting <= 1


def test_drawing_keeps_up_while_the_model_is_slow(controller, qtbot):
    frames = bar_frames(1, 1)

    def camera():
        time.sleep(0.005)
        return frames[0]

    controller.set_model(SlowModel(0.2), ["left", "right"], ClipFormat(T, 1, S, S, "unit", 1))
    controller.open_source(CallableSource(camera))
    qtbot.wait(1000)
    drawn = controller.draw_rate.count
    inferences = controller.pipeline.stats()["inferences"]
    assert inferences <= 7 and drawn > 3 * max(inferences, 1)


def test_unusual_frames_are_resized_and_converted(pipeline):
    right = bar_frames(12, 1, size=32, channels=1)
    odd = []
    for i, f in enumerate(right):
        big = cv2.resize(f, (90, 40))
        odd.append([big, big[:, :, None], cv2.cvtColor(big, cv2.COLOR_GRAY2BGRA),
                    cv2.cvtColor(big, cv2.COLOR_GRAY2BGR).astype(np.uint16) * 257][i % 4])
    predictions, messages = collect(pipeline)
    pipeline.set_model(motion_model(), ["left", "right"])
    pipeline.open(frames_source(odd, live=False))
    assert wait_for(lambda: any("end of" in m for m, _ in messages))
    assert wait_for(lambda: predictions)  # the newest window may still be with the model
    assert all(p.class_name == "right" for p in predictions)
    assert [m for m, e in messages if e] == []


def test_a_frame_that_is_not_a_picture_is_reported_once(pipeline):
    bad = [np.zeros((8, 8, 5), np.uint8)] * 3 + bar_frames(8, 1)
    predictions, messages = collect(pipeline)
    pipeline.set_model(motion_model(), ["left", "right"])
    pipeline.open(frames_source(bad, live=False))
    assert wait_for(lambda: any("end of" in m for m, _ in messages))
    errors = [m for m, e in messages if e]
    assert len(errors) == 1 and "not a picture" in errors[0]
    assert wait_for(lambda: predictions)  # the good frames after it were still classified


def test_pause_seek_and_loop_on_a_file(pipeline, tmp_path):
    path = write_video(tmp_path / "clip.avi", bar_frames(10, 1), fps=50)
    predictions, messages = collect(pipeline)
    pipeline.set_loop(True)
    pipeline.open(VideoFileSource(path))
    assert wait_for(lambda: pipeline.stats()["frames"] > 25)  # looped past its 10 frames
    pipeline.pause()
    run_events(0.1)
    paused_at = pipeline.stats()["frames"]
    pipeline.seek(7)
    assert wait_for(lambda: (pipeline.latest_frame() or (None, -1))[1] == 7)
    run_events(0.15)
    assert pipeline.stats()["frames"] == paused_at + 1 and not pipeline.playing
    pipeline.set_loop(False)
    pipeline.play()
    assert wait_for(lambda: any("end of" in m for m, _ in messages))
    # Play at the end starts the file again.
    assert wait_for(lambda: not pipeline.playing)
    at_end = pipeline.stats()["frames"]
    messages.clear()
    pipeline.play()
    assert wait_for(lambda: any("end of" in m for m, _ in messages))
    assert pipeline.stats()["frames"] == at_end + 10


# ----------------------------------------------------------------------------- bad input
def test_bad_files_give_clear_messages_in_the_panel(controller, tmp_path):
    panel = controller.panel
    cases = {
        tmp_path / "missing.mp4": "does not exist",
        tmp_path / "notes.mp4": "cannot be opened as a video",
        tmp_path / "empty.avi": "empty",
        tmp_path: "holds no images",
    }
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    (tmp_path / "empty.avi").write_bytes(b"")
    for path, words in cases.items():
        assert controller.open_path(str(path)) is False
        assert words in panel.message.text()
    no_frames = tmp_path / "no_frames.avi"
    writer = cv2.VideoWriter(str(no_frames), cv2.VideoWriter_fourcc(*"MJPG"), 20, (16, 16))
    writer.release()
    if no_frames.exists():
        assert controller.open_path(str(no_frames)) is False
        assert "no frames" in panel.message.text() or "cannot be opened" in panel.message.text()


def test_a_truncated_file_plays_what_it_has(controller, qtbot, tmp_path):
    whole = write_video(tmp_path / "whole.avi", bar_frames(40, 1))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    controller.set_model(motion_model())
    controller.pipeline.set_loop(False)
    controller.pipeline.set_speed(4.0)
    assert controller.open_path(str(cut))
    qtbot.waitUntil(lambda: "end of" in controller.panel.message.text(), timeout=10000)
    assert 0 < controller.pipeline.stats()["frames"] < 40
    assert controller.panel.overlay.toPlainText().startswith("right")


def test_no_camera(controller):
    assert controller.find_cameras() == []
    assert "no camera found" in controller.panel.message.text()
    assert not controller.panel.camera_button.isEnabled()
    assert controller.open_camera(5) is False
    assert "camera 5 cannot be opened" in controller.panel.message.text()
    assert probe_cameras(range(6, 8)) == []


def test_a_camera_that_disappears_mid_recording_keeps_the_clip(controller, qtbot, tmp_path):
    go = threading.Event()
    frames = bar_frames(15, 1)

    def camera():
        go.wait(5)
        if frames:
            time.sleep(0.01)
            return frames.pop(0)
        raise SourceError("camera 0 stopped sending frames (unplugged, or taken by another program)")

    assert controller.open_source(CallableSource(camera, fps=30))
    assert controller.start_recording("wave", str(tmp_path / "data"))
    go.set()
    qtbot.waitUntil(lambda: "stopped sending" in controller.panel.message.text(), timeout=5000)
    text = controller.panel.message.text()
    assert "kept up to the last good frame" in text
    saved = list((tmp_path / "data" / "wave").glob("*.avi"))
    assert len(saved) == 1 and str(saved[0]) in text
    capture = cv2.VideoCapture(str(saved[0]))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 15
    qtbot.waitUntil(lambda: not controller.panel.record_button.isChecked(), timeout=2000)
    assert not controller.panel.play_button.isEnabled()


def test_a_model_that_does_not_take_clips_is_explained(controller):
    image_model = Model(GraphSpec.chain(("Input", {"shape": [1, 8, 8]}), ("Flatten", {}), ("Dense", {"units": 3}),
                                        ("Classify", {})))
    assert controller.set_model(image_model) is False
    assert "not video clips" in controller.panel.message.text()
    assert controller.pipeline.clip_format is None
    assert "Preview only" in controller.panel.model_status.text()


def test_a_model_that_fails_is_set_aside(pipeline):
    class Broken:
        def predict(self, batch):
            raise FloatingPointError("overflow in the LSTM")

    predictions, messages = collect(pipeline)
    pipeline.set_model(Broken(), ["a", "b"], ClipFormat(2, 1, 8, 8))
    pipeline.open(frames_source(bar_frames(10, 1), live=False))
    assert wait_for(lambda: any("set aside" in m for m, _ in messages))
    assert predictions == []


# ----------------------------------------------------------------------------- recording
def test_recording_labelled_clips_through_the_panel(controller, qtbot, tmp_path):
    panel = controller.panel
    frames = bar_frames(200, 1)
    assert controller.open_source(frames_source(frames, fps=100, live=False))
    panel.dataset_folder.setText(str(tmp_path / "gestures"))
    panel.record_button.click()
    assert "name the class" in panel.message.text()
    panel.class_name.setText("swipe right")
    panel.record_button.click()
    assert panel.record_button.isChecked() and "recording" in panel.message.text()
    qtbot.wait(300)
    panel.record_button.click()
    assert not panel.record_button.isChecked()
    assert clip_counts(tmp_path / "gestures") == {"swipe right": 1}
    assert "swipe right: 1" in panel.counts_label.text()
    with pytest.raises(RecordingError):
        ClipRecorder(tmp_path, "../escape")


def test_a_recorder_with_no_frames_leaves_no_file(tmp_path):
    recorder = ClipRecorder(tmp_path, "idle", codec="mp4v")
    assert recorder.close() is None and not recorder.path.exists()
    recorder = ClipRecorder(tmp_path, "idle", fps=15)
    for frame in bar_frames(3, 1, channels=1) + [np.zeros((10, 10, 4), np.uint8)]:
        recorder.write(frame)
    assert recorder.close().exists() and clip_counts(tmp_path) == {"idle": 1}


# ----------------------------------------------------------------------------- panel and window
def test_the_panel_draws_predictions_and_renders(controller, qtbot, tmp_path):
    panel = controller.panel
    panel.resize(900, 560)
    panel.show_frame(cv2.cvtColor(bar_frames(1, 1)[0], cv2.COLOR_BGR2RGB))
    for i in range(20):
        panel.show_prediction([0.1, 0.7, 0.1, 0.1], ["left", "right", "up", "down"], i)
    panel.set_rates(31.0, 29.5, 30.2, 3)
    qtbot.wait(200)  # the plots redraw on a short timer
    assert panel.overlay.toPlainText() == "right  70%"
    assert list(panel.bars.opts["height"]) == [0.1, 0.7, 0.1, 0.1]
    assert len(panel.timeline_points[1].data) == 20 and len(panel.timeline_points[0].data) == 0
    assert "3 windows skipped" in panel.rates.text()
    image = panel.grab()
    assert image.save(str(tmp_path / "video_panel.png")) and image.width() > 0


def test_install_video_panel_follows_the_project(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from gatescope.studio.app import MainWindow
    from gatescope.studio.video import install_video_panel

    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat),
                        autosave_dir=tmp_path / "autosave", extra_panels=False)
    qtbot.addWidget(window)
    controller = install_video_panel(window)
    try:
        assert "Video" in window.panels
        status = controller.panel.model_status
        assert status.text() == "Preview only: the model is not trained yet: train it, and it classifies here."
        window.set_project(Project(name="motion", graph=motion_graph()))
        assert "Preview only" in status.text()
        # A run ends with weights: the line says what the model sees now (it never goes stale).
        window.project.weights = motion_weights()
        window.trainingEnded.emit("finished", "training finished")
        assert controller.pipeline.clip_format == ClipFormat(T, 1, S, S, "unit", 1)
        assert status.text() == (f"The model sees {T} frames at {S}x{S}, grey, scaled to 0..1; a new window every "
                                 "frame; classes left, right.")
    finally:
        controller.shutdown()


# ----------------------------------------------------------------------------- gatescope predict --video
@pytest.fixture
def motion_project(tmp_path):
    project = Project(name="motion", graph=motion_graph(), weights=motion_weights())
    return save_project(project, tmp_path / "motion.gscope")


def run_cli(args, capsys):
    from gatescope.studio.cli import main
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_video_prints_windows_and_a_json_summary(motion_project, tmp_path, capsys):
    video = write_video(tmp_path / "right.avi", bar_frames(20, 1))
    code, out, err = run_cli(["predict", str(motion_project), "--video", str(video), "--json"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["class"] == "right" and summary["mean_probability"] > 0.9
    assert summary["windows"] == 20 - T + 1 == len(lines) - 1
    assert summary["votes"] == {"left": 0, "right": 15}


@pytest.mark.parametrize("make,words", [
    (lambda p: p / "missing.mp4", "does not exist"),
    (lambda p: (p / "text.mp4").write_text("no video here" * 40) and p / "text.mp4", "cannot be opened"),
    (lambda p: write_video(p / "short.avi", bar_frames(3, 1)), "fewer than the 6"),
])
def test_predict_video_errors_are_one_clear_line(motion_project, tmp_path, capsys, make, words):
    code, out, err = run_cli(["predict", str(motion_project), "--video", str(make(tmp_path))], capsys)
    assert code == 1
    assert words in err and len(err.strip().splitlines()) == 1


def test_predict_video_needs_a_clip_model(tmp_path, capsys):
    graph = GraphSpec.chain(("Input", {"shape": [4]}), ("Dense", {"units": 2}), ("Classify", {}))
    weights = Model(graph).state_dict()
    path = save_project(Project(name="flat", graph=graph, weights=weights), tmp_path / "flat.gscope")
    video = write_video(tmp_path / "v.avi", bar_frames(8, 1))
    code, _, err = run_cli(["predict", str(path), "--video", str(video)], capsys)
    assert code == 1 and "not video clips" in err


def test_clip_format_reads_the_input_block():
    fmt = ClipFormat.from_model(motion_model())
    assert fmt == ClipFormat(T, 1, S, S, "unit", 1)
    with pytest.raises(DataError):
        ClipFormat.from_model(Model(GraphSpec.chain(("Input", {"shape": [4]}), ("Dense", {"units": 2}),
                                                    ("Classify", {}))))


def test_a_recurrent_model_shows_its_input_and_gates_beside_the_picture(controller, qtbot, tmp_path):
    graph = GraphSpec.chain(("Input", {"shape": [T, 1, S, S], "normalize": "unit", "clip_stride": 1}),
                            ("Conv2D", {"filters": 2, "kernel_size": 3}), ("Flatten", {}),
                            ("LSTM", {"hidden_size": 5}), ("Dense", {"units": 2}),
                            ("Classify", {"class_names": "left,right"}))
    model = Model(graph, seed=0)
    assert controller.set_model(model)
    assert "the gates of LSTM b3 over each window are shown" in controller.panel.model_status.text()
    path = write_video(tmp_path / "right.avi", bar_frames(14, 1))
    controller.pipeline.set_loop(False)
    controller.pipeline.set_speed(4.0)
    shown = []
    controller.predictionReady.connect(shown.append)
    assert controller.open_path(str(path))
    qtbot.waitUntil(lambda: len(shown) >= 1, timeout=30000)   # a slow model sees fewer of the 9 windows
    qtbot.wait(200)                                           # the panel draws them on its plot timer
    prediction = shown[0]                                     # gates come at most every 0.1 s: the first has them
    assert prediction.window.shape == (T, 1, S, S) and prediction.gate_block == "b3"
    assert set(prediction.gates) == {"input", "forget", "candidate", "output"}
    assert all(v.shape == (T, 5) for v in prediction.gates.values())
    # The gates are those of the model run on exactly that window (probes of the real step loop).
    model.layers["b3"].probe = [0]
    model.forward(prediction.window[None])
    np.testing.assert_allclose(model.layers["b3"].probe_data["gates"]["forget"][0], prediction.gates["forget"],
                               rtol=1e-5)
    panel = controller.panel
    assert set(panel.gate_plots) == {"input", "forget", "candidate", "output"}
    picture = panel.input_image.image
    assert picture.shape == (S, T * (S + 1) - 1)
    assert np.isnan(picture[:, S]).all() and np.nanmax(picture) == 1.0


def test_the_class_axes_name_the_models_classes_before_anything_plays(controller):
    panel = controller.panel
    # (pyqtgraph keeps the ticks a plot was given in _tickLevels; it has no public reader)
    assert panel.bar_plot.getAxis("bottom")._tickLevels == [[]]      # no classes: no 0.2, 0.4 ... ticks
    controller.set_model(motion_model(), ["left", "right"])
    assert panel.class_names == ["left", "right"]
    for axis in (panel.bar_plot.getAxis("bottom"), panel.timeline_plot.getAxis("left")):
        assert axis._tickLevels == [[(0, "left"), (1, "right")]]
