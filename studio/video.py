"""Live video: frame sources, the capture / inference pipeline, clip recording, and the panel's controller.

DESIGN section 4, on the one worker pattern (``studio.worker``): ``capture_loop``, a Qt-free
generator on the capture worker, reads the webcam, a video file or a folder of images, paces
files at their frame rate, writes a recording, and prepares every frame as the model's Input
block says; each frame it yields reaches the GUI thread with, once T frames are there and every
``clip_stride`` frames, the newest window of the last T. The GUI thread keeps the newest picture
for drawing and puts the window in a one-window slot that ``inference_loop``, a Qt-free generator
on the inference worker, takes from (``classify_window``): when the model is slower than the
camera, a window that arrives while it is busy replaces the one waiting (counted as skipped), so
there is never more than one window waiting and never a backlog, and the model never waits for
the GUI thread between windows. The GUI thread only draws. Pause, seek, loop, speed and stop reach the
running loop through a ``PlaybackControl`` it reads between frames.

Frames are preprocessed as the model's Input block says (``ClipFormat``): resized to its H, W,
grey or colour by its C, scaled by its ``normalize`` setting, a window of T frames taken every
``clip_stride`` frames (``compute.datasets.video.prepare_frame``, the same function the
video-folder dataset uses for training). The panel is told what the model sees in those terms
(``describe_model``), and shown each window the model was given and, for a model with a
recurrent block, that block's gates over the window.

Sources: ``CameraSource`` (an index; ``probe_cameras`` lists the ones that open),
``VideoFileSource`` (whatever OpenCV's FFmpeg reads; seek, loop, speed), ``ImageFolderSource``
(images played in name order) and ``CallableSource`` (any function returning frames: tests
inject one in place of the camera). ``ClipRecorder`` saves labelled clips into
``dataset_folder/class_name/`` as MJPG .avi (or mp4v .mp4); a recording stops cleanly, kept up
to its last good frame, when the camera disappears.

``VideoController`` joins a ``widgets.video_panel.VideoPanel`` to a ``VideoPipeline``;
``install_video_panel(window)`` puts both in the main window.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from gatescope.compute.datasets import DataError
from gatescope.compute.datasets.video import VIDEO_SUFFIXES, clip_geometry, opencv, prepare_frame, to_uint8
from gatescope.compute.layers.heads import class_names
from gatescope.studio.worker import Worker

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
CAMERA_INDICES = range(6)
DEFAULT_IMAGE_FPS = 10.0


class SourceError(RuntimeError):
    """A source that cannot be opened or stopped working; the message says which and why."""


# ----------------------------------------------------------------------------- sources
class FrameSource:
    """Where frames come from. ``read()`` returns the next frame as OpenCV gives it (BGR, BGRA
    or grey, uint8), None at the end of a file, and raises SourceError when the source fails.

    ``live``: a camera (not paced, not seekable). ``fps``: the nominal rate (0 unknown).
    ``frame_count``: frames in a file (0 unknown or live). ``position``: the next frame's index.
    """

    name = "source"
    live = False
    seekable = False
    fps = 0.0
    frame_count = 0

    def __init__(self):
        self.position = 0

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def seek(self, index: int) -> None:
        raise SourceError(f"{self.name} cannot jump to a frame")

    def close(self) -> None:
        """Let go of the device or file."""


class CameraSource(FrameSource):
    """A webcam by index (0 is usually the built-in one)."""

    live = True

    def __init__(self, index: int):
        super().__init__()
        cv2 = opencv()
        self.index = int(index)
        self.name = f"camera {self.index}"
        self._capture = cv2.VideoCapture(self.index)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"camera {self.index} cannot be opened: it is not connected, is used by another "
                              "program, or this program may not use it")
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else 0.0

    def read(self) -> np.ndarray:
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise SourceError(f"camera {self.index} stopped sending frames (unplugged, or taken by another program)")
        self.position += 1
        return frame

    def close(self) -> None:
        self._capture.release()


class VideoFileSource(FrameSource):
    """A video file, decoded one frame at a time; seekable. A truncated file ends at its last
    decodable frame."""

    seekable = True

    def __init__(self, path: str | Path):
        super().__init__()
        cv2 = opencv()
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.exists():
            raise SourceError(f"{self.path} does not exist")
        if self.path.is_dir():
            raise SourceError(f"{self.path} is a folder; open it as an image folder instead")
        if self.path.stat().st_size == 0:
            raise SourceError(f"{self.name} is empty (0 bytes)")
        self._capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"{self.name} cannot be opened as a video: it is not a video, is damaged, or uses "
                              "a format OpenCV's FFmpeg does not read")
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise SourceError(f"{self.name} has no frames that can be decoded (empty or damaged)")
        self._pending: np.ndarray | None = first
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else 25.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else 0

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return None
        self.position += 1
        return frame

    def seek(self, index: int) -> None:
        cv2 = opencv()
        index = max(0, int(index))
        if self.frame_count:
            index = min(index, self.frame_count - 1)
        self._pending = None
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        self.position = index

    def close(self) -> None:
        self._capture.release()


class ImageFolderSource(FrameSource):
    """The images of a folder, in name order, as a sequence at ``fps`` frames per second.
    Images that cannot be read are skipped (listed in ``skipped``)."""

    seekable = True

    def __init__(self, folder: str | Path, fps: float = DEFAULT_IMAGE_FPS):
        super().__init__()
        self.folder = Path(folder)
        self.name = self.folder.name or str(self.folder)
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder} is not a folder")
        self.files = sorted(p for p in self.folder.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not self.files:
            raise SourceError(f"{self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = float(fps)
        self.frame_count = len(self.files)
        self.skipped: list[str] = []
        if not any(self._load(p) is not None for p in self.files):
            raise SourceError(f"none of the {len(self.files)} images in {self.folder} can be read")

    @staticmethod
    def _load(path: Path) -> np.ndarray | None:
        cv2 = opencv()
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)

    def read(self) -> np.ndarray | None:
        while self.position < len(self.files):
            path = self.files[self.position]
            self.position += 1
            image = self._load(path)
            if image is not None:
                return image
            self.skipped.append(path.name)
        return None

    def seek(self, index: int) -> None:
        self.position = min(max(0, int(index)), len(self.files) - 1)


class CallableSource(FrameSource):
    """Frames from ``read_frame()`` (None ends the stream; SourceError says it failed): a
    camera stand-in for tests and for frames that come from elsewhere."""

    def __init__(self, read_frame: Callable[[], np.ndarray | None], fps: float = 0.0, live: bool = True,
                 name: str = "frame source", frame_count: int = 0):
        super().__init__()
        self._read_frame = read_frame
        self.fps, self.live, self.name, self.frame_count = float(fps), live, name, frame_count

    def read(self) -> np.ndarray | None:
        frame = self._read_frame()
        if frame is not None:
            self.position += 1
        return frame


def open_source(what: int | str | Path) -> FrameSource:
    """A camera for an index, an image folder for a folder, a video for a file; SourceError if not."""
    if isinstance(what, int):
        return CameraSource(what)
    path = Path(what)
    if path.is_dir():
        return ImageFolderSource(path)
    return VideoFileSource(path)


def probe_cameras(indices=CAMERA_INDICES, opener: Callable[[int], Any] | None = None) -> list[int]:
    """The camera indices among ``indices`` that open and give a frame (quick: each is released at once)."""
    cv2 = opencv()
    found = []
    for index in indices:
        capture = (opener or cv2.VideoCapture)(index)
        try:
            if capture.isOpened() and capture.read()[0]:
                found.append(int(index))
        finally:
            capture.release()
    return found


def display_image(frame: np.ndarray) -> np.ndarray:
    """A frame as the panel draws it: (H, W) grey or (H, W, 3) RGB uint8. DataError for a
    frame that is not an image (wrong rank, 2 or 5+ channels, empty)."""
    cv2 = opencv()
    frame = to_uint8(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2 and frame.size:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3 and frame.size:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4 and frame.size:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    raise DataError(f"a frame of shape {frame.shape} is not a picture (grey, colour or colour with alpha)")


# ----------------------------------------------------------------------------- recording
class RecordingError(ValueError):
    """A clip cannot be recorded: a bad class name or folder, or no video writer."""


_CLASS_NAME = re.compile(r"^[\w][\w .+-]{0,63}$")


def clip_counts(dataset_folder: str | Path) -> dict[str, int]:
    """Video files per class subfolder of ``dataset_folder`` (empty when it does not exist)."""
    root = Path(dataset_folder)
    if not root.is_dir():
        return {}
    return {p.name: sum(1 for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
            for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


class ClipRecorder:
    """Writes the frames it is given to ``dataset_folder/class_name/class_name_<time>.avi``.

    The writer opens on the first frame (its size fixes the clip's size; later frames of
    another size are resized). ``close()`` finishes the file and returns its path, or deletes
    it and returns None when no frame was written.
    """

    def __init__(self, dataset_folder: str | Path, class_name: str, fps: float = 30.0, codec: str = "MJPG"):
        class_name = class_name.strip()
        if not _CLASS_NAME.match(class_name) or class_name in (".", ".."):
            raise RecordingError(f"{class_name!r} cannot name a class folder; use letters, digits, spaces, - or _")
        if codec not in ("MJPG", "mp4v"):
            raise RecordingError(f"clips are saved as MJPG (.avi) or mp4v (.mp4), not {codec}")
        folder = Path(dataset_folder).expanduser() / class_name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot create {folder}: {exc.strerror or exc}") from None
        suffix = ".avi" if codec == "MJPG" else ".mp4"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = folder / f"{class_name}_{stamp}{suffix}", 1
        while path.exists():
            n += 1
            path = folder / f"{class_name}_{stamp}-{n}{suffix}"
        self.path, self.class_name, self.codec = path, class_name, codec
        self.fps = float(fps) if 1 <= fps <= 240 else 30.0
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._lock = threading.Lock()  # the capture thread writes while the GUI thread may close

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (any OpenCV frame: grey, BGR or BGRA); ignored once closed."""
        with self._lock:
            if not self._closed:
                self._write(frame)

    def _write(self, frame: np.ndarray) -> None:
        cv2 = opencv()
        frame = to_uint8(frame)
        if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
            frame = cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        if self._writer is None:
            self._size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.codec), self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                raise RecordingError(f"cannot write {self.path.name}: OpenCV has no {self.codec} video writer here")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file; its path, or None (and no file) when it holds no frame."""
        with self._lock:
            self._closed = True
            if self._writer is not None:
                self._writer.release()
                self._writer = None
        if self.frames == 0:
            self.path.unlink(missing_ok=True)
            return None
        return self.path


# ----------------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class ClipFormat:
    """What the model's Input block asks of video: T frames of C x H x W, scaled by ``normalize``,
    a window every ``clip_stride`` frames."""

    frames: int
    channels: int
    height: int
    width: int
    normalize: str = "unit"
    clip_stride: int = 1

    @classmethod
    def from_model(cls, model) -> "ClipFormat":
        """The format of ``model`` (a ``compute.graph.Model``); DataError when it does not take clips."""
        t, c, h, w = clip_geometry(model.input_shape)
        settings = model.layers[model.input_id].settings
        return cls(t, c, h, w, settings.get("normalize", "none"), int(settings.get("clip_stride", 1)))

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """A raw frame -> float32 (C, H, W)."""
        return prepare_frame(frame, self.channels, self.height, self.width, self.normalize)


def class_names_of(model, n_classes: int) -> list[str]:
    """The class names a model's Classify block lists, else ``class 0``, ``class 1``, ..."""
    head = getattr(model, "head", None)
    return class_names(getattr(head, "settings", {}).get("class_names", "") if head is not None else "", n_classes)


