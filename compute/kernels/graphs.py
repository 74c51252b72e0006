"""CUDA-graph capture of a recurrent layer's step loop, behind a small interface.

A step loop launches a few small kernels and GEMMs per timestep; on a GPU the launch overhead
(microseconds each, from Python) can cost more than the work. A CUDA graph records the whole
loop once and replays it with one launch. :class:`StepLoop` owns one loop's *persistent*
buffers (everything the loop reads or writes) and its graph:

1. the first :meth:`StepLoop.run` runs the loop eagerly (a warm-up: the kernels' modules are
   loaded and cuBLAS is initialised, which must not happen inside a capture);
2. the second captures it: while capturing, kernel launches and GEMMs are *recorded, not
   executed*, then the graph is replayed once on the same buffers;
3. later calls replay the graph.

The caller copies each batch's inputs (input projection, initial state, weights) into the
persistent buffers before :meth:`run` and reads the results out of them afterwards, so a graph
never holds a stale pointer. Inside the loop only kernel launches and :func:`compute.kernels.gemm`
may touch the buffers: anything else (an array expression, an allocation, reading a value on
the host) would not be in the graph. If capture is unavailable or fails, the reason is logged
once and the loop stays eager (correct, just slower). ``GATESCOPE_CUDA_GRAPHS=0`` turns
capture off. On the CPU the same loop runs eagerly, on the same persistent buffers.

Who captures is the kernel backend of the buffers (``backend.capture(body, buffers)``, which
returns an object with ``launch()``): :func:`capture_cupy` on a GPU, and in the tests the CPU
emulator of ``tests/compute/kernel_emulator``, which records the launches and GEMMs, refuses an
allocation or a buffer outside ``buffers``, poisons the buffers during the capture and checks
that nothing else wrote them. NOTHING HERE HAS RUN ON A REAL GPU YET: the CuPy side
(:func:`capture_cupy`) is written against CuPy's documented ``Stream.begin_capture`` /
``end_capture`` / ``Graph.launch`` and is untested.
"""
from __future__ import annotations

import logging
import os

from gatescope.compute import backend as _backend_module
from gatescope.compute.kernels import runtime

log = logging.getLogger(__name__)

#: Loops that fell back to eager, ``what -> reason`` (the tests assert it stays empty).
fallbacks: dict[str, str] = {}
_reported: set[str] = set()


class CaptureUnavailable(RuntimeError):
    """Capture cannot work here (CuPy too old, an allocation inside the captured region, ...)."""


def capture_enabled() -> bool:
    """False when ``GATESCOPE_CUDA_GRAPHS`` is ``0`` (or ``off``/``false``)."""
    return os.environ.get("GATESCOPE_CUDA_GRAPHS", "1").strip().lower() not in ("0", "off", "false", "no")


def _report(what: str, reason: str) -> None:
    fallbacks[what] = reason
    key = reason.split(":", 1)[0] + what.split(" ", 1)[0]
    if key not in _reported:
        _reported.add(key)
        log.warning("CUDA graph capture of the %s step loop is not used (%s); the loop runs "
                    "eagerly, launch by launch", what, reason)


class StepLoop:
    """One step loop (one layer direction, one geometry) with its persistent ``buffers``.

    ``buffers`` maps names to arrays that live as long as this object; the loop body given to
    :meth:`run` must read and write nothing else. ``what`` names the loop in the log.
    """

    def __init__(self, what: str, buffers: dict):
        self.what = what
        self.buffers = buffers
        self.graph = None
        self.runs = 0
        self.eager_reason: str | None = None

    def __getattr__(self, name):
        try:
            return self.__dict__["buffers"][name]
        except KeyError:
            raise AttributeError(name) from None

    def run(self, body, eager: bool = False) -> str:
        """Run ``body()`` (the loop) on the buffers: eagerly, or captured and replayed.
        ``eager``: run it eagerly this once (a loop that records probes reads values on the
        host, which a graph cannot hold); a graph captured before is kept for later calls.
        On the CPU (no kernel backend for the buffers) the loop always runs eagerly.
        Returns ``"eager"``, ``"captured"`` or ``"replayed"``."""
        first = next(iter(self.buffers.values()))
        if eager or not runtime.on_device(first):
            body()
            return "eager"
        self.runs += 1
        if self.graph is not None:
            self.graph.launch()
            return "replayed"
        if self.eager_reason is not None or self.runs == 1 or not capture_enabled():
            body()
            return "eager"
        backend = runtime.backend_for(first)
        try:
            graph = backend.capture(body, list(self.buffers.values()))
        except Exception as exc:  # noqa: BLE001 - any failure: stay eager, say why once
            self.eager_reason = f"{type(exc).__name__}: {exc}"
            _report(self.what, self.eager_reason)
            body()
            return "eager"
        self.graph = graph
        graph.launch()
        return "captured"


class CupyGraph:
    """A captured ``cupy.cuda.Graph``, launched on the current stream (so it is ordered after
    the copies of the inputs and before the reads of the results, with no host sync)."""

    def __init__(self, graph):
        self.graph = graph

    def launch(self) -> None:
        cupy = _backend_module.cupy
        self.graph.launch(cupy.cuda.get_current_stream())


def capture_cupy(body) -> CupyGraph:
    """Capture ``body()`` on a fresh non-blocking stream into a CUDA graph.

    While capturing, CuPy's allocator is swapped for one that refuses, so an allocation inside
    the loop fails the capture (and the loop stays eager) instead of baking a pointer the
    memory pool may hand to someone else. A host synchronisation inside the capture is an
    error of the CUDA runtime and fails it the same way.
    """
    cupy = _backend_module.cupy
    stream_type = cupy.cuda.Stream
    if not hasattr(stream_type, "begin_capture") or not hasattr(cupy.cuda, "using_allocator"):
        raise CaptureUnavailable(f"CuPy {getattr(cupy, '__version__', '?')} has no Stream.begin_capture "
                                 "(CUDA graph capture needs CuPy 10 or later)")

    def refuse(size):
        raise CaptureUnavailable(f"the loop allocated {size} bytes while being captured")

    stream = stream_type(non_blocking=True)
    graph = None
    with stream:
        stream.begin_capture()
        try:
            with cupy.cuda.using_allocator(refuse):
                body()
        except BaseException:
            try:
                stream.end_capture()
            except Exception:  # noqa: BLE001 - the body's error is the one to report
                pass
            raise
        graph = stream.end_capture()
    return CupyGraph(graph)
