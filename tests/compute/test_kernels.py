"""The kernel contract, kernel by kernel, on every backend (``conftest.Backend``): the numba
kernels and the CUDA kernels (compiled by NVRTC for the GPUs we target, executed on the CPU
from their own source by ``kernel_emulator``, and on a GPU where there is one) run in float32
and are held to the NumPy twin run in float64; the twins in turn are held to the equations
written out element by element (``closed_forms``) and to float64 central differences.
"""
from __future__ import annotations

import ctypes
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest

import closed_forms as cf
import kernel_emulator as emu
from conftest import close
from gatescope.compute import jit, kernels
from gatescope.compute.kernels import runtime
from gradcheck import numeric_grad


def _rand(rng, *shape, scale=1.0, dtype=np.float32):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _f64(*arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


# --------------------------------------------------------------------------- sources and NVRTC

def _declared_kernels(text: str) -> list[str]:
    return re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)', text)


def test_every_cu_file_is_a_listed_module_with_its_launchers_beside_it():
    files = sorted(p.stem for p in kernels.KERNEL_DIR.glob("*.cu"))
    assert files == sorted(kernels.MODULES)
    for module, names in kernels.MODULES.items():
        assert tuple(_declared_kernels(kernels.kernel_source(module))) == names
        assert (kernels.KERNEL_DIR / f"{module}.py").exists()
        launcher = (kernels.KERNEL_DIR / f"{module}.py").read_text()
        for name in names:      # every kernel is launched by its module
            assert f'"{name}"' in launcher, f"{module}.py does not launch {name}"
        # local headers are pasted in, so NVRTC needs no include path
        assert not re.search(r'^\s*#\s*include\s*"', kernels.kernel_source(module), re.M)


def _find_nvrtc():
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    folders = [Path(p) / "lib" for p in (spec.submodule_search_locations or [])] if spec else []
    for folder in folders:
        for candidate in sorted(folder.glob("libnvrtc.so*")):
            if "builtins" not in candidate.name and "alt" not in candidate.name:
                return ctypes.CDLL(str(candidate))
    return None


@pytest.fixture(scope="module")
def nvrtc():
    library = _find_nvrtc()
    if library is None:
        pytest.skip("libnvrtc not found: install the test extra (nvidia-cuda-nvrtc-cu12)")
    return library


@pytest.mark.parametrize("arch", ["compute_80", "sm_80", "sm_90"])
@pytest.mark.parametrize("module", sorted(kernels.MODULES))
def test_nvrtc_compiles_without_warnings(nvrtc, module, arch):
    program = ctypes.c_void_p()
    source = kernels.kernel_source(module).encode()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, f"{module}.cu".encode(),
                                    0, None, None) == 0
    try:
        options = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in runtime.COMPILE_OPTIONS)]
        status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        assert status == 0, f"{module}.cu does not compile for {arch}:\n{log.value.decode()}"
        assert "warning" not in log.value.decode(), log.value.decode()
        code_size = ctypes.c_size_t()
        getter = nvrtc.nvrtcGetPTXSize if arch.startswith("compute") else nvrtc.nvrtcGetCUBINSize
        assert getter(program, ctypes.byref(code_size)) == 0 and code_size.value > 0
        if arch.startswith("compute"):
            ptx = ctypes.create_string_buffer(code_size.value)
            assert nvrtc.nvrtcGetPTX(program, ptx) == 0
            entries = re.findall(r"\.entry\s+(\w+)\(", ptx.value.decode())
            # extern "C": CuPy finds each kernel by its plain name.
            assert sorted(entries) == sorted(kernels.MODULES[module])
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


# --------------------------------------------------------------------------- routing and the emulator

def test_emulator_refuses_what_a_gpu_would_misread(emulators):
    forward, _ = emulators
    launch = forward.function("rnn", "simple_rnn_forward")
    pre, rec, h = np.zeros(10, np.float32), np.zeros(10, np.float32), np.zeros(10, np.float32)
    good = (pre, rec, h, np.int64(10), np.int32(0))
    launch((1,), (32,), good)
    with pytest.raises(emu.LaunchError, match="numpy.int64|int64"):
        launch((1,), (32,), (pre, rec, h, 10, np.int32(0)))  # a Python int would travel as 64 bits
    with pytest.raises(emu.LaunchError, match="float32"):
        launch((1,), (32,), (pre, rec, h, np.int64(10), np.float32(0)))
    with pytest.raises(emu.LaunchError, match="takes 5 arguments"):
        launch((1,), (32,), good[:4])
    with pytest.raises(emu.LaunchError, match="float64 array"):
        launch((1,), (32,), (pre.astype(np.float64), rec, h, np.int64(10), np.int32(0)))
    with pytest.raises(emu.LaunchError, match="C-contiguous"):
        launch((1,), (32,), (np.zeros(20, np.float32)[::2], rec, h, np.int64(10), np.int32(0)))
    with pytest.raises(emu.LaunchError, match="launch configuration"):
        launch((1,), (2048,), good)
    with pytest.raises(emu.LaunchError, match="launch configuration"):
        launch((0,), (32,), good)
    with pytest.raises(emu.LaunchError, match="past the end of h"):
        launch((1,), (32,), (np.zeros(12, np.float32), np.zeros(12, np.float32), h, np.int64(12), np.int32(0)))
    wide = np.zeros(12, np.float32)
    with pytest.raises(emu.LaunchError, match="partly overlaps another that a kernel writes"):
        launch((1,), (32,), (wide[:10], rec, wide[2:12], np.int64(10), np.int32(0)))
    launch((1,), (32,), (wide[:10], wide[2:12], h, np.int64(10), np.int32(0)))   # two read-only views


