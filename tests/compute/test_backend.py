"""Device selection without a GPU: auto falls back, gpu is a clear error, cpu is NumPy."""
import numpy as np
import pytest

from gatescope.compute import backend


def test_cpu_is_numpy():
    device = backend.select_device("cpu")
    assert device.name == "cpu" and device.xp is np and "CPU" in device.description


def test_auto_falls_back_to_the_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda: "CuPy is not installed")
    device = backend.select_device("auto")
    assert device.name == "cpu" and "CuPy is not installed" in device.reason


def test_gpu_without_one_names_the_cause(monkeypatch):
    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda: "no CUDA device answers")
    with pytest.raises(backend.DeviceError, match="GPU was asked for but cannot be used: no CUDA device"):
        backend.select_device("gpu")


def test_environment_variable_and_bad_names(monkeypatch):
    monkeypatch.setenv("GATESCOPE_DEVICE", "cpu")
    assert backend.select_device().name == "cpu"
    with pytest.raises(backend.DeviceError, match="unknown device 'tpu'"):
        backend.select_device("tpu")


def test_reason_is_given_when_cupy_is_missing(monkeypatch):
    monkeypatch.setattr(backend, "cupy", None)
    assert "CuPy is not installed" in backend.gpu_unavailable_reason()
