"""The CUDA kernels: compiled by NVRTC for the GPUs we target, executed on the CPU from their
own source (g++ against ``kernel_emulator/gs_emulator.h``) through the very launch functions
a GPU run uses, and compared with their NumPy twins; the twins in turn are held to closed
forms written out element by element and to float64 central differences.
"""
from __future__ import annotations

import copy
import ctypes
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest

import kernel_emulator as emu
from gatescope.compute import kernels
from gatescope.compute.kernels import reference as ref
from gradcheck import numeric_grad

RTOL, ATOL = 3e-5, 3e-6  # float32 kernel vs float32 twin: libm differences, a few ulp


# --------------------------------------------------------------------------- harness

@pytest.fixture(scope="module")
def backends():
    """Forward-order and reverse-order emulators, every module built once (cached on disk)."""
    forward, reverse = emu.EmulatorBackend(), emu.EmulatorBackend(reverse=True)
    for module in kernels.MODULES:
        forward.load(module)
        reverse.load(module)
    return forward, reverse


@pytest.fixture
def gpu(backends, monkeypatch):
    """``gpu(name, *args, **kwargs)`` runs ``compute.kernels.<name>`` on the emulator twice:
    threads in order with the default launch shape, then threads in reverse with 32-thread
    blocks and at most 3 blocks (so every grid-stride loop wraps). Both runs must agree
    bit for bit, arguments updated in place included; returns the first run's result."""
    forward, reverse = backends

    def run(name, *args, **kwargs):
        function = getattr(kernels, name)
        args_again, kwargs_again = copy.deepcopy(args), copy.deepcopy(kwargs)
        with kernels.host_backend(forward):
            first = function(*args, **kwargs)
        monkeypatch.setattr(kernels, "BLOCK_SIZE", 32)
        monkeypatch.setattr(kernels, "MAX_BLOCKS", 3)
        try:
            with kernels.host_backend(reverse):
                second = function(*args_again, **kwargs_again)
        finally:
            monkeypatch.undo()
        _assert_identical(first, second, f"{name}: result")
        _assert_identical(args, args_again, f"{name}: arguments updated in place")
        return first
    return run


def _assert_identical(a, b, what):
    if isinstance(a, (tuple, list)):
        for x, y in zip(a, b):
            _assert_identical(x, y, what)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=f"{what} depends on thread order or grid shape")


def _close(actual, expected, what=""):
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for k, (x, y) in enumerate(zip(actual, expected)):
            _close(x, y, f"{what}[{k}]")
    elif expected is None:
        assert actual is None, what
    else:
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def _rand(rng, *shape, scale=1.0, dtype=np.float32):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- sources and NVRTC

def _declared_kernels(text: str) -> list[str]:
    return re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)', text)


def test_every_cu_file_is_a_listed_module_and_lists_its_kernels():
    files = sorted(p.stem for p in kernels.KERNEL_DIR.glob("*.cu"))
    assert files == sorted(kernels.MODULES)
    for module, names in kernels.MODULES.items():
        assert tuple(_declared_kernels(kernels.kernel_source(module))) == names
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
        options = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in kernels.COMPILE_OPTIONS)]
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


# --------------------------------------------------------------------------- the emulator itself

def test_emulator_refuses_what_a_gpu_would_misread(backends):
    forward, _ = backends
    launch = forward.function("rnn", "simple_rnn_forward")
    pre = np.zeros(10, np.float32)
    h = np.zeros(10, np.float32)
    good = (pre, h, np.int64(10), np.int32(0))
    launch((1,), (32,), good)
    with pytest.raises(emu.LaunchError, match="numpy.int64|int64"):
        launch((1,), (32,), (pre, h, 10, np.int32(0)))  # a Python int would travel as 64 bits
    with pytest.raises(emu.LaunchError, match="float32"):
        launch((1,), (32,), (pre, h, np.int64(10), np.float32(0)))
    with pytest.raises(emu.LaunchError, match="takes 4 arguments"):
        launch((1,), (32,), good[:3])
    with pytest.raises(emu.LaunchError, match="float64 array"):
        launch((1,), (32,), (pre.astype(np.float64), h, np.int64(10), np.int32(0)))
    with pytest.raises(emu.LaunchError, match="C-contiguous"):
        launch((1,), (32,), (np.zeros(20, np.float32)[::2], h, np.int64(10), np.int32(0)))
    with pytest.raises(emu.LaunchError, match="launch configuration"):
        launch((1,), (2048,), good)
    with pytest.raises(emu.LaunchError, match="launch configuration"):
        launch((0,), (32,), good)
    with pytest.raises(emu.LaunchError, match="past the end of h"):
        launch((1,), (32,), (np.zeros(12, np.float32), h, np.int64(12), np.int32(0)))


def test_kernels_refuse_numpy_arrays_without_a_host_backend():
    assert kernels.implementation_for(np.zeros(3)) is ref
    with pytest.raises(TypeError, match="reference"):
        kernels.simple_rnn_forward(np.zeros((2, 3), np.float32))