def test_numpy_arrays_run_the_cpu_kernels_and_the_emulator_only_when_installed(emulators):
    forward, _ = emulators
    pre = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    forward.launches.clear()
    assert not kernels.on_device(pre)
    h = kernels.simple_rnn_forward(pre, np.zeros_like(pre))
    assert forward.launches == []
    with kernels.host_backend(forward):
        assert kernels.on_device(pre) and not kernels.on_device(pre.astype(np.float64))
        emulated = kernels.simple_rnn_forward(pre, np.zeros_like(pre))
        kernels.simple_rnn_forward(pre.astype(np.float64), np.zeros((3, 4)))   # float64: the twin
    assert [name for name, _, _ in forward.launches] == ["simple_rnn_forward"]
    close(h, np.tanh(pre.astype(np.float64)), rtol=1e-6)
    close(emulated, np.tanh(pre.astype(np.float64)), rtol=1e-6)


def test_cupy_path_builds_one_raw_module_per_source_and_launches_by_name(emulators, monkeypatch):
    """The GPU path with CuPy stood in for: RawModule gets the pasted source and the NVRTC
    options (with CuPy 13's keywords only), kernels are looked up by their plain names, and
    launches go to them with the same (grid, block, args)."""
    forward, _ = emulators
    built, sent_null = [], []

    class FakeArray(np.ndarray):
        pass

    class FakeRawModule:
        def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                     translate_cucomplex=False, enable_cooperative_groups=False,
                     name_expressions=None, jitify=False):
            built.append((code, options))
            self.module = next(m for m in kernels.MODULES if kernels.kernel_source(m) == code)

        def get_function(self, name):
            emulated = forward.function(self.module, name)

            def launch(grid, block, args):
                # CuPy before 14 sent None as a garbage pointer: NULL must arrive as a 64-bit 0
                assert not any(a is None for a in args), f"{name}: None passed to CuPy"
                sent_null.extend(a for a in args if isinstance(a, np.uint64))
                emulated(grid, block, tuple(None if isinstance(a, np.uint64) and a == 0 else
                                            a.view(np.ndarray) if isinstance(a, FakeArray) else a for a in args))
            return launch

    class FakeXp:  # the slice of CuPy's array API the launch functions use
        @staticmethod
        def ascontiguousarray(a, dtype=None):
            return np.ascontiguousarray(a, dtype).view(FakeArray)

        @staticmethod
        def empty(shape, dtype):
            return np.full(shape, np.nan, dtype).view(FakeArray)

    class FakeCupy:
        ndarray = FakeArray
        RawModule = FakeRawModule

        @staticmethod
        def get_array_module(*arrays):
            return FakeXp

    monkeypatch.setattr(runtime._backend_module, "cupy", FakeCupy)
    monkeypatch.setattr(runtime, "_CUPY_BACKEND", runtime.CupyBackend())
    pre = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4).view(FakeArray)
    assert kernels.on_device(pre) and not kernels.on_device(np.zeros(3, np.float32))
    h = kernels.simple_rnn_forward(pre, np.zeros((3, 4), np.float32).view(FakeArray))
    kernels.simple_rnn_backward(pre, None, h)
    assert isinstance(h, FakeArray)
    np.testing.assert_allclose(h.view(np.ndarray), np.tanh(pre.view(np.ndarray)), rtol=1e-6)
    assert built == [(kernels.kernel_source("rnn"), runtime.COMPILE_OPTIONS)]  # memoized
    assert sent_null == [0]                    # simple_rnn_backward's dh_next, left out


def test_launch_shape_is_one_thread_per_element(emulators):
    forward, _ = emulators
    forward.launches.clear()
    with kernels.host_backend(forward):
        kernels.simple_rnn_forward(np.zeros((3, 300), np.float32), np.zeros((3, 300), np.float32))
        logits = np.zeros((5, 7), np.float32)
        kernels.cross_entropy_loss(logits, kernels.softmax_forward(logits)[1], np.zeros(5, np.int64))
    assert forward.launches == [("simple_rnn_forward", (4, 1, 1), (256, 1, 1)),
                                ("softmax_forward", (1, 1, 1), (256, 1, 1)),
                                ("cross_entropy_loss", (1, 1, 1), (256, 1, 1))]


def test_pins_are_checked_against_the_cell():
    with pytest.raises(ValueError, match="cannot pin gate"):
        kernels.pin_values({"i": 0.0}, "fgo")
    assert kernels.pin_values({"f": 1.0, "i": None}, "ifgo") == (-1.0, 1.0, -1.0, -1.0)
    with pytest.raises(ValueError, match="cannot pin gate"):
        kernels.lstm_forward(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.float32),
                             np.zeros((1, 1), np.float32), variant="coupled", pins={"i": 0.0})


