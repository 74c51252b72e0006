"""The bundled example ``moving-shapes-cnn-lstm``: per-frame CNN features into an LSTM (seed 001).

A bright shape moves left, right, up or down across 8 frames of 16x16 grey noise. One frame
cannot tell the direction (the generator makes every class look alike frame by frame), so a
model must compare frames in order: a small CNN turns each frame into features (the same
weights on every frame, DESIGN section 2) and an LSTM reads those features through time.

``build()`` returns the example project (untrained); ``build_baseline()`` the same CNN
with no memory: it scores each frame on its own and averages the scores over the frames,
which stays near chance. Run this file to train both and compare them on newly generated
clips; ``--fps SECONDS`` instead measures the live video pipeline end to end (capture,
preprocess, model, draw) on a moving-shapes video file, offscreen::

    .venv/bin/python tools/examples/moving_shapes.py [--epochs N] [--save FOLDER] [--json]
    .venv/bin/python tools/examples/moving_shapes.py --robustness [--json]
    .venv/bin/python tools/examples/moving_shapes.py --fps 20 [--speed 2] [--project P.gscope]

``--robustness`` trains the example as shipped (augmented) and the same without augmentation,
and prints each one's accuracy on clips of another renderer (``render_other``) over a grid of
shape sizes (radius 4-20% of the frame) and speeds (2-10% of the frame per frame).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gatescope.compute.graph import GraphSpec  # noqa: E402
from gatescope.compute.train import TrainSettings  # noqa: E402
from gatescope.studio.project import Project  # noqa: E402

FRAMES, SIZE = 8, 16
CLASS_NAMES = "left,right,up,down"
TRAIN_CLIPS, TRAIN_SEED = 3000, 0
FRESH_CLIPS, FRESH_SEED = 1000, 1234  # newly generated clips for the final check

DATASET = {"kind": "builtin", "name": "moving-shapes",
           "params": {"n": TRAIN_CLIPS, "frames": FRAMES, "size": SIZE, "seed": TRAIN_SEED, "noise": 0.1}}

# Augmented (compute.augment): zoom 0.4-1.6x (a smaller shape also moves fewer pixels), clips
# slowed to 0.4-1x from a random start, shifts, brightness and noise; no mirror, which would
# turn "left" into "right". Without it the model knew shapes of 12-20% of the frame moving
# 5-10% of it per frame (its own generator's range) and fell towards chance on smaller, slower
# ones drawn by another renderer (see robustness(), and --robustness to measure both).
AUGMENTATION = {"augment_scale": 0.6, "augment_shift": 0.1, "augment_speed": 0.6, "augment_brightness": 0.2,
                "augment_noise": 0.05}
TRAINING = TrainSettings(epochs=12, batch_size=32, optimizer="adam", learning_rate=3e-3, schedule="cosine",
                         clip_norm=5.0, val_fraction=0.1, test_fraction=0.1, seed=0, **AUGMENTATION)


def _frame_features() -> list[tuple[str, dict]]:
    """Input clip (T, 1, 16, 16) -> per-frame features (T, 256): two conv / ReLU / max-pool stages."""
    return [
        ("Input", {"shape": [FRAMES, 1, SIZE, SIZE], "normalize": "unit", "clip_stride": 1}),
        ("Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
        ("ReLU", {}),
        ("MaxPool2D", {"size": 2}),
        ("Conv2D", {"filters": 16, "kernel_size": 3, "padding": "same"}),
        ("ReLU", {}),
        ("MaxPool2D", {"size": 2}),
        ("Flatten", {}),
    ]


def _positions(spec: GraphSpec) -> dict[str, tuple[float, float]]:
    """Canvas places: the chain wraps onto rows of five, as Auto Layout does."""
    from gatescope.studio.layout import layered_positions
    return layered_positions(spec, {})


def build() -> Project:
    """The example project ``moving-shapes-cnn-lstm``: CNN per frame -> LSTM -> Dense(4) -> Classify."""
    spec = GraphSpec.chain(*_frame_features(),
                           ("LSTM", {"hidden_size": 32, "return_sequences": False}),
                           ("Dense", {"units": 4}),
                           ("Classify", {"class_names": CLASS_NAMES}))
    return Project(
        name="moving-shapes-cnn-lstm", graph=spec, positions=_positions(spec),
        training=TrainSettings.from_dict(TRAINING.to_dict()), dataset=json.loads(json.dumps(DATASET)),
        description="Which way does the shape move? A small CNN reads every frame (the same filters on each), "
                    "and an LSTM reads the frame features in order. One frame alone cannot tell: compare with "
                    "the per-frame baseline, which averages frame scores and stays near chance (25%). "
                    "Open the Video panel to classify clips live.")


def build_baseline() -> Project:
    """The same CNN with no memory: Dense(4) scores each frame, GlobalAvgPool averages the scores over time."""
    spec = GraphSpec.chain(*_frame_features(),
                           ("Dense", {"units": 4}),
                           ("GlobalAvgPool", {}),
                           ("Classify", {"class_names": CLASS_NAMES}))
    return Project(
        name="moving-shapes-per-frame-baseline", graph=spec, positions=_positions(spec),
        training=TrainSettings.from_dict(TRAINING.to_dict()), dataset=json.loads(json.dumps(DATASET)),
        description="Per-frame CNN with the frame scores averaged: it cannot see order, so it cannot tell "
                    "left from right.")


EXAMPLES = {"moving-shapes-cnn-lstm": build}


def train_and_check(project: Project, epochs: int | None = None, log=print) -> dict:
    """Train ``project`` in place and score it on newly generated clips; returns the figures."""
    from gatescope.compute.datasets import load
    from gatescope.compute.train import Trainer, evaluate
    from gatescope.studio.session import load_dataset

    dataset = load_dataset(project)
    model = project.build_model()
    trainer = Trainer(model, dataset, project.training, project.train_state())
    started = time.perf_counter()
    for event in trainer.run(epochs):
        if event.kind == "epoch":
            d = event.data
            log(f"  epoch {d['epoch']:>2}  loss {d['train_loss']:.3f}  acc {d['train_accuracy']:.3f}  "
                f"val_acc {d['val_accuracy']:.3f}  ({d['seconds']:.1f} s)")
        elif event.kind in ("failed", "stopped"):
            raise RuntimeError(event.data["message"])
    seconds = time.perf_counter() - started
    project.take_train_state(trainer.state, model.state_dict())
    fresh = load({"kind": "builtin", "name": "moving-shapes",
                  "params": dict(DATASET["params"], n=FRESH_CLIPS, seed=FRESH_SEED)})
    metrics = evaluate(model, fresh.x, fresh.y)
    return {"project": project.name, "train_seconds": round(seconds, 1), "epochs": trainer.state.epochs_done,
            "fresh_accuracy": metrics.accuracy, "fresh_clips": FRESH_CLIPS}


# ----------------------------------------------------------------------------- other renderers
OTHER_SHAPES = ("disc", "ring", "diamond", "bar", "plus")


def render_other(rng, direction: int, frames: int, size: int, shape_fraction: float, speed_fraction: float):
    """One clip (T, 1, S, S) in 0..1 drawn unlike the training generator: OpenCV shapes (a disc, a
    ring, a diamond, a bar, a plus) drawn anti-aliased at 8x and shrunk, on a lit gradient with
    speckle, a shape of ``shape_fraction`` of the frame across (its radius) moving
    ``speed_fraction`` of the frame per frame in ``direction`` (0 left, 1 right, 2 up, 3 down)."""
    import cv2
    import numpy as np

    scale = 8
    big = size * scale
    radius = shape_fraction * size
    speed = speed_fraction * size
    middle = (frames - 1) / 2.0
    travel = speed * middle
    low, high = radius + 0.5, size - 1.5 - radius
    centre = rng.uniform(low + travel, high - travel) if high - travel > low + travel else size / 2.0
    other = rng.uniform(low, high) if high > low else size / 2.0
    kind = OTHER_SHAPES[int(rng.integers(len(OTHER_SHAPES)))]
    gradient = np.linspace(rng.uniform(0.0, 0.2), rng.uniform(0.05, 0.3), size)
    background = gradient[None, :] if rng.random() < 0.5 else gradient[:, None]
    brightness = rng.uniform(0.6, 1.0)
    clip = np.empty((frames, 1, size, size), np.float32)
    for t in range(frames):
        step = (t - middle) * speed * (1 if direction in (1, 3) else -1)
        x, y = (centre + step, other) if direction in (0, 1) else (other, centre + step)
        canvas = np.zeros((big, big), np.uint8)
        cx, cy, r = int(round((x + 0.5) * scale)), int(round((y + 0.5) * scale)), max(1, int(round(radius * scale)))
        if kind == "disc":
            cv2.circle(canvas, (cx, cy), r, 255, -1, cv2.LINE_AA)
        elif kind == "ring":
            cv2.circle(canvas, (cx, cy), r, 255, max(2, r // 3), cv2.LINE_AA)
        elif kind == "diamond":
            points = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
            cv2.fillPoly(canvas, [points], 255, cv2.LINE_AA)
        elif kind == "bar":
            cv2.rectangle(canvas, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 255, -1, cv2.LINE_AA)
        else:
            cv2.line(canvas, (cx - r, cy), (cx + r, cy), 255, max(2, r // 2), cv2.LINE_AA)
            cv2.line(canvas, (cx, cy - r), (cx, cy + r), 255, max(2, r // 2), cv2.LINE_AA)
        mask = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        frame = background + mask * (brightness - background) + rng.normal(0.0, 0.04, (size, size))
        clip[t, 0] = np.clip(frame, 0.0, 1.0)
    return clip


def other_clips(n: int, shape_fraction: float, speed_fraction: float, seed: int = 7):
    """``n`` clips of the other renderer at one size and speed, balanced over the four directions."""
    import numpy as np

    rng = np.random.default_rng([seed, int(shape_fraction * 1000), int(speed_fraction * 1000)])
    labels = np.arange(n) % 4
    x = np.stack([render_other(rng, int(d), FRAMES, SIZE, shape_fraction, speed_fraction) for d in labels])
    return x, labels.astype(np.int64)


SHAPE_FRACTIONS = (0.04, 0.06, 0.09, 0.12, 0.16, 0.20)
SPEED_FRACTIONS = (0.02, 0.03, 0.05, 0.075, 0.10)


def robustness(model, clips: int = 200) -> dict:
    """Accuracy on ``clips`` other-renderer clips for each shape size x speed of the grid."""
    from gatescope.compute.train import evaluate
    grid = {}
    for shape in SHAPE_FRACTIONS:
        for speed in SPEED_FRACTIONS:
            x, y = other_clips(clips, shape, speed)
            grid[f"{shape:g}x{speed:g}"] = round(float(evaluate(model, x, y).accuracy), 3)
    return grid


def print_grid(name: str, grid: dict) -> None:
    print(f"{name}: accuracy on other-renderer clips; rows shape radius / frame, columns speed / frame")
    print("        " + "".join(f"{speed:>8g}" for speed in SPEED_FRACTIONS))
    for shape in SHAPE_FRACTIONS:
        print(f"{shape:>8g}" + "".join(f"{grid[f'{shape:g}x{speed:g}']:>8.2f}" for speed in SPEED_FRACTIONS))


def write_demo_video(path: Path, clips: int = 40, width: int = 640, height: int = 480, fps: float = 30.0) -> Path:
    """A camera-sized MJPG video of ``clips`` moving-shapes clips one after another (for measuring)."""
    import cv2
    import numpy as np

    from gatescope.compute.datasets.video import moving_shapes

    data = moving_shapes(n=clips, frames=FRAMES, size=SIZE, seed=99)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for clip in data.x:
        for frame in clip[:, 0]:
            big = cv2.resize((frame * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
            writer.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def measure_fps(project: Project, seconds: float, speed: float, video: Path, screenshot: str | None = None) -> dict:
    """Play ``video`` through the real pipeline and panel offscreen for ``seconds``; the rates seen.

    ``speed`` multiplies the file's 30 frames/s (0 or less: as fast as frames can be read).
    ``gui_stall_ms``: the longest the GUI thread's event loop went without running a 5 ms timer.
    """
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from gatescope.studio.video import VideoController
    from gatescope.widgets.video_panel import VideoPanel

    app = QApplication.instance() or QApplication([])
    panel = VideoPanel()
    panel.resize(980, 600)
    panel.show()
    controller = VideoController(panel, camera_prober=lambda: [])
    controller.set_project(project)
    controller.pipeline.set_speed(speed if speed > 0 else 1000.0)
    controller.open_path(str(video))
    clock, ticks, stall = QElapsedTimer(), QTimer(), {"last": 0, "worst": 0}
    clock.start()

    def tick():
        now = clock.elapsed()
        if now > 1000:  # after a second of warm-up
            stall["worst"] = max(stall["worst"], now - stall["last"])
        stall["last"] = now

    ticks.timeout.connect(tick)
    ticks.start(5)
    start_stats = controller.pipeline.stats()
    start_drawn, started = controller.draw_rate.count, time.perf_counter()
    while time.perf_counter() - started < seconds:
        app.processEvents()
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    stats = controller.pipeline.stats()
    drawn = controller.draw_rate.count - start_drawn
    if screenshot:
        panel.grab().save(screenshot)
    controller.shutdown()
    return {"seconds": round(elapsed, 1), "speed": speed,
            "capture_fps": round((stats["frames"] - start_stats["frames"]) / elapsed, 1),
            "inference_fps": round((stats["inferences"] - start_stats["inferences"]) / elapsed, 1),
            "drawn_fps": round(drawn / elapsed, 1),
            "windows_skipped": stats["windows_dropped"] - start_stats["windows_dropped"],
            "gui_stall_ms": stall["worst"],
            "last_prediction": getattr(controller.pipeline.last_prediction, "class_name", None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, help="epochs (default: the example's setting)")
    parser.add_argument("--save", metavar="FOLDER", help="save both trained projects here")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--fps", type=float, metavar="SECONDS", help="measure the live pipeline for SECONDS")
    parser.add_argument("--speed", type=float, default=2.0,
                        help="with --fps: playback speed over the file's 30 frames/s (0: as fast as possible)")
    parser.add_argument("--project", help="with --fps: a trained project (default: train the example 2 epochs)")
    parser.add_argument("--screenshot", metavar="PNG", help="with --fps: save the panel as it was at the end")
    parser.add_argument("--robustness", action="store_true",
                        help="accuracy on another renderer's clips over sizes and speeds, with and without augmentation")
    args = parser.parse_args(argv)
    if args.robustness:
        grids = {}
        for name, project in (("augmented", build()), ("not augmented", build())):
            if name == "not augmented":
                plain = {k: 0.0 for k in AUGMENTATION}
                project.training = TrainSettings.from_dict(dict(project.training.to_dict(), **plain))
            result = train_and_check(project, args.epochs, log=lambda line: print(line, file=sys.stderr))
            grids[name] = robustness(project.build_model())
            print(f"{name}: {result['fresh_accuracy']:.3f} on {FRESH_CLIPS} new clips of its own generator "
                  f"({result['train_seconds']} s training)")
            print_grid(name, grids[name])
        if args.json:
            print(json.dumps(grids))
        return 0
    if args.fps:
        import tempfile

        from gatescope.studio.project import load_project
        if args.project:
            project = load_project(args.project)
        else:
            project = build()
            train_and_check(project, 2, log=lambda line: print(line, file=sys.stderr))
        with tempfile.TemporaryDirectory() as folder:
            video = write_demo_video(Path(folder) / "moving-shapes.avi")
            result = measure_fps(project, args.fps, args.speed, video, args.screenshot)
        print(json.dumps(result) if args.json else
              "  ".join(f"{k} {v}" for k, v in result.items()))
        return 0
    results = []
    for project in (build(), build_baseline()):
        print(f"training {project.name}", file=sys.stderr)
        result = train_and_check(project, args.epochs, log=lambda line: print(line, file=sys.stderr))
        results.append(result)
        print(f"{project.name}: {result['fresh_accuracy']:.3f} on {FRESH_CLIPS} new clips "
              f"({result['train_seconds']} s training)")
        if args.save:
            from gatescope.studio.project import save_project
            save_project(project, Path(args.save) / f"{project.name}.gscope")
    if args.json:
        print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
