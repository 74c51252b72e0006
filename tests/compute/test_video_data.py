"""Video clips: the moving-shapes generator, frame preprocessing and the video-folder dataset."""
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from gatescope.compute.datasets import DataError, builtin_names, load  # noqa: E402
from gatescope.compute.datasets import video  # noqa: E402


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    """Decoded clips go to the user's cache directory: here, a folder of the test's own."""
    monkeypatch.setenv("GATESCOPE_CACHE_DIR", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


# ----------------------------------------------------------------------------- moving shapes
def test_moving_shapes_shapes_range_and_balance():
    ds = load({"kind": "builtin", "name": "moving-shapes", "params": {"n": 202, "frames": 6, "size": 16, "seed": 3}})
    assert ds.x.shape == (202, 6, 1, 16, 16) and ds.x.dtype == np.float32
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert ds.class_names == ["left", "right", "up", "down"]
    counts = ds.class_counts()
    assert counts.sum() == 202 and counts.max() - counts.min() <= 1
    assert "moving-shapes" in builtin_names() and "video-folder" in builtin_names()


def test_moving_shapes_is_reproducible_from_its_seed():
    a = video.moving_shapes(n=40, frames=5, size=16, seed=7)
    b = video.moving_shapes(n=40, frames=5, size=16, seed=7)
    c = video.moving_shapes(n=40, frames=5, size=16, seed=8)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def _centroids(frames: np.ndarray) -> np.ndarray:
    """Brightness-weighted (x, y) of the brightest pixels of each frame (N, S, S) -> (N, 2)."""
    s = frames.shape[-1]
    bright = np.maximum(frames - np.quantile(frames.reshape(len(frames), -1), 0.9, axis=1)[:, None, None], 0)
    grid = np.arange(s)
    total = bright.sum(axis=(1, 2)) + 1e-9
    return np.stack([(bright.sum(axis=1) * grid).sum(axis=1) / total, (bright.sum(axis=2) * grid).sum(axis=1) / total], 1)


def test_the_motion_direction_is_real():
    ds = video.moving_shapes(n=80, frames=8, size=24, seed=1, noise=0.05)
    first, last = _centroids(ds.x[:, 0, 0]), _centroids(ds.x[:, -1, 0])
    step = last - first
    axis = np.where(np.isin(ds.y, [0, 1]), 0, 1)
    sign = np.where(np.isin(ds.y, [1, 3]), 1.0, -1.0)
    moved = step[np.arange(len(step)), axis] * sign
    assert (moved > 1.5).mean() > 0.95


def test_a_single_frame_does_not_reveal_the_direction():
    """Pooled over frames, every class shows the shape at the same places: a nearest-class-mean
    classifier of one frame's statistics (centroid, brightness, spread) stays near chance."""
    train = video.moving_shapes(n=1200, frames=8, size=16, seed=11)
    test = video.moving_shapes(n=800, frames=8, size=16, seed=12)

    def features(ds, seed):
        pick = np.random.default_rng(seed).integers(ds.x.shape[1], size=len(ds.x))
        frames = ds.x[np.arange(len(ds.x)), pick, 0]
        flat = frames.reshape(len(frames), -1)
        return np.column_stack([_centroids(frames), flat.mean(1), flat.std(1)])

    f_train, f_test = features(train, 0), features(test, 1)
    mean, std = f_train.mean(0), f_train.std(0) + 1e-9
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    centres = np.stack([f_train[train.y == k].mean(0) for k in range(4)])
    guess = np.argmin(((f_test[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (guess == test.y).mean() < 0.36
    # Whole-image means per class are alike too: no class owns a part of the picture.
    per_class = np.stack([train.x[train.y == k].mean(axis=(0, 1, 2)) for k in range(4)])
    assert np.abs(per_class - per_class.mean(0)).max() < 0.06


@pytest.mark.parametrize("params", [{"n": 2}, {"frames": 1}, {"size": 4}, {"noise": 3.0}])
def test_moving_shapes_rejects_bad_parameters(params):
    with pytest.raises(DataError):
        video.moving_shapes(**params)


# ----------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("frame", [
    np.full((30, 40), 200, np.uint8),
    np.full((30, 40, 1), 200, np.uint8),
    np.full((30, 40, 3), 200, np.uint8),
    np.full((30, 40, 4), 200, np.uint8),
    np.full((7, 500, 3), 200, np.uint8),
    np.full((30, 40, 3), 200 * 257, np.uint16),
    np.full((30, 40, 3), 200 / 255, np.float32),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_prepare_frame_takes_any_frame(frame, channels):
    out = video.prepare_frame(frame, channels, 16, 12, "unit")
    assert out.shape == (channels, 16, 12) and out.dtype == np.float32
    assert np.allclose(out, 200 / 255, atol=2 / 255)


def test_prepare_frame_scales_and_orders_colour_as_rgb():
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    rgb = video.prepare_frame(bgr, 3, 8, 8, "symmetric")
    assert np.allclose(rgb[0], 1.0) and np.allclose(rgb[1:], -1.0)
    assert video.prepare_frame(bgr, 3, 8, 8, "none").max() == 255.0
    with pytest.raises(DataError):
        video.prepare_frame(np.zeros((8, 8, 5), np.uint8), 1, 8, 8, "unit")
    with pytest.raises(DataError):
        video.prepare_frame(bgr, 1, 8, 8, "percent")


def test_clip_geometry_names_what_is_wrong():
    assert video.clip_geometry((8, 1, 16, 16)) == (8, 1, 16, 16)
    with pytest.raises(DataError, match="not video clips"):
        video.clip_geometry((1, 16, 16))
    with pytest.raises(DataError, match="channels"):
        video.clip_geometry((8, 2, 16, 16))


def test_windows_of_holds_only_what_the_window_needs():
    starts = [first for first, _ in video.windows_of(iter(range(10)), 4, 3)]
    assert starts == [0, 3, 6]
    windows = [w for _, w in video.windows_of((np.full(2, i) for i in range(6)), 3, 1)]
    assert len(windows) == 4 and windows[-1][:, 0].tolist() == [3, 4, 5]


# ----------------------------------------------------------------------------- video folder
def write_video(path, frames, fps=20.0, codec="MJPG"):
    """Write (T, H, W) grey or (T, H, W, 3) BGR uint8 frames to ``path``."""
    frames = np.asarray(frames, np.uint8)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    writer.release()


def moving_bar(n_frames, size=32, direction=1):
    """A bright vertical bar moving right (direction 1) or left (-1)."""
    out = np.zeros((n_frames, size, size), np.uint8)
    for t in range(n_frames):
        x = (size // 4 + direction * t) % size
        out[t, :, max(0, x - 2):x + 2] = 255
    return out


@pytest.fixture
def clip_folder(tmp_path):
    root = tmp_path / "clips"
    for name, direction in (("left", -1), ("right", 1)):
        (root / name).mkdir(parents=True)
        for k in range(2):
            write_video(root / name / f"{name}{k}.avi", moving_bar(20 + k, direction=direction))
    (root / "right" / "notes.txt").write_text("not a video")
    (root / "right" / "broken.avi").write_bytes(b"RIFF but not really a video")
    (root / "right" / "short.avi").parent.mkdir(exist_ok=True)
    write_video(root / "right" / "short.avi", moving_bar(3))
    return root


def test_video_folder_reads_windows_with_a_stride(clip_folder):
    ds = load({"kind": "builtin", "name": "video-folder",
               "params": {"folder": str(clip_folder), "frames": 6, "size": 12, "stride": 5}})
    # 20 frames: windows start at 0, 5, 10 (3); 21 frames: 0, 5, 10, 15 (4) -> 7 per class.
    assert ds.x.shape == (14, 6, 1, 12, 12)
    assert ds.class_names == ["left", "right"] and ds.class_counts().tolist() == [7, 7]
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0 and ds.x.max() > 0.8
    skipped = " ".join(ds.meta["skipped"])
    assert "broken.avi" in skipped and "short.avi" in skipped and "notes" not in skipped


def test_video_folder_colour_and_size_pairs(clip_folder):
    ds = video.video_folder(str(clip_folder), frames=4, size=[10, 14], channels=3, normalize="symmetric",
                            max_windows_per_video=2, cache=False)
    assert ds.x.shape == (8, 4, 3, 10, 14) and ds.x.min() >= -1.0


def test_second_build_does_not_decode_again(clip_folder, cache_in_tmp, monkeypatch):
    params = dict(folder=str(clip_folder), frames=5, size=8)
    first = video.video_folder(**params)
    assert list((cache_in_tmp / "video").glob("*.npz")), "the clips are cached in the user's cache directory"
    assert not [p for p in clip_folder.rglob("*") if p.name.startswith(".")], "nothing is written beside the data"
    opened = []
    real_capture = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: opened.append(a) or real_capture(*a))
    again = video.video_folder(**params)                 # from memory
    video.clear_memory_cache()
    from_disk = video.video_folder(**params)             # from the .npz cache
    assert np.array_equal(first.x, again.x) and np.array_equal(first.x, from_disk.x)
    assert [a for a in opened if "broken" not in str(a[0]) and "short" not in str(a[0])] == []
    # Touching a file changes its key: it is decoded again.
    target = clip_folder / "left" / "left0.avi"
    write_video(target, moving_bar(12, direction=-1))
    video.video_folder(**params)
    assert any("left0" in str(a[0]) for a in opened)


def test_video_folder_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        video.video_folder(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no class subfolders"):
        video.video_folder(str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.avi").write_bytes(b"")
    with pytest.raises(DataError, match="no clip"):
        video.video_folder(str(tmp_path), cache=False)
    with pytest.raises(DataError, match="channels"):
        video.video_folder(str(tmp_path), channels=2)


def test_truncated_video_gives_the_frames_before_the_damage(tmp_path):
    path = tmp_path / "whole.avi"
    write_video(path, moving_bar(30))
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    frames = list(video.read_video_frames(cut, 1, 8, 8))
    assert 0 < len(frames) < 30
    with pytest.raises(DataError, match="does not exist"):
        list(video.read_video_frames(tmp_path / "nope.avi", 1, 8, 8))


def test_a_folder_of_videos_is_detected_and_loaded_as_a_file(clip_folder):
    from gatescope.compute.datasets.files import detect_format, load_file
    assert detect_format(clip_folder) == "videos"
    ds = load({"kind": "file", "path": str(clip_folder), "params": {"frames": 6, "stride": 5, "size": [12, 10]}})
    assert ds.x.shape == (14, 6, 1, 12, 10) and ds.class_names == ["left", "right"]
    assert "2 videos skipped" in ds.meta["warnings"][0] and "broken.avi" in ds.meta["warnings"][0]
    colour = load_file(clip_folder, frames=4, size=8, grey=False)
    assert colour.x.shape[2] == 3
    with pytest.raises(DataError, match="holds videos, not images; choose clips as a video folder"):
        load_file(clip_folder, "images")
    with pytest.raises(DataError, match="regression needs"):
        load_file(clip_folder, task="regression")


def test_a_class_folder_that_gives_no_clip_is_named(clip_folder):
    (clip_folder / "zzz-empty").mkdir()
    with pytest.raises(DataError, match="class folder 'zzz-empty' gives no clip of 6 frames: it holds no video"):
        video.video_folder(str(clip_folder), frames=6, size=8)
    (clip_folder / "zzz-empty" / "bad.avi").write_bytes(b"nothing")
    with pytest.raises(DataError, match="'zzz-empty' gives no clip of 6 frames: zzz-empty/bad.avi"):
        video.video_folder(str(clip_folder), frames=6, size=8)