def test_bad_arguments_are_named():
    a = np.zeros((2, 12), np.float32)
    with pytest.raises(ValueError, match="rec has shape"):
        kernels.lstm_forward(a, a[:, :8], np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="rec must be float32"):
        kernels.lstm_forward(a, a.astype(np.float64), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="h must be a C-contiguous"):
        kernels.lstm_forward(a, a, np.zeros((2, 3), np.float32), out=(a.copy(), np.zeros((2, 3), np.float32),
                                                                        np.zeros((3, 2), np.float32).T))
    with pytest.raises(ValueError, match="needs its peephole weights"):
        kernels.lstm_forward(a, a, np.zeros((2, 3), np.float32), variant="peephole")
    with pytest.raises(ValueError, match="unknown LSTM variant"):
        kernels.lstm_forward(a, a, np.zeros((2, 3), np.float32), variant="leaky")


# --------------------------------------------------------------------------- the CPU tanh

@pytest.mark.skipif(not jit.available(), reason=str(jit.why_not()))
def test_the_cpu_kernels_tanh_is_within_float32_reach_of_tanh_everywhere():
    """Eigen's clamped rational tanh, as the numba kernels compute it (through the SimpleRNN
    kernel): within 3.2e-7 of float64 tanh absolute and relative, from 1e-30 to 12 and at
    0, never beyond +-1 (``ops/fastmath``'s 2/(1+exp(-2x)) - 1, which it replaces, was 7% off
    at 1e-6)."""
    grid = np.linspace(-12, 12, 2_000_001)
    tiny = 10.0 ** np.arange(-30, 1, 0.01)
    x = np.concatenate([grid, tiny, -tiny, [0.0]]).astype(np.float32)[None, :]
    y = kernels.simple_rnn_forward(x, np.zeros_like(x))
    exact = np.tanh(x.astype(np.float64))
    assert np.abs(y - exact).max() < 3.2e-7
    assert (np.abs(y - exact) / np.maximum(np.abs(exact), 1e-300)).max() < 3.2e-7
    assert np.abs(y).max() <= 1.0 and y[0, -1] == 0.0
    with jit.use_numba(False):
        assert np.abs(kernels.simple_rnn_forward(x, np.zeros_like(x)) - exact).max() < 1e-7


def test_the_sigmoid_saturates_without_overflow(backend):
    pre = np.full((2, 8), 1e4, np.float32)
    pre[1] = -1e4
    gates, _, h = backend.call(kernels.lstm_forward, pre, np.zeros_like(pre), np.zeros((2, 2), np.float32))
    assert np.isfinite(gates).all() and np.isfinite(h).all()
    np.testing.assert_array_equal(gates[0, [0, 1, 6, 7]], 1.0)
    np.testing.assert_array_equal(gates[1, [0, 1, 6, 7]], 0.0)


# --------------------------------------------------------------------------- LSTM

LSTM_CASES = [  # variant, pins
    ("standard", None), ("standard", {"f": 1.0, "i": 0.0}), ("standard", {"o": 1.0, "g": 0.0}),
    ("peephole", None), ("peephole", {"i": 1.0, "o": 0.0}), ("peephole", {"f": 0.0}),
    ("coupled", None), ("coupled", {"f": 1.0}), ("coupled", {"g": 0.0, "o": 1.0}),
]


def _lstm_inputs(rng, batch, units, variant, dtype=np.float32):
    width = len(kernels.LSTM_GATES[variant]) * units
    pre, rec = _rand(rng, batch, width, scale=2.0, dtype=dtype), _rand(rng, batch, width, dtype=dtype)
    c_prev = _rand(rng, batch, units, dtype=dtype)
    peephole = _rand(rng, 3, units, scale=0.5, dtype=dtype) if variant == "peephole" else None
    return pre, rec, c_prev, peephole


@pytest.mark.parametrize("variant,pins", LSTM_CASES)
@pytest.mark.parametrize("batch,units", [(1, 1), (3, 37), (5, 70)])
def test_lstm_kernels_match_twin(backend, variant, pins, batch, units):
    rng = np.random.default_rng(batch * 100 + units)
    pre, rec, c_prev, peephole = _lstm_inputs(rng, batch, units, variant)
    forward = backend.call(kernels.lstm_forward, pre, rec, c_prev, peephole, variant, pins)
    expected = kernels.lstm_forward(*_f64(pre, rec, c_prev, peephole), variant, pins)
    close(forward, expected, "forward")
    gates, c = forward[0], forward[1]
    dh, dh_next, dc_next = _rand(rng, batch, units), _rand(rng, batch, units), _rand(rng, batch, units)
    for carried_h, carried_c in ((dh_next, dc_next), (None, None), (dh_next, None)):
        dc_total = np.zeros((batch, units), np.float32)
        got = backend.call(kernels.lstm_backward, dh, carried_h, carried_c, gates, c_prev, c, peephole,
                           variant, pins, dc_total=dc_total)
        dc_total64 = np.zeros((batch, units))
        want = kernels.lstm_backward(*_f64(dh, carried_h, carried_c, gates, c_prev, c, peephole), variant, pins,
                                     dc_total=dc_total64)
        close(got, want, "backward")
        close(dc_total, dc_total64, "dL/dC_t")
    if variant == "peephole":
        d_pre = kernels.lstm_backward(dh, dh_next, dc_next, gates, c_prev, c, peephole, variant, pins)[0]
        start = _rand(rng, 3, units)
        got = start.copy()
        backend.call(kernels.lstm_peephole_grad, d_pre, c_prev, c, got)
        want = start.astype(np.float64)
        kernels.lstm_peephole_grad(*_f64(d_pre, c_prev, c), want)
        close(got, want, "peephole gradient")


