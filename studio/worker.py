"""Long work, one pattern: a Qt-free function or generator carried by a worker on its own QThread.

    worker = Worker("dataset-loader", parent=self)
    worker.submit(load, ref,                        # any Qt-free callable and its arguments
                  done=on_loaded,                   # its return value, on the GUI thread
                  failed=on_failed)                 # (one-line message, traceback text)

    worker.submit(train_events, job, control,       # a generator function: each value it
                  event=on_event, done=on_end)      # yields arrives as an event, then done

Tasks given to one worker run one after another on its thread, in the order submitted. The
function never sees Qt: it reports by yielding (progress, events) and checks the flags of a
``compute.train.Control`` it is given between steps; throttling belongs to the generator (it
knows what is worth sending). Everything it sends must be plain host data that the GUI may
keep. Signals are emitted only from the worker's QThread, never from a plain Python thread:
PySide6 aborts the process on the latter in some versions (why the project pinned it below
6.12), and a QThread is what Qt's queued connections are made for (the pattern of Orange's
``concurrent`` helpers and superqt's ``thread_worker``).

``Worker.shutdown()`` waits for the task under way and stops the thread; tasks submitted
after it are refused.
"""
from __future__ import annotations

import atexit
import inspect
import itertools
import logging
import traceback
import weakref
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

log = logging.getLogger(__name__)


class Task(QObject):
    """One submitted call. Signals arrive on the thread that owns the task (the GUI thread).

    ``event(object)``: a value the generator yielded; ``done(object)``: the function's return
    value (a generator's is its ``return`` value, usually None); ``failed(str, str)``: a
    one-line message and the traceback, when the function raised. Exactly one of ``done`` and
    ``failed`` comes, last. ``finished`` is True from then on.
    """

    event = Signal(object)
    done = Signal(object)
    failed = Signal(str, str)

    def __init__(self, number: int, fn: Callable, args: tuple):
        super().__init__()
        self.number, self.fn, self.args = number, fn, args
        self.finished = False
        self.result: Any = None
        self.error: str | None = None
        self.done.connect(self._mark_done)
        self.failed.connect(self._mark_failed)

    def _mark_done(self, result: Any) -> None:
        self.finished, self.result = True, result

    def _mark_failed(self, message: str, details: str) -> None:
        self.finished, self.error = True, message


class _Runner(QObject):
    """Lives on the worker's thread and runs what it is handed there."""

    @Slot(object)
    def run(self, task: Task) -> None:
        try:
            outcome = task.fn(*task.args)
            if inspect.isgenerator(outcome):
                outcome = yield_all(outcome, task.event.emit)
        except Exception as exc:  # noqa: BLE001 - every failure reaches the GUI as a message
            details = traceback.format_exc()
            log.debug("task %s failed:\n%s", getattr(task.fn, "__name__", task.fn), details)
            task.failed.emit(f"{type(exc).__name__}: {exc}", details)
            return
        task.done.emit(outcome)


def yield_all(generator, send: Callable[[Any], None]) -> Any:
    """Send every value ``generator`` yields; return its return value."""
    while True:
        try:
            send(next(generator))
        except StopIteration as stop:
            return stop.value


_running: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Stop the threads of workers nobody shut down, before Python tears their objects down
    (a QThread destroyed while running aborts the process)."""
    for worker in list(_running):
        worker.shutdown(5000)


class Worker(QObject):
    """A QThread that runs submitted Qt-free callables one after another (see the module)."""

    _hand_over = Signal(object)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.thread = QThread()
        self.thread.setObjectName(name)
        self._runner = _Runner()
        self._runner.moveToThread(self.thread)
        self._hand_over.connect(self._runner.run)  # queued: the runner lives on the other thread
        self._numbers = itertools.count(1)
        self._pending: set[Task] = set()
        self._closed = False
        self.thread.start()
        _running.add(self)

    def submit(self, fn: Callable, *args, done: Callable | None = None, failed: Callable | None = None,
               event: Callable | None = None) -> Task:
        """Run ``fn(*args)`` on the worker's thread after the tasks before it (``functools.partial``
        for keyword arguments). ``done``, ``failed`` and ``event`` are connected to the task's
        signals before it can start, so nothing it sends is missed. Returns the task."""
        if self._closed:
            raise RuntimeError(f"the {self.name} worker has been shut down")
        task = Task(next(self._numbers), fn, args)
        for signal, slot in ((task.event, event), (task.done, done), (task.failed, failed)):
            if slot is not None:
                signal.connect(slot)
        self._pending.add(task)            # kept alive until it has ended
        task.done.connect(lambda _=None, t=task: self._pending.discard(t))
        task.failed.connect(lambda *_, t=task: self._pending.discard(t))
        self._hand_over.emit(task)
        return task

    @property
    def busy(self) -> bool:
        """True while a task submitted here has not ended (as seen from the GUI thread)."""
        return bool(self._pending)

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Let the task under way end, drop the queued ones, stop the thread; True if it stopped."""
        if self._closed:
            return True
        self._closed = True
        _running.discard(self)
        self.thread.quit()
        stopped = self.thread.wait(timeout_ms)
        if not stopped:
            log.warning("the %s worker did not stop within %d ms", self.name, timeout_ms)
        return stopped
