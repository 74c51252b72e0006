"""Measure every template of ``gatescope new`` on data written here, through the command line a person uses.

    .venv/bin/python tools/measure_templates.py [--only NAME ...] [--json]

Each case writes a dataset to a temporary folder in one of the four forms GateScope reads, runs
``gatescope new OUT --data PATH [--template T] [loader options]`` and then ``gatescope train OUT
--json`` with no other edit, and reports the held-out test accuracy and the training time:

  digits-csv-*     the bundled UCI handwritten digits (1,797 images of 8x8, CC BY 4.0; see
                   assets/data/README.md) as a table of 64 pixel columns with the label first
                   (--label-column 0): mlp, cnn1d, gru, lstm. Beside them, what a careful
                   practitioner's classic methods reach on the same test split, computed here
                   in closed form: k nearest neighbours (k = 1, 3) on the raw pixels, and a
                   nearest-class-mean classifier on standardised features.
  gauss-mlp        two Gaussian classes in 20 features whose scales differ by 10^4 (so an
                   unstandardised model struggles): the best any classifier can do is known,
                   Phi(Delta / 2) with Delta the Mahalanobis distance between the means
                   (the Bayes accuracy), and is printed beside the template's.
  digits-rows-*    the digits as sequences of 8 rows of 8 pixels (.npz): gru, lstm.
  digits-images    the digits as an image folder, half the images stored at 16x16 (a nearest
                   upscale), read with --resize 8x8: cnn.
  shapes-videos    moving-shapes clips (the generator of compute.datasets.video, 600 clips)
                   written as MJPG videos in one folder per direction, read with --frames 8
                   --size 16x16: cnn-lstm.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatescope.compute.datasets import load, split_indices  # noqa: E402
from gatescope.studio.cli import main as gatescope  # noqa: E402


def run(args: list[str]) -> dict:
    """``gatescope ARGS --json``'s JSON object (its other output kept out of the way)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = gatescope(args + ["--json"])
    if code != 0:
        raise RuntimeError(f"gatescope {' '.join(args)} exited {code}")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def digits(layout: str):
    data = load({"kind": "builtin", "name": "digits", "params": {"layout": layout}})
    return data.x, data.y


def write_digits_csv(folder: Path) -> Path:
    x, y = digits("vector")
    path = folder / "digits.csv"
    rows = np.concatenate([y[:, None], np.round(x * 16)], axis=1)
    np.savetxt(path, rows, fmt="%d", delimiter=",", header="digit," + ",".join(f"p{i}" for i in range(64)),
               comments="")
    return path


def write_digits_rows(folder: Path) -> Path:
    x, y = digits("rows")
    path = folder / "digit-rows.npz"
    np.savez(path, x=x, y=y)
    return path


def write_digits_images(folder: Path) -> Path:
    import cv2
    x, y = digits("image")
    root = folder / "digit-images"
    for i, (image, label) in enumerate(zip(x, y)):
        pixels = np.round(image[0] * 255).astype(np.uint8)
        if i % 2:
            pixels = cv2.resize(pixels, (16, 16), interpolation=cv2.INTER_NEAREST)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / str(label) / f"{i}.png"), pixels)
    return root


def write_shape_videos(folder: Path, clips: int = 600) -> Path:
    import cv2

    from gatescope.compute.datasets.video import DIRECTIONS, moving_shapes
    data = moving_shapes(n=clips, frames=8, size=16, seed=11)
    root = folder / "shape-videos"
    for i, (clip, label) in enumerate(zip(data.x, data.y)):
        (root / DIRECTIONS[label]).mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(root / DIRECTIONS[label] / f"{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 20.0,
                                 (32, 32))
        for frame in clip[:, 0]:
            big = cv2.resize((frame * 255).astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST)
            writer.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
        writer.release()
    return root