@pytest.mark.parametrize("variant,pins", LSTM_CASES)
def test_lstm_twin_matches_closed_form_and_finite_differences(variant, pins):
    rng = np.random.default_rng(7)
    batch, units = 2, 3
    pre, rec, c_prev, peephole = _lstm_inputs(rng, batch, units, variant, np.float64)
    gates, c, h = kernels.lstm_forward(pre, rec, c_prev, peephole, variant, pins)
    for actual, wanted in zip((gates, c, h), cf.lstm_step(pre + rec, c_prev, peephole, variant, pins)):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-14)
    weight_h, weight_c = rng.standard_normal(h.shape), rng.standard_normal(c.shape)

    def loss():
        _, c_t, h_t = kernels.lstm_forward(pre, rec, c_prev, peephole, variant, pins)
        return float((h_t * weight_h).sum() + (c_t * weight_c).sum())

    # dL/dh_t = weight_h (split between from above and carried), dL/dC_t carried = weight_c
    dc_total = np.zeros_like(c)
    d_pre, dc_prev = kernels.lstm_backward(0.25 * weight_h, 0.75 * weight_h, weight_c, gates, c_prev, c, peephole,
                                           variant, pins, dc_total=dc_total)
    np.testing.assert_allclose(d_pre, numeric_grad(loss, pre), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dc_prev, numeric_grad(loss, c_prev), rtol=1e-6, atol=1e-8)
    if variant == "peephole":
        grads = np.zeros((3, units))
        kernels.lstm_peephole_grad(d_pre, c_prev, c, grads)
        np.testing.assert_allclose(grads, numeric_grad(loss, peephole), rtol=1e-6, atol=1e-8)
    # the total dL/dC_t: through h_t = o tanh(C_t), the carried part, and o_t's peephole
    o = gates.reshape(batch, -1, units)[:, -1]
    total = weight_h * o * (1 - np.tanh(c) ** 2) + weight_c
    if variant == "peephole" and "o" not in (pins or {}):
        total = total + weight_h * np.tanh(c) * o * (1 - o) * peephole[2]
    np.testing.assert_allclose(dc_total, total, rtol=1e-12)
    for gate, value in (pins or {}).items():
        k = kernels.LSTM_GATES[variant].index(gate)
        np.testing.assert_array_equal(gates.reshape(batch, -1, units)[:, k], value)
        np.testing.assert_array_equal(d_pre.reshape(batch, -1, units)[:, k], 0.0)


def test_a_coupled_cell_pinned_open_keeps_its_state_exactly(backend):
    """C_t = f C_{t-1} + (1 - f) g with f = 1 is C_{t-1} to the bit, over 1,000 float32 steps
    (the form g + f (C_{t-1} - g) drifted 3.3e-6)."""
    rng = np.random.default_rng(3)
    c0 = _rand(rng, 4, 16)
    c = backend.array(c0)
    pre = backend.array(_rand(rng, 4, 48, scale=3.0))
    gates, h = backend.array(np.zeros((4, 48))), backend.array(np.zeros((4, 16)))
    nxt = backend.array(np.zeros((4, 16)))
    with backend.active():
        for _ in range(1000):
            kernels.lstm_forward(pre, pre, c, None, "coupled", {"f": 1.0}, out=(gates, nxt, h))
            c, nxt = nxt, c
    np.testing.assert_array_equal(backend.host(c), c0)


# --------------------------------------------------------------------------- SimpleRNN

