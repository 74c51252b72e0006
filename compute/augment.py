"""Augmentation: random changes to training images and clips, so a model learns what stays the same.

Applied by the trainer to each training batch, never to the validation or test split; every
draw comes from a generator seeded by ``(seed, epoch, step)``, so a run is reproducible from
its seed. The settings (``compute.train.TrainSettings``, all off by default):

  ``augment_shift``       up to this share of the height and width, a shift in each direction
  ``augment_scale``       a zoom factor drawn from ``1 - s`` to ``1 + s`` (below 1 the picture
                          shrinks, and a moving thing moves fewer pixels per frame)
  ``augment_flip``        a left-right mirror for half the samples (only where a mirrored
                          sample keeps its label: not for "left" against "right")
  ``augment_brightness``  brightness and contrast: ``x (1 + a) + b``, ``a`` and ``b`` up to
                          this share of the sample's range
  ``augment_noise``       Gaussian noise of this share of the sample's range
  ``augment_speed``       clips: a playback speed from ``1 - s`` to 1 (frames resampled by
                          linear interpolation) and a random start within the room that leaves

Images ``(N, C, H, W)`` and clips ``(N, T, C, H, W)``: one transform per sample, the same on
every frame and channel of a clip. The geometry is separable (scale, shift and mirror act on
rows and columns independently), so each sample is resampled with two small interpolation
matrices, ``R_y x R_x^T``, in one batched product: a 32-clip batch of 8 x 16 x 16 frames
takes about 1 ms. Values that come from outside the picture take the mean of the frame's
border, not a smeared copy of its edge.
"""
from __future__ import annotations

import numpy as np

SETTINGS = ("augment_shift", "augment_scale", "augment_flip", "augment_brightness", "augment_noise",
            "augment_speed")
# The largest value each setting may take (what keeps the picture recognisable).
LIMITS = {"augment_shift": 0.5, "augment_scale": 0.9, "augment_brightness": 1.0, "augment_noise": 1.0,
          "augment_speed": 0.9}


def active(settings) -> bool:
    """True when any augmentation setting of ``settings`` (a ``TrainSettings``) is on."""
    return any(getattr(settings, name) for name in SETTINGS)


def check_settings(settings) -> None:
    """ValueError naming the first augmentation setting out of its range."""
    for name, high in LIMITS.items():
        value = getattr(settings, name)
        if not 0.0 <= value <= high:
            raise ValueError(f"{name} must be between 0 and {high:g}, not {value:g}")


def applies_to(sample_shape: tuple[int, ...]) -> bool:
    """True for images (C, H, W) and clips (T, C, H, W): the samples augmentation changes."""
    return len(sample_shape) in (3, 4)


def interpolation_matrix(source: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation as a matrix: ``source`` (N, L_out) positions in an axis of ``length``
    -> ``(R, inside)``: R (N, L_out, length) with ``out = R @ values``, and ``inside`` (N, L_out)
    1 where the position lies in the axis (within half a pixel of it), else 0 (the row of R is 0)."""
    inside = (source >= -0.5) & (source <= length - 0.5)
    position = np.clip(source, 0.0, length - 1.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, length - 1)
    weight = position - low
    n, out = source.shape
    matrix = np.zeros((n, out, length))
    rows, cols = np.indices((n, out))
    np.add.at(matrix, (rows, cols, low), (1.0 - weight) * inside)
    np.add.at(matrix, (rows, cols, high), weight * inside)
    return matrix, inside.astype(np.float64)


def transform_images(x: np.ndarray, scale: np.ndarray, shift_y: np.ndarray, shift_x: np.ndarray,
                     flip: np.ndarray) -> np.ndarray:
    """Each sample of ``x`` (N, ..., H, W) zoomed by ``scale`` about its centre, moved by
    ``shift_y``, ``shift_x`` pixels (positive: down, right) and mirrored left-right where
    ``flip``; all (N,). Positions outside the picture take the mean of the frame's border."""
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    ys = np.arange(height, dtype=np.float64)[None, :]
    xs = np.arange(width, dtype=np.float64)[None, :]
    xs = np.where(flip[:, None], width - 1 - xs, xs)
    source_y = (ys - cy - shift_y[:, None]) / scale[:, None] + cy
    source_x = (xs - cx + np.where(flip, 1.0, -1.0)[:, None] * shift_x[:, None]) / scale[:, None] + cx
    ry, inside_y = interpolation_matrix(source_y, height)
    rx, inside_x = interpolation_matrix(source_x, width)
    middle = (1,) * (x.ndim - 3)
    ry = ry.reshape((n,) + middle + ry.shape[1:])
    rx = rx.reshape((n,) + middle + rx.shape[1:])
    out = ry @ x.astype(np.float64) @ np.swapaxes(rx, -1, -2)
    border = np.concatenate([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], axis=-1).mean(axis=-1)
    outside = 1.0 - inside_y[:, :, None] * inside_x[:, None, :]         # (N, H, W)
    out += border[..., None, None] * outside.reshape((n,) + middle + outside.shape[1:])
    return out.astype(x.dtype)


def resample_time(x: np.ndarray, speed: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Clips ``x`` (N, T, ...) played at ``speed`` (N,) from frame ``start`` (N,): output frame t
    is source position ``start + t * speed``, linearly interpolated between frames."""
    frames = x.shape[1]
    source = start[:, None] + np.arange(frames)[None, :] * speed[:, None]
    matrix, _ = interpolation_matrix(source, frames)
    flat = x.reshape(x.shape[0], frames, -1).astype(np.float64)
    return (matrix @ flat).reshape(x.shape).astype(x.dtype)


def augment_batch(x: np.ndarray, settings, rng: np.random.Generator) -> np.ndarray:
    """A changed copy of the images or clips ``x`` by the augmentation settings of ``settings``
    (a ``TrainSettings``; see the module docstring); ``x`` itself is left as it was. Every draw
    comes from ``rng``, in a fixed order."""
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    shift, scale_range, speed_range = settings.augment_shift, settings.augment_scale, settings.augment_speed
    brightness, noise = settings.augment_brightness, settings.augment_noise
    out = x
    if speed_range and x.ndim == 5:
        speed = rng.uniform(1.0 - speed_range, 1.0, n)
        start = rng.uniform(0.0, 1.0, n) * (x.shape[1] - 1) * (1.0 - speed)
        out = resample_time(out, speed, start)
    if shift or scale_range or settings.augment_flip:
        scale = rng.uniform(1.0 - scale_range, 1.0 + scale_range, n)
        shift_y = rng.uniform(-shift, shift, n) * height
        shift_x = rng.uniform(-shift, shift, n) * width
        flip = rng.random(n) < 0.5 if settings.augment_flip else np.zeros(n, bool)
        out = transform_images(out, scale, shift_y, shift_x, flip)
    if brightness or noise:
        axes = tuple(range(1, x.ndim))
        low, high = x.min(), x.max()
        spread = np.maximum(x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True), 1e-6)
        gain = 1.0 + rng.uniform(-brightness, brightness, (n,) + (1,) * (x.ndim - 1))
        offset = rng.uniform(-brightness, brightness, (n,) + (1,) * (x.ndim - 1)) * spread
        out = out * gain + offset
        if noise:
            out = out + rng.standard_normal(x.shape) * (noise * spread)
        out = np.clip(out, low, high)  # values stay in the data's own range (0..1 pixels stay pixels)
    return np.ascontiguousarray(out, dtype=x.dtype)