def test_cupy_path_builds_one_raw_module_per_source_and_launches_by_name(backends, monkeypatch):
    """The GPU path with CuPy stood in for: RawModule gets the pasted source and the NVRTC
    options (with CuPy 13's keywords only), kernels are looked up by their plain names, and
    launches go to them with the same (grid, block, args)."""
    forward, _ = backends
    built = []

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
            return lambda grid, block, args: emulated(grid, block, tuple(
                a.view(np.ndarray) if isinstance(a, FakeArray) else a for a in args))

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

    monkeypatch.setattr(kernels._backend_module, "cupy", FakeCupy)
    monkeypatch.setattr(kernels, "_CUPY_BACKEND", kernels.CupyBackend())
    pre = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4).view(FakeArray)
    h = kernels.simple_rnn_forward(pre)
    kernels.simple_rnn_backward(pre, h)
    assert isinstance(h, FakeArray)
    np.testing.assert_allclose(h.view(np.ndarray), np.tanh(pre.view(np.ndarray)), rtol=1e-6)
    assert built == [(kernels.kernel_source("rnn"), kernels.COMPILE_OPTIONS)]  # memoized
    assert kernels.implementation_for(pre) is kernels


def test_launch_shape_is_one_thread_per_element(backends):
    forward, _ = backends
    forward.launches.clear()
    with kernels.host_backend(forward):
        kernels.simple_rnn_forward(np.zeros((3, 300), np.float32))
        kernels.softmax_cross_entropy_forward(np.zeros((5, 7), np.float32), np.zeros(5, np.int64))
    assert forward.launches == [("simple_rnn_forward", (4, 1, 1), (256, 1, 1)),
                                ("softmax_forward", (1, 1, 1), (256, 1, 1)),
                                ("cross_entropy_loss", (1, 1, 1), (256, 1, 1))]


# --------------------------------------------------------------------------- LSTM

LSTM_CASES = [  # variant, pins
    ("standard", None), ("standard", {"f": 1.0, "i": 0.0}), ("standard", {"o": 1.0, "g": 0.0}),
    ("peephole", None), ("peephole", {"i": 1.0, "o": 0.0}), ("peephole", {"f": 0.0}),
    ("coupled", None), ("coupled", {"f": 1.0}), ("coupled", {"g": 0.0, "o": 1.0}),
]


def _lstm_inputs(rng, batch, units, variant, dtype=np.float32):
    n_gates = len(kernels.LSTM_GATES[variant])
    pre = _rand(rng, batch, n_gates * units, scale=2.0, dtype=dtype)
    c_prev = _rand(rng, batch, units, dtype=dtype)
    peephole = _rand(rng, 3, units, scale=0.5, dtype=dtype) if variant == "peephole" else None
    return pre, c_prev, peephole


@pytest.mark.parametrize("variant,pins", LSTM_CASES)
@pytest.mark.parametrize("batch,units", [(1, 1), (3, 37), (5, 70)])
def test_lstm_kernels_match_twin(gpu, variant, pins, batch, units):
    rng = np.random.default_rng(batch * 100 + units)
    pre, c_prev, peephole = _lstm_inputs(rng, batch, units, variant)
    forward = gpu("lstm_forward", pre, c_prev, peephole, variant, pins, keep_tanh_c=True)
    _close(forward, ref.lstm_forward(pre, c_prev, peephole, variant, pins, keep_tanh_c=True), "forward")
    assert gpu("lstm_forward", pre, c_prev, peephole, variant, pins)[3] is None
    gates, c = forward[0], forward[1]
    dh, dc_next = _rand(rng, batch, units), _rand(rng, batch, units)
    for carried in (dc_next, None):
        _close(gpu("lstm_backward", dh, carried, gates, c_prev, c, peephole, variant, pins),
               ref.lstm_backward(dh, carried, gates, c_prev, c, peephole, variant, pins), "backward")
    # dh_next: the kernel adds the carried dL/dh itself, exactly as if the sum were passed
    dh_next = _rand(rng, batch, units)
    _close(gpu("lstm_backward", dh, dc_next, gates, c_prev, c, peephole, variant, pins, dh_next=dh_next),
           ref.lstm_backward(dh + dh_next, dc_next, gates, c_prev, c, peephole, variant, pins), "dh_next")
    _close(ref.lstm_backward(dh, dc_next, gates, c_prev, c, peephole, variant, pins, dh_next=dh_next),
           ref.lstm_backward(dh + dh_next, dc_next, gates, c_prev, c, peephole, variant, pins), "twin dh_next")
    if variant == "peephole":
        d_pre = ref.lstm_backward(dh, dc_next, gates, c_prev, c, peephole, variant, pins)[0]
        start = _rand(rng, 3, units)
        _close(gpu("lstm_peephole_grad", d_pre, c_prev, c, start.copy()),
               ref.lstm_peephole_grad(d_pre, c_prev, c, start.copy()), "peephole grad")


