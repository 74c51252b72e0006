"""compute.jit: numba kernels with their NumPy twins as the fallback."""
import logging

import numpy as np
import pytest

from gatescope.compute import jit
from gatescope.compute.userdirs import user_cache_dir


def _twice_twin(x, out):
    np.multiply(x, 2, out=out)
    return out


@jit.kernel(twin=_twice_twin)
def _twice(x, out):
    for i in range(x.size):
        out[i] = 2 * x[i]
    return out


def _wrong_twin(x, out):
    out[:] = -1
    return out


@jit.kernel(twin=_wrong_twin)
def _does_not_compile(x, out):
    out[0] = "text"  # a type error numba refuses
    return out


def test_the_kernel_runs_compiled_and_agrees_with_its_twin():
    x = np.linspace(-3, 3, 17).astype(np.float32)
    got = _twice(x, np.empty_like(x))
    assert _twice.compiled == jit.available()
    with jit.use_numba(False):
        assert not _twice.compiled
        twin = _twice(x, np.empty_like(x))
    np.testing.assert_array_equal(got, twin)
    np.testing.assert_array_equal(got, 2 * x)


@pytest.mark.skipif(not jit.available(), reason="numba is not installed here")
def test_a_kernel_that_fails_to_compile_falls_back_to_its_twin_and_says_so(caplog):
    x = np.ones(3, np.float32)
    with caplog.at_level(logging.WARNING, logger="gatescope.compute.jit"):
        out = _does_not_compile(x, np.empty_like(x))
    np.testing.assert_array_equal(out, -1)                 # the twin ran
    assert _does_not_compile.failed and not _does_not_compile.compiled
    assert "did not compile" in caplog.text and "_does_not_compile" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gatescope.compute.jit"):
        _does_not_compile(x, np.empty_like(x))
    assert caplog.text == ""                                # said once


def test_numba_caches_in_the_users_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("GATESCOPE_CACHE_DIR", str(tmp_path))
    assert user_cache_dir("numba") == tmp_path / "numba"
    monkeypatch.delenv("GATESCOPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir("numba") == tmp_path / "xdg" / "gatescope" / "numba"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")   # XDG: relative paths are invalid
    assert user_cache_dir().is_absolute()
