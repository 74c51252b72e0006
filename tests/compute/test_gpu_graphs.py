"""CUDA-graph capture of the recurrent step loops, checked without a GPU.

The CPU emulator (``tests/compute/kernel_emulator``) stands in for CUDA stream capture with a
graph's semantics: while a loop is captured, its kernel launches and GEMMs are recorded, not
executed; a replay runs the recording on the same buffers. The capture refuses an
allocation, any argument outside the loop's persistent buffers (a temporary, or an array the
graph would keep a stale pointer to), poisons the buffers while open (a host read sees NaN)
and fails if anything else wrote them. So these tests fail if a step loop read device values
on the host, allocated inside the capture, ran an elementwise op that is not a launch or a
GEMM, or replayed stale inputs or weights: each layer is trained for several steps with a new
batch and new weights every step (first call eager, second captured, then replays) and held to
the NumPy path to 1e-4. None of this has run on a real GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernel_emulator as emu
from gatescope.compute import kernels
from gatescope.compute.kernels import graphs
from gatescope.compute.kernels import reference as ref
from gatescope.compute.layers import create

RTOL = 1e-4


@pytest.fixture()
def emulator():
    backend = emu.EmulatorBackend()
    for module in ("lstm", "rnn", "gru"):
        backend.load(module)
    graphs.fallbacks.clear()
    return backend


def _close(actual, expected, what):
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * max(scale, 1e-6), err_msg=what)


def _layer(type_name, settings, in_shape):
    layer = create(type_name, settings)
    layer.build([in_shape], np.random.default_rng(0), np, np.float32)
    rng = np.random.default_rng(7)
    for name, p in layer.params.items():
        if name.split("_rev")[0] in ("p_i", "p_f", "p_o", "h0", "c0", "b", "b_hn"):
            p[...] = rng.standard_normal(p.shape) * 0.5
    return layer


def _train(type_name, settings, in_shape, backend, batches, updates):
    """Forward and backward on each batch, then an in-place SGD step (as the optimizers do);
    returns every step's output, input gradient and parameter gradients."""
    layer = _layer(type_name, settings, in_shape)
    results = []
    with kernels.host_backend(backend):
        for x, grad_seed in batches:
            layer.zero_grads()
            y = layer.forward([x], True)
            dy = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(np.float32)
            dx = layer.backward(dy)[0]
            results.append((y.copy(), dx.copy(), {k: g.copy() for k, g in layer.grads.items()}))
            for name, p in layer.params.items():
                p -= updates * layer.grads[name]      # new weights for the next step
    return results, layer


CASES = [
    ("SimpleRNN", dict(activation="tanh", return_sequences=True, initial_state="learned")),
    ("SimpleRNN", dict(activation="relu", bidirectional=True, truncate_bptt=2)),
    ("LSTM", dict(variant="standard", return_sequences=True, initial_state="learned")),
    ("LSTM", dict(variant="peephole", bidirectional=True, pin_forget="1", truncate_bptt=2)),
    ("LSTM", dict(variant="coupled", return_sequences=True, pin_output="1", initial_state="learned")),
    ("GRU", dict(form="cho", return_sequences=True, initial_state="learned", truncate_bptt=3)),
    ("GRU", dict(form="cho", bidirectional=True, merge="sum", pin_reset="0")),
    ("GRU", dict(form="pytorch", return_sequences=True, initial_state="learned", pin_update="1")),
    ("GRU", dict(form="pytorch", bidirectional=True, truncate_bptt=2)),
]


def _batches(in_shape, count=4, batch=3):
    rng = np.random.default_rng(5)
    return [(rng.standard_normal((batch,) + in_shape).astype(np.float32), 100 + k) for k in range(count)]


@pytest.mark.parametrize("type_name,settings", CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)])
def test_captured_step_loops_match_the_numpy_path(emulator, type_name, settings):
    settings = dict(hidden_size=5, **settings)
    batches = _batches((6, 4))
    plain, _ = _train(type_name, settings, (6, 4), None, batches, 0.05)
    captured, layer = _train(type_name, settings, (6, 4), emulator, batches, 0.05)
    directions = 2 if settings.get("bidirectional") else 1
    # one forward and one backward graph per direction, each replayed on steps 2, 3 and 4
    assert len(emulator.captures) == 2 * directions and graphs.fallbacks == {}
    assert all(rec.launches == 3 for rec in emulator.captures)
    assert all(any(op for op in rec.ops) for rec in emulator.captures)
    for step, (fused, expected) in enumerate(zip(captured, plain)):
        _close(fused[0], expected[0], f"step {step}: output")
        _close(fused[1], expected[1], f"step {step}: input gradient")
        for name in expected[2]:
            _close(fused[2][name], expected[2][name], f"step {step}: d{name}")