def test_lstm_sigmoid_saturates_without_overflow(gpu):
    pre = np.full((2, 8), 1e4, np.float32)
    pre[1] = -1e4
    gates, c, h, _ = gpu("lstm_forward", pre, np.zeros((2, 2), np.float32))
    assert np.isfinite(gates).all() and np.isfinite(h).all()
    np.testing.assert_array_equal(gates[0, [0, 1, 6, 7]], 1.0)
    np.testing.assert_array_equal(gates[1, [0, 1, 6, 7]], 0.0)


def _lstm_closed_form(pre, c_prev, peephole, variant, pins):
    """The lecture equations, one sample and one unit at a time, in Python floats."""
    pins = pins or {}
    batch, units = c_prev.shape
    out_gates, out_c, out_h = np.zeros_like(pre), np.zeros_like(c_prev), np.zeros_like(c_prev)
    for b in range(batch):
        for j in range(units):
            def a(k):
                return float(pre[b, k * units + j])
            cp = float(c_prev[b, j])
            if variant == "coupled":
                f = pins.get("f", _sigmoid(a(0)))
                g = pins.get("g", math.tanh(a(1)))
                o = pins.get("o", _sigmoid(a(2)))
                i = 1.0 - f
                values = (f, g, o)
            else:
                w_ci, w_cf, w_co = (peephole[:, j] if variant == "peephole" else (0.0, 0.0, 0.0))
                i = pins.get("i", _sigmoid(a(0) + w_ci * cp))
                f = pins.get("f", _sigmoid(a(1) + w_cf * cp))
                g = pins.get("g", math.tanh(a(2)))
            c = f * cp + i * g
            if variant != "coupled":
                o = pins.get("o", _sigmoid(a(3) + w_co * c))
                values = (i, f, g, o)
            for k, value in enumerate(values):
                out_gates[b, k * units + j] = value
            out_c[b, j], out_h[b, j] = c, o * math.tanh(c)
    return out_gates, out_c, out_h


@pytest.mark.parametrize("variant,pins", LSTM_CASES)
def test_lstm_twin_matches_closed_form_and_finite_differences(variant, pins):
    rng = np.random.default_rng(7)
    batch, units = 2, 3
    pre, c_prev, peephole = _lstm_inputs(rng, batch, units, variant, np.float64)
    gates, c, h, tanh_c = ref.lstm_forward(pre, c_prev, peephole, variant, pins, keep_tanh_c=True)
    expected = _lstm_closed_form(pre, c_prev, peephole, variant, pins)
    for actual, wanted in zip((gates, c, h), expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tanh_c, np.tanh(c), rtol=1e-14)

    weight_h, weight_c = rng.standard_normal(h.shape), rng.standard_normal(c.shape)

    def loss():
        _, c_t, h_t, _ = ref.lstm_forward(pre, c_prev, peephole, variant, pins)
        return float((h_t * weight_h).sum() + (c_t * weight_c).sum())

    d_pre, dc_prev = ref.lstm_backward(weight_h, weight_c, gates, c_prev, c, peephole, variant, pins)
    np.testing.assert_allclose(d_pre, numeric_grad(loss, pre), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dc_prev, numeric_grad(loss, c_prev), rtol=1e-6, atol=1e-8)
    if variant == "peephole":
        np.testing.assert_allclose(ref.lstm_peephole_grad(d_pre, c_prev, c),
                                   numeric_grad(loss, peephole), rtol=1e-6, atol=1e-8)
    for gate, value in (pins or {}).items():
        k = kernels.LSTM_GATES[variant].index(gate)
        np.testing.assert_array_equal(gates.reshape(batch, -1, units)[:, k], value)
        np.testing.assert_array_equal(d_pre.reshape(batch, -1, units)[:, k], 0.0)


def test_pins_are_checked_against_the_cell():
    with pytest.raises(ValueError, match="cannot pin gate"):
        kernels.pin_values({"i": 0.0}, "fgo")
    assert kernels.pin_values({"f": 1.0, "i": None}, "ifgo") == (-1.0, 1.0, -1.0, -1.0)


# --------------------------------------------------------------------------- ConvLSTM

@pytest.mark.parametrize("pins", [None, {"f": 1.0, "i": 0.0}])
def test_convlstm_kernels_match_twin(gpu, pins):
    rng = np.random.default_rng(11)
    batch, filters, height, width = 2, 3, 5, 7
    pre = _rand(rng, batch, 4 * filters, height, width, scale=2.0)
    c_prev = _rand(rng, batch, filters, height, width)
    peephole = _rand(rng, 3, filters, height, width, scale=0.5)
    forward = gpu("convlstm_forward", pre, c_prev, peephole, pins=pins)
    _close(forward, ref.convlstm_forward(pre, c_prev, peephole, pins=pins), "forward")
    gates, c = forward[0], forward[1]
    dh, dc_next = _rand(rng, *c.shape), _rand(rng, *c.shape)
    backward = gpu("convlstm_backward", dh, dc_next, gates, c_prev, c, peephole, pins=pins)
    _close(backward, ref.convlstm_backward(dh, dc_next, gates, c_prev, c, peephole, pins=pins))
    _close(gpu("convlstm_peephole_grad", backward[0], c_prev, c),
           ref.convlstm_peephole_grad(backward[0], c_prev, c))