@dataclass
class Prediction:
    """One window's result: ``probabilities`` (K,), the best class, and the frame the window ends at.

    ``window``: the clip the model was given, (T, C, H, W) as prepared. For a model with a
    recurrent block, ``gates`` holds that block's gate values over the window, gate name ->
    (T, H) (time steps, units), ``gate_block`` its id and ``family`` LSTM or GRU."""

    probabilities: np.ndarray
    class_names: list[str]
    predicted: int
    confidence: float
    frame: int
    seconds: float
    window: np.ndarray | None = None
    gates: dict[str, np.ndarray] | None = None
    gate_block: str = ""
    family: str = "LSTM"

    @property
    def class_name(self) -> str:
        return self.class_names[self.predicted]


def recurrent_block(model) -> str:
    """The id of the model's first recurrent block whose gates can be recorded, or ''."""
    for block_id in getattr(model, "order", []):
        layer = model.layers[block_id]
        if hasattr(layer, "gate_names") and hasattr(layer, "probe") and layer.gate_names:
            return block_id
    return ""


def classify_window(model, window: np.ndarray, class_names: list[str], frame: int,
                    with_gates: bool = True) -> Prediction:
    """``model``'s class probabilities for one clip ``window`` (T, C, H, W), and with
    ``with_gates``, for a model with a recurrent block, the gates it opened over the window
    (probes on for this one sample: the step loop records them as it runs, at no extra pass,
    though on the CPU a probed step takes the NumPy route rather than the fused kernel). Qt-free:
    the inference worker runs it."""
    started = time.perf_counter()
    block = recurrent_block(model)
    layer = model.layers[block] if block and with_gates else None
    if layer is not None:
        layer.probe = [0]
    try:
        output = np.asarray(model.predict(window[None]), dtype=np.float64)
        gates = None
        if layer is not None and layer.probe_data:
            from gatescope.studio.inside_math import sample_probe
            gates = {name: np.asarray(values, np.float32) for name, values in sample_probe(layer.probe_data).gates.items()}
    finally:
        if layer is not None:
            layer.probe, layer.probe_data = None, {}
    probabilities = output.reshape(output.shape[1:]) if output.ndim >= 2 else output
    if probabilities.ndim == 2:  # a sequence of per-step scores: the last step speaks for the clip
        probabilities = probabilities[-1]
    k = probabilities.shape[-1]
    labels = class_names if len(class_names) == k else [f"class {i}" for i in range(k)]
    best = int(np.argmax(probabilities))
    family = "GRU" if block and model.layers[block].type_name == "GRU" else "LSTM"
    return Prediction(probabilities, labels, best, float(probabilities[best]), frame, time.perf_counter() - started,
                      window, gates, block, family)


