"""``gatescope predict PROJECT --video FILE [--json]``: classify a video window by window, with no display.

The video is decoded one frame at a time and cut into windows of T frames every
``clip_stride`` frames, each frame prepared as the model's Input block says (the same
``prepare_frame`` live video and the video-folder dataset use). One line per window goes to
standard output; then a summary: the majority class and its mean probability over the windows
that chose it. With ``as_json`` the last line is one JSON object::

    {"video": ..., "frames": F, "windows": K, "class": "right", "mean_probability": 0.97,
     "votes": {"left": 0, "right": K, ...}, "predictions": [{"first_frame", "last_frame",
     "class", "probability"}, ...]}

Failures raise ``studio.cli.CommandError`` with one clear line (the CLI prints it on stderr).
Qt is never imported.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from gatescope.compute.datasets import DataError
from gatescope.compute.datasets.video import clip_geometry, normalize_pixels, read_video_frames, windows_of
from gatescope.compute.layers.heads import class_names


def predict_video(project, model, path: str, as_json: bool = False, batch_size: int = 32) -> int:
    """Classify ``path`` with ``model`` (built from ``project``); prints per-window lines and a
    summary; returns the exit code 0. Raises CommandError for any failure."""
    from gatescope.studio.cli import CommandError

    label = Path(path).name
    if model.task != "classification":
        raise CommandError(f"{project.name} predicts numbers (a Regress output); --video classifies clips, "
                           "so the model must end in Classify")
    try:
        frames, channels, height, width = clip_geometry(model.input_shape)
    except DataError as exc:
        raise CommandError(f"{project.name}: {exc}; use --input for other data") from None
    settings = model.layers[model.input_id].settings
    normalize, stride = settings.get("normalize", "none"), int(settings.get("clip_stride", 1))
    n_classes = int(model.analysis.info[model.head_id].out_shape[-1])
    names = class_names(model.head.settings.get("class_names", ""), n_classes)

    predictions: list[dict] = []
    out = sys.stdout

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        clips = normalize_pixels(np.stack([w for _, w in batch]), normalize)
        probs = np.asarray(model.predict(clips), dtype=np.float64)
        if probs.ndim == 3:  # per-step scores: the last step speaks for the clip
            probs = probs[:, -1]
        for (first, _), p in zip(batch, probs):
            best = int(np.argmax(p))
            record = {"first_frame": first, "last_frame": first + frames - 1, "class": names[best],
                      "probability": round(float(p[best]), 6)}
            predictions.append(record)
            print(f"frames {record['first_frame']:>6}-{record['last_frame']:<6} {record['class']:<12} "
                  f"{record['probability']:.3f}", file=out, flush=False)

    counted = {"frames": 0}

    def counting(iterator):
        for frame in iterator:
            counted["frames"] += 1
            yield frame

    batch: list[tuple[int, np.ndarray]] = []
    try:
        source = counting(read_video_frames(path, channels, height, width))
        for first, window in windows_of(source, frames, stride):
            batch.append((first, window))
            if len(batch) == batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
    except DataError as exc:
        raise CommandError(str(exc)) from None
    except MemoryError:
        raise CommandError(f"{label}: out of memory while classifying; try a smaller model") from None

    if counted["frames"] == 0:
        raise CommandError(f"{label} has no frames that can be decoded (empty or damaged)")
    if not predictions:
        raise CommandError(f"{label} has {counted['frames']} frame{'s' if counted['frames'] != 1 else ''}, fewer "
                           f"than the {frames} the model needs for one clip")
    votes = {name: 0 for name in names}
    for p in predictions:
        votes[p["class"]] += 1
    majority = max(names, key=lambda n: (votes[n], -names.index(n)))
    mean_probability = float(np.mean([p["probability"] for p in predictions if p["class"] == majority]))
    summary = {"video": str(path), "frames": counted["frames"], "windows": len(predictions), "class": majority,
               "mean_probability": round(mean_probability, 6), "votes": votes, "predictions": predictions}
    if as_json:
        print(json.dumps(summary), file=out)
    else:
        print(f"{label}: {majority} ({votes[majority]} of {len(predictions)} windows, mean probability "
              f"{mean_probability:.3f})", file=out)
    out.flush()
    return 0
