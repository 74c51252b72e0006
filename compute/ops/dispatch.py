"""Which implementation a hot op runs: the fused CUDA kernels of ``compute.kernels`` or the
NumPy/CuPy array code beside them.

DESIGN section 3: ops pick ``xp`` from their inputs. The kernels run on CuPy arrays; on
NumPy arrays they run only where a host kernel backend is installed
(``compute.kernels.use_host_backend``: the tests' CPU emulator, which compiles the same
``.cu`` sources), so a CPU run without one never pays for them. The kernels are float32
only: any other dtype (float64 gradient checks) keeps the array code.
"""
from __future__ import annotations

import numpy

from gatescope.compute import kernels


def kernel_path(*arrays) -> bool:
    """True where the fused kernels should run for ``arrays`` (all float32, and CuPy arrays
    or a host kernel backend installed). Decide once per layer call, not per step."""
    if not arrays or any(a.dtype != numpy.float32 for a in arrays):
        return False
    return kernels.implementation_for(*arrays) is kernels
