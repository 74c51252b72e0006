"""Runs the CUDA kernels of ``compute/kernels`` on the CPU, from their own source.

``EmulatorBackend`` is a kernel backend for ``compute.kernels``: the same launch functions
that drive ``cupy.RawModule`` on a GPU drive it on NumPy arrays. For each ``.cu`` module it

1. parses the ``extern "C" __global__`` signatures,
2. writes a small C++ file that includes ``gs_emulator.h`` (CUDA's built-in variables and
   qualifiers for the host), then the ``.cu`` file itself, then one ``extern "C"`` wrapper
   per kernel that runs the kernel over the whole grid,
3. compiles it with g++ into a shared library cached under ``.kernel-build/`` by the hash of
   everything that went in, and calls it through ctypes.

A launch is checked as strictly as the GPU would be, and more: the grid and block must be
legal, the argument count must match, every pointer argument must be a C-contiguous array
of the pointee's dtype (or None for a NULL pointer), and every scalar must already have the
kernel's exact type (``numpy.int32`` for ``int``, ``numpy.int64`` for ``long long``,
``numpy.float32`` for ``float``), because CuPy passes a Python int as 64 bits and a Python
float as a double, which a kernel would misread. Arrays travel in copies with NaN-filled
guard bands on both sides, so a write past either end is caught; freshly allocated outputs
are NaN-filled, so an element no thread writes is caught too.

It also stands in for cuBLAS (``gemm``, with NumPy) and for CUDA-graph capture (``capture``),
with a graph's semantics: while a capture is open, kernel launches and GEMMs are recorded, not
executed, and the recording replays them in order on the same arrays. To make a step loop that
would break on a GPU fail here, a capture refuses an allocation through the backend and any
launch or GEMM argument that is not (a view of) one of the persistent buffers it was given;
it fills those buffers with 0xFF bytes (NaN) while open, so whatever reads them on the host
reads garbage, and checks afterwards that nothing but the recorder wrote them (an array
expression that writes them changes those bytes; one that adds to them leaves NaN, but is
then missing from the replay, which the results show).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy

from gatescope.compute import kernels

HEADER = Path(__file__).resolve().parent / "gs_emulator.h"
REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_DIR = Path(os.environ.get("GATESCOPE_KERNEL_BUILD", REPO_ROOT / ".kernel-build"))
COMPILER = os.environ.get("CXX", "g++")
# -O2 keeps the emulated grids fast; no -ffast-math, so float math stays IEEE like the GPU's
# (apart from the GPU's fused multiply-adds, within the tests' tolerances).
FLAGS = ("-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror")
GUARD_BYTES = 256  # poisoned bytes each side of every array, checked after each launch

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)

_SCALARS = {  # C type -> (ctypes type, the NumPy scalar type a launch must pass)
    "float": (ctypes.c_float, numpy.float32),
    "double": (ctypes.c_double, numpy.float64),
    "int": (ctypes.c_int32, numpy.int32),
    "unsigned int": (ctypes.c_uint32, numpy.uint32),
    "long long": (ctypes.c_int64, numpy.int64),
    "unsigned long long": (ctypes.c_uint64, numpy.uint64),
}
_POINTEES = {"float": numpy.float32, "double": numpy.float64, "int": numpy.int32,
             "long long": numpy.int64, "unsigned int": numpy.uint32}


class LaunchError(RuntimeError):
    """A launch a GPU would refuse or that went wrong: bad configuration, arguments, or an
    out-of-bounds write."""


@dataclass(frozen=True)
class Parameter:
    """One kernel parameter: ``base`` C type, whether it is a pointer, and whether const."""

    name: str
    declaration: str
    base: str
    pointer: bool
    const: bool


def parse_kernels(source: str) -> dict[str, list[Parameter]]:
    """The ``extern "C" __global__`` kernels of ``source``, with their parameter lists."""
    found = {}
    for match in _SIGNATURE.finditer(source):
        params = []
        for declaration in (p.strip() for p in match.group(2).split(",") if p.strip()):
            declaration = " ".join(declaration.split())
            name = re.search(r"(\w+)$", declaration).group(1)
            type_text = declaration[: -len(name)]
            words = type_text.replace("*", " ").split()
            base = " ".join(w for w in words if w not in ("const", "__restrict__"))
            pointer = "*" in type_text
            if (pointer and base not in _POINTEES) or (not pointer and base not in _SCALARS):
                raise LaunchError(f"{match.group(1)}: the emulator does not know type {type_text!r}")
            params.append(Parameter(name, declaration, base, pointer, "const" in words))
        found[match.group(1)] = params
    return found


def _wrapper_source(module: str, signatures: dict[str, list[Parameter]]) -> str:
    lines = [f'#include "{HEADER.name}"', f'#include "{kernels.source_path(module)}"', ""]
    for kernel, params in signatures.items():
        declarations = ", ".join(p.declaration for p in params)
        names = ", ".join(p.name for p in params)
        lines += [f'extern "C" int gs_emu_launch_{kernel}(const unsigned int* config, int reverse'
                  + (f", {declarations}" if declarations else "") + ") {",
                  f"    return gs_emu::launch(config, reverse, [&] {{ {kernel}({names}); }});",
                  "}", ""]
    return "\n".join(lines)


def _compiler_version() -> str:
    return subprocess.run([COMPILER, "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def build_module(module: str) -> tuple[Path, dict[str, list[Parameter]]]:
    """Compile ``module``'s ``.cu`` for the CPU (or reuse the cached build); returns the
    shared library's path and the kernels' signatures."""
    source = kernels.kernel_source(module)
    signatures = parse_kernels(source)
    wrapper = _wrapper_source(module, signatures)
    digest = hashlib.sha256("\0".join(
        [source, wrapper, HEADER.read_text(), " ".join(FLAGS), _compiler_version()]).encode()).hexdigest()[:16]
    library = BUILD_DIR / f"emulated-{module}-{digest}.so"
    if library.exists():
        return library, signatures
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BUILD_DIR) as scratch:
        cpp = Path(scratch) / f"{module}_emulated.cpp"
        cpp.write_text(wrapper)
        built = Path(scratch) / library.name
        result = subprocess.run(
            [COMPILER, *FLAGS, "-I", str(kernels.KERNEL_DIR), "-I", str(HEADER.parent),
             str(cpp), "-o", str(built)], capture_output=True, text=True)
        if result.returncode != 0:
            raise LaunchError(f"g++ could not compile {module}.cu for the emulator:\n{result.stderr}")
        os.replace(built, library)  # atomic: parallel test runs never load a half-written file
    return library, signatures


class EmulatedKernel:
    """One kernel of a compiled module, called like ``cupy.RawKernel``: ``(grid, block, args)``."""

    def __init__(self, library: ctypes.CDLL, name: str, params: list[Parameter], reverse: bool):
        self.name, self.params, self.reverse = name, params, reverse
        self._entry = getattr(library, f"gs_emu_launch_{name}")
        self._entry.restype = ctypes.c_int
        self._entry.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.c_int] + [
            ctypes.c_void_p if p.pointer else _SCALARS[p.base][0] for p in params]

    def __call__(self, grid, block, args, shared_mem: int = 0):
        if shared_mem:
            raise LaunchError(f"{self.name}: the emulator has no dynamic shared memory")
        config = (ctypes.c_uint * 6)(*_dims(grid, "grid"), *_dims(block, "block"))
        if len(args) != len(self.params):
            raise LaunchError(f"{self.name} takes {len(self.params)} arguments "
                              f"({', '.join(p.name for p in self.params)}), got {len(args)}")
        guarded = _GuardedArrays(self.name)
        values = []
        for param, arg in zip(self.params, args):
            values.append(guarded.pointer(param, arg) if param.pointer else _scalar(self.name, param, arg))
        status = self._entry(config, int(self.reverse), *values)
        if status != 0:
            raise LaunchError(f"{self.name}: invalid launch configuration grid={tuple(config[:3])} "
                              f"block={tuple(config[3:])}")
        guarded.check_and_copy_back()


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, numpy.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, numpy.integer)) for d in dims):
        raise LaunchError(f"{what} must be an int or a tuple of 1 to 3 ints, not {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _scalar(kernel: str, param: Parameter, arg):
    c_type, numpy_type = _SCALARS[param.base]
    if type(arg) is not numpy_type:
        raise LaunchError(f"{kernel}: argument {param.name} is {param.base}, so it must be passed "
                          f"as {numpy_type.__name__}, not {type(arg).__name__} (CuPy sends a Python "
                          "int as 64 bits and a Python float as a double)")
    return c_type(arg.item())


class _GuardedArrays:
    """Copies of a launch's arrays between poisoned guard bands; aliases share one copy."""

    def __init__(self, kernel: str):
        self.kernel = kernel
        self.copies: dict[tuple[int, int], tuple[numpy.ndarray, numpy.ndarray, list]] = {}

    def pointer(self, param: Parameter, arg):
        if arg is None:
            return None
        if not isinstance(arg, numpy.ndarray):
            raise LaunchError(f"{self.kernel}: argument {param.name} is a pointer; got "
                              f"{type(arg).__name__}")
        if arg.dtype != _POINTEES[param.base]:
            raise LaunchError(f"{self.kernel}: argument {param.name} points to {param.base}; "
                              f"got a {arg.dtype} array")
        if not arg.flags.c_contiguous:
            raise LaunchError(f"{self.kernel}: argument {param.name} must be C-contiguous "
                              f"(kernels index it flat); got strides {arg.strides}")
        start = arg.__array_interface__["data"][0]
        key = (start, arg.nbytes)
        for (other, size), (_, _, users) in self.copies.items():
            overlap = start < other + size and other < start + arg.nbytes
            written = not param.const or any(not p.const for p in users)
            if overlap and (other, size) != key and written:
                # Two read-only views of one buffer (C_{t-1} and C_t of all steps) are safe on
                # a GPU; a written one would be copied back over the other here.
                raise LaunchError(f"{self.kernel}: argument {param.name} partly overlaps another "
                                  "that a kernel writes")
        if key not in self.copies:
            buffer = numpy.full(arg.nbytes + 2 * GUARD_BYTES, 0xFF, dtype=numpy.uint8)
            inner = buffer[GUARD_BYTES:GUARD_BYTES + arg.nbytes]
            inner[...] = arg.reshape(-1).view(numpy.uint8)
            self.copies[key] = (arg, buffer, [])
        self.copies[key][2].append(param)
        return self.copies[key][1].ctypes.data + GUARD_BYTES

    def check_and_copy_back(self) -> None:
        for original, buffer, params in self.copies.values():
            names = ", ".join(p.name for p in params)
            if not (buffer[:GUARD_BYTES] == 0xFF).all():
                raise LaunchError(f"{self.kernel} wrote before the start of {names}")
            if not (buffer[GUARD_BYTES + original.nbytes:] == 0xFF).all():
                raise LaunchError(f"{self.kernel} wrote past the end of {names}")
            if any(not p.const for p in params):
                original.reshape(-1).view(numpy.uint8)[...] = buffer[GUARD_BYTES:GUARD_BYTES + original.nbytes]


