"""Live video: frame sources, the capture / inference pipeline, clip recording, and the panel's controller.

DESIGN section 4: a capture thread reads the webcam, a video file or a folder of images and
keeps only the latest frame (for drawing) and the frames the next window needs; an inference
thread takes the newest window of the last T frames, runs the model and reports the result by
callback (Qt signal in the controller); the GUI thread only draws, on a timer, whatever is
newest. Nothing waits on anything else: when the model is slower than the camera, windows that
arrive while it is busy replace the waiting one (counted as skipped), so there is never more
than one window waiting.

Frames are preprocessed as the model's Input block says (``ClipFormat``): resized to its H, W,
grey or colour by its C, scaled by its ``normalize`` setting, a window of T frames taken every
``clip_stride`` frames (``compute.datasets.video.prepare_frame``, the same function the
video-folder dataset uses for training).

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
    text = getattr(head, "settings", {}).get("class_names", "") if head is not None else ""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    return names if len(names) == n_classes else [f"class {i}" for i in range(n_classes)]


@dataclass
class Prediction:
    """One window's result: ``probabilities`` (K,), the best class, and the frame the window ends at."""

    probabilities: np.ndarray
    class_names: list[str]
    predicted: int
    confidence: float
    frame: int
    seconds: float

    @property
    def class_name(self) -> str:
        return self.class_names[self.predicted]


class ClipBuffer:
    """The last T preprocessed frames, and at most one window waiting for the model.

    ``push`` (capture thread) adds a frame; every ``clip_stride`` frames, once T are there,
    the newest window is offered: it replaces a window still waiting (counted in ``dropped``).
    ``take`` (inference thread) waits for a window and removes it.
    """

    def __init__(self, clip_format: ClipFormat):
        self.format = clip_format
        self._frames: deque[np.ndarray] = deque(maxlen=clip_format.frames)
        self._since_window = 0
        self._waiting: tuple[np.ndarray, int] | None = None
        self._ready = threading.Condition()
        self.offered = self.taken = self.dropped = 0
        self.most_waiting = 0

    def push(self, pixels: np.ndarray, frame_index: int) -> None:
        self._frames.append(pixels)
        self._since_window += 1
        if len(self._frames) < self.format.frames or self._since_window < self.format.clip_stride:
            return
        self._since_window = 0
        window = np.stack(self._frames)
        with self._ready:
            if self._waiting is not None:
                self.dropped += 1
            self._waiting = (window, frame_index)
            self.offered += 1
            self.most_waiting = max(self.most_waiting, 1)
            self._ready.notify()

    def take(self, timeout: float) -> tuple[np.ndarray, int] | None:
        with self._ready:
            if self._waiting is None:
                self._ready.wait(timeout)
            item, self._waiting = self._waiting, None
            if item is not None:
                self.taken += 1
            return item

    @property
    def waiting(self) -> int:
        return 0 if self._waiting is None else 1

    def clear(self) -> None:
        self._frames.clear()
        self._since_window = 0
        with self._ready:
            self._waiting = None


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