@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("shape", [(1, 1), (4, 77), (3, 300)])
def test_simple_rnn_kernels_match_twin(backend, activation, shape):
    rng = np.random.default_rng(3)
    pre, rec, dh, dh_next = _rand(rng, *shape, scale=2.0), _rand(rng, *shape), _rand(rng, *shape), _rand(rng, *shape)
    h = backend.call(kernels.simple_rnn_forward, pre, rec, activation)
    close(h, kernels.simple_rnn_forward(*_f64(pre, rec), activation))
    for carried in (dh_next, None):
        close(backend.call(kernels.simple_rnn_backward, dh, carried, h, activation),
              kernels.simple_rnn_backward(*_f64(dh, carried, h), activation))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_simple_rnn_twin_matches_closed_form(activation):
    rng = np.random.default_rng(4)
    pre, rec = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    pre[np.abs(pre + rec) < 1e-3] += 0.5  # keep relu's kink out of the central differences
    h = kernels.simple_rnn_forward(pre, rec, activation)
    np.testing.assert_allclose(h, cf.rnn_step(pre + rec, activation), rtol=1e-14)
    weight = rng.standard_normal(pre.shape)
    np.testing.assert_allclose(
        kernels.simple_rnn_backward(0.5 * weight, 0.5 * weight, h, activation),
        numeric_grad(lambda: float((kernels.simple_rnn_forward(pre, rec, activation) * weight).sum()), pre),
        rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- GRU

GRU_PINS = [None, {"r": 1.0}, {"z": 0.0}, {"z": 1.0, "n": 0.0}]


@pytest.mark.parametrize("pins", GRU_PINS)
@pytest.mark.parametrize("batch,units", [(1, 1), (3, 37), (5, 70)])
def test_gru_pytorch_kernels_match_twin(backend, pins, batch, units):
    rng = np.random.default_rng(batch + units)
    x_gates, h_gates = _rand(rng, batch, 3 * units, scale=2.0), _rand(rng, batch, 3 * units)
    h_prev, dh, dh_next = (_rand(rng, batch, units) for _ in range(3))
    b_hn = _rand(rng, units)
    for bias in (b_hn, None):
        forward = backend.call(kernels.gru_pytorch_forward, x_gates, h_gates, h_prev, pins, b_hn=bias)
        close(forward, kernels.gru_pytorch_forward(*_f64(x_gates, h_gates, h_prev), pins, b_hn=_f64(bias)[0]))
        gates = forward[0]
        for carried in (dh_next, None):
            close(backend.call(kernels.gru_pytorch_backward, dh, carried, gates, h_prev, h_gates, pins, b_hn=bias),
                  kernels.gru_pytorch_backward(*_f64(dh, carried, gates, h_prev, h_gates), pins, b_hn=_f64(bias)[0]))


@pytest.mark.parametrize("pins", GRU_PINS)
def test_gru_pytorch_twin_matches_closed_form_and_finite_differences(pins):
    rng = np.random.default_rng(5)
    batch, units = 2, 3
    x_gates, h_gates = rng.standard_normal((batch, 3 * units)), rng.standard_normal((batch, 3 * units))
    h_prev, b_hn = rng.standard_normal((batch, units)), rng.standard_normal(units)
    gates, h = kernels.gru_pytorch_forward(x_gates, h_gates, h_prev, pins, b_hn=b_hn)
    for actual, wanted in zip((gates, h), cf.gru_pytorch_step(x_gates, h_gates, h_prev, b_hn, pins)):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12)
    weight = rng.standard_normal(h.shape)

    def loss():
        return float((kernels.gru_pytorch_forward(x_gates, h_gates, h_prev, pins, b_hn=b_hn)[1] * weight).sum())

    d_x, d_h, dh_prev = kernels.gru_pytorch_backward(weight, None, gates, h_prev, h_gates, pins, b_hn=b_hn)
    # h_gates is an input of its own here, so dL/dh_prev is the direct part alone
    for analytic, wrt in ((d_x, x_gates), (d_h, h_gates), (dh_prev, h_prev), (d_h[:, 2 * units:].sum(0), b_hn)):
        np.testing.assert_allclose(analytic, numeric_grad(loss, wrt), rtol=1e-6, atol=1e-8)


def _cho_step(call, x_gates, h_rz, h_prev, u_n, dh, dh_next, pins):
    """A whole Cho-form step and its backward through ``call``: kernels around the two GEMMs
    with U_n (done in float64 NumPy here, outside the kernels under test)."""
    gates, r_h_prev = call(kernels.gru_cho_forward_rz, x_gates, h_rz, h_prev, pins)
    h_n = (r_h_prev.astype(np.float64) @ u_n).astype(x_gates.dtype)
    gates, h = call(kernels.gru_cho_forward_n, x_gates, h_n, h_prev, gates.copy(), pins)
    units = h_prev.shape[1]
    d_gates, dh_prev = call(kernels.gru_cho_backward_n, dh, dh_next, gates, h_prev, pins)
    d_r_h_prev = (d_gates[:, 2 * units:].astype(np.float64) @ u_n.T).astype(x_gates.dtype)
    d_gates, dh_prev = call(kernels.gru_cho_backward_r, d_r_h_prev, gates, h_prev, d_gates.copy(),
                            dh_prev.copy(), pins)
    return gates, h, r_h_prev, d_gates, dh_prev


def _direct(function, *args, **kwargs):
    return function(*args, **kwargs)


@pytest.mark.parametrize("pins", GRU_PINS + [{"r": 0.0, "n": 1.0}])
@pytest.mark.parametrize("batch,units", [(1, 1), (3, 37), (4, 70)])
def test_gru_cho_kernels_match_twin(backend, pins, batch, units):
    rng = np.random.default_rng(batch * units)
    args = (_rand(rng, batch, 3 * units, scale=2.0), _rand(rng, batch, 2 * units), _rand(rng, batch, units),
            _rand(rng, units, units, scale=0.3), _rand(rng, batch, units))
    for dh_next in (_rand(rng, batch, units), None):
        got = _cho_step(backend.call, *args, dh_next, pins)
        want = _cho_step(_direct, *_f64(*args), _f64(dh_next)[0], pins)
        close(got, want)