def test_convlstm_twin_is_the_per_pixel_peephole_lstm():
    """Channel block k of the maps is gate k; pixel (f, y, x) is one LSTM unit whose peephole
    weights are peephole[:, f, y, x]: checked against the dense twin pixel by pixel."""
    rng = np.random.default_rng(12)
    batch, filters, height, width = 2, 2, 3, 4
    pre = rng.standard_normal((batch, 4 * filters, height, width))
    c_prev = rng.standard_normal((batch, filters, height, width))
    peephole = rng.standard_normal((3, filters, height, width))
    gates, c, h, _ = ref.convlstm_forward(pre, c_prev, peephole)
    for f in range(filters):
        for y in range(height):
            for x in range(width):
                unit_pre = pre[:, [k * filters + f for k in range(4)], y, x]
                g1, c1, h1, _ = ref.lstm_forward(unit_pre, c_prev[:, f:f + 1, y, x],
                                                 peephole[:, f:f + 1, y, x], "peephole")
                np.testing.assert_allclose(gates[:, [k * filters + f for k in range(4)], y, x], g1)
                np.testing.assert_allclose(c[:, f, y, x], c1[:, 0])
                np.testing.assert_allclose(h[:, f, y, x], h1[:, 0])


# --------------------------------------------------------------------------- SimpleRNN

