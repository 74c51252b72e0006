"""Training runs, without the window: start, pause, resume, stop, progress and ETA.

``TrainingController.start(job)`` runs ``studio.training_run.training_events`` on the training
worker thread and re-emits its events on the GUI thread: ``started(info)``, ``steps(payload)``,
``epoch(record)``, ``ended(kind, message, result)``. It keeps the run's state (``idle``,
``running``, ``paused``: ``stateChanged``) and says how far it is (``progressChanged(fraction,
text)``): the ETA counts only the time spent training, so a pause does not inflate it, and
while paused the text says "Paused" with no ETA. After a run ends, the fraction stays where it
stopped (a stop at 235 of 300 epochs shows 78 %), and ``progress_of(project)`` gives the same for
a reopened project.
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Signal

from gatescope.compute.train import Control
from gatescope.studio.training_run import TrainingJob, training_events
from gatescope.studio.wording import format_duration
from gatescope.studio.worker import Worker


def progress_of(epochs_done: int, planned: int | None) -> float:
    """How far a project's training got: epochs done of the last run's planned end (1 when done
    or unknown but trained, 0 when never trained)."""
    if not epochs_done:
        return 0.0
    if not planned or planned <= 0:
        return 1.0
    return min(1.0, epochs_done / planned)


class TrainingController(QObject):
    """One training run at a time on the training worker (see the module docstring)."""

    started = Signal(dict)
    steps = Signal(dict)
    epoch = Signal(dict)
    ended = Signal(str, str, object)
    stateChanged = Signal(str)
    progressChanged = Signal(float, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = Worker("training", self)
        self.state = "idle"
        self.control: Control | None = None
        self.info: dict = {}
        self.last_step: dict = {}
        self._task = None
        self._active_s = 0.0                  # seconds spent running (pauses left out)
        self._resumed_at = 0.0
        self._done_steps = 0

    # ----------------------------------------------------------------- commands
    @property
    def running(self) -> bool:
        return self.state != "idle"

    def start(self, job: TrainingJob) -> bool:
        """Run ``job`` on the worker thread; False if a run is under way already."""
        if self.running:
            return False
        self.control = Control()
        self.info, self.last_step, self._done_steps = {}, {}, 0
        self._active_s, self._resumed_at = 0.0, time.perf_counter()
        self._set_state("running")
        self.progressChanged.emit(0.0, "Starting…")
        self._task = self.worker.submit(training_events, job, self.control, event=self._on_event,
                                        failed=self._on_crash)
        return True

    def pause(self) -> None:
        if self.state == "running" and self.control is not None:
            self.control.pause()
            self._active_s += time.perf_counter() - self._resumed_at
            self._set_state("paused")
            self.progressChanged.emit(self.fraction(), self._paused_text())

    def resume(self) -> None:
        if self.state == "paused" and self.control is not None:
            self.control.resume()
            self._resumed_at = time.perf_counter()
            self._set_state("running")
            self.progressChanged.emit(self.fraction(), "Resuming…")

    def stop(self) -> None:
        if self.running and self.control is not None:
            was_paused = self.state == "paused"
            self.control.stop()
            if was_paused:
                self._resumed_at = time.perf_counter()
            self.progressChanged.emit(self.fraction(), "Stopping after this step…")

    def stop_and_wait(self, timeout_s: float = 60.0) -> bool:
        """Stop the run and wait for its end (its weights arrive through ``ended``); True if it ended."""
        if not self.running:
            return True
        self.stop()
        deadline = time.perf_counter() + timeout_s
        while self.running and time.perf_counter() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return not self.running

    def shutdown(self) -> None:
        self.stop_and_wait()
        self.worker.shutdown()

    # ----------------------------------------------------------------- progress
    def elapsed_s(self) -> float:
        """Seconds this run has spent training (pauses left out)."""
        if self.state == "running":
            return self._active_s + time.perf_counter() - self._resumed_at
        return self._active_s

    def total_steps(self) -> int:
        return max(1, int(self.info.get("steps_per_epoch", 1)) * int(self.info.get("epochs", 1)))

    def fraction(self) -> float:
        return min(1.0, self._done_steps / self.total_steps()) if self.info else 0.0

    def _paused_text(self) -> str:
        where = ""
        if self.last_step:
            steps = int(self.info.get("steps_per_epoch", 1))
            where = f" at epoch {self.last_step['epoch'] + 1}, step {self.last_step['step'] + 1} of {steps}"
        return f"Paused{where}. Resume goes on from the same step."

    # ----------------------------------------------------------------- events from the worker
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

    def _on_event(self, event) -> None:
        kind, data = event
        if kind == "started":
            self.info = dict(data)
            self.started.emit(data)
        elif kind == "steps":
            self._on_steps(data)
        elif kind == "epoch":
            self.epoch.emit(data)
        elif kind == "ended":
            self._end(data["kind"], data["message"], data["result"])

    def _on_steps(self, payload: dict) -> None:
        last, info = payload["last"], self.info
        self.last_step = last
        steps = int(info.get("steps_per_epoch", 1))
        self._done_steps = (last["epoch"] - info.get("first_epoch", 0)) * steps + last["step"] + 1
        self.steps.emit(payload)
        if self.state == "paused":
            self.progressChanged.emit(self.fraction(), self._paused_text())
            return
        done, total = self._done_steps, self.total_steps()
        eta = self.elapsed_s() / max(done, 1) * (total - done)
        text = (f"Epoch {last['epoch'] + 1}, step {last['step'] + 1} of {steps} · loss {last['loss']:.4f} · "
                f"{last['samples_per_s']:,.0f}\u00a0samples/s · ETA\u00a0{format_duration(eta)}")
        self.progressChanged.emit(self.fraction(), text)

    def _on_crash(self, message: str, details: str) -> None:
        # training_events never raises; this is a last guard so the window never stays "running".
        self._end("failed", f"training failed: {message}", None)

    def _end(self, kind: str, message: str, result: Any) -> None:
        if self.state == "running":
            self._active_s += time.perf_counter() - self._resumed_at
        self._set_state("idle")
        self.control, self._task = None, None
        self.ended.emit(kind, message, result)