def gaussian_classes(folder: Path, n: int = 2000, features: int = 20, seed: int = 5) -> tuple[Path, float]:
    """Two classes N(+m, S) and N(-m, S), S diagonal with scales 10^-2 .. 10^2; returns the .npz and
    the Bayes accuracy Phi(Delta / 2), Delta^2 = (2m)^T S^-1 (2m)."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-2, 2, features)
    direction = rng.standard_normal(features)
    mean = 0.25 * direction * scales          # the separation in each feature's own units
    y = np.arange(n) % 2
    x = rng.standard_normal((n, features)) * scales + np.where(y[:, None] == 1, mean, -mean)
    delta = math.sqrt(float(np.sum((2 * mean / scales) ** 2)))
    bayes = 0.5 * (1 + math.erf(delta / 2 / math.sqrt(2)))
    path = folder / "gauss.npz"
    np.savez(path, x=x, y=y)
    return path, bayes


def classic_references(x: np.ndarray, y: np.ndarray) -> dict:
    """k-NN (k = 1, 3; raw pixels) and nearest class mean (standardised) on the templates' split:
    trained on the training and validation parts, scored on the test part."""
    split = split_indices(len(x), 0.15, 0.15, 0)
    fit = np.concatenate([split.train, split.val])
    xf, yf, xt, yt = x[fit], y[fit], x[split.test], y[split.test]
    d = ((xt[:, None, :] - xf[None, :, :]) ** 2).sum(axis=-1)
    order = np.argsort(d, axis=1)
    out = {"1-NN": float((yf[order[:, 0]] == yt).mean())}
    votes = yf[order[:, :3]]
    out["3-NN"] = float((np.array([np.bincount(v, minlength=10).argmax() for v in votes]) == yt).mean())
    mu, sd = xf.mean(0), xf.std(0) + 1e-6
    zf, zt = (xf - mu) / sd, (xt - mu) / sd
    means = np.stack([zf[yf == k].mean(0) for k in range(10)])
    out["nearest mean (standardised)"] = float((((zt[:, None] - means[None]) ** 2).sum(-1).argmin(1) == yt).mean())
    return out


def cases(folder: Path) -> dict:
    """name -> (data path, extra ``gatescope new`` options)."""
    csv = write_digits_csv(folder)
    rows = write_digits_rows(folder)
    images = write_digits_images(folder)
    videos = write_shape_videos(folder)
    gauss, bayes = gaussian_classes(folder)
    found = {f"digits-csv-{t}": (csv, ["--label-column", "0", "--template", t]) for t in ("mlp", "cnn1d", "gru", "lstm")}
    found["gauss-mlp"] = (gauss, ["--template", "mlp"])
    found.update({f"digits-rows-{t}": (rows, ["--template", t]) for t in ("gru", "lstm")})
    found["digits-images-cnn"] = (images, ["--resize", "8x8", "--grey"])
    found["shapes-videos-cnn-lstm"] = (videos, ["--frames", "8", "--size", "16x16"])
    return found, bayes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these cases")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        found, bayes = cases(folder)
        for name, (data, options) in found.items():
            if args.only and name not in args.only:
                continue
            out = folder / f"{name}.gscope"
            made = run(["new", str(out), "--data", str(data)] + options)
            started = time.perf_counter()
            trained = run(["train", str(out)])
            result = {"template": made["template"], "samples": made["samples"], "shape": made["shape"],
                      "parameters": made["parameters"], "epochs_planned": made["epochs"],
                      "epochs_run": trained["epochs"], "seconds": round(time.perf_counter() - started, 1),
                      "test_accuracy": round(trained["test_accuracy"], 4), "device": trained["device"]}
            if name == "gauss-mlp":
                result["bayes_accuracy"] = round(bayes, 4)
            results[name] = result
            print(f"{name:<24} {result['template']:<9} test accuracy {result['test_accuracy']:.3f}  "
                  f"{result['epochs_run']:>2} of {result['epochs_planned']} epochs  {result['seconds']:>6.1f} s"
                  + (f"  (Bayes accuracy {bayes:.3f})" if name == "gauss-mlp" else ""), flush=True)
    x, y = digits("vector")
    references = {k: round(v, 4) for k, v in classic_references(x, y).items()}
    print("digits, classic methods on the same test split: " +
          ", ".join(f"{k} {v:.3f}" for k, v in references.items()))
    if args.json:
        print(json.dumps({"results": results, "digits_references": references}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