@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("shape", [(1, 1), (4, 77), (3, 300)])
def test_simple_rnn_kernels_match_twin(gpu, activation, shape):
    rng = np.random.default_rng(3)
    pre, dh = _rand(rng, *shape, scale=2.0), _rand(rng, *shape)
    h = gpu("simple_rnn_forward", pre, activation)
    _close(h, ref.simple_rnn_forward(pre, activation))
    _close(gpu("simple_rnn_backward", dh, h, activation), ref.simple_rnn_backward(dh, h, activation))
    dh_next = _rand(rng, *shape)
    _close(gpu("simple_rnn_backward", dh, h, activation, dh_next=dh_next),
           ref.simple_rnn_backward(dh + dh_next, h, activation))
    _close(ref.simple_rnn_backward(dh, h, activation, dh_next=dh_next),
           ref.simple_rnn_backward(dh + dh_next, h, activation))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_simple_rnn_twin_matches_closed_form(activation):
    rng = np.random.default_rng(4)
    pre = rng.standard_normal((3, 5))
    pre[np.abs(pre) < 1e-3] = 0.5  # keep relu's kink out of the central differences
    act = math.tanh if activation == "tanh" else (lambda v: max(v, 0.0))
    np.testing.assert_allclose(ref.simple_rnn_forward(pre, activation), np.vectorize(act)(pre))
    weight = rng.standard_normal(pre.shape)
    h = ref.simple_rnn_forward(pre, activation)
    np.testing.assert_allclose(
        ref.simple_rnn_backward(weight, h, activation),
        numeric_grad(lambda: float((ref.simple_rnn_forward(pre, activation) * weight).sum()), pre),
        rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- GRU

GRU_PINS = [None, {"r": 1.0}, {"z": 0.0}, {"z": 1.0, "n": 0.0}]


@pytest.mark.parametrize("pins", GRU_PINS)
@pytest.mark.parametrize("batch,units", [(1, 1), (3, 37), (5, 70)])
def test_gru_pytorch_kernels_match_twin(gpu, pins, batch, units):
    rng = np.random.default_rng(batch + units)
    x_gates, h_gates = _rand(rng, batch, 3 * units, scale=2.0), _rand(rng, batch, 3 * units)
    h_prev, dh = _rand(rng, batch, units), _rand(rng, batch, units)
    forward = gpu("gru_pytorch_forward", x_gates, h_gates, h_prev, pins)
    _close(forward, ref.gru_pytorch_forward(x_gates, h_gates, h_prev, pins))
    gates = forward[0]
    _close(gpu("gru_pytorch_backward", dh, gates, h_prev, h_gates, pins),
           ref.gru_pytorch_backward(dh, gates, h_prev, h_gates, pins))
    # b_hn added inside the kernels equals b_hn added to the n block of h_gates beforehand;
    # dh_next is added to dh inside the kernel
    b_hn, dh_next = _rand(rng, units), _rand(rng, batch, units)
    with_bias = h_gates.copy()
    with_bias[:, 2 * units:] += b_hn
    forward = gpu("gru_pytorch_forward", x_gates, h_gates, h_prev, pins, b_hn=b_hn)
    _close(forward, ref.gru_pytorch_forward(x_gates, with_bias, h_prev, pins))
    _close(ref.gru_pytorch_forward(x_gates, h_gates, h_prev, pins, b_hn=b_hn), forward)
    gates = forward[0]
    expected = ref.gru_pytorch_backward(dh + dh_next, gates, h_prev, with_bias, pins)
    _close(gpu("gru_pytorch_backward", dh, gates, h_prev, h_gates, pins, dh_next=dh_next, b_hn=b_hn), expected)
    _close(ref.gru_pytorch_backward(dh, gates, h_prev, h_gates, pins, dh_next=dh_next, b_hn=b_hn), expected)


@pytest.mark.parametrize("pins", GRU_PINS)
def test_gru_pytorch_twin_matches_closed_form_and_finite_differences(pins):
    rng = np.random.default_rng(5)
    batch, units = 2, 3
    x_gates, h_gates = rng.standard_normal((batch, 3 * units)), rng.standard_normal((batch, 3 * units))
    h_prev = rng.standard_normal((batch, units))
    gates, h = ref.gru_pytorch_forward(x_gates, h_gates, h_prev, pins)
    p = pins or {}
    for b in range(batch):
        for j in range(units):
            r = p.get("r", _sigmoid(x_gates[b, j] + h_gates[b, j]))
            z = p.get("z", _sigmoid(x_gates[b, units + j] + h_gates[b, units + j]))
            n = p.get("n", math.tanh(x_gates[b, 2 * units + j] + r * h_gates[b, 2 * units + j]))
            np.testing.assert_allclose(gates[b, j::units], [r, z, n], rtol=1e-12)
            np.testing.assert_allclose(h[b, j], (1 - z) * h_prev[b, j] + z * n, rtol=1e-12)
    weight = rng.standard_normal(h.shape)

    def loss():
        return float((ref.gru_pytorch_forward(x_gates, h_gates, h_prev, pins)[1] * weight).sum())

    d_x, d_h, dh_prev = ref.gru_pytorch_backward(weight, gates, h_prev, h_gates, pins)
    for analytic, wrt in ((d_x, x_gates), (d_h, h_gates), (dh_prev, h_prev)):
        np.testing.assert_allclose(analytic, numeric_grad(loss, wrt), rtol=1e-6, atol=1e-8)


def _cho_step(impl, x_gates, h_rz, h_prev, u_n, dh, pins):
    """A whole Cho-form step and its backward: kernels around the two GEMMs with U_n."""
    gates, r_h_prev = impl.gru_cho_forward_rz(x_gates, h_rz, h_prev, pins)
    gates, h = impl.gru_cho_forward_n(x_gates, r_h_prev @ u_n, h_prev, gates, pins)
    units = h_prev.shape[1]
    d_gates, dh_prev = impl.gru_cho_backward_n(dh, gates, h_prev, pins)
    d_r_h_prev = np.ascontiguousarray(d_gates[:, 2 * units:]) @ u_n.T
    d_gates, dh_prev = impl.gru_cho_backward_r(d_r_h_prev, gates, h_prev, d_gates, dh_prev, pins)
    return gates, h, r_h_prev, d_gates, dh_prev


class _Emulated:
    """``compute.kernels`` seen through the order-checking ``gpu`` fixture."""

    def __init__(self, gpu):
        self.gpu = gpu

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.gpu(name, *args, **kwargs)


@pytest.mark.parametrize("pins", GRU_PINS + [{"r": 0.0, "n": 1.0}])
@pytest.mark.parametrize("batch,units", [(1, 1), (3, 37), (4, 70)])
def test_gru_cho_kernels_match_twin(gpu, pins, batch, units):
    rng = np.random.default_rng(batch * units)
    args = (_rand(rng, batch, 3 * units, scale=2.0), _rand(rng, batch, 2 * units),
            _rand(rng, batch, units), _rand(rng, units, units, scale=0.3), _rand(rng, batch, units))
    _close(_cho_step(_Emulated(gpu), *args, pins), _cho_step(ref, *args, pins))
    x_gates, _, h_prev, _, dh = args
    gates = ref.gru_cho_forward_n(x_gates, _rand(rng, batch, units), h_prev,
                                  ref.gru_cho_forward_rz(x_gates, args[1], h_prev, pins)[0], pins)[0]
    dh_next = _rand(rng, batch, units)
    expected = ref.gru_cho_backward_n(dh + dh_next, gates, h_prev, pins)
    _close(gpu("gru_cho_backward_n", dh, gates, h_prev, pins, dh_next=dh_next)[1], expected[1])
    _close(gpu("gru_cho_backward_n", dh, gates, h_prev, pins, dh_next=dh_next)[0][:, units:],
           expected[0][:, units:])  # the r block is part 2's
    _close(ref.gru_cho_backward_n(dh, gates, h_prev, pins, dh_next=dh_next), expected)


@pytest.mark.parametrize("pins", GRU_PINS)
def test_gru_cho_twin_matches_closed_form_and_finite_differences(pins):
    rng = np.random.default_rng(6)
    batch, units = 2, 3
    x_gates, h_rz = rng.standard_normal((batch, 3 * units)), rng.standard_normal((batch, 2 * units))
    h_prev, u_n = rng.standard_normal((batch, units)), rng.standard_normal((units, units)) * 0.5
    weight = rng.standard_normal((batch, units))
    gates, h, r_h_prev, d_gates, dh_prev = _cho_step(ref, x_gates, h_rz, h_prev, u_n, weight, pins)
    p = pins or {}
    for b in range(batch):
        r = [p.get("r", _sigmoid(x_gates[b, j] + h_rz[b, j])) for j in range(units)]
        for j in range(units):
            z = p.get("z", _sigmoid(x_gates[b, units + j] + h_rz[b, units + j]))
            recurrent = sum(r[k] * h_prev[b, k] * u_n[k, j] for k in range(units))
            n = p.get("n", math.tanh(x_gates[b, 2 * units + j] + recurrent))
            np.testing.assert_allclose(h[b, j], (1 - z) * h_prev[b, j] + z * n, rtol=1e-12)

    def loss():
        return float((_cho_step(ref, x_gates, h_rz, h_prev, u_n, weight, pins)[1] * weight).sum())

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
def test_im2col_col2im_kernels_match_twin(gpu, x_shape, kh, kw, stride, pads):
    rng = np.random.default_rng(8)
    x = _rand(rng, *x_shape)
    col = gpu("im2col", x, kh, kw, stride, pads)
    np.testing.assert_array_equal(col, ref.im2col(x, kh, kw, stride, pads))  # pure copies
    d_col = _rand(rng, *col.shape)
    _close(gpu("col2im", d_col, x_shape, stride, pads), ref.col2im(d_col, x_shape, stride, pads))


@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", CONV_CASES)
def test_im2col_twin_matches_definition_and_col2im_is_its_adjoint(x_shape, kh, kw, stride, pads):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape)
    col = ref.im2col(x, kh, kw, stride, pads)
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    top, left = pads[0], pads[2]
    channels, _, _, batch, out_h, out_w = col.shape
    assert out_h == (x_shape[2] + pads[0] + pads[1] - kh) // sy + 1
    for c, u, v, n, i, j in np.ndindex(col.shape):
        y, xx = i * sy + u - top, j * sx + v - left
        inside = 0 <= y < x_shape[2] and 0 <= xx < x_shape[3]
        assert col[c, u, v, n, i, j] == (x[n, c, y, xx] if inside else 0.0)
    d_col = rng.standard_normal(col.shape)
    np.testing.assert_allclose((col * d_col).sum(), (x * ref.col2im(d_col, x_shape, stride, pads)).sum())


