"""The gates panel shows exactly the gate values it is given, with the lectures' names."""

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from gatescope.widgets.inside.common import InputSequence
from gatescope.widgets.inside.gates import EMPTY_NO_BLOCK, GatesPanel



LSTM_GATES = ("input", "forget", "candidate", "output")


@pytest.fixture
def lstm_gates():
    rng = np.random.default_rng(1)
    gates = {name: rng.random((6, 4)).astype(np.float32) for name in LSTM_GATES}
    gates["candidate"] = gates["candidate"] * 2 - 1
    return gates


def test_empty_panel_says_what_to_do(qtbot):
    panel = GatesPanel()
    qtbot.addWidget(panel)
    assert panel.is_empty and panel.message == EMPTY_NO_BLOCK
    assert not panel.save_data_button.isEnabled()


def test_heatmaps_hold_the_values_time_across_units_down(qtbot, lstm_gates):
    panel = GatesPanel()
    qtbot.addWidget(panel)
    panel.set_gates(lstm_gates, "LSTM", InputSequence("text", list("hello!")))
    assert not panel.is_empty
    for name, values in lstm_gates.items():
        image = panel.images[name].image
        np.testing.assert_array_equal(image, values.T)          # rows: units, columns: time steps
        assert image.shape == (4, 6)
    assert panel.plots["forget"].titleLabel.text == "forget gate f_t"
    assert panel.plots["candidate"].titleLabel.text.startswith("candidate C̃_t")
    assert panel.images["input"].getLevels().tolist() == [0.0, 1.0]
    assert panel.images["candidate"].getLevels().tolist() == [-1.0, 1.0]
    assert tuple(panel.colour_bars["gate"].values) == (0.0, 1.0)
    assert tuple(panel.colour_bars["candidate"].values) == (-1.0, 1.0)
    bottom = panel.plots["output"].getAxis("bottom")
    assert "time step t" in bottom.labelText
    assert [label for _, label in bottom._tickLevels[0]] == list("hello!")
    assert panel.plots["input"].getAxis("left").labelText == "unit"


def test_gru_names_and_a_signal_strip(qtbot):
    panel = GatesPanel()
    qtbot.addWidget(panel)
    gates = {n: np.full((5, 3), 0.5, np.float32) for n in ("reset", "update", "candidate")}
    panel.set_gates(gates, "GRU", InputSequence("signal", np.arange(10.0).reshape(5, 2), "input x_t"))
    assert [panel.plots[n].titleLabel.text for n in gates] == ["reset gate r_t", "update gate z_t",
                                                             "candidate h̃_t (tanh)"]
    assert panel.input_plot is not None
    curves = panel.input_plot.listDataItems()
    assert len(curves) == 2
    np.testing.assert_array_equal(curves[1].yData, [1, 3, 5, 7, 9])
    # The short strip's axis names only its lowest and highest value.
    assert panel.input_plot.getAxis("left")._tickLevels[0] == [(0.0, "0"), (9.0, "9")]


def test_hover_reads_time_unit_and_value(qtbot, lstm_gates):
    panel = GatesPanel()
    qtbot.addWidget(panel)
    panel.resize(800, 900)
    panel.show()
    panel.set_gates(lstm_gates, "LSTM", InputSequence("text", list("hello!")))
    qtbot.waitExposed(panel)
    plot = panel.plots["forget"]
    scene_pos = plot.getViewBox().mapViewToScene(QPointF(1, 2))
    panel._on_mouse_moved(scene_pos)
    text = panel.hover_label.text()
    assert text.startswith("forget gate f_t: t = 1 (input 'e'), unit 2")
    assert f"{lstm_gates['forget'][1, 2]:.3f}" in text


def test_csv_round_trip_and_picture(qtbot, tmp_path, lstm_gates):
    panel = GatesPanel()
    qtbot.addWidget(panel)
    panel.set_gates(lstm_gates, "LSTM")
    panel.export_data(tmp_path / "gates.csv")
    table = np.loadtxt(tmp_path / "gates.csv", delimiter=",", skiprows=1)
    header = (tmp_path / "gates.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["t", "unit", "input gate i_t"]
    for k, name in enumerate(LSTM_GATES):
        np.testing.assert_allclose(table[:, 2 + k].reshape(6, 4), lstm_gates[name], rtol=1e-6)
    np.testing.assert_array_equal(table[:, 0].reshape(6, 4), np.repeat(np.arange(6), 4).reshape(6, 4))
    picture = panel.export_picture(tmp_path / "gates.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_controls_emit(qtbot):
    panel = GatesPanel()
    qtbot.addWidget(panel)
    panel.set_blocks([("b1", "b1 · LSTM"), ("b2", "b2 · GRU")], "b1")
    panel.set_sample_count(10)
    with qtbot.waitSignal(panel.sampleChanged) as blocker:
        panel.sample_spin.setValue(3)
    assert blocker.args == [3]
    with qtbot.waitSignal(panel.nextSampleRequested):
        panel.next_button.click()
    with qtbot.waitSignal(panel.blockChosen) as blocker:
        panel.block_combo.setCurrentIndex(1)
    assert blocker.args == ["b2"]