@pytest.mark.parametrize("pins", GRU_PINS)
def test_gru_cho_twin_matches_closed_form_and_finite_differences(pins):
    rng = np.random.default_rng(6)
    batch, units = 2, 3
    x_gates, h_rz = rng.standard_normal((batch, 3 * units)), rng.standard_normal((batch, 2 * units))
    h_prev, u_n = rng.standard_normal((batch, units)), rng.standard_normal((units, units)) * 0.5
    weight = rng.standard_normal((batch, units))
    gates, h, r_h_prev, d_gates, dh_prev = _cho_step(_direct, x_gates, h_rz, h_prev, u_n, weight, None, pins)
    np.testing.assert_allclose(h, cf.gru_cho_step(x_gates, h_rz, h_prev, u_n, pins), rtol=1e-12)

    def loss():
        return float((_cho_step(_direct, x_gates, h_rz, h_prev, u_n, weight, None, pins)[1] * weight).sum())

    np.testing.assert_allclose(d_gates, numeric_grad(loss, x_gates), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d_gates[:, :2 * units], numeric_grad(loss, h_rz), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dh_prev, numeric_grad(loss, h_prev), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r_h_prev.T @ d_gates[:, 2 * units:], numeric_grad(loss, u_n),
                               rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- im2col / col2im

CONV_CASES = [  # (N, C, H, W), kh, kw, stride, pads (top, bottom, left, right)
    ((2, 3, 7, 6), 3, 3, 1, (1, 1, 1, 1)),
    ((1, 2, 9, 8), 3, 2, (2, 3), (0, 1, 2, 0)),
    ((3, 1, 5, 5), 5, 5, 1, (0, 0, 0, 0)),
    ((2, 4, 11, 13), 4, 3, 3, (2, 2, 1, 1)),
    ((1, 1, 1, 1), 1, 1, 1, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", CONV_CASES)
def test_im2col_col2im_kernels_match_twin(backend, x_shape, kh, kw, stride, pads):
    rng = np.random.default_rng(8)
    x = _rand(rng, *x_shape)
    col = backend.call(kernels.im2col, x, kh, kw, stride, pads)
    np.testing.assert_array_equal(col, kernels.im2col(x.astype(np.float64), kh, kw, stride, pads))  # copies
    d_col = _rand(rng, *col.shape)
    close(backend.call(kernels.col2im, d_col, x_shape, stride, pads),
          kernels.col2im(d_col.astype(np.float64), x_shape, stride, pads))


@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", CONV_CASES)
def test_im2col_twin_matches_definition_and_col2im_is_its_adjoint(x_shape, kh, kw, stride, pads):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape)
    col = kernels.im2col(x, kh, kw, stride, pads)
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    top, left = pads[0], pads[2]
    assert col.shape[4] == (x_shape[2] + pads[0] + pads[1] - kh) // sy + 1
    for c, u, v, n, i, j in np.ndindex(col.shape):
        y, xx = i * sy + u - top, j * sx + v - left
        inside = 0 <= y < x_shape[2] and 0 <= xx < x_shape[3]
        assert col[c, u, v, n, i, j] == (x[n, c, y, xx] if inside else 0.0)
    d_col = rng.standard_normal(col.shape)
    np.testing.assert_allclose((col * d_col).sum(), (x * kernels.col2im(d_col, x_shape, stride, pads)).sum())


# --------------------------------------------------------------------------- pooling

POOL_CASES = [  # (N, C, H, W), kh, kw, stride, pads
    ((2, 3, 8, 8), 2, 2, 2, (0, 0, 0, 0)),
    ((1, 2, 7, 9), 3, 3, 2, (1, 1, 1, 1)),
    ((2, 1, 10, 7), 3, 2, (1, 2), (2, 0, 0, 1)),
    ((3, 2, 5, 6), 2, 3, 3, (1, 0, 1, 1)),
]


@pytest.mark.parametrize("integers", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", POOL_CASES)
def test_max_pool_kernels_match_twin(backend, x_shape, kh, kw, stride, pads, integers):
    rng = np.random.default_rng(10)
    x = rng.integers(-2, 3, x_shape).astype(np.float32) if integers else _rand(rng, *x_shape)
    y, argmax = backend.call(kernels.max_pool2d_forward, x, kh, kw, stride, pads)
    y_ref, argmax_ref = kernels.max_pool2d_forward(x.astype(np.float64), kh, kw, stride, pads)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.dtype == np.int32
    dy = _rand(rng, *y.shape)
    close(backend.call(kernels.max_pool2d_backward, dy, argmax, x_shape, kh, kw, stride, pads),
          kernels.max_pool2d_backward(dy.astype(np.float64), argmax, x_shape, kh, kw, stride, pads))


@pytest.mark.parametrize("count_pad", [True, False])
@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", POOL_CASES)
def test_avg_pool_kernels_match_twin(backend, x_shape, kh, kw, stride, pads, count_pad):
    rng = np.random.default_rng(13)
    x = _rand(rng, *x_shape)
    y = backend.call(kernels.avg_pool2d_forward, x, kh, kw, stride, pads, count_pad)
    close(y, kernels.avg_pool2d_forward(x.astype(np.float64), kh, kw, stride, pads, count_pad))
    dy = _rand(rng, *y.shape)
    close(backend.call(kernels.avg_pool2d_backward, dy, x_shape, kh, kw, stride, pads, count_pad),
          kernels.avg_pool2d_backward(dy.astype(np.float64), x_shape, kh, kw, stride, pads, count_pad))


@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", POOL_CASES)
def test_pool_twins_match_definition_and_gradients(x_shape, kh, kw, stride, pads):
    rng = np.random.default_rng(14)
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape) / 7.0  # distinct: one winner per window
    y, argmax = kernels.max_pool2d_forward(x, kh, kw, stride, pads)
    mean_pad = kernels.avg_pool2d_forward(x, kh, kw, stride, pads, True)
    mean_real = kernels.avg_pool2d_forward(x, kh, kw, stride, pads, False)
    for n, c, i, j, pixels in cf.pool_windows(x_shape, kh, kw, stride, pads):
        values = [x[n, c, yy, xx] for yy, xx in pixels]
        assert y[n, c, i, j] == max(values)
        np.testing.assert_allclose(mean_pad[n, c, i, j], sum(values) / (kh * kw))
        np.testing.assert_allclose(mean_real[n, c, i, j], sum(values) / len(values))
    weight = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        kernels.max_pool2d_backward(weight, argmax, x_shape, kh, kw, stride, pads),
        numeric_grad(lambda: float((kernels.max_pool2d_forward(x, kh, kw, stride, pads)[0] * weight).sum()), x, 1e-4),
        atol=1e-8)
    for count_pad in (True, False):
        np.testing.assert_allclose(
            kernels.avg_pool2d_backward(weight, x_shape, kh, kw, stride, pads, count_pad),
            numeric_grad(lambda: float((kernels.avg_pool2d_forward(x, kh, kw, stride, pads, count_pad)
                                        * weight).sum()), x, 1e-3),  # linear: any step is exact
            rtol=1e-6, atol=1e-8)


def test_pool_refuses_pads_as_wide_as_the_window():
    with pytest.raises(ValueError, match="smaller than the window"):
        kernels.max_pool2d_forward(np.zeros((1, 1, 4, 4), np.float32), 2, 2, 2, (2, 0, 0, 0))


# --------------------------------------------------------------------------- softmax cross-entropy

def _softmax_cross_entropy(call, logits, labels, scale=None):
    probs, stats = call(kernels.softmax_forward, logits)
    loss = call(kernels.cross_entropy_loss, logits, stats, labels)
    return probs, stats, loss, call(kernels.softmax_cross_entropy_backward, probs, labels, scale)


@pytest.mark.parametrize("rows,classes", [(1, 1), (5, 10), (300, 3), (7, 129)])
def test_softmax_cross_entropy_kernels_match_twin(backend, rows, classes):
    rng = np.random.default_rng(rows + classes)
    logits = _rand(rng, rows, classes, scale=3.0)
    labels = rng.integers(0, classes, rows)
    for scale in (None, 0.25):
        close(_softmax_cross_entropy(backend.call, logits, labels, scale),
              _softmax_cross_entropy(_direct, logits.astype(np.float64), labels, scale))


def test_softmax_cross_entropy_is_stable_and_flags_bad_labels(backend):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [0.0, 1.0, 2.0], [-60.0, 0.0, 0.0]], np.float32)
    labels = np.array([1, 2, 3, 0])
    probs, _, loss, _ = _softmax_cross_entropy(backend.call, logits, labels)
    # a sample far off (p = 1e-26) counts fully, not as -log(1e-12) = 27.6
    np.testing.assert_allclose(loss[[0, 1, 3]], [1e4, math.log(3), 60 + math.log(2)], rtol=1e-6)
    assert np.isnan(loss[2])
    assert np.isfinite(probs).all()


