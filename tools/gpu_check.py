"""The prepared GPU check: the GPU tests and ``gatescope bench --device gpu`` (PyTorch's cuDNN
beside it), in one report, in under eight minutes.

    python tools/gpu_check.py [--out DIR] [--budget SECONDS] [--quick]

Made for a machine with an NVIDIA GPU, Python 3.11+, NumPy, CuPy (``cupy-cuda12x`` or
``cupy-cuda13x``), pytest and PyTorch with CUDA, and no Qt: GateScope need not be installed
(the repository's packages are made importable as ``gatescope.*`` from a temporary folder of
links), and nothing here or in ``tests/compute`` imports PySide6. numba, SciPy and OpenCV may be
missing: what needs them is skipped or listed as not collected, and the rest runs.

1. The environment: Python, NumPy, CuPy and its CUDA runtime, the device, PyTorch and cuDNN.
2. ``pytest -m gpu tests/compute``: every kernel and every block's test with the ``gpu``
   backend (CuPy arrays on the device, float32, held to the float64 NumPy twins; the recurrent
   blocks trained over four steps, so their step loops run eagerly, are captured as CUDA graphs
   and replayed).
3. ``gatescope bench --device gpu --json``, one group at a time (the DeepBench shapes of
   ``shared/BENCHMARKS.md``): our time, the bare GEMMs, PyTorch (cuDNN, TF32 off).

It writes ``gpu_report.md`` and ``gpu_report.json`` under ``--out`` (default: ``$OUT`` when set,
else ``./gpu-report``) and prints the Markdown. Each part gets what is left of ``--budget``
(default 450 s); a part that overruns is stopped and reported as such.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("compute", "studio", "widgets", "assets")
GROUPS = ("lstm", "gru", "rnn", "conv2d")


def importable_tree() -> Path:
    """A folder holding ``gatescope/<package>`` links to the repository's packages, so that
    ``import gatescope.compute`` works from the source tree without an install."""
    folder = Path(tempfile.mkdtemp(prefix="gatescope-src-"))
    (folder / "gatescope").mkdir()
    for name in PACKAGES:
        (folder / "gatescope" / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder


def environment(env: dict) -> dict:
    """What the machine has, asked in a child process with the same import path as the tests."""
    probe = r"""