# --------------------------------------------------------------------------- pooling

POOL_CASES = [  # (N, C, H, W), kh, kw, stride, pads
    ((2, 3, 8, 8), 2, 2, 2, (0, 0, 0, 0)),
    ((1, 2, 7, 9), 3, 3, 2, (1, 1, 1, 1)),
    ((2, 1, 10, 7), 3, 2, (1, 2), (2, 0, 0, 1)),
    ((3, 2, 5, 6), 2, 3, 3, (1, 0, 1, 1)),
]


@pytest.mark.parametrize("integers", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", POOL_CASES)
def test_max_pool_kernels_match_twin(gpu, x_shape, kh, kw, stride, pads, integers):
    rng = np.random.default_rng(10)
    x = rng.integers(-2, 3, x_shape).astype(np.float32) if integers else _rand(rng, *x_shape)
    y, argmax = gpu("max_pool2d_forward", x, kh, kw, stride, pads)
    y_ref, argmax_ref = ref.max_pool2d_forward(x, kh, kw, stride, pads)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.dtype == np.int32
    dy = _rand(rng, *y.shape)
    _close(gpu("max_pool2d_backward", dy, argmax, x_shape, kh, kw, stride, pads),
           ref.max_pool2d_backward(dy, argmax, x_shape, kh, kw, stride, pads))


@pytest.mark.parametrize("count_pad", [True, False])
@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", POOL_CASES)
def test_avg_pool_kernels_match_twin(gpu, x_shape, kh, kw, stride, pads, count_pad):
    rng = np.random.default_rng(13)
    x = _rand(rng, *x_shape)
    y = gpu("avg_pool2d_forward", x, kh, kw, stride, pads, count_pad)
    _close(y, ref.avg_pool2d_forward(x, kh, kw, stride, pads, count_pad))
    dy = _rand(rng, *y.shape)
    _close(gpu("avg_pool2d_backward", dy, x_shape, kh, kw, stride, pads, count_pad),
           ref.avg_pool2d_backward(dy, x_shape, kh, kw, stride, pads, count_pad))


def _pool_windows(x_shape, kh, kw, stride, pads):
    """Every window as (n, c, i, j, [real pixels (y, x)]) by the definition."""
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    batch, channels, height, width = x_shape
    out_h = (height + pads[0] + pads[1] - kh) // sy + 1
    out_w = (width + pads[2] + pads[3] - kw) // sx + 1
    for n, c, i, j in np.ndindex(batch, channels, out_h, out_w):
        pixels = [(i * sy + u - pads[0], j * sx + v - pads[2]) for u in range(kh) for v in range(kw)]
        yield n, c, i, j, [(y, x) for y, x in pixels if 0 <= y < height and 0 <= x < width]


@pytest.mark.parametrize("x_shape,kh,kw,stride,pads", POOL_CASES)
def test_pool_twins_match_definition_and_gradients(x_shape, kh, kw, stride, pads):
    rng = np.random.default_rng(14)
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape) / 7.0  # distinct: one winner per window
    y, argmax = ref.max_pool2d_forward(x, kh, kw, stride, pads)
    mean_pad = ref.avg_pool2d_forward(x, kh, kw, stride, pads, True)
    mean_real = ref.avg_pool2d_forward(x, kh, kw, stride, pads, False)
    for n, c, i, j, pixels in _pool_windows(x_shape, kh, kw, stride, pads):
        values = [x[n, c, yy, xx] for yy, xx in pixels]
        assert y[n, c, i, j] == max(values)
        np.testing.assert_allclose(mean_pad[n, c, i, j], sum(values) / (kh * kw))
        np.testing.assert_allclose(mean_real[n, c, i, j], sum(values) / len(values))
    weight = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        ref.max_pool2d_backward(weight, argmax, x_shape, kh, kw, stride, pads),
        numeric_grad(lambda: float((ref.max_pool2d_forward(x, kh, kw, stride, pads)[0] * weight).sum()), x, 1e-4),
        atol=1e-8)
    for count_pad in (True, False):
        np.testing.assert_allclose(
            ref.avg_pool2d_backward(weight, x_shape, kh, kw, stride, pads, count_pad),
            numeric_grad(lambda: float((ref.avg_pool2d_forward(x, kh, kw, stride, pads, count_pad)
                                        * weight).sum()), x, 1e-3),  # linear: any step is exact
            rtol=1e-6, atol=1e-8)


