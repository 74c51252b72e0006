"""CUDA-graph capture of a step loop (``compute/kernels/graphs.py``) and the cuBLAS call
(``compute/kernels/gemm.py``), checked without a GPU.

The CPU emulator (``tests/compute/kernel_emulator``) stands in for CUDA stream capture with a
graph's semantics: while a loop is captured, its kernel launches and GEMMs are recorded, not
executed; a replay runs the recording on the same buffers. The capture refuses an
allocation, any argument outside the loop's persistent buffers (a temporary, or an array the
graph would keep a stale pointer to), poisons the buffers while open (a host read sees NaN)
and fails if anything else wrote them. Every recurrent block is trained through captured and
replayed loops in ``test_recurrent.py`` (the ``emulated`` backend); here are the mechanism's
own checks, and one showing that such a comparison can fail.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernel_emulator as emu
from gatescope.compute import kernels
from gatescope.compute.kernels import graphs
from gatescope.compute.kernels.gemm import cublas_gemm
from gatescope.compute.layers import create


@pytest.fixture()
def emulator():
    backend = emu.EmulatorBackend()
    for module in ("lstm", "rnn", "gru"):
        backend.load(module)
    graphs.fallbacks.clear()
    return backend


def _rnn_outputs(backend, steps=3):
    layer = create("SimpleRNN", dict(hidden_size=5, return_sequences=True))
    layer.build([(6, 4)], np.random.default_rng(0), np, np.float32)
    rng = np.random.default_rng(5)
    outputs = []
    with kernels.host_backend(backend):
        for _ in range(steps):
            outputs.append(layer.forward([rng.standard_normal((3, 6, 4)).astype(np.float32)], True))
            layer.params["U"] *= 0.9                     # new weights for the next step
    return outputs


def test_a_loop_op_that_bypasses_the_recorder_makes_the_results_wrong(emulator, monkeypatch):
    """The comparisons of test_recurrent can fail: with the recurrent GEMM done by NumPy
    directly (as an array expression would be), the capture misses it and the replays go wrong."""
    plain = _rnn_outputs(None)
    monkeypatch.setattr(kernels, "gemm", lambda a, b, out, accumulate=False: np.matmul(a, b, out=out))
    captured = _rnn_outputs(emulator)
    np.testing.assert_allclose(captured[0], plain[0], rtol=1e-4, atol=1e-4)    # step 1: eager
    assert not np.allclose(captured[1], plain[1], rtol=1e-2, atol=1e-2)         # replayed wrong


# --------------------------------------------------------------------------- the capture itself

def _rnn_buffers():
    rng = np.random.default_rng(1)
    return {"pre": rng.standard_normal((2, 3)).astype(np.float32), "rec": np.zeros((2, 3), np.float32),
            "h": np.zeros((2, 3), np.float32)}


def test_capture_records_without_executing_and_replays_on_the_same_buffers(emulator):
    buffers = _rnn_buffers()
    with kernels.host_backend(emulator):
        recording = emulator.capture(
            lambda: kernels.simple_rnn_forward(buffers["pre"], buffers["rec"], out=buffers["h"]), buffers.values())
        assert (buffers["h"] == 0).all()                 # recorded, not run; buffers restored
        buffers["pre"][...] = 0.5                        # new inputs copied in before a replay
        recording.launch()
    np.testing.assert_allclose(buffers["h"], np.tanh(0.5), rtol=1e-6)


@pytest.mark.parametrize("body,message", [
    (lambda b, other: kernels.simple_rnn_forward(b["pre"], b["rec"]), "allocation"),
    (lambda b, other: kernels.simple_rnn_forward(b["pre"], b["rec"], out=other), "outside the persistent buffers"),
    (lambda b, other: kernels.gemm(b["pre"], np.eye(3, dtype=np.float32), b["h"]), "outside the persistent buffers"),
    (lambda b, other: b["h"].__setitem__(Ellipsis, 1.0), "written during the capture"),
], ids=["allocation", "temporary-out", "stale-operand", "array-expression"])
def test_capture_refuses_what_a_graph_would_get_wrong(emulator, body, message):
    buffers = _rnn_buffers()
    other = np.zeros((2, 3), np.float32)
    with kernels.host_backend(emulator), pytest.raises(emu.LaunchError, match=message):
        emulator.capture(lambda: body(buffers, other), buffers.values())


def test_step_loop_warms_up_captures_replays_and_falls_back_once(emulator, caplog):
    buffers = _rnn_buffers()
    loop = graphs.StepLoop("test loop", buffers)
    with kernels.host_backend(emulator):
        states = [loop.run(lambda: kernels.simple_rnn_forward(loop.pre, loop.rec, out=loop.h)) for _ in range(3)]
        assert states == ["eager", "captured", "replayed"]
        bad = graphs.StepLoop("bad loop", _rnn_buffers())
        with caplog.at_level("WARNING"):
            states = [bad.run(lambda: kernels.simple_rnn_forward(bad.pre, bad.rec)) for _ in range(3)]
    assert states == ["eager", "eager", "eager"]
    assert "allocation" in graphs.fallbacks["bad loop"]
    assert sum("bad loop" in r.getMessage() for r in caplog.records) == 1


def test_a_probing_call_runs_eagerly_and_keeps_the_graph_and_the_cpu_never_captures(emulator):
    buffers = _rnn_buffers()
    loop = graphs.StepLoop("probed", buffers)
    body = lambda: kernels.simple_rnn_forward(loop.pre, loop.rec, out=loop.h)   # noqa: E731
    with kernels.host_backend(emulator):
        states = [loop.run(body), loop.run(body), loop.run(body, eager=True), loop.run(body)]
    assert states == ["eager", "captured", "eager", "replayed"]
    cpu = graphs.StepLoop("cpu", _rnn_buffers())
    on_cpu = lambda: kernels.simple_rnn_forward(cpu.pre, cpu.rec, out=cpu.h)   # noqa: E731
    assert [cpu.run(on_cpu) for _ in range(3)] == ["eager"] * 3


def test_capture_can_be_turned_off(emulator, monkeypatch):
    monkeypatch.setenv("GATESCOPE_CUDA_GRAPHS", "0")
    buffers = _rnn_buffers()
    loop = graphs.StepLoop("off", buffers)
    with kernels.host_backend(emulator):
        states = [loop.run(lambda: kernels.simple_rnn_forward(loop.pre, loop.rec, out=loop.h)) for _ in range(3)]
    assert states == ["eager"] * 3
    assert emulator.captures == []


# --------------------------------------------------------------------------- cuBLAS arguments

class _DeviceArray(np.ndarray):
    """A NumPy array that exposes ``.data.ptr`` as a CuPy array does."""

    @property
    def data(self):
        return type("Pointer", (), {"ptr": self.__array_interface__["data"][0]})()


def _column_major(ptr, rows, cols, ld):
    """The column-major (rows, cols) matrix at ``ptr`` with leading dimension ``ld``."""
    import ctypes
    size = (cols - 1) * ld + rows
    flat = np.ctypeslib.as_array((ctypes.c_float * size).from_address(ptr))
    return np.lib.stride_tricks.as_strided(flat, (rows, cols), (4, 4 * ld))


def _fake_cublas(monkeypatch):
    """cuBLAS's column-major sgemm, in NumPy, behind the modules cublas_gemm imports."""
    import ctypes
    import sys
    import types
    calls = []
    cublas = types.SimpleNamespace(CUBLAS_OP_N=0, CUBLAS_OP_T=1, CUBLAS_POINTER_MODE_HOST=0,
                                   getPointerMode=lambda handle: 1, setPointerMode=lambda handle, mode: None)

    def sgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        calls.append((transa, transb, m, n, k, lda, ldb, ldc))
        op_a = _column_major(a, *((m, k) if transa == 0 else (k, m)), lda)
        op_b = _column_major(b, *((k, n) if transb == 0 else (n, k)), ldb)
        op_a, op_b = (op_a if transa == 0 else op_a.T), (op_b if transb == 0 else op_b.T)
        out = _column_major(c, m, n, ldc)
        scale = [ctypes.c_float.from_address(p).value for p in (alpha, beta)]
        out[...] = scale[0] * (op_a.astype(np.float64) @ op_b) + (scale[1] * out if scale[1] else 0)
    cublas.sgemm = sgemm
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.cublas = cublas
    device = types.SimpleNamespace(get_cublas_handle=lambda: 1)
    cuda = types.ModuleType("cupy.cuda")
    cuda.device = device
    for name, module in {"cupy_backends": types.ModuleType("cupy_backends"),
                         "cupy_backends.cuda": types.ModuleType("cupy_backends.cuda"),
                         "cupy_backends.cuda.libs": libs, "cupy_backends.cuda.libs.cublas": cublas,
                         "cupy": types.ModuleType("cupy"), "cupy.cuda": cuda, "cupy.cuda.device": device}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return calls