class RateMeter:
    """Events per second over the last ``span`` events."""

    def __init__(self, span: int = 60):
        self._times: deque[float] = deque(maxlen=span)
        self.count = 0

    def tick(self) -> None:
        self._times.append(time.perf_counter())
        self.count += 1

    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        if time.perf_counter() - self._times[-1] > 2.0:
            return 0.0  # nothing lately: stopped, paused or stalled
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def reset(self) -> None:
        self._times.clear()
        self.count = 0


class PlaybackControl:
    """What the GUI tells a running capture loop, read between frames (Qt-free, thread-safe).

    ``playing``, ``loop``, ``speed``; ``seek(frame)``; ``clip_format`` (the model's, or None for
    preview only: a new one starts the frames anew); ``recorder`` (a ``ClipRecorder`` frames are
    written to, or None). ``stop()`` ends the loop; ``finished`` is set once it has let go of the
    source. ``ended``: a file played to its end without looping.
    """

    def __init__(self, playing: bool = True, loop: bool = True, speed: float = 1.0,
                 clip_format: ClipFormat | None = None):
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.wake = threading.Event()
        self.playing, self.loop, self.speed = playing, loop, speed
        self.clip_format = clip_format
        self.recorder: ClipRecorder | None = None
        self.seek_to: int | None = None
        self.ended = False

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()

    def seek(self, frame: int) -> None:
        with self.lock:
            self.seek_to = int(frame)
        self.wake.set()

    def take_recorder(self) -> ClipRecorder | None:
        with self.lock:
            recorder, self.recorder = self.recorder, None
        return recorder


