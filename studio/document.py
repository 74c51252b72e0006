"""The project being edited: every change to the graph is an undoable command on a QUndoStack.

``Document`` owns the ``Project``. Graph edits (add, remove, move, wire, unwire, change a
setting, paste, auto layout) each push one command holding the graph and positions before and
after, so undo and redo restore exactly what was there. After every change the graph is
analysed again (``compute.graph.analyse``) and ``changed`` is emitted; ``modifiedChanged``
tells whether there is anything unsaved. Edits that are not part of the graph (training
settings, dataset, trained weights) mark the document modified without an undo step.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from gatescope.compute import layers as layer_registry
from gatescope.compute.graph import Analysis, Block, GraphError, GraphSpec, Model, Wire, analyse, jsonable
from gatescope.studio.layout import layered_positions
from gatescope.studio.palette_data import default_settings
from gatescope.studio.project import Project, save_project
from gatescope.studio.session import portable_reference

CLIPBOARD_FORMAT = "gatescope-blocks"

_SETTING_MERGE_ID = 1


class _GraphCommand(QUndoCommand):
    """Replace the graph and positions with ``after``; undo puts ``before`` back."""

    def __init__(self, document: "Document", text: str, before, after, merge_key: Any = None):
        super().__init__(text)
        self.document, self.before, self.after, self.merge_key = document, before, after, merge_key

    def redo(self) -> None:
        self.document._restore(self.after)

    def undo(self) -> None:
        self.document._restore(self.before)

    def id(self) -> int:  # noqa: A003 - Qt's name
        return _SETTING_MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt override
        """Typing into one setting makes one undo step, not one per keystroke."""
        if not isinstance(other, _GraphCommand) or other.merge_key != self.merge_key or self.merge_key is None:
            return False
        self.after = other.after
        return True


class Document(QObject):
    """The open project with its undo stack and the latest analysis of its graph.

    Signals: ``changed()`` after every graph change (analysis is fresh), ``modifiedChanged(bool)``,
    ``projectReplaced()`` when another project is opened.
    """

    changed = Signal()
    modifiedChanged = Signal(bool)
    projectReplaced = Signal()

    def __init__(self, project: Project | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_clean_changed)
        self._extra_modified = False
        self.locked = False           # while a run trains the graph: edits are refused
        self.project = project or Project()
        self.analysis: Analysis = analyse(self.project.graph)

    # ----------------------------------------------------------------- the project as a whole
    def set_project(self, project: Project) -> None:
        """Edit ``project`` from now on: a fresh undo history, nothing unsaved."""
        if any(b.id not in project.positions for b in project.graph.blocks):
            laid_out = layered_positions(project.graph, project.positions)
            project.positions = {**laid_out, **project.positions}  # blocks without a place get one
        self.project = project
        self.undo_stack.clear()
        self._extra_modified = False
        self.analysis = analyse(project.graph)
        self.projectReplaced.emit()
        self.changed.emit()
        self._emit_modified()

    @property
    def modified(self) -> bool:
        return self._extra_modified or not self.undo_stack.isClean()

    def mark_modified(self) -> None:
        """Something outside the graph changed (settings, dataset, weights)."""
        if not self._extra_modified:
            self._extra_modified = True
            self._emit_modified()

    def _on_clean_changed(self, clean: bool) -> None:
        self._emit_modified()

    def _emit_modified(self) -> None:
        self.modifiedChanged.emit(self.modified)

    def save(self, path) -> bool:
        """Save to ``path`` (ProjectError if it cannot). Returns False when stale weights were left out.

        Weights trained for an earlier version of the graph cannot be loaded into this one, so they
        (and the optimizer state and history that go with them) are not written.
        """
        if self.project.name in ("", "untitled"):
            self.project.name = Path(path).stem
        weights_kept = self.write_copy(path)
        self.project.dataset = portable_reference(self.project, path)   # as written: read against the new file
        self.project.path = Path(path)
        self.undo_stack.setClean()
        self._extra_modified = False
        self._emit_modified()
        return weights_kept

    def write_copy(self, path) -> bool:
        """Write the project to ``path`` without making it the project's file (autosave).

        Returns False when stale weights were left out (see ``save``); ProjectError if it cannot write.
        """
        project = replace(self.project, dataset=portable_reference(self.project, path))
        weights_kept = not project.weights or self.weights_fit()
        if not weights_kept:
            project = replace(project, weights={}, optimizer={}, history=[], trainer={"epochs_done": 0},
                              step_numbers=np.zeros(0, np.int64), step_losses=np.zeros(0, np.float32))
        save_project(project, path)
        return weights_kept

    def weights_fit(self) -> bool:
        """True when the project's weights are exactly those the current graph needs."""
        if not self.analysis.ok:
            return False
        try:
            model = Model(self.project.graph)
            model.load_state_dict(self.project.weights)
        except (GraphError, ValueError):
            return False
        return set(model.arrays()) == set(self.project.weights)

    # ----------------------------------------------------------------- snapshots
    def _snapshot(self):
        return copy.deepcopy(self.project.graph), dict(self.project.positions)

    def _restore(self, state) -> None:
        graph, positions = state
        self.project.graph = copy.deepcopy(graph)
        self.project.positions = dict(positions)
        self.analysis = analyse(self.project.graph)
        self.changed.emit()

    def _push(self, text: str, graph: GraphSpec, positions: dict, merge_key: Any = None) -> None:
        if self.locked:
            return          # the window says why (studio.app.LOCKED_MESSAGE); nothing changes
        before = self._snapshot()
        self.undo_stack.push(_GraphCommand(self, text, before, (copy.deepcopy(graph), dict(positions)), merge_key))

    def _editable(self):
        return copy.deepcopy(self.project.graph), dict(self.project.positions)

    # ----------------------------------------------------------------- edits
    def new_block_id(self, block_type: str, taken: set[str] | None = None) -> str:
        """A readable id not in use: ``conv2d1``, ``conv2d2``, ..."""
        taken = {b.id for b in self.project.graph.blocks} | (taken or set())
        stem = re.sub(r"[^a-z0-9]", "", block_type.lower()) or "block"
        n = 1
        while f"{stem}{n}" in taken:
            n += 1
        return f"{stem}{n}"

    def add_block(self, block_type: str, x: float, y: float) -> str:
        """Add a ``block_type`` block with default settings at ``(x, y)``; returns its id."""
        if block_type not in layer_registry.REGISTRY:
            raise KeyError(block_type)
        graph, positions = self._editable()
        block_id = self.new_block_id(block_type)
        graph.blocks.append(Block(block_id, block_type, default_settings(block_type)))
        positions[block_id] = (float(x), float(y))
        self._push(f"Add {block_type}", graph, positions)
        return block_id

    def remove(self, block_ids: list[str], wires: list[tuple[str, str, int]] = ()) -> None:
        """Delete blocks (with every wire touching them) and wires, as one undo step."""
        ids = set(block_ids)
        cut = {tuple(w) for w in wires}
        graph, positions = self._editable()
        before = len(graph.blocks), len(graph.wires)
        graph.blocks = [b for b in graph.blocks if b.id not in ids]
        graph.wires = [w for w in graph.wires if w.src not in ids and w.dst not in ids
                       and (w.src, w.dst, w.port) not in cut]
        if (len(graph.blocks), len(graph.wires)) == before:
            return
        for bid in ids:
            positions.pop(bid, None)
        what = (f"{len(ids)} block{'s' if len(ids) != 1 else ''}" if ids else
                f"{len(cut)} wire{'s' if len(cut) != 1 else ''}")
        self._push(f"Delete {what}", graph, positions)

    def move(self, positions_now: dict[str, tuple[float, float]]) -> None:
        """Blocks were dragged to ``positions_now``."""
        graph, positions = self._editable()
        changed = {bid: (float(x), float(y)) for bid, (x, y) in positions_now.items()
                   if bid in positions and positions[bid] != (float(x), float(y))}
        if not changed:
            return
        positions.update(changed)
        self._push(f"Move {len(changed)} block{'s' if len(changed) != 1 else ''}", graph, positions)

    def connect_blocks(self, src: str, dst: str, port: int) -> bool:
        """Wire ``src``'s output to input ``port`` of ``dst``, replacing a wire already on that port.

        Returns False (and changes nothing) for a wire that cannot be: a block to itself, an
        unknown block, or one already there.
        """
        ids = {b.id for b in self.project.graph.blocks}
        if src == dst or src not in ids or dst not in ids:
            return False
        graph, positions = self._editable()
        if Wire(src, dst, port) in graph.wires:
            return False
        graph.wires = [w for w in graph.wires if not (w.dst == dst and w.port == port)]
        graph.wires.append(Wire(src, dst, port))
        self._push(f"Wire {src} to {dst}", graph, positions)
        return True

    def disconnect(self, wires: list[tuple[str, str, int]]) -> None:
        self.remove([], wires)

    def set_setting(self, block_id: str, name: str, value: Any) -> None:
        """Change one setting; consecutive changes of the same setting make one undo step."""
        graph, positions = self._editable()
        block = graph.block(block_id)
        if block.settings.get(name) == value:
            return
        block.settings[name] = tuple(value) if isinstance(value, list) else value
        self._push(f"Change {block_id} {name}", graph, positions, merge_key=(block_id, name))

    def auto_layout(self) -> None:
        """Arrange blocks left to right by depth (longest path from a source), as one undo step."""
        graph, positions = self._editable()
        if not graph.blocks:
            return
        positions.update(layered_positions(graph, positions))
        self._push("Auto layout", graph, positions)

    # ----------------------------------------------------------------- clipboard
    def copy_payload(self, block_ids: list[str]) -> str:
        """The selected blocks and the wires between them, as JSON text for the clipboard."""
        ids = [b.id for b in self.project.graph.blocks if b.id in set(block_ids)]
        if not ids:
            return ""
        graph = self.project.graph
        blocks = [{"id": bid, "type": graph.block(bid).type,
                   "settings": jsonable(graph.block(bid).settings),
                   "position": list(self.project.positions.get(bid, (0.0, 0.0)))} for bid in ids]
        wires = [{"src": w.src, "dst": w.dst, "port": w.port} for w in graph.wires
                 if w.src in ids and w.dst in ids]
        return json.dumps({"format": CLIPBOARD_FORMAT, "blocks": blocks, "wires": wires})

    def paste(self, payload: str, offset: tuple[float, float] = (40.0, 40.0)) -> list[str]:
        """Add copies of copied blocks with new ids, keeping their wires; returns the new ids."""
        try:
            data = json.loads(payload)
        except (TypeError, ValueError):
            return []
        if not isinstance(data, dict) or data.get("format") != CLIPBOARD_FORMAT:
            return []
        graph, positions = self._editable()
        renamed: dict[str, str] = {}
        for b in data.get("blocks", []):
            if b.get("type") not in layer_registry.REGISTRY:
                continue
            new_id = self.new_block_id(b["type"], set(renamed.values()))
            renamed[b["id"]] = new_id
            settings = {k: tuple(v) if isinstance(v, list) else v for k, v in b.get("settings", {}).items()}
            graph.blocks.append(Block(new_id, b["type"], settings))
            x, y = b.get("position", (0.0, 0.0))
            positions[new_id] = (float(x) + offset[0], float(y) + offset[1])
        for w in data.get("wires", []):
            if w.get("src") in renamed and w.get("dst") in renamed:
                graph.wires.append(Wire(renamed[w["src"]], renamed[w["dst"]], int(w.get("port", 0))))
        if not renamed:
            return []
        self._push(f"Paste {len(renamed)} block{'s' if len(renamed) != 1 else ''}", graph, positions)
        return list(renamed.values())
