"""Augmentation: each change against its closed form, reproducible from the seed, the training
split only."""
import numpy as np
import pytest

from gatescope.compute.augment import augment_batch, interpolation_matrix, resample_time, transform_images
from gatescope.compute.datasets import Dataset
from gatescope.compute.graph import GraphSpec, Model
from gatescope.compute.train import Trainer, TrainSettings


def ones(n):
    return np.ones(n)


def test_a_whole_pixel_shift_moves_the_picture_and_fills_with_the_border_mean():
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 6, 7))
    out = transform_images(x, ones(2), np.array([0.0, 2.0]), np.array([1.0, -3.0]), np.zeros(2, bool))
    np.testing.assert_allclose(out[0, 0, :, 1:], x[0, 0, :, :-1])          # right by 1
    np.testing.assert_allclose(out[1, 0, 2:, :4], x[1, 0, :-2, 3:])        # down 2, left 3
    frame = x[1, 0]
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).mean()
    np.testing.assert_allclose(out[1, 0, :2, :], border)
    np.testing.assert_allclose(out[1, 0, :, 4:], border)


def test_identity_mirror_and_zoom():
    x = np.random.default_rng(1).random((1, 2, 5, 5))
    np.testing.assert_allclose(transform_images(x, ones(1), np.zeros(1), np.zeros(1), np.zeros(1, bool)), x)
    np.testing.assert_allclose(transform_images(x, ones(1), np.zeros(1), np.zeros(1), np.ones(1, bool)),
                               x[..., ::-1])
    # Zoom 0.5 about the centre (2, 2): output pixel 0 reads source -2 (outside), pixel 1 reads 0,
    # pixel 2 reads 2, pixel 3 reads 4.
    out = transform_images(x, np.full(1, 0.5), np.zeros(1), np.zeros(1), np.zeros(1, bool))
    np.testing.assert_allclose(out[0, :, 1, 1], x[0, :, 0, 0])
    np.testing.assert_allclose(out[0, :, 3, 3], x[0, :, 4, 4])
    np.testing.assert_allclose(out[0, :, 2, 3], x[0, :, 2, 4])


def test_interpolation_matrix_is_linear_interpolation():
    matrix, inside = interpolation_matrix(np.array([[0.25, 2.0, 3.4, -0.4, -0.6]]), 4)
    values = np.array([1.0, 3.0, 7.0, 10.0])
    np.testing.assert_allclose(matrix[0] @ values, [1.5, 7.0, 10.0, 1.0, 0.0])
    np.testing.assert_array_equal(inside[0], [1, 1, 1, 1, 0])


def test_clips_slowed_down_are_resampled_in_time():
    clip = np.arange(8, dtype=np.float64)[None, :, None, None, None] * np.ones((1, 8, 1, 2, 2))
    out = resample_time(clip, np.array([0.5]), np.array([1.0]))
    np.testing.assert_allclose(out[0, :, 0, 0, 0], 1.0 + 0.5 * np.arange(8))


def test_a_clip_gets_one_transform_on_every_frame():
    clip = np.zeros((1, 3, 1, 8, 8), np.float32)
    clip[0, :, 0, 3:5, 3:5] = 1.0
    out = augment_batch(clip, TrainSettings(augment_shift=0.25), np.random.default_rng(3))
    assert np.allclose(out[0, 0], out[0, 1]) and np.allclose(out[0, 1], out[0, 2])
    assert not np.allclose(out, clip)


def test_draws_are_reproducible_and_the_input_is_untouched():
    x = np.random.default_rng(2).random((4, 1, 8, 8)).astype(np.float32)
    kept = x.copy()
    every = TrainSettings(augment_shift=0.1, augment_scale=0.3, augment_flip=True, augment_brightness=0.2,
                          augment_noise=0.05)
    a = augment_batch(x, every, np.random.default_rng([5, 0, 0]))
    b = augment_batch(x, every, np.random.default_rng([5, 0, 0]))
    c = augment_batch(x, every, np.random.default_rng([6, 0, 0]))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(x, kept)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0


def test_only_training_batches_are_augmented(monkeypatch):
    from gatescope.compute import train
    rng = np.random.default_rng(0)
    data = Dataset("pictures", rng.random((40, 1, 4, 4)).astype(np.float32), np.arange(40) % 2)
    seen = []

    def recording(x, augmentation, generator):
        seen.append(x.copy())
        return x
    monkeypatch.setattr(train, "augment_batch", recording)
    graph = GraphSpec.chain(("Input", {"shape": [1, 4, 4]}), ("Flatten", {}), ("Dense", {"units": 2}),
                            ("Classify", {}))
    settings = TrainSettings(epochs=2, batch_size=8, augment_noise=0.1, val_fraction=0.2, test_fraction=0.2)
    trainer = Trainer(Model(graph), data, settings)
    list(trainer.run())
    train_rows = {data.x[i].tobytes() for i in trainer.split.train}
    assert len(seen) == 2 * (len(trainer.split.train) // 8)
    assert all(row.tobytes() in train_rows for batch in seen for row in batch)


def test_vectors_are_not_augmented_and_the_run_says_so():
    data = Dataset("vectors", np.ones((20, 3), np.float32), np.arange(20) % 2)
    graph = GraphSpec.chain(("Input", {"shape": [3]}), ("Dense", {"units": 2}), ("Classify", {}))
    trainer = Trainer(Model(graph), data, TrainSettings(epochs=1, augment_shift=0.1))
    start = next(trainer.run())
    assert not trainer.augmented and "so it is off" in start.data["note"]


def test_settings_out_of_range_are_named():
    with pytest.raises(ValueError, match="augment_scale must be between 0 and 0.9"):
        TrainSettings.from_dict({"augment_scale": 1.5})
    assert TrainSettings.from_dict({"augment_flip": True}).augment_flip
