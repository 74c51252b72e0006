"""Check GateScope as a person installs it: a wheel, in a fresh environment, outside the clone.

    .venv/bin/python tools/check_install.py [--keep]

Builds the wheel, makes a new virtual environment in a temporary folder, installs the wheel
into it (not editable, so missing package data shows), and from that folder runs what a person
runs first: ``gatescope --help``, one short ``gatescope train`` of a bundled example, and
``gatescope --screenshot``; checks that the compiled kernels were cached in the user's cache
folder, not in the installed package. Exits 1 with the failing step's output when anything fails.
``make test`` runs it after the test suite, so CI checks the installed form too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(title: str, command: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run one step; return its standard output, or exit with what it printed."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(f"check_install: {title} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}",
              file=sys.stderr)
        sys.exit(1)
    print(f"check_install: {title}: ok ({seconds:.1f} s)", flush=True)
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and say where it is")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatescope-install-"))
    try:
        wheels = work / "wheel"
        step("build the wheel", [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                 "--wheel-dir", str(wheels), str(ROOT)], cwd=work)
        shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch folder in the clone
        wheel = next(wheels.glob("gatescope-*.whl"))
        env_dir = work / "env"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        step("install the wheel into a fresh environment",
             [str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=work)
        gatescope = str(env_dir / "bin" / "gatescope")
        # Outside the clone nothing of the repository can shadow the installed package.
        run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        run_env.update(QT_QPA_PLATFORM="offscreen", GATESCOPE_DEVICE="cpu", HOME=str(work / "home"),
                       XDG_CACHE_HOME=str(work / "home" / ".cache"),
                       XDG_CONFIG_HOME=str(work / "home" / ".config"))
        (work / "home").mkdir()
        where = step("find the installed package",
                     [str(python), "-c", "import gatescope.studio, gatescope.assets as a; "
                      "print(gatescope.studio.__file__); print(a.example_path('digits-cnn'))"],
                     cwd=work, env=run_env).split()
        if str(ROOT) in where[0]:
            print(f"check_install: the package was imported from the clone ({where[0]})", file=sys.stderr)
            return 1
        step("gatescope --help", [gatescope, "--help"], cwd=work, env=run_env)
        project = work / "digits-cnn.gscope"
        shutil.copy(where[1], project)
        out = step("gatescope train (1 epoch of digits-cnn)",
                   [gatescope, "train", str(project), "--epochs", "1", "--json"], cwd=work, env=run_env)
        result = json.loads(out.strip().splitlines()[-1])
        if not result.get("test_accuracy") or result["test_accuracy"] < 0.5:
            print(f"check_install: one epoch of digits-cnn reached {result.get('test_accuracy')}", file=sys.stderr)
            return 1
        # numba's cache must not need the installed package's folder to be writable (it may be
        # read-only, as in a system install): compiled kernels go to the user's cache folder.
        in_package = list((env_dir / "lib").rglob("*.nbi"))
        in_user_cache = list((work / "home" / ".cache").rglob("*.nbi"))
        if in_package or not in_user_cache:
            print(f"check_install: numba's cache went to {in_package[:3] or 'nowhere'}, not the user's "
                  f"cache folder ({len(in_user_cache)} index files there)", file=sys.stderr)
            return 1
        print(f"check_install: compiled kernels cached in the user's cache folder ({len(in_user_cache)} "
              "index files), none in the package", flush=True)
        png = work / "window.png"
        step("gatescope --screenshot", [gatescope, "--screenshot", str(png), str(project)], cwd=work, env=run_env)
        if not png.is_file() or png.stat().st_size < 10_000:
            print(f"check_install: the screenshot is missing or empty ({png})", file=sys.stderr)
            return 1
        print(f"check_install: the installed wheel works (test accuracy {result['test_accuracy']:.3f} "
              f"after 1 epoch)")
        return 0
    finally:
        if args.keep:
            print(f"check_install: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