class VideoPipeline:
    """The capture and inference threads around one source and one model (Qt-free).

    Callbacks (called from the worker threads; keep them short): ``on_prediction(Prediction)``,
    ``on_message(text, is_error)``, ``on_state()`` when playing / paused / ended / failed changes.
    """

    def __init__(self, on_prediction: Callable[[Prediction], None] | None = None,
                 on_message: Callable[[str, bool], None] | None = None,
                 on_state: Callable[[], None] | None = None):
        self.on_prediction = on_prediction or (lambda p: None)
        self.on_message = on_message or (lambda text, error: None)
        self.on_state = on_state or (lambda: None)
        self._lock = threading.Lock()
        self.source: FrameSource | None = None
        self._capture_thread: threading.Thread | None = None
        self._inference_thread: threading.Thread | None = None
        self._stop_capture = threading.Event()
        self._stop_all = threading.Event()
        self._wake = threading.Event()
        self._model = None
        self._class_names: list[str] = []
        self.buffer: ClipBuffer | None = None
        self._latest: tuple[np.ndarray, int] | None = None
        self.frame_serial = 0
        self.playing = False
        self.loop = True
        self.speed = 1.0
        self._seek_to: int | None = None
        self.recorder: ClipRecorder | None = None
        self.capture_rate, self.inference_rate = RateMeter(), RateMeter()
        self.last_prediction: Prediction | None = None
        self.failed: str | None = None
        self.ended = False

    # ----------------------------------------------------------------- model
    def set_model(self, model, class_names: list[str] | None = None, clip_format: ClipFormat | None = None) -> None:
        """Classify with ``model`` (anything with ``predict(batch) -> (N, K)``) from now on; None stops
        classifying. ``clip_format`` defaults to what the model's Input block says. DataError when
        the model does not take video clips (the preview goes on without predictions)."""
        if model is None:
            with self._lock:
                self._model, self.buffer = None, None
            return
        if clip_format is None:
            clip_format = ClipFormat.from_model(model)
            task = getattr(model, "task", "classification")
            if task != "classification":
                raise DataError("the model predicts numbers (a Regress output); live video shows class predictions, "
                                "so end the model with Classify")
        with self._lock:
            self._model = model
            self._class_names = list(class_names or [])
            self.buffer = ClipBuffer(clip_format)
        self._ensure_inference_thread()

    @property
    def clip_format(self) -> ClipFormat | None:
        buffer = self.buffer
        return buffer.format if buffer else None

    # ----------------------------------------------------------------- source
    def open(self, source: FrameSource, play: bool = True) -> None:
        """Read ``source`` from now on (closing the previous one)."""
        self.close_source()
        with self._lock:
            self.source = source
            self.playing = play
            self.failed = None
            self.ended = False
            self._seek_to = None
            self._latest = None
            if self.buffer is not None:
                self.buffer.clear()
        self.capture_rate.reset()
        self.inference_rate.reset()
        self._stop_capture = threading.Event()
        self._capture_thread = threading.Thread(target=self._capture_loop, args=(source, self._stop_capture),
                                                name=f"capture {source.name}", daemon=True)
        self._capture_thread.start()
        self.on_state()

    def close_source(self) -> Path | None:
        """Stop reading and let go of the source; a recording in progress is finished and its path returned."""
        thread, self._capture_thread = self._capture_thread, None
        self._stop_capture.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5.0)
        saved = self.stop_recording()
        with self._lock:
            source, self.source = self.source, None
            self.playing = False
        if source is not None:
            source.close()
        return saved

    def play(self) -> None:
        """Go on reading; a file that reached its end starts again from its first frame."""
        with self._lock:
            if self.source is not None and self.failed is None:
                self.playing = True
                if self.ended and self.source.seekable:
                    self._seek_to = 0
                self.ended = False
        self._wake.set()
        self.on_state()

    def pause(self) -> None:
        with self._lock:
            self.playing = False
        self.on_state()

    def seek(self, frame: int) -> None:
        """Jump to ``frame`` (files and image folders); shown even while paused."""
        with self._lock:
            self._seek_to = int(frame)
        self._wake.set()

    def set_loop(self, loop: bool) -> None:
        self.loop = bool(loop)

    def set_speed(self, speed: float) -> None:
        """Playback speed of files (1 = their own frame rate); cameras run as fast as they send."""
        self.speed = max(0.01, float(speed))

    def latest_frame(self) -> tuple[np.ndarray, int, int] | None:
        """``(picture, frame index, serial)`` of the newest frame, or None before the first."""
        with self._lock:
            if self._latest is None:
                return None
            return self._latest[0], self._latest[1], self.frame_serial

    # ----------------------------------------------------------------- recording
    def start_recording(self, dataset_folder: str | Path, class_name: str, codec: str = "MJPG") -> Path:
        """Record the frames read from now on as a clip of ``class_name``; RecordingError if it cannot."""
        source = self.source
        if source is None or self.failed is not None:
            raise RecordingError("open a camera (or a video) before recording")
        fps = source.fps if source.fps > 0 else (self.capture_rate.rate() or 30.0)
        recorder = ClipRecorder(dataset_folder, class_name, fps, codec)
        with self._lock:
            previous, self.recorder = self.recorder, recorder
        if previous is not None:
            previous.close()
        return recorder.path

    def stop_recording(self) -> Path | None:
        """Finish the clip being recorded; its path (None when nothing was recorded)."""
        with self._lock:
            recorder, self.recorder = self.recorder, None
        return recorder.close() if recorder is not None else None

    # ----------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        buffer = self.buffer
        return {"capture_fps": self.capture_rate.rate(), "inference_fps": self.inference_rate.rate(),
                "frames": self.capture_rate.count, "inferences": self.inference_rate.count,
                "windows_offered": buffer.offered if buffer else 0,
                "windows_dropped": buffer.dropped if buffer else 0,
                "most_waiting": buffer.most_waiting if buffer else 0}

    def shutdown(self) -> None:
        """Stop both threads and let go of everything (the window is closing)."""
        self.close_source()
        self._stop_all.set()
        thread, self._inference_thread = self._inference_thread, None
        if thread is not None:
            thread.join(timeout=5.0)

    # ----------------------------------------------------------------- capture thread
    def _capture_loop(self, source: FrameSource, stop: threading.Event) -> None:
        next_due = time.perf_counter()
        bad_frame_reported = False
        while not stop.is_set():
            with self._lock:
                seek_to, self._seek_to = self._seek_to, None
                playing = self.playing
                if seek_to is not None:
                    self.ended = False
            if seek_to is not None and source.seekable:
                try:
                    source.seek(seek_to)
                except SourceError as exc:
                    self.on_message(str(exc), True)
                playing = True  # read the frame sought, then honour pause below
                show_one = not self.playing
            else:
                show_one = False
            if not playing:
                self._wake.wait(0.05)
                self._wake.clear()
                next_due = time.perf_counter()
                continue
            try:
                frame = source.read()
            except SourceError as exc:
                self._fail(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - a decoder or driver error must not kill the app
                self._fail(f"reading {source.name} failed: {exc}")
                return
            if frame is None:
                if self.loop and source.seekable and source.position > 1:
                    source.seek(0)
                    continue
                with self._lock:
                    self.playing = False
                    self.ended = True
                saved = self.stop_recording()
                self.on_message(f"end of {source.name}" + (f"; clip saved to {saved}" if saved else ""), False)
                self.on_state()
                continue
            try:
                picture = display_image(frame)
            except DataError as exc:
                if not bad_frame_reported:
                    self.on_message(f"{source.name} sent an unusable frame: {exc}", True)
                    bad_frame_reported = True
                continue
            index = source.position - 1
            self._record(frame)
            with self._lock:
                self._latest = (picture, index)
                self.frame_serial += 1
                buffer = self.buffer
            self.capture_rate.tick()
            if buffer is not None:
                try:
                    buffer.push(buffer.format.prepare(frame), index)
                except DataError as exc:
                    if not bad_frame_reported:
                        self.on_message(f"a frame cannot be prepared for the model: {exc}", True)
                        bad_frame_reported = True
            if show_one:
                continue
            if not source.live and source.fps > 0:
                next_due += 1.0 / (source.fps * self.speed)
                delay = next_due - time.perf_counter()
                if delay > 0:
                    stop.wait(delay)
                elif delay < -0.25:
                    next_due = time.perf_counter()  # fell behind (slow disk, big frames): do not rush to catch up

    def _record(self, frame: np.ndarray) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        try:
            recorder.write(frame)
        except (RecordingError, DataError) as exc:
            self.stop_recording()
            self.on_message(str(exc), True)

    def _fail(self, message: str) -> None:
        saved = self.stop_recording()
        with self._lock:
            self.failed = message
            self.playing = False
        if saved is not None:
            message += f"; the recording was kept up to the last good frame: {saved}"
        self.on_message(message, True)
        self.on_state()

    # ----------------------------------------------------------------- inference thread
    def _ensure_inference_thread(self) -> None:
        if self._inference_thread is None or not self._inference_thread.is_alive():
            self._inference_thread = threading.Thread(target=self._inference_loop, name="video inference",
                                                      daemon=True)
            self._inference_thread.start()

    def _inference_loop(self) -> None:
        while not self._stop_all.is_set():
            with self._lock:
                buffer, model, names = self.buffer, self._model, self._class_names
            if buffer is None or model is None:
                self._stop_all.wait(0.05)
                continue
            item = buffer.take(timeout=0.1)
            if item is None:
                continue
            window, frame = item
            started = time.perf_counter()
            try:
                output = np.asarray(model.predict(window[None]), dtype=np.float64)
            except Exception as exc:  # noqa: BLE001 - the person's model; report and stop using it
                with self._lock:
                    if self._model is model:
                        self._model = None
                self.on_message(f"the model failed on a video clip and was set aside: {exc}", True)
                continue
            probabilities = output.reshape(output.shape[1:]) if output.ndim >= 2 else output
            if probabilities.ndim == 2:  # a sequence of per-step scores: the last step speaks for the clip
                probabilities = probabilities[-1]
            k = probabilities.shape[-1]
            labels = names if len(names) == k else [f"class {i}" for i in range(k)]
            best = int(np.argmax(probabilities))
            prediction = Prediction(probabilities, labels, best, float(probabilities[best]), frame,
                                    time.perf_counter() - started)
            self.last_prediction = prediction
            self.inference_rate.tick()
            self.on_prediction(prediction)


# ----------------------------------------------------------------------------- the controller (Qt)
class VideoController(QObject):
    """Joins a ``VideoPanel`` (plain data, signals) to a ``VideoPipeline``.

    The worker threads never touch Qt: their callbacks leave the newest prediction in one slot
    (a newer one replaces one not yet drawn) and messages in a mailbox. A GUI-thread timer
    draws the newest frame, delivers what the workers left and emits the signals below, so a
    busy GUI never builds a backlog. (Emitting Qt signals from Python worker threads also
    corrupts reference counts in PySide6 6.12.0 on Python 3.11: the process aborts with
    "deallocating None" after some thousands of emits.) ``draw_rate`` counts frames put on screen.

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
        self.pipeline = pipeline or VideoPipeline()
        self.pipeline.on_prediction = self._prediction_from_worker
        self.pipeline.on_message = self._message_from_worker
        self.pipeline.on_state = self._state_from_worker
        self.camera_prober = camera_prober
        self.dataset_folder = ""
        self.draw_rate = RateMeter()
        self._drawn_serial = -1
        self._pending_prediction: Prediction | None = None
        self._mailbox: deque[tuple[str, bool]] = deque(maxlen=50)
        self._state_changed = False
        self._worker_lock = threading.Lock()

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

        # The timers run only while a source is open: the GUI thread has nothing to draw or
        # deliver otherwise, and a 10 ms tick would compete with training for the interpreter.
        self.draw_timer = QTimer(self)
        self.draw_timer.setInterval(self.DRAW_INTERVAL_MS)
        self.draw_timer.timeout.connect(self.draw)
        self.rates_timer = QTimer(self)
        self.rates_timer.setInterval(self.RATES_INTERVAL_MS)
        self.rates_timer.timeout.connect(self._update_rates)

    # ----------------------------------------------------------------- model
    def set_model(self, model, class_names: list[str] | None = None, clip_format: ClipFormat | None = None) -> bool:
        """Classify with ``model`` (None: preview only); False with a message in the panel when it cannot."""
        self.panel.clear_predictions()
        if model is None:
            self.pipeline.set_model(None)
            return False
        try:
            if class_names is None:
                out_shape = model.analysis.info[model.head_id].out_shape
                class_names = class_names_of(model, int(out_shape[-1]))
            self.pipeline.set_model(model, class_names, clip_format)
        except DataError as exc:
            self.pipeline.set_model(None)
            self.panel.show_message(str(exc), error=True)
            return False
        return True

    def set_project(self, project) -> bool:
        """Classify with ``project``'s trained model (its own copy, so training can go on beside it)."""
        if project is None or not project.trained:
            self.set_model(None)
            self.panel.show_message("train the model to see its predictions; the picture plays meanwhile")
            return False
        from gatescope.compute.graph import GraphError
        try:
            model = project.build_model()
        except (GraphError, ValueError) as exc:
            self.set_model(None)
            self.panel.show_message(f"the model cannot be built: {exc}", error=True)
            return False
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
        self.panel.show_message(f"playing {source.name}" + ("" if self.pipeline.buffer else
                                                            " (no trained video model: preview only)"))
        return True

    def stop(self) -> None:
        saved = self.pipeline.close_source()
        self.draw_timer.stop()
        self.rates_timer.stop()
        self.deliver()  # what the workers said before they stopped
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
    def _prediction_from_worker(self, prediction: Prediction) -> None:
        with self._worker_lock:
            self._pending_prediction = prediction

    def _message_from_worker(self, text: str, error: bool) -> None:
        with self._worker_lock:
            self._mailbox.append((text, error))

    def _state_from_worker(self) -> None:
        with self._worker_lock:
            self._state_changed = True

    def deliver(self) -> None:
        """Pass on what the worker threads left since the last call (GUI thread)."""
        with self._worker_lock:
            prediction, self._pending_prediction = self._pending_prediction, None
            messages = list(self._mailbox)
            self._mailbox.clear()
            state_changed, self._state_changed = self._state_changed, False
        for text, error in messages:
            self.messagePosted.emit(text, error)
        if state_changed:
            self.stateChanged.emit()
        if prediction is not None:
            self.panel.show_prediction(prediction.probabilities, prediction.class_names, prediction.frame)
            self.predictionReady.emit(prediction)

    def draw(self) -> None:
        """Deliver the workers' news and put the newest frame on screen if it is new."""
        self.deliver()
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
        """Stop the timers and the threads."""
        self.draw_timer.stop()
        self.rates_timer.stop()
        saved = self.pipeline.close_source()
        self.pipeline.shutdown()
        if saved:
            log.info("recording saved to %s", saved)


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
            controller.set_model(None)
            panel.show_message("train the model to see its predictions; the picture plays meanwhile")
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