def capture_loop(source: FrameSource, control: PlaybackControl, rate: RateMeter):
    """Read ``source`` until ``control`` says stop, pacing files at their frame rate x speed;
    a Qt-free generator for the capture worker (``studio.worker``). Yields:

      ``("frame", picture, index, window)``  every frame: the picture to draw and, once T
                                             frames are there and every ``clip_stride`` frames,
                                             the newest window prepared for the model (else None)
      ``("message", text, is_error)``        a bad frame (said once), a seek that failed
      ``("ended", saved)``                   a file reached its end (a recording was finished: its path)
      ``("failed", text, saved)``            the source stopped working (the loop ends)

    Lets go of the source when it ends (``control.finished`` is set then).
    """
    frames: deque[np.ndarray] = deque()
    clip_format, since_window = None, 0
    next_due = time.perf_counter()
    bad_frame_reported = False
    try:
        while not control.stopped.is_set():
            with control.lock:
                seek_to, control.seek_to = control.seek_to, None
                playing = control.playing
                if seek_to is not None:
                    control.ended = False
            show_one = False
            if seek_to is not None and source.seekable:
                try:
                    source.seek(seek_to)
                except SourceError as exc:
                    yield ("message", str(exc), True)
                show_one = not playing          # read the frame sought, then honour pause
                playing = True
            if not playing:
                control.wake.wait(0.05)
                control.wake.clear()
                next_due = time.perf_counter()
                continue
            try:
                frame = source.read()
            except SourceError as exc:
                yield ("failed", str(exc), _finish_recording(control))
                return
            except Exception as exc:  # noqa: BLE001 - a decoder or driver error must not kill the app
                yield ("failed", f"reading {source.name} failed: {exc}", _finish_recording(control))
                return
            if frame is None:
                if control.loop and source.seekable and source.position > 1:
                    source.seek(0)
                    continue
                with control.lock:
                    control.playing, control.ended = False, True
                yield ("ended", _finish_recording(control))
                continue
            try:
                picture = display_image(frame)
            except DataError as exc:
                if not bad_frame_reported:
                    yield ("message", f"{source.name} sent an unusable frame: {exc}", True)
                    bad_frame_reported = True
                continue
            index = source.position - 1
            recorder = control.recorder
            if recorder is not None:
                try:
                    recorder.write(frame)
                except (RecordingError, DataError) as exc:
                    _finish_recording(control)
                    yield ("message", str(exc), True)
            rate.tick()
            window = None
            if control.clip_format is not clip_format:
                clip_format, since_window = control.clip_format, 0
                frames = deque(maxlen=clip_format.frames) if clip_format else deque()
            if clip_format is not None:
                try:
                    frames.append(clip_format.prepare(frame))
                except DataError as exc:
                    if not bad_frame_reported:
                        yield ("message", f"a frame cannot be prepared for the model: {exc}", True)
                        bad_frame_reported = True
                else:
                    since_window += 1
                    if len(frames) == clip_format.frames and since_window >= clip_format.clip_stride:
                        since_window = 0
                        window = np.stack(frames)
            yield ("frame", picture, index, window)
            if show_one:
                with control.lock:
                    control.playing = False
                continue
            if not source.live and source.fps > 0:
                next_due += 1.0 / (source.fps * control.speed)
                delay = next_due - time.perf_counter()
                if delay > 0:
                    control.stopped.wait(delay)
                elif delay < -0.25:
                    next_due = time.perf_counter()  # fell behind (slow disk, big frames): do not rush to catch up
    finally:
        source.close()
        control.finished.set()


def _finish_recording(control: PlaybackControl) -> Path | None:
    recorder = control.take_recorder()
    return recorder.close() if recorder is not None else None


class WindowSlot:
    """The one window waiting for the model (thread-safe): ``put`` from the GUI thread replaces a
    window still waiting (counted in ``dropped``), ``take`` on the inference worker waits for one."""

    def __init__(self):
        self._ready = threading.Condition()
        self._item: tuple | None = None
        self.closed = False
        self.dropped = self.most_waiting = 0

    def put(self, item: tuple) -> None:
        with self._ready:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.most_waiting = 1
            self._ready.notify()

    def take(self, timeout: float) -> tuple | None:
        with self._ready:
            if self._item is None and not self.closed:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._ready:
            self._item = None

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    @property
    def waiting(self) -> int:
        return 0 if self._item is None else 1


def inference_loop(slot: WindowSlot, gates_interval_s: float = 0.1):
    """Classify the window waiting in ``slot``, one after another, until the slot is closed; a
    Qt-free generator for the inference worker. A slot item is ``(model, class_names, window,
    frame, tag)``; yields ``("prediction", tag, model, Prediction)`` or ``("failed", tag, model,
    message)``. Gates are recorded for at most one window every ``gates_interval_s``: the eye
    follows ten pictures a second, and a probed window costs the recurrent block its fused kernel."""
    gates_at = 0.0
    while not slot.closed:
        item = slot.take(0.1)
        if item is None:
            continue
        model, names, window, frame, tag = item
        now = time.perf_counter()
        with_gates = now - gates_at >= gates_interval_s
        if with_gates:
            gates_at = now
        try:
            prediction = classify_window(model, window, names, frame, with_gates)
        except Exception as exc:  # noqa: BLE001 - the person's model; reported, then set aside
            yield ("failed", tag, model, str(exc))
            continue
        yield ("prediction", tag, model, prediction)


