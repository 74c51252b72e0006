"""``tests/compute`` and the engine run where there is no Qt (a GPU machine for
``tools/gpu_check.py``, a server for ``gatescope train``): collected with PySide6 made
unimportable, every module imports."""
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_the_compute_tests_collect_with_pyside6_unimportable(tmp_path):
    blocker = tmp_path / "PySide6"
    blocker.mkdir()
    (blocker / "__init__.py").write_text('raise ImportError("PySide6 is made unimportable for this test")\n')
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:pytest-qt",
                           "-p", "no:cacheprovider", str(TESTS)],
                          cwd=TESTS.parent.parent, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                        "HOME": str(tmp_path), "GATESCOPE_DEVICE": "cpu"},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" not in done.stdout.lower().splitlines()[-1], done.stdout[-2000:]
    assert "test_kernels.py" in done.stdout
