"""The Compare panel: what to compare (a block swapped for others of its group, or one setting at
several values), how long, and the Compare and Stop buttons with the comparison's progress.

Fed plain data: ``set_model(blocks, swappable, block_settings, training_settings)`` where
``blocks`` is ``[(block_id, label)]``, ``swappable`` the ids of the blocks that may have
something to be swapped for, ``block_settings`` ``{block_id: [setting names]}``; what one block
can be swapped for is asked for when it is chosen (``swapOptionsWanted(block_id)``, answered with
``set_swap_options(block_id, [(option, label)])``: working it out analyses the model once per
option, too slow to do for every block on every edit);
``set_choice(choice)`` shows a saved choice (``studio.compare_choice.CompareChoice.to_json``'s
form, vary values as text); ``set_running(bool)``, ``set_status(text)``, ``set_progress(fraction, text)``.
Emits ``compareRequested(dict)`` (the choice in that form, vary values as the text typed),
``choiceEdited(dict)`` after any change, ``stopRequested()``, ``swapOptionsWanted(str)``.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSizePolicy, QSpinBox, QStackedWidget,
                               QVBoxLayout, QWidget)

TRAINING = "training"
MODES = {"swap": "Swap a block", "vary": "Change a setting"}
PROGRESS_STEPS = 1000
MIN_CHOSEN, MAX_CHOSEN = 2, 6


class CompareSetupPanel(QWidget):
    """The comparison's choice and its run (see the module docstring)."""

    compareRequested = Signal(dict)
    choiceEdited = Signal(dict)
    stopRequested = Signal()
    swapOptionsWanted = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumWidth(260)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        intro = QLabel("Train variants of the model side by side: the same batches at every step, the same "
                       "initial weights wherever they can be. Their curves grow together in the other panels.")
        intro.setObjectName("muted")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.mode_combo = QComboBox()
        for key, text in MODES.items():
            self.mode_combo.addItem(text, key)
        self.block_combo = QComboBox()
        self.block_combo.setToolTip("The block whose variants are compared")
        form.addRow("Compare", self.mode_combo)
        form.addRow("Block", self.block_combo)
        layout.addLayout(form)

        self.pages = QStackedWidget()
        swap_page = QWidget()
        swap_column = QVBoxLayout(swap_page)
        swap_column.setContentsMargins(0, 0, 0, 0)
        swap_column.addWidget(QLabel(f"Swap it for ({MIN_CHOSEN} to {MAX_CHOSEN}):"))
        self.options_list = QListWidget()
        self.options_list.setMinimumHeight(110)
        self.options_list.setMaximumHeight(170)
        swap_column.addWidget(self.options_list)
        vary_page = QWidget()
        vary_form = QFormLayout(vary_page)
        vary_form.setContentsMargins(0, 0, 0, 0)
        self.setting_combo = QComboBox()
        self.values_edit = QLineEdit()
        self.values_edit.setPlaceholderText("such as 16, 32, 64")
        self.values_edit.setToolTip(f"{MIN_CHOSEN} to {MAX_CHOSEN} values, separated by commas")
        vary_form.addRow("Setting", self.setting_combo)
        vary_form.addRow("Values", self.values_edit)
        self.pages.addWidget(swap_page)
        self.pages.addWidget(vary_page)
        layout.addWidget(self.pages)

        epochs_row = QHBoxLayout()
        epochs_row.addWidget(QLabel("Epochs each"))
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 100000)
        epochs_row.addWidget(self.epochs_spin)
        epochs_row.addStretch()
        layout.addLayout(epochs_row)
        buttons = QHBoxLayout()
        self.compare_button = QPushButton("Compare")
        self.compare_button.setObjectName("primary")
        self.compare_button.setToolTip("Train every variant, step by step on the same batches")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop every variant after the same number of steps")
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.stop_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Ready")
        layout.addWidget(self.progress)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("muted")
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.blocks: list[tuple[str, str]] = []
        self.swappable: set[str] = set()
        self.swap_options: dict[str, list[tuple[str, str]]] = {}
        self.block_settings: dict[str, list[str]] = {}
        self.training_settings: list[str] = []
        self.running = False
        self._filling = False
        self.mode_combo.currentIndexChanged.connect(self._on_mode)
        self.block_combo.currentIndexChanged.connect(self._on_block)
        self.options_list.itemChanged.connect(lambda _item: self._edited())
        self.setting_combo.currentIndexChanged.connect(lambda _i: self._edited())
        self.values_edit.editingFinished.connect(self._edited)
        self.epochs_spin.valueChanged.connect(lambda _v: self._edited())
        self.compare_button.clicked.connect(self._on_compare)
        self.stop_button.clicked.connect(self.stopRequested)
        self.set_running(False)

    # ----------------------------------------------------------------- data in
    def set_model(self, blocks: list[tuple[str, str]], swappable: list[str], block_settings: dict[str, list[str]],
                  training_settings: list[str]) -> None:
        """The model's blocks and what each can become (see the module docstring)."""
        self.blocks, self.swappable, self.swap_options = list(blocks), set(swappable), {}
        self.block_settings, self.training_settings = dict(block_settings), list(training_settings)
        self._fill_blocks()

    def set_swap_options(self, block_id: str, options: list[tuple[str, str]]) -> None:
        """What ``block_id`` can be swapped for: ``[(option, label)]``, its own type among them."""
        self.swap_options[block_id] = list(options)

    def set_epochs(self, epochs: int) -> None:
        self._filling = True
        self.epochs_spin.setValue(max(1, int(epochs)))
        self._filling = False

    def set_choice(self, choice: dict) -> None:
        """Show a saved choice: mode, block, the options ticked or the setting and its values."""
        self._filling = True
        try:
            mode = choice.get("kind", "swap")
            self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))
            self._fill_blocks()
            index = self.block_combo.findData(choice.get("block"))
            if index >= 0:
                self.block_combo.setCurrentIndex(index)
            self._fill_details()
            if mode == "swap":
                wanted = set(choice.get("types", []))
                for row in range(self.options_list.count()):
                    item = self.options_list.item(row)
                    item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in wanted else Qt.Unchecked)
            else:
                index = self.setting_combo.findText(choice.get("setting", ""))
                if index >= 0:
                    self.setting_combo.setCurrentIndex(index)
                self.values_edit.setText(", ".join(str(v) for v in choice.get("values", [])))
            if choice.get("epochs"):
                self.epochs_spin.setValue(int(choice["epochs"]))
        finally:
            self._filling = False

    def set_running(self, running: bool) -> None:
        self.running = running
        for widget in (self.mode_combo, self.block_combo, self.options_list, self.setting_combo, self.values_edit,
                       self.epochs_spin):
            widget.setEnabled(not running)
        self.compare_button.setEnabled(not running and bool(self.blocks))
        self.stop_button.setEnabled(running)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def set_progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(round(min(1.0, max(0.0, fraction)) * PROGRESS_STEPS)))
        self.progress.setFormat(text)

    # ----------------------------------------------------------------- data out
    @property
    def mode(self) -> str:
        return self.mode_combo.currentData()

    def choice(self) -> dict:
        """The choice shown, in ``CompareChoice.to_json``'s form (vary values as typed)."""
        data = {"kind": self.mode, "block": self.block_combo.currentData() or "", "epochs": self.epochs_spin.value()}
        if self.mode == "swap":
            data["types"] = self.checked_options()
        else:
            data["setting"] = self.setting_combo.currentText()
            data["values"] = [v.strip() for v in self.values_edit.text().split(",") if v.strip()]
        return data

    def checked_options(self) -> list[str]:
        return [self.options_list.item(r).data(Qt.UserRole) for r in range(self.options_list.count())
                if self.options_list.item(r).checkState() == Qt.Checked]

    # ----------------------------------------------------------------- filling
    def _fill_blocks(self) -> None:
        was = self.block_combo.currentData()
        filling, self._filling = self._filling, True
        self.block_combo.clear()
        if self.mode == "swap":
            entries = [(bid, label) for bid, label in self.blocks if bid in self.swappable]
        else:
            entries = [(TRAINING, "Training settings")] + [(bid, label) for bid, label in self.blocks
                                                          if self.block_settings.get(bid)]
        for bid, label in entries:
            self.block_combo.addItem(label, bid)
        index = self.block_combo.findData(was)
        self.block_combo.setCurrentIndex(index if index >= 0 else 0)
        self._fill_details()
        self._filling = filling
        self.compare_button.setEnabled(not self.running and self.block_combo.count() > 0)

    def _fill_details(self) -> None:
        block = self.block_combo.currentData()
        filling, self._filling = self._filling, True
        if self.mode == "swap":
            self.options_list.clear()
            if block is not None and block not in self.swap_options:
                self.swapOptionsWanted.emit(block)
            for option, label in self.swap_options.get(block, []):
                item = QListWidgetItem(label)
                item.setData(Qt.UserRole, option)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Unchecked)
                self.options_list.addItem(item)
        else:
            names = self.training_settings if block == TRAINING else self.block_settings.get(block, [])
            was = self.setting_combo.currentText()
            self.setting_combo.clear()
            self.setting_combo.addItems(names)
            if was in names:
                self.setting_combo.setCurrentText(was)
        self.pages.setCurrentIndex(0 if self.mode == "swap" else 1)
        for index in range(self.pages.count()):         # the stack as tall as the page shown
            shown = index == self.pages.currentIndex()
            self.pages.widget(index).setSizePolicy(QSizePolicy.Preferred,
                                                   QSizePolicy.Preferred if shown else QSizePolicy.Ignored)
        self.pages.adjustSize()
        self._filling = filling

    def _on_mode(self, _index: int) -> None:
        self._fill_blocks()
        self._edited()

    def _on_block(self, _index: int) -> None:
        if not self._filling:
            self._fill_details()
            self._edited()

    def _edited(self) -> None:
        if not self._filling:
            self.choiceEdited.emit(self.choice())

    def _on_compare(self) -> None:
        self.compareRequested.emit(self.choice())

