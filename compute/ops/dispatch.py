"""Whether a hot op with its own CPU array code runs the CUDA kernels of ``compute.kernels``.

DESIGN section 3: ops pick ``xp`` from their inputs. Conv2D's im2col/col2im and the pooling
layers keep array code of their own on the CPU and call the kernels only on the device: CuPy
float32 arrays, or NumPy float32 arrays where a host kernel backend is installed (the tests'
CPU emulator, which compiles the same ``.cu`` sources).
"""
from __future__ import annotations

from gatescope.compute import kernels


def kernel_path(*arrays) -> bool:
    """True where the CUDA kernels should run for ``arrays``; decide once per layer call."""
    return kernels.on_device(*arrays)