def test_softmax_cross_entropy_twin_matches_closed_form_and_gradient():
    rng = np.random.default_rng(15)
    logits, labels = rng.standard_normal((4, 5)) * 3, np.array([0, 4, 2, 2])
    probs, _, loss, grad = _softmax_cross_entropy(_direct, logits, labels)
    want_probs, want_loss = cf.cross_entropy(logits, labels)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-12)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda: float(_softmax_cross_entropy(_direct, logits, labels)[2].mean()), logits),
        rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- GEMM

@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_takes_slices_and_transposed_views_without_copies(backend, accumulate):
    """The shapes the step loops pass: plain blocks, column slices of a wider matrix (Cho's
    U_rz, U_n, d_gates[:, :2H]) and transposed views (U.T)."""
    rng = np.random.default_rng(22)
    wide, u, h = backend.array(_rand(rng, 4, 9)), backend.array(_rand(rng, 3, 9)), backend.array(_rand(rng, 4, 3))
    cases = [(h, u), (h, u[:, :6]), (wide[:, 6:], u[:, 6:].T), (wide[:, :6], u[:, :6].T), (wide, u.T)]
    for a, b in cases:
        start = backend.array(_rand(rng, a.shape[0], b.shape[1]))
        expected = backend.host(a).astype(np.float64) @ backend.host(b) + (backend.host(start) if accumulate else 0)
        with backend.active():
            out = start.copy()
            assert kernels.gemm(a, b, out, accumulate=accumulate) is out
        close(backend.host(out), expected, rtol=1e-5)
    with backend.active(), pytest.raises(ValueError, match="do not fit"):
        kernels.gemm(h, u, backend.array(np.zeros((4, 8))))
    if backend.name in ("emulated", "gpu"):      # what cuBLAS could not address without a copy
        strided = backend.array(_rand(rng, 6, 6))[::2, ::2]
        with backend.active(), pytest.raises(ValueError, match="unit-stride"):
            kernels.gemm(strided, u[:, :3], backend.array(np.zeros((3, 3))))


# --------------------------------------------------------------------------- optimizers

SGD_CASES = [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2), (0.5, False, 1e-3)]
ADAM_CASES = [(0.0, False), (1e-2, False), (1e-2, True)]


@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CASES)
@pytest.mark.parametrize("shape", [(1,), (1000,), (33, 31)])
def test_sgd_kernel_matches_the_update_rule(backend, momentum, nesterov, weight_decay, shape):
    rng = np.random.default_rng(16)
    start = _rand(rng, *shape)
    grads = [_rand(rng, *shape) for _ in range(3)]
    param, velocity = start.copy(), np.zeros(shape, np.float32) if momentum else None
    for grad in grads:
        backend.call(kernels.sgd_update, param, grad, velocity, 0.1, momentum, nesterov, weight_decay)
    close(param, cf.sgd(start, grads, 0.1, momentum, nesterov, weight_decay), rtol=1e-5)