def test_pool_refuses_pads_as_wide_as_the_window():
    with pytest.raises(ValueError, match="smaller than the window"):
        kernels.max_pool2d_forward(np.zeros((1, 1, 4, 4), np.float32), 2, 2, 2, (2, 0, 0, 0))


# --------------------------------------------------------------------------- softmax cross-entropy

@pytest.mark.parametrize("rows,classes", [(1, 1), (5, 10), (300, 3), (7, 129)])
def test_softmax_cross_entropy_kernels_match_twin(gpu, rows, classes):
    rng = np.random.default_rng(rows + classes)
    logits = _rand(rng, rows, classes, scale=3.0)
    labels = rng.integers(0, classes, rows)
    loss, probs = gpu("softmax_cross_entropy_forward", logits, labels)
    _close((loss, probs), ref.softmax_cross_entropy_forward(logits, labels))
    _close(gpu("softmax_cross_entropy_backward", probs, labels),
           ref.softmax_cross_entropy_backward(probs, labels))
    _close(gpu("softmax_cross_entropy_backward", probs, labels, 0.25),
           ref.softmax_cross_entropy_backward(probs, labels, 0.25))


def test_softmax_cross_entropy_is_stable_and_flags_bad_labels(gpu):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [0.0, 1.0, 2.0]], np.float32)
    labels = np.array([1, 2, 3])
    loss, probs = gpu("softmax_cross_entropy_forward", logits, labels)
    twin_loss, twin_probs = ref.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(loss[:2], [1e4, math.log(3)], rtol=1e-6)
    assert np.isnan(loss[2]) and np.isnan(twin_loss[2])
    np.testing.assert_allclose(probs, twin_probs, rtol=1e-6, atol=1e-30)
    assert np.isfinite(probs).all()