class VideoPipeline(QObject):
    """Capture and inference, each on its own worker (``studio.worker``), around one source and
    one model.

    The capture worker runs ``capture_loop``; every frame it yields arrives on the GUI thread,
    where the newest picture is kept for drawing and the window it brings, if any, is put in the
    ``WindowSlot`` the inference worker's ``inference_loop`` takes from: a window that arrives
    while the model is busy replaces the one waiting (counted in ``stats()["windows_dropped"]``),
    so at most one window ever waits and a slow model never builds a backlog, and the model
    takes the next window without waiting for the GUI thread.

    Signals (GUI thread): ``predictionReady(Prediction)``, ``messagePosted(str, bool is_error)``,
    ``stateChanged()`` when playing / paused / ended / failed changes. The attributes
    ``on_prediction``, ``on_message`` and ``on_state`` are called with the same, for code that
    takes plain callables.
    """

    predictionReady = Signal(object)
    messagePosted = Signal(str, bool)
    stateChanged = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.on_prediction: Callable[[Prediction], None] = lambda prediction: None
        self.on_message: Callable[[str, bool], None] = lambda text, error: None
        self.on_state: Callable[[], None] = lambda: None
        self.capture = Worker("video-capture", self)
        self.inference = Worker("video-inference", self)
        self.source: FrameSource | None = None
        self.control: PlaybackControl | None = None
        self._session = 0
        self._model = None
        self._class_names: list[str] = []
        self._format: ClipFormat | None = None
        self.slot = WindowSlot()
        self._inference_started = False
        self._latest: tuple[np.ndarray, int] | None = None
        self.frame_serial = 0
        self.loop = True
        self.speed = 1.0
        self.capture_rate, self.inference_rate = RateMeter(), RateMeter()
        self.last_prediction: Prediction | None = None
        self.last_window: np.ndarray | None = None
        self.failed: str | None = None
        self.windows_offered = 0

    # ----------------------------------------------------------------- model
    def set_model(self, model, class_names: list[str] | None = None, clip_format: ClipFormat | None = None) -> None:
        """Classify with ``model`` (anything with ``predict(batch) -> (N, K)``) from now on; None stops
        classifying. ``clip_format`` defaults to what the model's Input block says. DataError when
        the model does not take video clips (the preview goes on without predictions)."""
        self.slot.clear()
        if model is None:
            self._model, self._format = None, None
        else:
            if clip_format is None:
                clip_format = ClipFormat.from_model(model)
                if getattr(model, "task", "classification") != "classification":
                    raise DataError("the model predicts numbers (a Regress output); live video shows class "
                                    "predictions, so end the model with Classify")
            self._model, self._class_names, self._format = model, list(class_names or []), clip_format
            if not self._inference_started:
                self._inference_started = True
                self.inference.submit(inference_loop, self.slot, event=self._on_inference)
        if self.control is not None:
            self.control.clip_format = self._format

    @property
    def clip_format(self) -> ClipFormat | None:
        return self._format

    @property
    def model(self):
        return self._model

    # ----------------------------------------------------------------- source
    def open(self, source: FrameSource, play: bool = True) -> None:
        """Read ``source`` from now on (closing the previous one)."""
        self.close_source()
        self._session += 1
        session = self._session
        self.source, self.failed = source, None
        self._latest, self.last_window = None, None
        self.slot.clear()
        self.control = PlaybackControl(play, self.loop, self.speed, self._format)
        self.capture_rate.reset()
        self.inference_rate.reset()
        self.capture.submit(capture_loop, source, self.control, self.capture_rate,
                            event=lambda event: self._on_capture(session, event),
                            failed=lambda message, details: self._on_capture(session, ("failed", message, None)))
        self._state()

    def close_source(self) -> Path | None:
        """Stop reading and let go of the source; a recording in progress is finished and its path returned."""
        control, self.control = self.control, None
        self._session += 1                 # what the old loop still sends is of no interest
        saved = None
        if control is not None:
            control.stop()
            control.finished.wait(5.0)
            saved = _finish_recording(control)
        self.source = None
        self.slot.clear()
        return saved

    @property
    def playing(self) -> bool:
        return self.control is not None and self.control.playing and self.failed is None

    @property
    def ended(self) -> bool:
        return self.control is not None and self.control.ended

    @property
    def recorder(self) -> ClipRecorder | None:
        return self.control.recorder if self.control is not None else None

    def play(self) -> None:
        """Go on reading; a file that reached its end starts again from its first frame."""
        control = self.control
        if control is None or self.failed is not None:
            return
        with control.lock:
            control.playing = True
            if control.ended and self.source is not None and self.source.seekable:
                control.seek_to = 0
            control.ended = False
        control.wake.set()
        self._state()

    def pause(self) -> None:
        if self.control is not None:
            with self.control.lock:
                self.control.playing = False
        self._state()

    def seek(self, frame: int) -> None:
        """Jump to ``frame`` (files and image folders); shown even while paused."""
        if self.control is not None:
            self.control.seek(frame)

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)
        if self.control is not None:
            self.control.loop = self.loop

    def set_speed(self, speed: float) -> None:
        """Playback speed of files (1 = their own frame rate); cameras run as fast as they send."""
        self.speed = max(0.01, float(speed))
        if self.control is not None:
            self.control.speed = self.speed

    def latest_frame(self) -> tuple[np.ndarray, int, int] | None:
        """``(picture, frame index, serial)`` of the newest frame, or None before the first."""
        if self._latest is None:
            return None
        return self._latest[0], self._latest[1], self.frame_serial

    # ----------------------------------------------------------------- recording
    def start_recording(self, dataset_folder: str | Path, class_name: str, codec: str = "MJPG") -> Path:
        """Record the frames read from now on as a clip of ``class_name``; RecordingError if it cannot."""
        control, source = self.control, self.source
        if control is None or source is None or self.failed is not None:
            raise RecordingError("open a camera (or a video) before recording")
        fps = source.fps if source.fps > 0 else (self.capture_rate.rate() or 30.0)
        recorder = ClipRecorder(dataset_folder, class_name, fps, codec)
        with control.lock:
            previous, control.recorder = control.recorder, recorder
        if previous is not None:
            previous.close()
        return recorder.path

    def stop_recording(self) -> Path | None:
        """Finish the clip being recorded; its path (None when nothing was recorded)."""
        return _finish_recording(self.control) if self.control is not None else None

    # ----------------------------------------------------------------- what the workers send (GUI thread)
    def _on_capture(self, session: int, event: tuple) -> None:
        if session != self._session:
            return
        kind = event[0]
        if kind == "frame":
            _, picture, index, window = event
            self._latest = (picture, index)
            self.frame_serial += 1
            if window is not None:
                self._offer(window, index)
        elif kind == "message":
            self._message(event[1], event[2])
        elif kind == "ended":
            saved = event[1]
            name = self.source.name if self.source is not None else "the video"
            self._message(f"end of {name}" + (f"; clip saved to {saved}" if saved else ""), False)
            self._state()
        elif kind == "failed":
            message, saved = event[1], event[2]
            self.failed = message
            if saved is not None:
                message += f"; the recording was kept up to the last good frame: {saved}"
            self._message(message, True)
            self._state()

    def _offer(self, window: np.ndarray, frame: int) -> None:
        self.windows_offered += 1
        self.last_window = window
        if self._model is not None:
            self.slot.put((self._model, list(self._class_names), window, frame, self._session))

    def _on_inference(self, event: tuple) -> None:
        kind, session, model, payload = event
        if model is not self._model:
            return                                   # a model set aside or replaced meanwhile
        if kind == "failed":
            self._model = None
            self.slot.clear()
            self._message(f"the model failed on a video clip and was set aside: {payload}", True)
        elif session == self._session:
            self.last_prediction = payload
            self.inference_rate.tick()
            self.on_prediction(payload)
            self.predictionReady.emit(payload)

    def _message(self, text: str, error: bool) -> None:
        self.on_message(text, error)
        self.messagePosted.emit(text, error)

    def _state(self) -> None:
        self.on_state()
        self.stateChanged.emit()

    # ----------------------------------------------------------------- stats
    @property
    def waiting(self) -> int:
        """Windows waiting for the model: 0 or 1."""
        return self.slot.waiting

    def stats(self) -> dict[str, Any]:
        return {"capture_fps": self.capture_rate.rate(), "inference_fps": self.inference_rate.rate(),
                "frames": self.capture_rate.count, "inferences": self.inference_rate.count,
                "windows_offered": self.windows_offered, "windows_dropped": self.slot.dropped,
                "most_waiting": self.slot.most_waiting}

    def shutdown(self) -> None:
        """Stop both workers and let go of everything (the window is closing)."""
        self.close_source()
        self.slot.close()
        self.capture.shutdown()
        self.inference.shutdown()