@pytest.mark.parametrize("accumulate", [False, True])
def test_cupy_gemm_passes_row_major_operands_to_column_major_cublas(monkeypatch, accumulate):
    """cublas_gemm against a column-major stand-in for cublasSgemm: plain blocks, column
    slices (leading dimension wider than the slice) and transposed views, as the step loops
    pass them. Checks the argument translation only; no GPU was involved."""
    calls = _fake_cublas(monkeypatch)
    rng = np.random.default_rng(9)
    wide, u, h = (rng.standard_normal(s).astype(np.float32) for s in ((4, 9), (3, 9), (4, 3)))
    cases = [(h, u), (h, u[:, :6]), (wide[:, 6:], u[:, 6:].T), (wide[:, :6], u[:, :6].T), (wide, u.T),
             (h[:1], u), (u.T[:4], u[:, :5])]
    for a, b in cases:
        base = rng.standard_normal((6, 12)).astype(np.float32)
        out = base[1:1 + a.shape[0], 2:2 + b.shape[1]]             # rows with a leading dimension
        expected = a.astype(np.float64) @ b + (out if accumulate else 0)
        cublas_gemm(a.view(_DeviceArray), b.view(_DeviceArray), out.view(_DeviceArray), 1.0 if accumulate else 0.0)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=f"{a.strides} @ {b.strides}")
    assert len(calls) == len(cases)
    assert {c[0] for c in calls} == {0, 1} and {c[1] for c in calls} == {0, 1}   # both layouts used