import json, platform
info = {"python": platform.python_version()}
import numpy
info["numpy"] = numpy.__version__
try:
    import cupy
    info["cupy"] = cupy.__version__
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    props = cupy.cuda.runtime.getDeviceProperties(0)
    info["device"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info["compute_capability"] = f"{props['major']}.{props['minor']}"
    info["memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
except Exception as exc:
    info["cupy_error"] = f"{type(exc).__name__}: {exc}"
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.is_available()
    info["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
except Exception as exc:
    info["torch_error"] = f"{type(exc).__name__}: {exc}"
for name in ("numba", "scipy", "cv2", "PySide6"):
    try:
        module = __import__(name)
        info[name] = getattr(module, "__version__", "present")
    except Exception:
        info[name] = None
from gatescope.compute.backend import gpu_unavailable_reason
info["gatescope_gpu"] = gpu_unavailable_reason() or "usable"
print(json.dumps(info))
"""
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_tests(env: dict, out: Path, seconds: float) -> dict:
    """``pytest -m gpu tests/compute``; returns counts, failures and what was not collected."""
    junit = out / "gpu_tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
               "-p", "no:pytest-qt", "--continue-on-collection-errors", f"--junitxml={junit}", "tests/compute"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds)
        output, timed_out = done.stdout + done.stderr, False
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        timed_out = True
    result = {"command": " ".join(command[1:]), "seconds": round(time.perf_counter() - start, 1),
              "timed_out": timed_out, "tail": output[-6000:]}
    if junit.exists():
        suite = ElementTree.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        result.update({key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")})
        result["failed"] = [
            {"test": f"{case.get('classname')}::{case.get('name')}",
             "message": (problem.get("message") or problem.text or "")[:1500]}
            for case in suite.iter("testcase") for problem in list(case)
            if problem.tag in ("failure", "error")]
    result["not_collected"] = sorted(set(re.findall(r"ERROR collecting (\S+)", output)))
    return result


def run_bench(env: dict, seconds: float, quick: bool) -> list[dict]:
    """``gatescope bench --device gpu --json`` per group, within ``seconds`` in all."""
    deadline = time.perf_counter() + seconds
    results = []
    for group in GROUPS:
        left = deadline - time.perf_counter()
        if left < 20:
            results.append({"group": group, "skipped": "the time budget ran out"})
            continue
        command = [sys.executable, "-m", "gatescope.studio.cli", "bench", "--device", "gpu", "--only", group,
                   "--json"] + (["--quick"] if quick else [])
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            results.append({"group": group, "skipped": f"stopped after {left:.0f} s (the time budget)"})
            continue
        entry = {"group": group, "seconds": round(time.perf_counter() - start, 1),
                 "warnings": [line for line in done.stderr.splitlines() if "WARNING" in line or "Error" in line][:20]}
        lines = done.stdout.strip().splitlines()
        try:
            entry["summary"] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            entry["error"] = (done.stdout + done.stderr)[-3000:]
        results.append(entry)
    return results


def _ms(value) -> str:
    return "-" if value is None else f"{value * 1e3:.3f}"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    lines = ["# GateScope GPU check", "", f"Took {report['seconds']:.0f} s.", "", "## Environment", ""]
    lines += [f"- {key}: {value}" for key, value in report["environment"].items()]
    tests = report["tests"]
    lines += ["", "## GPU tests", "", f"`{tests['command']}` ({tests['seconds']} s"
              + (", stopped: the time budget" if tests["timed_out"] else "") + ")", ""]
    if "tests" in tests:
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        lines.append(f"{passed} passed, {tests['failures']} failed, {tests['errors']} errors, "
                     f"{tests['skipped']} skipped.")
    for failure in tests.get("failed", []):
        message = ["  " + line for line in failure["message"].splitlines()[:25]]
        lines += ["", f"- **{failure['test']}**", "", "  ```", *message, "  ```"]
    if tests["not_collected"]:
        lines += ["", "Not collected (a module this machine lacks): " + ", ".join(tests["not_collected"])]
    lines += ["", "## Bench (`gatescope bench --device gpu`)", "",
              "| group | case | ours ms | GEMM ms | ours/GEMM | PyTorch ms | PyTorch/ours |",
              "|---|---|---|---|---|---|---|"]
    notes = []
    for entry in report["bench"]:
        if "summary" not in entry:
            notes.append(f"- {entry['group']}: {entry.get('skipped') or entry.get('error', '')[-800:]}")
            continue
        for row in entry["summary"]["rows"]:
            lines.append(f"| {row['group']} | {row['name']} | {_ms(row['ours_s'])} | {_ms(row['gemm_s'])} | "
                         f"{_ratio(row['vs_gemm'])} | {_ms(row['torch_s'])} | {_ratio(row['torch_speedup'])} |")
        for name, means in entry["summary"]["groups"].items():
            notes.append(f"- geometric mean, {name}: ours/GEMM {_ratio(means['geomean_vs_gemm'])}, "
                         f"PyTorch/ours {_ratio(means['geomean_torch_over_ours'])} ({entry['seconds']} s)")
        notes += [f"  - log: {w}" for w in entry["warnings"]]
    return "\n".join(lines + [""] + notes) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-report"))
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for everything (default 450)")
    parser.add_argument("--quick", action="store_true", help="fewer bench repeats")
    args = parser.parse_args()
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(importable_tree()), os.environ.get("PYTHONPATH", "")]),
               GATESCOPE_DEVICE="auto", PYTHONDONTWRITEBYTECODE="1")
    report = {"machine": platform.node(), "environment": environment(env)}
    left = args.budget - (time.perf_counter() - start)
    report["tests"] = run_tests(env, args.out, max(60.0, 0.4 * left))
    report["bench"] = run_bench(env, args.budget - (time.perf_counter() - start) - 10, args.quick)
    report["seconds"] = time.perf_counter() - start
    (args.out / "gpu_report.json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    (args.out / "gpu_report.md").write_text(text)
    print(text)
    tests = report["tests"]
    return 0 if tests.get("failures", 1) == 0 and tests.get("errors", 1) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