# ----------------------------------------------------------------------------- the controller (Qt)
class VideoController(QObject):
    """Joins a ``VideoPanel`` (plain data, signals) to a ``VideoPipeline``.

    The pipeline's workers send their news as queued signals to the GUI thread; a GUI-thread
    timer (running only while a source is open) draws the newest frame when it is new, so
    however fast a camera sends, the picture is drawn at most every ``DRAW_INTERVAL_MS``.
    ``draw_rate`` counts frames put on screen.

    The panel says what the model sees (``describe_model``): the frames it takes (T frames at
    H x W, grey or colour, a window every ``clip_stride`` frames), or that it classifies nothing
    and why; the line is set again whenever the model changes (a run ending brings new weights),
    so it is never stale. Each prediction shows the window the model was given, and for a model
    with a recurrent block its gates over that window, beside the live picture.

    Signals (GUI thread): ``predictionReady(Prediction)``, ``messagePosted(str, bool is_error)``,
    ``stateChanged()`` when playing / paused / ended / failed changes.
    """

    predictionReady = Signal(object)
    messagePosted = Signal(str, bool)
    stateChanged = Signal()

    DRAW_INTERVAL_MS = 10
    RATES_INTERVAL_MS = 500

    def __init__(self, panel, pipeline: VideoPipeline | None = None,
                 camera_prober: Callable[[], list[int]] = probe_cameras, parent: QObject | None = None):
        super().__init__(parent)
        self.panel = panel
        self.pipeline = pipeline or VideoPipeline(self)
        self.camera_prober = camera_prober
        self.dataset_folder = ""
        self.draw_rate = RateMeter()
        self._drawn_serial = -1
        self.pipeline.predictionReady.connect(self._on_prediction)
        self.pipeline.messagePosted.connect(self.messagePosted)
        self.pipeline.stateChanged.connect(self.stateChanged)
        self.messagePosted.connect(self.panel.show_message)
        self.stateChanged.connect(self._update_playback)
        panel.cameraRequested.connect(self.open_camera)
        panel.findCamerasRequested.connect(self.find_cameras)
        panel.fileRequested.connect(self.open_path)
        panel.imageFolderRequested.connect(self.open_path)
        panel.playRequested.connect(lambda play: self.pipeline.play() if play else self.pipeline.pause())
        panel.seekRequested.connect(self.pipeline.seek)
        panel.loopChanged.connect(self.pipeline.set_loop)
        panel.speedChanged.connect(self.pipeline.set_speed)
        panel.stopRequested.connect(self.stop)
        panel.recordRequested.connect(self.start_recording)
        panel.recordStopRequested.connect(self.stop_recording)
        panel.datasetFolderChanged.connect(self.set_dataset_folder)
        self.pipeline.set_loop(panel.loop_check.isChecked())
        self.panel.set_model_status(describe_model(None, None))

        # The timers run only while a source is open: the GUI thread has nothing to draw
        # otherwise, and a 10 ms tick would compete with training for the interpreter.
        self.draw_timer = QTimer(self)
        self.draw_timer.setInterval(self.DRAW_INTERVAL_MS)
        self.draw_timer.timeout.connect(self.draw)
        self.rates_timer = QTimer(self)
        self.rates_timer.setInterval(self.RATES_INTERVAL_MS)
        self.rates_timer.timeout.connect(self._update_rates)

    # ----------------------------------------------------------------- model
    def set_model(self, model, class_names: list[str] | None = None, clip_format: ClipFormat | None = None,
                  why_not: str = "") -> bool:
        """Classify with ``model`` (None: preview only, ``why_not`` says why); False with a
        message in the panel when it cannot."""
        self.panel.clear_predictions()
        self.panel.show_gates(None)
        if model is None:
            self.pipeline.set_model(None)
            self.panel.set_model_status(describe_model(None, None, why_not))
            return False
        try:
            if class_names is None:
                out_shape = model.analysis.info[model.head_id].out_shape
                class_names = class_names_of(model, int(out_shape[-1]))
            self.pipeline.set_model(model, class_names, clip_format)
        except DataError as exc:
            self.pipeline.set_model(None)
            self.panel.show_message(str(exc), error=True)
            self.panel.set_model_status(describe_model(None, None, str(exc)))
            return False
        self.panel.set_model_status(describe_model(self.pipeline.clip_format, model, class_names=class_names))
        self.panel.set_class_names(class_names)
        block = recurrent_block(model)
        if block:
            # The gate heatmaps are laid out now, while nothing plays (building them took the
            # GUI thread 0.5-1 s on a loaded machine when the first window's gates arrived).
            layer = model.layers[block]
            blank = np.full((self.pipeline.clip_format.frames, layer.units), np.nan, np.float32)  # drawn empty
            self.panel.show_gates({name: blank for name in layer.gate_names},
                                  "GRU" if layer.type_name == "GRU" else "LSTM", block)
        return True

    def set_project(self, project) -> bool:
        """Classify with ``project``'s trained model (its own copy, so training can go on beside it)."""
        if project is None or not project.trained:
            return self.set_model(None, why_not=NOT_TRAINED)
        from gatescope.compute.graph import GraphError
        try:
            model = project.build_model()
        except (GraphError, ValueError) as exc:
            return self.set_model(None, why_not=f"the model cannot be built: {exc}")
        return self.set_model(model)

    # ----------------------------------------------------------------- sources
    def find_cameras(self) -> list[int]:
        """Probe the camera indices and list the ones that open in the panel."""
        found = self.camera_prober()
        self.panel.set_cameras(found)
        self.panel.show_message(f"found {len(found)} camera{'s' if len(found) != 1 else ''}" if found else
                                "no camera found: none is connected, or another program is using it",
                                error=not found)
        return found

    def open_camera(self, index: int) -> bool:
        return self._open(lambda: CameraSource(index))

    def open_path(self, path: str) -> bool:
        """Open a video file or a folder of images."""
        return self._open(lambda: open_source(Path(path)))

    def open_source(self, source: FrameSource) -> bool:
        """Read an already-open source (a test's stand-in for the camera, for instance)."""
        return self._open(lambda: source)

    def _open(self, make: Callable[[], FrameSource]) -> bool:
        try:
            source = make()
        except SourceError as exc:
            self.panel.show_message(str(exc), error=True)
            return False
        self.panel.clear_predictions()
        self.draw_rate.reset()
        self.pipeline.open(source)
        self.draw_timer.start()
        self.rates_timer.start()
        self.panel.show_message(f"playing {source.name}")
        return True

    def stop(self) -> None:
        saved = self.pipeline.close_source()
        self.draw_timer.stop()
        self.rates_timer.stop()
        self.panel.set_stopped()
        self.panel.set_recording(False)
        if saved:
            self._recorded(saved)

    # ----------------------------------------------------------------- recording
    def set_dataset_folder(self, folder: str) -> None:
        self.dataset_folder = folder
        self.panel.set_record_counts(clip_counts(folder) if folder else {})

    def start_recording(self, class_name: str, folder: str) -> bool:
        self.set_dataset_folder(folder)
        try:
            path = self.pipeline.start_recording(folder, class_name)
        except RecordingError as exc:
            self.panel.set_recording(False)
            self.panel.show_message(str(exc), error=True)
            return False
        self.panel.set_recording(True, str(path))
        return True

    def stop_recording(self) -> Path | None:
        saved = self.pipeline.stop_recording()
        self.panel.set_recording(False)
        if saved:
            self._recorded(saved)
        else:
            self.panel.show_message("nothing was recorded (no frame arrived)", error=True)
        return saved

    def _recorded(self, path: Path) -> None:
        self.panel.show_message(f"saved {path}")
        if self.dataset_folder:
            self.panel.set_record_counts(clip_counts(self.dataset_folder))

    # ----------------------------------------------------------------- drawing (GUI thread)
    def _on_prediction(self, prediction: Prediction) -> None:
        self.panel.show_prediction(prediction.probabilities, prediction.class_names, prediction.frame)
        if prediction.window is not None:
            self.panel.show_model_input(model_input_picture(prediction.window))
        if prediction.gates is not None or not recurrent_block(self.pipeline.model):
            self.panel.show_gates(prediction.gates, prediction.family, prediction.gate_block)
        self.predictionReady.emit(prediction)

    def draw(self) -> None:
        """Put the newest frame on screen if it is new."""
        latest = self.pipeline.latest_frame()
        if latest is None or latest[2] == self._drawn_serial:
            return
        picture, _, serial = latest
        self._drawn_serial = serial
        self.panel.show_frame(picture)
        self.draw_rate.tick()

    def _update_rates(self) -> None:
        stats = self.pipeline.stats()
        self.panel.set_rates(stats["capture_fps"], stats["inference_fps"], self.draw_rate.rate(),
                             stats["windows_dropped"])
        self._update_playback()

    def _update_playback(self) -> None:
        source = self.pipeline.source
        if source is None:
            return
        if self.pipeline.failed:
            self.panel.set_stopped()
            self.panel.set_recording(False)
            return
        self.panel.set_playback(max(0, source.position - 1), source.frame_count, self.pipeline.playing,
                                source.seekable)
        if self.pipeline.recorder is None and self.panel.record_button.isChecked():
            self.panel.set_recording(False)

    def shutdown(self) -> None:
        """Stop the timers and the workers."""
        self.draw_timer.stop()
        self.rates_timer.stop()
        saved = self.pipeline.close_source()
        self.pipeline.shutdown()
        if saved:
            log.info("recording saved to %s", saved)


