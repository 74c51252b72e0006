"""The window at the sizes people have: every bundled example in every view at 1280x800, 1600x1000
and 1920x1080, as ``gatescope --screenshot`` renders it, measured by ``studio.layout_audit``.

It would have caught what a new user met: gate heatmaps of zero height, an inspector two settings
tall, text-generation controls cut to "ure" and "40 c", tab names elided to "Gate hea…". The audit
itself is checked first on widgets made to fail it, so a green run means the window passed, not
that the audit looked away.
"""
import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from gatescope.assets import example_names, example_path
from gatescope.studio.layout_audit import audit
from gatescope.studio.screenshot import show, window_as_a_person_sees_it
from gatescope.studio.viewspec import VIEW_KEYS

SIZES = ((1280, 800), (1600, 1000), (1920, 1080))


def test_the_audit_finds_a_cut_label_a_control_outside_its_panel_and_a_squashed_plot(qtbot):
    top = QWidget()
    qtbot.addWidget(top)
    top.resize(300, 300)
    label = QLabel("a sentence far too long for the forty pixels it is given", top)
    label.setGeometry(0, 0, 40, 20)
    panel = QWidget(top)
    panel.setGeometry(0, 40, 100, 40)
    button = QPushButton("Generate", panel)
    button.setGeometry(60, 0, 90, 30)          # 50 px of it beyond the panel's right edge
    plot = pg.PlotWidget(top)
    plot.setGeometry(0, 100, 300, 60)          # a plot squashed to a sliver
    top.show()
    qtbot.waitExposed(top)
    found = audit(top)
    assert any("QLabel 'a sentence far too long" in p and "is cut" in p for p in found)
    assert any("QPushButton 'Generate'" in p and "outside its panel" in p for p in found)
    assert any("the plot" in p and "below its readable" in p for p in found)


def test_the_audit_accepts_what_scrolls_and_what_fits(qtbot):
    top = QWidget()
    qtbot.addWidget(top)
    column = QVBoxLayout(top)
    column.addWidget(QLabel("short"))
    column.addWidget(QPushButton("Train"))
    column.addWidget(pg.PlotWidget())
    top.resize(500, 400)
    top.show()
    qtbot.waitExposed(top)
    assert audit(top) == []


@pytest.fixture(scope="module")
def examples():
    names = example_names()
    assert len(names) >= 7, names
    return names


def test_every_example_in_every_view_at_every_common_size_has_room(qtbot, examples):
    problems = []
    for name in examples:
        with window_as_a_person_sees_it(example_path(name), "build", SIZES[0]) as window:
            assert window is not None, name
            for width, height in SIZES:
                window.resize(width, height)
                qtbot.wait(20)
                for view in VIEW_KEYS:
                    show(window, view)
                    problems += [f"{name} {width}x{height} {view}: {p}" for p in audit(window)]
                    block = window.inside.recurrent_block
                    if view == "inside" and block and window.project.graph.block(block).type in ("LSTM", "GRU"):
                        # The contract: the first recurrent block's gates are what Inside shows.
                        assert not window.inside.gates.is_empty, (name, view)
                        assert all(np.asarray(image.image).size for image in window.inside.gates.images.values())
    assert problems == [], "\n".join(problems)


def test_the_inspector_shows_eight_settings_and_the_size_arithmetic_at_1280x800(qtbot):
    with window_as_a_person_sees_it(example_path("digits-cnn"), "build", (1280, 800)) as window:
        conv = next(b.id for b in window.project.graph.blocks if b.type == "Conv2D")
        window.canvas.select([conv])
        qtbot.wait(50)
        inspector = window.inspector
        viewport = inspector.viewport().rect()
        editors = [e for e in inspector.form.editors.values()]
        shown = [e for e in editors if viewport.contains(e.mapTo(inspector.viewport(), e.rect().center()))]
        assert len(shown) == len(editors) >= 5          # a Conv2D's five settings, none scrolled away
        assert inspector.viewport().height() >= 8 * 32   # room for eight rows of settings
        assert inspector.size_label.isVisible() and "floor((" in inspector.size_label.text()
        assert inspector.formula_label.isVisible() and " = " in inspector.formula_label.text()