def test_softmax_forward_keeps_row_stats_and_the_loss_is_their_gather(gpu):
    rng = np.random.default_rng(21)
    logits = _rand(rng, 9, 6, scale=3.0)
    logits[0] += 1e4  # large logits: the loss stays exact since the max is kept apart
    labels = rng.integers(0, 6, 9)
    probs, stats = gpu("softmax_forward", logits)
    _close((probs, stats), ref.softmax_forward(logits))
    top = logits.max(axis=1)
    np.testing.assert_allclose(stats[:, 0], top)
    np.testing.assert_allclose(stats[:, 1], np.log(np.exp(logits - top[:, None]).sum(axis=1)), rtol=1e-6)
    loss = gpu("cross_entropy_loss", logits, stats, labels)
    _close(loss, ref.cross_entropy_loss(logits, stats, labels))
    exact = np.log(np.exp(logits.astype(np.float64) - top[:, None]).sum(axis=1)) - (
        logits[np.arange(9), labels] - top)
    np.testing.assert_allclose(loss, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_takes_slices_and_transposed_views_without_copies(backends, accumulate):
    """The shapes the step loops pass: plain blocks, column slices of a wider matrix (Cho's
    U_rz, U_n, d_gates[:, :2H]) and transposed views (U.T), each through the emulator's GEMM
    and the twin; a layout cuBLAS could not address without a copy is refused."""
    forward, _ = backends
    rng = np.random.default_rng(22)
    wide, u, h = _rand(rng, 4, 9), _rand(rng, 3, 9), _rand(rng, 4, 3)
    cases = [(h, u), (h, u[:, :6]), (wide[:, 6:], u[:, 6:].T), (wide[:, :6], u[:, :6].T), (wide, u.T)]
    for a, b in cases:
        start = _rand(rng, a.shape[0], b.shape[1])
        expected = a.astype(np.float64) @ b + (start if accumulate else 0)
        for impl in (kernels, ref):
            out = start.copy()
            with kernels.host_backend(forward if impl is kernels else None):
                assert impl.gemm(a, b, out, accumulate=accumulate) is out
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    strided = _rand(rng, 6, 6)[::2, ::2]
    with kernels.host_backend(forward), pytest.raises(ValueError, match="unit-stride"):
        kernels.gemm(strided, u[:, :3], np.zeros((3, 3), np.float32))
    with kernels.host_backend(forward), pytest.raises(ValueError, match="do not fit"):
        kernels.gemm(h, u, np.zeros((4, 8), np.float32))


def test_softmax_cross_entropy_twin_matches_closed_form_and_gradient():
    rng = np.random.default_rng(15)
    logits, labels = rng.standard_normal((4, 5)) * 3, np.array([0, 4, 2, 2])
    loss, probs = ref.softmax_cross_entropy_forward(logits, labels)
    for n in range(4):
        total = sum(math.exp(v) for v in logits[n])
        np.testing.assert_allclose(probs[n], [math.exp(v) / total for v in logits[n]], rtol=1e-12)
        np.testing.assert_allclose(loss[n], -math.log(math.exp(logits[n, labels[n]]) / total), rtol=1e-12)
    np.testing.assert_allclose(
        ref.softmax_cross_entropy_backward(probs, labels),
        numeric_grad(lambda: float(ref.softmax_cross_entropy_forward(logits, labels)[0].mean()), logits),
        rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- optimizers

SGD_CASES = [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2), (0.5, False, 1e-3)]
ADAM_CASES = [(0.0, False), (1e-2, False), (1e-2, True)]


@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CASES)
@pytest.mark.parametrize("size", [1, 1000])
def test_sgd_kernel_matches_twin(gpu, momentum, nesterov, weight_decay, size):
    rng = np.random.default_rng(16)
    param, velocity = _rand(rng, size), _rand(rng, size) if momentum else None
    mine, theirs = param.copy(), param.copy()
    v_mine = None if velocity is None else velocity.copy()
    v_theirs = None if velocity is None else velocity.copy()
    for _ in range(3):
        grad = _rand(rng, size)
        gpu("sgd_update", mine, grad, v_mine, 0.1, momentum, nesterov, weight_decay)
        ref.sgd_update(theirs, grad, v_theirs, 0.1, momentum, nesterov, weight_decay)
    _close(mine, theirs)
    _close(v_mine, v_theirs)


@pytest.mark.parametrize("weight_decay,decoupled", ADAM_CASES)
@pytest.mark.parametrize("shape", [(1,), (33, 31)])
def test_adam_kernel_matches_twin(gpu, weight_decay, decoupled, shape):
    rng = np.random.default_rng(17)
    mine, m1, v1 = _rand(rng, *shape), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    theirs, m2, v2 = mine.copy(), m1.copy(), v1.copy()
    for t in range(1, 4):
        grad = _rand(rng, *shape)
        scalars = (1e-2, 0.9, 0.999, 1e-8, weight_decay, 1 - 0.9 ** t, 1 - 0.999 ** t, decoupled)
        gpu("adam_update", mine, grad, m1, v1, *scalars)
        ref.adam_update(theirs, grad, m2, v2, *scalars)
    _close((mine, m1, v1), (theirs, m2, v2))


@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CASES)
def test_sgd_twin_matches_closed_form(momentum, nesterov, weight_decay):
    rng = np.random.default_rng(18)
    param, grads = rng.standard_normal(4), rng.standard_normal((2, 4))
    velocity = np.zeros(4) if momentum else None
    expected = param.copy()
    for k in range(4):
        p, v = float(param[k]), 0.0
        for g in grads[:, k]:
            g = g + weight_decay * p
            v = momentum * v + g
            p -= 0.1 * ((g + momentum * v) if nesterov else v)
        expected[k] = p
    for g in grads:
        ref.sgd_update(param, g, velocity, 0.1, momentum, nesterov, weight_decay)
    np.testing.assert_allclose(param, expected, rtol=1e-12)


@pytest.mark.parametrize("weight_decay,decoupled", ADAM_CASES)
def test_adam_twin_matches_closed_form(weight_decay, decoupled):
    rng = np.random.default_rng(19)
    param, grads = rng.standard_normal(4), rng.standard_normal((3, 4))
    m, v = np.zeros(4), np.zeros(4)
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    expected = param.copy()
    for k in range(4):
        p, mk, vk = float(param[k]), 0.0, 0.0
        for t, g in enumerate(grads[:, k], start=1):
            if decoupled:
                p -= lr * weight_decay * p
            else:
                g = g + weight_decay * p
            mk, vk = b1 * mk + (1 - b1) * g, b2 * vk + (1 - b2) * g * g
            p -= lr * (mk / (1 - b1 ** t)) / (math.sqrt(vk / (1 - b2 ** t)) + eps)
        expected[k] = p
    for t, g in enumerate(grads, start=1):
        ref.adam_update(param, g, m, v, lr, b1, b2, eps, weight_decay, 1 - b1 ** t, 1 - b2 ** t, decoupled)
    np.testing.assert_allclose(param, expected, rtol=1e-12)