def _bounds(array) -> tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # NumPy 1.x
        byte_bounds = numpy.byte_bounds
    return byte_bounds(array)


class Recording:
    """A captured step loop: the launches and GEMMs in order, replayed by :meth:`launch`."""

    def __init__(self, buffers):
        self.buffers = [_bounds(b) for b in buffers]
        self.ops: list = []
        self.launches = 0

    def check(self, what: str, array) -> None:
        """Refuse an argument outside the persistent buffers (a temporary made inside the
        loop: on a GPU the graph would keep a pointer the memory pool hands out again)."""
        if array is None or not isinstance(array, numpy.ndarray) or array.size == 0:
            return
        low, high = _bounds(array)
        if not any(start <= low and high <= end for start, end in self.buffers):
            raise LaunchError(f"{what}: an argument {array.dtype}{tuple(array.shape)} lies outside the "
                              "persistent buffers of the captured loop")

    def launch(self) -> None:
        self.launches += 1
        for op in self.ops:
            op()


class EmulatorBackend:
    """A ``compute.kernels`` backend that runs every kernel on the CPU through g++ builds.

    ``reverse=True`` runs the threads of each grid last to first, which changes the result
    of any kernel whose threads depend on each other's writes.
    """

    name = "emulator"

    def __init__(self, reverse: bool = False):
        self.reverse = reverse
        self._libraries: dict[str, tuple[ctypes.CDLL, dict[str, list[Parameter]]]] = {}
        self._kernels: dict[str, EmulatedKernel] = {}
        self.launches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
        self.gemms = 0
        self.captures: list[Recording] = []
        self._recording: Recording | None = None

    def load(self, module: str):
        if module not in self._libraries:
            path, signatures = build_module(module)
            self._libraries[module] = (ctypes.CDLL(str(path)), signatures)
        return self._libraries[module]

    def function(self, module: str, kernel: str):
        if kernel not in self._kernels:
            library, signatures = self.load(module)
            if kernel not in signatures:
                raise LaunchError(f"{module}.cu has no kernel {kernel!r}")
            self._kernels[kernel] = EmulatedKernel(library, kernel, signatures[kernel], self.reverse)
        emulated = self._kernels[kernel]

        def run(grid, block, args, shared_mem):
            self.launches.append((kernel, _dims(grid, "grid"), _dims(block, "block")))
            emulated(grid, block, args, shared_mem)

        def launch(grid, block, args, shared_mem: int = 0):
            if self._recording is None:
                run(grid, block, args, shared_mem)
                return
            for arg in args:
                self._recording.check(kernel, arg)
            args = tuple(args)
            self._recording.ops.append(lambda: run(grid, block, args, shared_mem))
        return launch

    def gemm(self, a, b, out, beta: float) -> None:
        """cuBLAS's ``out = a @ b + beta * out`` with NumPy (recorded while capturing)."""
        def run():
            self.gemms += 1
            if beta:
                out[...] = a @ b + numpy.float32(beta) * out
            else:
                numpy.matmul(a, b, out=out)
        if self._recording is None:
            run()
            return
        for array in (a, b, out):
            self._recording.check("gemm", array)
        self._recording.ops.append(run)

    def capture(self, body, buffers) -> Recording:
        """Record what ``body()`` launches, as CUDA stream capture does; see the module doc."""
        if self._recording is not None:
            raise LaunchError("a capture is already open")
        buffers = list(buffers)
        for b in buffers:
            if not b.flags.c_contiguous:
                raise LaunchError("the persistent buffers of a captured loop must be contiguous")
        saved = [b.copy() for b in buffers]
        for b in buffers:
            b.reshape(-1).view(numpy.uint8)[...] = 0xFF
        recording = Recording(buffers)
        self._recording = recording
        try:
            body()
        finally:
            self._recording = None
            touched = [i for i, b in enumerate(buffers) if not (b.reshape(-1).view(numpy.uint8) == 0xFF).all()]
            for b, value in zip(buffers, saved):
                b[...] = value
        if touched:
            raise LaunchError(f"buffer(s) {touched} of the captured loop were written during the capture "
                              "by something other than a kernel launch or a GEMM")
        self.captures.append(recording)
        return recording

    def empty(self, xp, shape, dtype):
        """NaN-filled (or most-negative for integers) so unwritten elements stand out."""
        if self._recording is not None:
            raise LaunchError(f"an allocation of {tuple(shape)} inside a captured loop")
        dtype = numpy.dtype(dtype)
        fill = numpy.nan if dtype.kind == "f" else numpy.iinfo(dtype).min
        return numpy.full(shape, fill, dtype=dtype)