@pytest.mark.parametrize("return_sequences", [True, False])
def test_outputs_are_copies_that_later_calls_leave_alone(emulator, return_sequences):
    settings = dict(hidden_size=4, return_sequences=return_sequences)
    layer = _layer("LSTM", settings, (5, 3))
    batches = _batches((5, 3), count=4)
    with kernels.host_backend(emulator):
        outputs = [layer.forward([x], True) for x, _ in batches]
        kept = [y.copy() for y in outputs]
        for x, _ in batches:                             # replays overwrite the buffers
            layer.forward([x], True)
    assert emulator.captures
    for y, before in zip(outputs, kept):
        np.testing.assert_array_equal(y, before)


def test_convlstm_shares_the_loop_but_stays_eager(emulator):
    settings = dict(filters=2, kernel_size=3, return_sequences=True)
    batches = _batches((3, 2, 4, 5), count=3, batch=2)
    plain, _ = _train("ConvLSTM2D", settings, (3, 2, 4, 5), None, batches, 0.05)
    fused, _ = _train("ConvLSTM2D", settings, (3, 2, 4, 5), emulator, batches, 0.05)
    assert emulator.captures == [] and graphs.fallbacks == {}
    assert {"lstm_forward", "lstm_backward"} <= {name for name, _, _ in emulator.launches}
    for step, (got, expected) in enumerate(zip(fused, plain)):
        _close(got[0], expected[0], f"step {step}: output")
        _close(got[1], expected[1], f"step {step}: input gradient")
        for name in expected[2]:
            _close(got[2][name], expected[2][name], f"step {step}: d{name}")


def test_a_loop_op_that_bypasses_the_recorder_makes_the_results_wrong(emulator, monkeypatch):
    """The comparison above can fail: with the recurrent GEMM done by NumPy directly (as an
    array expression would be), the capture misses it and the replays go wrong."""
    settings = dict(hidden_size=5, return_sequences=True)
    batches = _batches((6, 4), count=3)
    plain, _ = _train("SimpleRNN", settings, (6, 4), None, batches, 0.05)
    monkeypatch.setattr(kernels, "gemm", ref.gemm)
    captured, _ = _train("SimpleRNN", settings, (6, 4), emulator, batches, 0.05)
    np.testing.assert_allclose(captured[0][0], plain[0][0], rtol=RTOL, atol=RTOL)   # step 1: eager
    assert not np.allclose(captured[1][0], plain[1][0], rtol=1e-2, atol=1e-2)        # replayed wrong


# --------------------------------------------------------------------------- the capture itself

def _rnn_buffers():
    rng = np.random.default_rng(1)
    return {"pre": rng.standard_normal((2, 3)).astype(np.float32), "h": np.zeros((2, 3), np.float32)}


def test_capture_records_without_executing_and_replays_on_the_same_buffers(emulator):
    buffers = _rnn_buffers()
    with kernels.host_backend(emulator):
        recording = emulator.capture(lambda: kernels.simple_rnn_forward(buffers["pre"], out=buffers["h"]),
                                     buffers.values())
        assert (buffers["h"] == 0).all()                 # recorded, not run; buffers restored
        buffers["pre"][...] = 0.5                        # new inputs copied in before a replay
        recording.launch()
    np.testing.assert_allclose(buffers["h"], np.tanh(0.5), rtol=1e-6)


@pytest.mark.parametrize("body,message", [
    (lambda b, other: kernels.simple_rnn_forward(b["pre"]), "allocation"),
    (lambda b, other: kernels.simple_rnn_forward(b["pre"], out=other), "outside the persistent buffers"),
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
        states = [loop.run(lambda: kernels.simple_rnn_forward(loop.pre, out=loop.h)) for _ in range(3)]
        assert states == ["eager", "captured", "replayed"]
        bad = graphs.StepLoop("bad loop", _rnn_buffers())
        with caplog.at_level("WARNING"):
            states = [bad.run(lambda: kernels.simple_rnn_forward(bad.pre)) for _ in range(3)]
    assert states == ["eager", "eager", "eager"]
    assert "allocation" in graphs.fallbacks["bad loop"]
    assert sum("bad loop" in r.getMessage() for r in caplog.records) == 1


def test_capture_can_be_turned_off(emulator, monkeypatch):
    monkeypatch.setenv("GATESCOPE_CUDA_GRAPHS", "0")
    buffers = _rnn_buffers()
    loop = graphs.StepLoop("off", buffers)
    with kernels.host_backend(emulator):
        assert [loop.run(lambda: kernels.simple_rnn_forward(loop.pre, out=loop.h)) for _ in range(3)] == ["eager"] * 3
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
    """cuBLAS's column-major sgemm, in NumPy, behind the modules CupyBackend.gemm imports."""
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
    """CupyBackend.gemm against a column-major stand-in for cublasSgemm: plain blocks, column
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
        kernels.CupyBackend().gemm(a.view(_DeviceArray), b.view(_DeviceArray), out.view(_DeviceArray),
                                   1.0 if accumulate else 0.0)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=f"{a.strides} @ {b.strides}")
    assert len(calls) == len(cases)
    assert {c[0] for c in calls} == {0, 1} and {c[1] for c in calls} == {0, 1}   # both layouts used