@pytest.mark.parametrize("weight_decay,decoupled", ADAM_CASES)
@pytest.mark.parametrize("shape", [(1,), (33, 31)])
def test_adam_kernel_matches_the_update_rule(backend, weight_decay, decoupled, shape):
    rng = np.random.default_rng(17)
    start = _rand(rng, *shape)
    grads = [_rand(rng, *shape) for _ in range(3)]
    param, m, v = start.copy(), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for t, grad in enumerate(grads, start=1):
        backend.call(kernels.adam_update, param, grad, m, v, 1e-2, 0.9, 0.999, 1e-8, weight_decay,
                     1 - 0.9 ** t, 1 - 0.999 ** t, decoupled)
    close(param, cf.adam(start, grads, 1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled), rtol=1e-5)


@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CASES)
def test_sgd_twin_matches_closed_form(momentum, nesterov, weight_decay):
    rng = np.random.default_rng(18)
    param, grads = rng.standard_normal(4), list(rng.standard_normal((2, 4)))
    expected = cf.sgd(param, grads, 0.1, momentum, nesterov, weight_decay)
    velocity = np.zeros(4) if momentum else None
    for g in grads:
        kernels.sgd_update(param, g, velocity, 0.1, momentum, nesterov, weight_decay)
    np.testing.assert_allclose(param, expected, rtol=1e-12)


@pytest.mark.parametrize("weight_decay,decoupled", ADAM_CASES)
def test_adam_twin_matches_closed_form(weight_decay, decoupled):
    rng = np.random.default_rng(19)
    param, grads = rng.standard_normal(4), list(rng.standard_normal((3, 4)))
    expected = cf.adam(param, grads, 1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    m, v = np.zeros(4), np.zeros(4)
    for t, g in enumerate(grads, start=1):
        kernels.adam_update(param, g, m, v, 1e-2, 0.9, 0.999, 1e-8, weight_decay, 1 - 0.9 ** t, 1 - 0.999 ** t,
                            decoupled)
    np.testing.assert_allclose(param, expected, rtol=1e-12)


# --------------------------------------------------------------------------- NaN and infinity

def _non_finite_inputs(*shape):
    rng = np.random.default_rng(21)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 1], x[0, 2], x[-1, 0] = np.nan, np.inf, -np.inf
    return x


@pytest.mark.skipif(not jit.available(), reason=str(jit.why_not()))
@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_the_numba_kernels_keep_nan_and_infinity_where_their_twins_do(cell):
    # A diverging training must stop on its first NaN (the trainer checks the loss). With LLVM's
    # "no NaN" fast-math flag the kernels had folded NaN away: tanh(NaN) came out as 1.
    batch, units = 3, 8
    state = np.random.default_rng(22).standard_normal((batch, units)).astype(np.float32)
    state[1, 3] = np.nan

    def run():
        if cell.startswith("rnn"):
            return [kernels.simple_rnn_forward(_non_finite_inputs(batch, units), state,
                                               activation=cell.split("-")[1])]
        if cell == "lstm":
            return list(kernels.lstm_forward(_non_finite_inputs(batch, 4 * units), _non_finite_inputs(batch, 4 * units),
                                             state))
        return list(kernels.gru_pytorch_forward(_non_finite_inputs(batch, 3 * units),
                                                _non_finite_inputs(batch, 3 * units), state,
                                                b_hn=np.zeros(units, np.float32)))

    compiled = run()
    with jit.use_numba(False):
        twins = run()
    for got, want in zip(compiled, twins):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        assert np.isnan(got).any()


# --------------------------------------------------------------------------- ahead of the first training

@pytest.mark.skipif(not jit.available(), reason=str(jit.why_not()))
def test_prepare_compiles_every_cpu_kernel_for_float32_from_any_thread():
    import threading
    reports = []
    worker = threading.Thread(target=lambda: reports.append(kernels.prepare()))
    worker.start()
    worker.join()
    ours = [k for k in jit.kernels() if k.python.__module__.startswith("gatescope.compute.kernels")]
    assert {f"{k.python.__module__.rsplit('.', 1)[1]}.{k.name}" for k in ours} == {
        "lstm._forward", "lstm._coupled_forward", "lstm._backward", "lstm._coupled_backward",
        "lstm._peephole_grad", "rnn._forward", "rnn._backward", "gru._pytorch_forward", "gru._pytorch_backward",
        "gru._cho_forward_rz", "gru._cho_forward_n", "gru._cho_backward_n", "gru._cho_backward_r",
        "optim._sgd", "optim._adam"}
    for k in ours:
        assert k.compiled and k.signatures(), f"{k.name} was not compiled"
        arrays = [t for sig in k.signatures() for t in sig if hasattr(t, "dtype") and hasattr(t, "ndim")]
        assert arrays and all(str(t.dtype) == "float32" and t.layout == "C" for t in arrays), (k.name, arrays)
    report = reports[0]
    assert report["numba"] and report["note"] is None and report["kernels"] >= len(ours)
    assert kernels.prepare()["seconds"] < 0.5                  # a second call finds everything compiled
