"""The final metrics of every variant in one sortable table, and what to do with a variant:
open it as a project of its own (with its weights) or make it the project's model.

``set_rows(rows)``: one dict per variant (``label``, ``parameters``, ``seconds_per_step``,
``epochs``, ``train_loss``, ``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy``,
``ended``; None where there is no value yet), in variant order; ``set_actions_enabled(bool)``
(the variants' weights exist once a comparison has ended). Emits ``openRequested(index)`` and
``adoptRequested(index)`` with the variant's index.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QPushButton, QWidget

from gatescope.widgets.compare.table import MetricsTable
from gatescope.widgets.inside.common import InsidePanel

EMPTY = "Each variant's parameter count, time per step and final losses and accuracies appear here."
COLUMNS = (("variant", "label", "text"), ("parameters", "parameters", "int"), ("ms per step", "seconds_per_step", "ms"),
           ("epochs", "epochs", "int"), ("train loss", "train_loss", "number"), ("val loss", "val_loss", "number"),
           ("val accuracy", "val_accuracy", "percent"), ("test loss", "test_loss", "number"),
           ("test accuracy", "test_accuracy", "percent"), ("ended", "ended", "text"))


class VariantResultsPanel(InsidePanel):
    """See the module docstring."""

    openRequested = Signal(int)
    adoptRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Final metrics", "Sort by any column. Time per step is the median of the variant's "
                         "steps (its first steps also compile its kernels).", parent)
        self.open_button = QPushButton("Open as project")
        self.open_button.setToolTip("Open the selected variant as a project of its own, with its trained weights")
        self.adopt_button = QPushButton("Make it the project's model")
        self.adopt_button.setToolTip("Replace the project's model, settings and weights by the selected variant's "
                                     "(the run history keeps the old ones)")
        self.controls.addWidget(self.open_button)
        self.controls.addWidget(self.adopt_button)
        self.table = MetricsTable([(title, kind) for title, _key, kind in COLUMNS])
        self.set_content(self.table, min_height=120)
        self.rows: list[dict] = []
        self._actions = False
        self.open_button.clicked.connect(lambda: self._request(self.openRequested))
        self.adopt_button.clicked.connect(lambda: self._request(self.adoptRequested))
        self.table.itemSelectionChanged.connect(self._refresh_buttons)
        self.show_message(EMPTY)
        self._refresh_buttons()

    def set_rows(self, rows: list[dict]) -> None:
        selected = self.table.selected_keys()
        self.rows = [dict(r) for r in rows]
        self.table.set_rows([[r.get(key) for _title, key, _kind in COLUMNS] for r in self.rows],
                            list(range(len(self.rows))))
        self.table.select_keys(selected)
        self.show_content()
        self._refresh_buttons()

    def set_actions_enabled(self, enabled: bool) -> None:
        self._actions = enabled
        self._refresh_buttons()

    def selected_variant(self) -> int | None:
        keys = self.table.selected_keys()
        return keys[0] if len(keys) == 1 else None

    def _refresh_buttons(self) -> None:
        ready = self._actions and self.selected_variant() is not None
        for button in (self.open_button, self.adopt_button):
            button.setEnabled(ready)

    def _request(self, signal) -> None:
        index = self.selected_variant()
        if index is not None:
            signal.emit(index)

    def data_table(self):
        """One row per variant, in variant order: its index, then the numeric columns."""
        numeric = [(title, key) for title, key, kind in COLUMNS if kind != "text"]
        labels = "; ".join(f"{i} {r.get('label', '')}" for i, r in enumerate(self.rows))
        header = [f"variant ({labels})"] + [("seconds per step" if key == "seconds_per_step" else title)
                                            for title, key in numeric]
        table = [[i] + [np.nan if r.get(key) is None else float(r[key]) for _, key in numeric]
                 for i, r in enumerate(self.rows)]
        return header, np.asarray(table, dtype=np.float64).reshape(-1, len(header))