NOT_TRAINED = "the model is not trained yet: train it, and it classifies here"


def describe_model(clip_format: ClipFormat | None, model, why_not: str = "",
                   class_names: list[str] | None = None) -> str:
    """What the model sees, in one line: ``8 frames at 16x16, grey, a new window every frame;
    classes left, right, up, down; an LSTM's gates shown`` or why it sees nothing."""
    if clip_format is None or model is None:
        return f"Preview only: {why_not or NOT_TRAINED}."
    f = clip_format
    every = "every frame" if f.clip_stride == 1 else f"every {f.clip_stride} frames"
    scale = {"unit": "scaled to 0..1", "symmetric": "scaled to -1..1", "none": "as 0..255"}.get(f.normalize, f.normalize)
    text = (f"The model sees {f.frames} frames at {f.height}x{f.width}, {'grey' if f.channels == 1 else 'colour'}, "
            f"{scale}; a new window {every}")
    if class_names:
        text += f"; classes {', '.join(class_names)}"
    block = recurrent_block(model)
    if block:
        text += f"; the gates of {model.layers[block].type_name} {block} over each window are shown"
    return text + "."


def model_input_picture(window: np.ndarray) -> np.ndarray:
    """A prepared window (T, C, H, W) as one picture for the panel: the frames side by side with a
    one-pixel gap, float (H, T*(W+1)-1) grey or (H, ..., 3) colour, each scaled to 0..1 over the window."""
    frames = np.asarray(window, dtype=np.float32)
    low, high = float(frames.min()), float(frames.max())
    frames = (frames - low) / (high - low) if high > low else np.zeros_like(frames)
    t, c, h, w = frames.shape
    picture = np.full((h, t * (w + 1) - 1, c), np.nan, np.float32)
    for i in range(t):
        picture[:, i * (w + 1):i * (w + 1) + w] = frames[i].transpose(1, 2, 0)
    return picture[:, :, 0] if c == 1 else picture


