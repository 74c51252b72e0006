"""The ``backend`` fixture: one block's (or one kernel's) test, run by each execution of the
kernel contract (DESIGN section 3).

- ``twin``: the NumPy twins (numba switched off), the fallback;
- ``numba``: the numba kernels, on NumPy float32 arrays;
- ``emulated``: the CUDA kernels run on the CPU from their own source (``kernel_emulator``),
  with CUDA-graph capture emulated for the recurrent step loops; a kernel called through
  :meth:`Backend.call` runs twice, threads in order with the real launch shape and threads in
  reverse with 32-thread blocks and at most 3 blocks (so every grid-stride loop wraps), and
  both runs must agree bit for bit;
- ``gpu``: the CUDA kernels on a real GPU through CuPy (marked ``gpu``; skipped where CuPy
  finds no device; ``tools/gpu_check.py`` runs them).

Nothing here imports Qt: ``tests/compute`` runs on a machine without PySide6.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest

import kernel_emulator as emu
from gatescope.compute import backend as device_backend
from gatescope.compute import jit, kernels
from gatescope.compute.kernels import runtime


def _gpu_reason() -> str | None:
    return device_backend.gpu_unavailable_reason()


class Backend:
    """How a test runs arrays through the contract: ``xp`` for its arrays, :meth:`active` around
    the calls, :meth:`call` for one kernel, :meth:`array` / :meth:`host` to move arrays."""

    def __init__(self, name: str, emulators=None):
        self.name = name
        self.emulators = emulators
        self.xp = device_backend.cupy if name == "gpu" else np

    def __repr__(self):
        return self.name

    @property
    def emulator(self):
        return self.emulators[0] if self.emulators else None

    @contextlib.contextmanager
    def active(self):
        if self.name == "twin":
            with jit.use_numba(False):
                yield self
        elif self.name == "emulated":
            with kernels.host_backend(self.emulator):
                yield self
        else:
            yield self

    def array(self, a, dtype=np.float32):
        """``a`` as this backend's array (float arrays as ``dtype``)."""
        if a is None:
            return None
        a = np.asarray(a)
        return self.xp.asarray(a.astype(dtype, copy=False) if a.dtype.kind == "f" else a)

    def host(self, a):
        """Results back as NumPy arrays (tuples and lists element by element)."""
        if isinstance(a, (tuple, list)):
            return type(a)(self.host(v) for v in a)
        if a is None or isinstance(a, (float, int, str, dict)):
            return a
        return device_backend.to_numpy(a)

    def call(self, function, *args, **kwargs):
        """``function(*args, **kwargs)`` of ``compute.kernels`` on this backend; NumPy arrays
        among the arguments are moved to it (and back, in place, for those a kernel updates).
        Returns the results as NumPy arrays."""
        if self.name != "emulated":
            moved = [self.array(a) if isinstance(a, np.ndarray) else a for a in args]
            kw = {k: self.array(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
            with self.active():
                result = function(*moved, **kw)
            for original, value in zip(args, moved):
                if isinstance(original, np.ndarray) and value is not original:
                    original[...] = self.host(value)
            return self.host(result)
        forward, reverse = self.emulators
        args_again, kwargs_again = copy.deepcopy(args), copy.deepcopy(kwargs)
        with kernels.host_backend(forward):
            first = function(*args, **kwargs)
        with pytest.MonkeyPatch.context() as patch, kernels.host_backend(reverse):
            patch.setattr(runtime, "BLOCK_SIZE", 32)
            patch.setattr(runtime, "MAX_BLOCKS", 3)
            second = function(*args_again, **kwargs_again)
        _identical(first, second, f"{getattr(function, '__name__', function)}: result")
        _identical(args, args_again, f"{getattr(function, '__name__', function)}: arguments updated in place")
        return first


def _identical(a, b, what):
    if isinstance(a, (tuple, list)):
        for x, y in zip(a, b):
            _identical(x, y, what)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=f"{what} depends on thread order or grid shape")


@pytest.fixture(scope="session")
def emulators():
    """Forward-order and reverse-order emulators, every module built once (cached on disk)."""
    forward, reverse = emu.EmulatorBackend(), emu.EmulatorBackend(reverse=True)
    for module in kernels.MODULES:
        forward.load(module)
        reverse.load(module)
    return forward, reverse


BACKENDS = [
    "twin",
    pytest.param("numba", marks=pytest.mark.skipif(not jit.available(), reason=str(jit.why_not()))),
    "emulated",
    pytest.param("gpu", marks=[pytest.mark.gpu,
                               pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))]),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each execution of the kernel contract in turn (see the module). The emulators (g++
    builds) are made only for the ``emulated`` backend, so a GPU machine without a compiler
    runs the ``gpu`` tests."""
    if request.param != "emulated":
        return Backend(request.param)
    emulators = request.getfixturevalue("emulators")
    emulators[0].launches.clear()
    emulators[0].captures.clear()
    return Backend(request.param, emulators)


def close(actual, expected, what="", rtol=1e-4):
    """Equal to ``rtol`` relative to the array's scale (a few entries near zero must not
    demand more than float32 gives): how a float32 execution is held to a float64 reference."""
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), what
        for k, (x, y) in enumerate(zip(actual, expected)):
            close(x, y, f"{what}[{k}]", rtol)
        return
    if expected is None:
        assert actual is None, what
        return
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-6), err_msg=what)


def seeded_layer(type_name: str, settings: dict, in_shape: tuple, xp, dtype):
    """A block built from fixed seeds, the same in every dtype: drawn in float64, then cast,
    with biases, peepholes and initial states made non-zero (they start at zero, which would
    hide their terms from a comparison)."""
    from gatescope.compute.layers import create
    layer = create(type_name, settings)
    layer.build([in_shape], np.random.default_rng(0), np, np.float64)
    rng = np.random.default_rng(7)
    for name, p in layer.params.items():
        if name.split("_rev")[0] in ("p_i", "p_f", "p_o", "h0", "c0", "b", "b_hn"):
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    layer.params = {k: xp.asarray(v, dtype=dtype) for k, v in layer.params.items()}
    layer.zero_grads()
    return layer


def run_block(backend, type_name: str, settings: dict, in_shape: tuple, dtype, batch: int = 3):
    """One forward and backward of :func:`seeded_layer` on ``backend`` in ``dtype``: (output,
    input gradient, parameter gradients) as float64 NumPy arrays."""
    xp = backend.xp if dtype == np.float32 else np
    layer = seeded_layer(type_name, settings, in_shape, xp, dtype)
    x = xp.asarray(np.random.default_rng(1).standard_normal((batch,) + tuple(in_shape)), dtype=dtype)
    with backend.active():
        y = layer.forward([x], True)
        dy = xp.asarray(np.random.default_rng(2).standard_normal(y.shape), dtype=dtype)
        dx = layer.backward(dy)[0]
    f64 = lambda a: backend.host(a).astype(np.float64)   # noqa: E731
    return f64(y), f64(dx), {k: f64(g) for k, g in layer.grads.items()}


def block_matches_float64(backend, type_name: str, settings: dict, in_shape: tuple, expect=()):
    """The block in float32 on ``backend`` against itself in float64 (the twins, which the
    block's own tests hold to references and finite differences); on the emulated GPU the
    kernels in ``expect`` must have been launched."""
    got = run_block(backend, type_name, settings, in_shape, np.float32)
    want = run_block(Backend("twin"), type_name, settings, in_shape, np.float64)
    if backend.name == "emulated":
        launched = {name for name, _, _ in backend.emulator.launches}
        assert set(expect) <= launched, f"{type_name} {settings}: launched {sorted(launched)}"
    close(got[0], want[0], f"{type_name} {settings}: output")
    close(got[1], want[1], f"{type_name} {settings}: input gradient")
    assert got[2].keys() == want[2].keys()
    for name in want[2]:
        close(got[2][name], want[2][name], f"{type_name} {settings}: d{name}")
