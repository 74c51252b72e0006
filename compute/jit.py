"""numba for the fused CPU kernels (DESIGN section 3), with the NumPy twin as the fallback.

    from gatescope.compute import jit

    def lstm_step_twin(pre, c_prev, out_c, out_h):      # NumPy: the fallback and the reference
        ...

    @jit.kernel(twin=lstm_step_twin)
    def lstm_step(pre, c_prev, out_c, out_h):           # the same signature, numba-compilable
        ...

A kernel is compiled with ``numba.njit(fastmath=FASTMATH, error_model="numpy", cache=True)``, serial:
``error_model="numpy"`` lets a float division vectorise, and ``parallel=True`` inside a step loop
fought OpenBLAS's threads (11-85x slower than the GEMM, measured for issue 16). Calling it runs
the compiled code. Where numba is missing, fails to import, or a kernel fails to compile, the
twin runs instead and the log says why, once. ``GATESCOPE_NUMBA=0`` (or ``use_numba(False)``)
runs the twins everywhere, which is how the tests hold each kernel to its twin.

numba's on-disk cache goes to the user's cache directory (``compute.userdirs``), so it works
when the installed package's folder is read-only; ``NUMBA_CACHE_DIR`` set by the person wins.
The folder is named by a digest of the kernels' sources (``compute/kernels/*.py`` and this
file): numba checks a cached kernel against its own file only, so a changed helper in another
file (the tanh of ``kernels/common.py``) would otherwise load stale machine code.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

from gatescope.compute.userdirs import user_cache_dir

log = logging.getLogger(__name__)

# LLVM's fast-math flags except "nnan" and "ninf": with those, LLVM may assume no NaN or
# infinity ever occurs and fold them away (tanh(NaN) came out as 1 and an LSTM's NaN cell
# state as a finite h), so a diverging training would go on with garbage instead of stopping
# on its first NaN as the twins do. The flags kept are the ones vectorisation needs.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
OPTIONS = dict(fastmath=set(FASTMATH), error_model="numpy", cache=True, nogil=True)


def _sources_digest() -> str:
    """A digest of the files that define kernels and their helpers (see the module)."""
    here = Path(__file__).resolve()
    digest = hashlib.sha256()
    for path in sorted((here.parent / "kernels").glob("*.py")) + [here]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


os.environ.setdefault("NUMBA_CACHE_DIR", str(user_cache_dir("numba", _sources_digest())))
try:
    import numba
    from numba.core.errors import NumbaError
    _IMPORT_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 - any failure to import means: run the twins
    numba = None
    NumbaError = ()  # type: ignore[assignment]
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

_enabled = os.environ.get("GATESCOPE_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")
_said: set[str] = set()
_lock = threading.Lock()
_registry: list["Kernel"] = []


def _say_once(key: str, message: str) -> None:
    with _lock:
        if key in _said:
            return
        _said.add(key)
    log.warning(message)


def available() -> bool:
    """True when numba imported and the kernels are switched on."""
    return numba is not None and _enabled


def why_not() -> str | None:
    """Why the twins run instead of numba kernels, or None when numba is in use."""
    if numba is None:
        return f"numba is not available ({_IMPORT_ERROR}); the NumPy twins run instead"
    if not _enabled:
        return "numba kernels are switched off (GATESCOPE_NUMBA=0); the NumPy twins run instead"
    return None


@contextlib.contextmanager
def use_numba(enabled: bool) -> Iterator[None]:
    """Run the numba kernels (True) or the NumPy twins (False) inside the block."""
    global _enabled
    before, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = before


class Kernel:
    """A numba kernel with its NumPy twin; calling it runs whichever applies (see the module)."""

    def __init__(self, python: Callable, twin: Callable, options: dict):
        self.python, self.twin, self.name = python, twin, python.__name__
        self.__doc__, self.__wrapped__ = python.__doc__, python
        self._compiled = numba.njit(**options)(python) if numba is not None else None
        self.failed: str | None = None

    @property
    def compiled(self) -> bool:
        """True when calls run compiled code (numba present, switched on, not failed)."""
        return self._compiled is not None and _enabled and self.failed is None

    def __call__(self, *args, **kwargs):
        if not self.compiled:
            if numba is None or not _enabled:
                _say_once("twins", why_not() or "")
            return self.twin(*args, **kwargs)
        try:
            return self._compiled(*args, **kwargs)
        except NumbaError as exc:
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _say_once(self.name, f"the numba kernel {self.name} did not compile ({self.failed}); "
                                 "its NumPy twin runs instead")
            return self.twin(*args, **kwargs)

    def signatures(self) -> list:
        """The argument types compiled so far (empty before the first call)."""
        return list(self._compiled.signatures) if self._compiled is not None else []


def device(function: Callable) -> Callable:
    """Decorator for a helper the kernels call (a tanh, a sigmoid): compiled inline into each
    kernel that calls it (numba's ``inline="always"``, so the vectoriser sees through it);
    without numba it stays the Python function, which only compiled kernels would call."""
    if numba is None:
        return function
    return numba.njit(inline="always", **OPTIONS)(function)


def kernel(twin: Callable, **options) -> Callable[[Callable], Kernel]:
    """Decorator: compile the function with numba (``OPTIONS``, updated by ``options``), falling
    back to ``twin``, a NumPy function with the same signature and results."""
    def wrap(python: Callable) -> Kernel:
        k = Kernel(python, twin, {**OPTIONS, **options})
        _registry.append(k)
        return k
    return wrap


def kernels() -> list[Kernel]:
    """Every kernel defined so far (their modules imported)."""
    return list(_registry)
