"""Video clips, batch first ``(N, T, C, H, W)`` (DESIGN section 2): generated and read from files.

``moving-shapes`` (builtin): a bright shape (circle, square, triangle or cross) moving left,
right, up or down on a dark noisy background. Shape, size, speed, brightness, start position
and noise vary per clip; a seed fixes them all. Trajectories are centred on a random point and
the still coordinate is drawn from the same distribution as the moving one, so the pooled
frames of every class look alike: one frame does not tell the direction, only the order of
frames does (what seed 001 asks an LSTM over per-frame CNN features to learn).

``video-folder`` (builtin): one subfolder per class holding video files, read with
``cv2.VideoCapture`` frame by frame and cut into windows of ``frames`` frames every ``stride``
frames. A video is streamed: only the last ``frames`` small preprocessed frames are held while
it is read. Decoded windows are cached in memory and in an ``.npz`` file in the user's cache
directory (``compute.userdirs``, ``video/``), keyed by the file's path, a digest of its
contents and the reading parameters, so building the dataset again (a second run, a new
epoch's reload) does not decode again. The cache is never written anywhere a project or data
file names.

``prepare_frame`` is the one preprocessing both training data and live video go through, as
the model's Input block says: resize to (H, W), grey or colour by C, scale by ``normalize``.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np

from gatescope.compute.datasets import Dataset, DataError, register_builtin
from gatescope.compute.datasets.checks import (MAX_FILE_BYTES, MAX_GENERATED, MAX_SAMPLE_VALUES, MAX_SEED, flag,
                                               real_number, regular_file, regular_files_in, sample_budget,
                                               whole_number)
from gatescope.compute.userdirs import ensure, user_cache_dir

log = logging.getLogger(__name__)

DIRECTIONS = ("left", "right", "up", "down")
SHAPES = ("circle", "square", "triangle", "cross")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")
NORMALIZE_CHOICES = ("none", "unit", "symmetric")


# ----------------------------------------------------------------------------- preprocessing
def opencv():
    """OpenCV, imported on first use and told to keep its own and FFmpeg's warnings quiet: a file
    that cannot be read is reported in one sentence of ours (OPENCV_FFMPEG_LOGLEVEL, when set by
    the person, wins). Images over 2^26 pixels (8192 x 8192) are refused by the decoder itself
    (OpenCV's default, 2^30, lets one small crafted PNG ask for gigabytes)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**26))
    import cv2
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:
        pass
    return cv2


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """A frame as 8-bit values: 16-bit images are scaled down, floats are read as 0..1."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.floating):
        return (np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.integer) or frame.dtype == np.bool_:
        return np.clip(frame, 0, 255).astype(np.uint8)
    raise DataError(f"a frame of {frame.dtype} values cannot be shown or classified")


def frame_to_pixels(frame: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """A raw OpenCV frame -> uint8 ``(C, H, W)``: any size, grey (H, W) or (H, W, 1), BGR or BGRA.

    Colour output is RGB. Raises DataError for an array that is not an image.
    """
    cv2 = opencv()
    frame = to_uint8(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] not in (3, 4):
        raise DataError(f"a frame with {frame.shape[2]} colour channels cannot be read; "
                        "use grey (1), colour (3) or colour with alpha (4)")
    if frame.ndim not in (2, 3) or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise DataError(f"an array of shape {frame.shape} is not an image frame")
    if channels == 1:
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    elif channels == 3:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        else:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    else:
        raise DataError(f"video frames have 1 (grey) or 3 (colour) channels; the Input asks for {channels}")
    if frame.shape[:2] != (height, width):
        shrinking = frame.shape[0] > height or frame.shape[1] > width
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if frame.ndim == 2:
        return np.ascontiguousarray(frame[None])
    return np.ascontiguousarray(frame.transpose(2, 0, 1))


def normalize_pixels(pixels: np.ndarray, normalize: str) -> np.ndarray:
    """uint8 pixels -> float32: ``none`` keeps 0..255, ``unit`` gives 0..1, ``symmetric`` -1..1."""
    x = pixels.astype(np.float32)
    if normalize == "unit":
        x *= 1.0 / 255.0
    elif normalize == "symmetric":
        x *= 1.0 / 127.5
        x -= 1.0
    elif normalize != "none":
        raise DataError(f"normalize must be one of {', '.join(NORMALIZE_CHOICES)}, not {normalize!r}")
    return x


def prepare_frame(frame: np.ndarray, channels: int, height: int, width: int, normalize: str) -> np.ndarray:
    """A raw frame -> float32 ``(C, H, W)`` the way the Input block says (see module docstring)."""
    return normalize_pixels(frame_to_pixels(frame, channels, height, width), normalize)


def clip_geometry(input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(T, C, H, W)`` of a model's Input shape; DataError when it does not take video clips."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4:
        raise DataError(f"the model's Input takes samples of shape {shape}, not video clips; "
                        "set its shape to (T, C, H, W), e.g. (8, 1, 16, 16)")
    if shape[1] not in (1, 3):
        raise DataError(f"the model's Input asks for {shape[1]} channels per frame; video gives 1 (grey) or 3 (colour)")
    return shape  # type: ignore[return-value]


# ----------------------------------------------------------------------------- moving shapes
def _shape_mask(kind: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Coverage 0..1 (one pixel of soft edge) of a shape of ``radius`` at offsets ``dx``, ``dy``."""
    if kind == "circle":
        distance = np.sqrt(dx * dx + dy * dy) - radius
    elif kind == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - radius * 0.85
    elif kind == "cross":
        arm = max(radius * 0.35, 0.6)
        horizontal = np.maximum(np.abs(dx) - radius, np.abs(dy) - arm)
        vertical = np.maximum(np.abs(dy) - radius, np.abs(dx) - arm)
        distance = np.minimum(horizontal, vertical)
    elif kind == "triangle":
        # An upward triangle: the intersection of three half-planes (signed distances to each side).
        base = dy - radius * 0.7
        left = (-0.866 * dx - 0.5 * dy) - radius * 0.55
        right = (0.866 * dx - 0.5 * dy) - radius * 0.55
        distance = np.maximum(base, np.maximum(left, right))
    else:
        raise DataError(f"unknown shape {kind!r}; choose from {', '.join(SHAPES)}")
    return np.clip(0.5 - distance, 0.0, 1.0)


def render_clip(rng: np.random.Generator, direction: int, frames: int, size: int, noise: float) -> np.ndarray:
    """One clip ``(T, 1, S, S)`` float32 in 0..1 of a random shape moving in ``direction``."""
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    radius = float(rng.uniform(0.12, 0.2) * size)
    speed = float(rng.uniform(0.05, 0.1) * size)   # pixels per frame
    middle = (frames - 1) / 2.0
    travel = speed * middle
    # The centre stays in the picture; the path is centred on a uniform point, so every frame
    # index sees the same spread of positions for both signs of motion.
    low, high = radius * 0.5, size - 1 - radius * 0.5
    centre = rng.uniform(low + travel, high - travel) if high - travel > low + travel else (low + high) / 2
    steps = (np.arange(frames) - middle) * speed
    moving = centre + (steps if direction in (1, 3) else -steps)      # right/down grow, left/up shrink
    # The still coordinate: the same distribution as a moving one seen at a random frame.
    other_speed = float(rng.uniform(0.05, 0.1) * size)
    other_centre = rng.uniform(low + other_speed * middle, high - other_speed * middle) \
        if high - other_speed * middle > low + other_speed * middle else (low + high) / 2
    still = other_centre + (rng.integers(frames) - middle) * other_speed * float(rng.choice((-1.0, 1.0)))
    xs, ys = (moving, np.full(frames, still)) if direction in (0, 1) else (np.full(frames, still), moving)
    grid = np.arange(size, dtype=np.float64)
    dx = grid[None, None, :] - xs[:, None, None]
    dy = grid[None, :, None] - ys[:, None, None]
    mask = _shape_mask(kind, dx, dy, radius)
    background = rng.uniform(0.0, 0.25)
    brightness = rng.uniform(0.65, 1.0)
    sigma = rng.uniform(0.25, 1.0) * noise
    clip = background + mask * (brightness - background) + rng.normal(0.0, sigma, mask.shape)
    return np.clip(clip, 0.0, 1.0).astype(np.float32)[:, None]


@register_builtin("moving-shapes", "Moving shapes: a bright shape moving left, right, up or down; "
                                    "video clips (T, 1, S, S), 4 classes")
def moving_shapes(n: int = 2000, frames: int = 8, size: int = 16, seed: int = 0, noise: float = 0.1) -> Dataset:
    """``n`` clips ``x`` of shape ``(n, frames, 1, size, size)`` in 0..1 and labels ``y`` (n,):
    0 left, 1 right, 2 up, 3 down, balanced (each class n // 4 or one more), order shuffled."""
    n = whole_number("moving-shapes", "n (at least 4, one clip per direction)", n, 4, MAX_GENERATED)
    frames = whole_number("moving-shapes", "frames", frames, 2, 256)
    size = whole_number("moving-shapes", "size (pixels)", size, 8, 256)
    seed = whole_number("moving-shapes", "seed", seed, 0, MAX_SEED)
    noise = real_number("moving-shapes", "noise", noise, 0.0, 1.0)
    sample_budget("moving-shapes", n, frames * size * size)
    rng = np.random.default_rng([seed, 2024])
    labels = rng.permutation(np.arange(n) % len(DIRECTIONS)).astype(np.int64)
    x = np.empty((n, frames, 1, size, size), dtype=np.float32)
    for i, direction in enumerate(labels):
        x[i] = render_clip(rng, int(direction), frames, size, float(noise))
    return Dataset("moving-shapes", x, labels, "classification", list(DIRECTIONS),
                   description=f"{n} clips of {frames} frames, {size}x{size} grey, a shape moving "
                               "left, right, up or down; values 0..1",
                   meta={"frames": frames, "size": size, "seed": seed, "noise": float(noise)})


# ----------------------------------------------------------------------------- video files
def windows_of(frames: Iterator[np.ndarray], length: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first_frame_index, window)`` for each window of ``length`` consecutive frames every
    ``stride`` frames; holds only the last ``length`` frames."""
    recent: deque[np.ndarray] = deque(maxlen=length)
    for index, frame in enumerate(frames):
        recent.append(frame)
        first = index - length + 1
        if first >= 0 and first % stride == 0:
            yield first, np.stack(recent)


def read_video_frames(path: str | os.PathLike, channels: int, height: int, width: int) -> Iterator[np.ndarray]:
    """Each frame of the video at ``path`` as uint8 ``(C, H, W)``, decoded one at a time.

    DataError when the file does not exist or OpenCV cannot open it as a video. A truncated
    file ends where its decodable frames end.
    """
    cv2 = opencv()
    path = regular_file(path, "the video", MAX_FILE_BYTES)
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise DataError(f"{path.name} cannot be opened as a video (not a video, damaged, or a format "
                            "OpenCV's FFmpeg does not read)")
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            yield frame_to_pixels(frame, channels, height, width)
    finally:
        capture.release()


_MEMORY_CACHE: dict[str, np.ndarray] = {}


def _cache_key(path: Path, frames: int, channels: int, height: int, width: int, stride: int,
               max_windows: int) -> str:
    """A digest of the file's resolved path, its contents and the reading parameters. Hashing the
    contents reads the file once more (BLAKE2b runs at about 1 GB/s, decoding at a few MB/s of
    video), and a file rewritten in place with its old size and time still gets a new key."""
    with open(path, "rb") as handle:
        contents = hashlib.file_digest(handle, "blake2b").hexdigest()
    text = f"{path.resolve()}|{contents}|{frames}|{channels}|{height}|{width}|{stride}|{max_windows}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def video_windows(path: str | os.PathLike, frames: int, channels: int, height: int, width: int,
                  stride: int, max_windows: int = 0, use_disk_cache: bool = True) -> np.ndarray:
    """uint8 windows ``(K, T, C, H, W)`` of one video (K may be 0 when it is shorter than T).

    Cached in memory and, with ``use_disk_cache``, in ``<user cache>/video/<key>.npz`` (read back
    with ``allow_pickle=False``); the key changes when the file or any parameter does.
    """
    path = regular_file(path, "the video", MAX_FILE_BYTES)
    key = _cache_key(path, frames, channels, height, width, stride, max_windows)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    cache_file = user_cache_dir("video", f"{key}.npz") if use_disk_cache else None
    if cache_file is not None and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as stored:
                windows = stored["windows"]
            if windows.dtype == np.uint8 and windows.shape[1:] == (frames, channels, height, width):
                _MEMORY_CACHE[key] = windows
                return windows
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("ignoring a damaged video cache %s (%s)", cache_file, exc)
    collected = []
    for _, window in windows_of(read_video_frames(path, channels, height, width), frames, stride):
        collected.append(window)
        if max_windows and len(collected) >= max_windows:
            break
        if len(collected) * window.size > MAX_SAMPLE_VALUES:
            raise DataError(f"{path.name} gives more clips than GateScope holds (over {MAX_SAMPLE_VALUES:,} "
                            "values); set max_windows_per_video or a larger stride")
    windows = np.stack(collected) if collected else np.zeros((0, frames, channels, height, width), np.uint8)
    _MEMORY_CACHE[key] = windows
    if cache_file is not None:
        try:
            ensure(cache_file.parent)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, windows=windows)
            os.replace(tmp, cache_file)
        except OSError as exc:
            log.warning("cannot write the video cache %s (%s)", cache_file, exc)
    return windows


def clear_memory_cache() -> None:
    """Forget every decoded video held in memory (the on-disk cache stays)."""
    _MEMORY_CACHE.clear()


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise DataError(f"video-folder size must be one number or [height, width], not {size!r}")
        height, width = size
    else:
        height = width = size
    return (whole_number("video-folder", "frame height", height, 1, 1024),
            whole_number("video-folder", "frame width", width, 1, 1024))


@register_builtin("video-folder", "Video files in one subfolder per class, cut into clips of T frames")
def video_folder(folder: str = "", frames: int = 8, size=16, channels: int = 1, stride: int = 0,
                 normalize: str = "unit", max_windows_per_video: int = 0, cache: bool = True) -> Dataset:
    """Clips ``(N, frames, channels, H, W)`` from ``folder/<class>/<video>``, labels by subfolder
    (sorted names). ``stride``: frames between window starts (0 = ``frames``, no overlap).
    ``cache``: keep decoded clips in the user's cache directory too (see the module docstring).
    Files that cannot be read or are shorter than ``frames`` are skipped, listed in
    ``meta['skipped']`` and said in ``meta['warnings']``; DataError if no clip at all can be
    had, or a class folder gives none."""
    if not isinstance(folder, str) or not folder:
        raise DataError("video-folder needs a folder: one subfolder per class, each holding video files")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; video-folder reads one subfolder per class")
    frames = whole_number("video-folder", "frames", frames, 1, 256)
    channels = whole_number("video-folder", "channels", channels, 1, 3)
    height, width = _size_pair(size)
    stride = whole_number("video-folder", "stride", stride, 0, 100_000) or frames
    max_windows = whole_number("video-folder", "max_windows_per_video", max_windows_per_video, 0, MAX_GENERATED)
    cache = flag("video-folder", "cache", cache)
    if channels not in (1, 3):
        raise DataError(f"video-folder channels must be 1 (grey) or 3 (colour), not {channels}")
    if normalize not in NORMALIZE_CHOICES:
        raise DataError(f"normalize must be one of {', '.join(NORMALIZE_CHOICES)}, not {normalize!r}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class subfolders; put each class's videos in a folder named after it")
    clips, labels, skipped, sources = [], [], [], []
    n_windows = 0
    for label, name in enumerate(classes):
        for path in regular_files_in(root / name, VIDEO_SUFFIXES):
            try:
                windows = video_windows(path, frames, channels, height, width, stride, max_windows, cache)
            except DataError as exc:
                skipped.append(f"{name}/{path.name}: {exc}")
                continue
            if len(windows) == 0:
                skipped.append(f"{name}/{path.name}: fewer than {frames} frames could be decoded")
                continue
            n_windows += len(windows)
            sample_budget(f"video-folder {root.name}", n_windows, windows[0].size)
            clips.append(windows)
            labels.append(np.full(len(windows), label, dtype=np.int64))
            sources.append(f"{name}/{path.name}")
    if not clips:
        detail = f" ({skipped[0]})" if skipped else ""
        raise DataError(f"{root}: no clip of {frames} frames could be read from any video{detail}")
    # A class with no clip would be a score the model never sees trained (or, last, no class at all).
    found = {int(y[0]) for y in labels}
    for label, name in enumerate(classes):
        if label not in found:
            why = [s for s in skipped if s.startswith(f"{name}/")]
            raise DataError(f"class folder {name!r} gives no clip of {frames} frames: " +
                            (f"{why[0]}" if why else "it holds no video files") +
                            "; add videos or remove the folder")
    if len(classes) < 2:
        raise DataError(f"{root}: needs one subfolder per class and at least two classes; found {len(classes)}")
    x = normalize_pixels(np.concatenate(clips), normalize)
    y = np.concatenate(labels)
    warnings = [f"{plural_videos(len(skipped))} skipped: " + "; ".join(skipped[:3]) +
                ("; ..." if len(skipped) > 3 else "")] if skipped else []
    return Dataset(f"video-folder {root.name}", x, y, "classification", classes,
                   description=f"{len(x)} clips of {frames} frames from {len(sources)} videos in {root}",
                   meta={"skipped": skipped, "videos": sources, "frames": frames, "stride": stride,
                         "warnings": warnings})


def plural_videos(count: int) -> str:
    return f"{count} video{'s' if count != 1 else ''}"