def install_video_panel(window) -> VideoController:
    """Add the video panel to ``window`` and keep it classifying with the project's trained model.

    Uses the main window's ``add_panel``, ``trained_model()`` and its ``projectChanged``,
    ``trainingEnded`` and ``graphAnalysed`` signals (a new project, new weights, an edit that
    changes the model); the model is rebuilt at most every half second while editing.
    """
    from PySide6.QtCore import QCoreApplication

    from gatescope.widgets.video_panel import VideoPanel

    panel = VideoPanel()
    controller = VideoController(panel, parent=window)
    window.add_panel("Video", panel, "video", "centre")

    refresh = QTimer(controller)
    refresh.setSingleShot(True)
    refresh.setInterval(500)

    def follow_model() -> None:
        model = window.trained_model()
        if model is None:
            why = NOT_TRAINED if not window.project.weights else \
                "the model changed since it was trained: train it again"
            controller.set_model(None, why_not=why)
        else:
            controller.set_model(model)

    refresh.timeout.connect(follow_model)
    window.projectChanged.connect(lambda _project: follow_model())
    window.trainingEnded.connect(lambda _kind, _message: follow_model())
    window.graphAnalysed.connect(lambda _analysis: refresh.start())
    app = QCoreApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(controller.shutdown)
    follow_model()
    return controller
