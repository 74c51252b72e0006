"""How long opening a project takes, and the most memory it holds, against an earlier loader.

    .venv/bin/python tools/measure_open.py [--old COMMIT] [--repeats N]

Writes two projects (a small MLP and one of 7.7 million weights with Adam's state) to a
temporary folder, then opens each with ``studio/project.py`` as it is and as it was at
``COMMIT`` (default: 8c5d8a5, before issue 18), alternating old and new ``--repeats`` times,
and prints the medians, their ratio and the peak memory ``tracemalloc`` saw. The old loader
runs against today's engine (only ``studio/project.py`` is taken from the commit).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from gatescope.compute.graph import GraphSpec
from gatescope.studio import project as new

ROOT = Path(__file__).resolve().parent.parent


def old_loader(commit: str, folder: Path):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:studio/project.py"], check=True,
                            capture_output=True, text=True).stdout
    path = folder / "old_project.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_project", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_project"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def write_project(folder: Path, units: int) -> Path:
    graph = GraphSpec.chain(("Input", {"shape": [256]}), ("Dense", {"units": units}), ("Tanh", {}),
                            ("Dense", {"units": 10}), ("Classify", {}))
    project = new.Project(graph=graph)
    project.weights = project.build_model().state_dict()
    rng = np.random.default_rng(0)  # random state: the old loader refuses a large state of zeros
    project.optimizer = {f"{k}/{slot}": rng.random(v.shape, np.float32) for k, v in project.weights.items()
                         for slot in ("m", "v")}
    project.optimizer["step_count"] = np.array(5)
    return new.save_project(project, folder / f"dense{units}.gscope")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="8c5d8a5", help="the commit whose loader to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loaders = {"old": old_loader(args.old, folder), "new": new}
        for units in (64, 30000):
            path = write_project(folder, units)
            seconds = {name: [] for name in loaders}
            peaks = {name: 0 for name in loaders}
            for _ in range(args.repeats):
                for name, module in loaders.items():
                    tracemalloc.start()
                    started = time.perf_counter()
                    module.load_project(path)
                    seconds[name].append(time.perf_counter() - started)
                    peaks[name] = max(peaks[name], tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
            old_s, new_s = statistics.median(seconds["old"]), statistics.median(seconds["new"])
            print(f"{path.stat().st_size / 1e6:6.2f} MB file: old {old_s * 1e3:7.1f} ms, new {new_s * 1e3:7.1f} ms "
                  f"(new/old {new_s / old_s:.2f}); peak memory old {peaks['old'] / 1e6:.0f} MB, "
                  f"new {peaks['new'] / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
