"""Cell state, gradients, gate health, convolution and text generation panels, with known arrays."""

import numpy as np
import pytest

from gatescope.widgets.inside.cell_state import CellStatePanel, most_active_units, parse_units
from gatescope.widgets.inside.common import InputSequence
from gatescope.widgets.inside.conv_features import ConvFeaturesPanel, mosaic, normalise_each
from gatescope.widgets.inside.gate_health import GateHealthPanel
from gatescope.widgets.inside.gradients import GradientsPanel
from gatescope.widgets.inside.text_generation import TextGenerationPanel




def read_csv(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_cell_state_draws_the_most_active_units_and_round_trips(qtbot, tmp_path):
    t = np.arange(8)
    cell = np.zeros((8, 6), np.float32)
    cell[:, 2] = t            # the two units that move
    cell[:, 4] = -2 * t
    hidden = np.tanh(cell)
    panel = CellStatePanel()
    qtbot.addWidget(panel)
    panel.count_spin.setValue(2)
    panel.set_states(hidden, cell, InputSequence("text", list("abcdefgh")))
    assert panel.units == [2, 4]
    curves = panel.cell_plot.listDataItems()
    np.testing.assert_array_equal(curves[0].yData, cell[:, 2])
    np.testing.assert_array_equal(curves[1].yData, cell[:, 4])
    assert "C_t" in panel.cell_plot.titleLabel.text
    assert "time step t" in panel.hidden_plot.getAxis("bottom").labelText
    panel.set_units([0, 4])
    panel.export_data(tmp_path / "cell.csv")
    table = read_csv(tmp_path / "cell.csv")
    np.testing.assert_allclose(table, np.column_stack([t, cell[:, 0], hidden[:, 0], cell[:, 4], hidden[:, 4]]),
                               rtol=1e-6)


def test_cell_state_axes_show_the_values_themselves(qtbot):
    t = np.arange(8)
    cell = np.stack([np.sin(t / 3), np.cos(t / 3)], axis=1).astype(np.float32) * 0.6
    panel = CellStatePanel()
    qtbot.addWidget(panel)
    panel.resize(700, 500)
    panel.show()
    panel.set_states(np.tanh(cell) * 0.5, cell, None, "a caption long enough to wrap " * 8)
    qtbot.wait(10)
    for plot in (panel.cell_plot, panel.hidden_plot):        # values within (-1, 1): no "(x0.001)"
        assert plot.getAxis("left").autoSIPrefixScale == 1.0
    assert panel.caption_label.wordWrap()


def test_cell_state_relabels_its_lines_when_the_most_active_units_change(qtbot):
    """A live refresh where other units are now the most active keeps the lines (they are
    only relabelled), and legend and data follow the new units."""
    rng = np.random.default_rng(1)
    cell = rng.normal(size=(6, 5)).astype(np.float32) * 0.01
    cell[:, 1] += np.arange(6)
    cell[:, 3] -= np.arange(6)
    panel = CellStatePanel()
    qtbot.addWidget(panel)
    panel.count_spin.setValue(2)
    panel.set_states(np.tanh(cell), cell)
    lines = panel.cell_plot.listDataItems()
    assert [label.text for _, label in panel.legend.items] == ["unit 1", "unit 3"]
    moved = cell[:, [1, 0, 2, 3, 4]]                  # now units 0 and 3 move most
    panel.set_states(np.tanh(moved), moved)
    assert panel.units == [0, 3]
    assert panel.cell_plot.listDataItems() == lines     # the same line objects
    assert [label.text for _, label in panel.legend.items] == ["unit 0", "unit 3"]
    np.testing.assert_array_equal(lines[0].yData, moved[:, 0])
    np.testing.assert_array_equal(panel.hidden_plot.listDataItems()[1].yData, np.tanh(moved[:, 3]))
    panel.count_spin.setValue(3)
    panel.set_states(np.tanh(moved), moved)             # another count: three lines
    assert len(panel.cell_plot.listDataItems()) == 3 and len(panel.legend.items) == 3


def test_cell_state_without_a_cell_and_unit_parsing(qtbot):
    panel = CellStatePanel()
    qtbot.addWidget(panel)
    panel.set_states(np.random.default_rng(0).normal(size=(5, 3)))
    assert not panel.cell_plot.isVisible() and "no C_t" in panel.hidden_plot.titleLabel.text
    assert parse_units("2, 0 2", 3) == [2, 0]
    with pytest.raises(ValueError, match="units go from 0 to 2"):
        parse_units("5", 3)
    assert most_active_units(np.array([[0, 0, 1], [0, 5, 2]]), 2) == [1, 2]


def test_gradients_log_axis_curves_pin_and_csv(qtbot, tmp_path):
    panel = GradientsPanel()
    qtbot.addWidget(panel)
    assert panel.is_empty
    t = np.arange(5)
    panel.set_curve("rnn/b1/grad_h", "RNN ‖∂L/∂h_t‖", t, 10.0 ** -t)
    assert panel.plot.ctrl.logYCheck.isChecked()
    panel.pin_current_as_reference()
    panel.set_curve("rnn/b1/grad_h", "LSTM ‖∂L/∂h_t‖", t, np.ones(5))
    panel.set_curve("rnn/b1/grad_c", "LSTM ‖∂L/∂C_t‖", t[1:], [0.0, 2.0, 2.0, 2.0], dashed=True)
    assert set(panel.curves) == {"rnn/b1/grad_h", "pinned:rnn/b1/grad_h", "rnn/b1/grad_c"}
    legend = [label.text for _, label in panel.legend.items]
    assert "RNN ‖∂L/∂h_t‖ (pinned)" in legend and "LSTM ‖∂L/∂C_t‖" in legend
    assert np.isnan(panel.items["rnn/b1/grad_c"].yData[0])          # a zero cannot sit on a log axis
    panel.export_data(tmp_path / "grad.csv")
    table = read_csv(tmp_path / "grad.csv")
    np.testing.assert_array_equal(table[:, 0], t)
    np.testing.assert_allclose(table[:, 1], np.ones(5))
    np.testing.assert_allclose(table[:, 2], 10.0 ** -t)
    assert np.isnan(table[0, 3]) and table[2, 3] == 2.0
    panel.clear_references()
    assert "pinned:rnn/b1/grad_h" not in panel.curves


def test_gate_health_bars_and_findings(qtbot, tmp_path):
    panel = GateHealthPanel()
    qtbot.addWidget(panel)
    health = {"input": {"saturated_low": 0.1, "saturated_high": 0.2, "frozen_units": 0.0},
              "forget": {"saturated_low": 0.0, "saturated_high": 0.95, "frozen_units": 0.5}}
    panel.set_health(health, ["forget gate f_t: 95% saturated"])
    np.testing.assert_allclose(panel.bars["saturated_high"].opts["height"], [20.0, 95.0])
    np.testing.assert_allclose(panel.bars["frozen_units"].opts["height"], [0.0, 50.0])
    ticks = [label for _, label in panel.plot.getAxis("bottom")._tickLevels[0]]
    assert ticks == ["i_t", "f_t"]        # the lectures' symbols: full names overlapped in a narrow panel
    assert "95% saturated" in panel.findings_label.text()
    panel.export_data(tmp_path / "health.csv")
    np.testing.assert_allclose(read_csv(tmp_path / "health.csv"), [[0, 0.1, 0.2, 0.0], [1, 0.0, 0.95, 0.5]])


def test_gate_health_says_a_pinned_gate_is_pinned_not_that_no_gate_is_stuck(qtbot):
    from gatescope.compute.layers.recurrent import pinned_gates
    from gatescope.studio.inside_math import health_findings, pinned_notes
    panel = GateHealthPanel()
    qtbot.addWidget(panel)
    health = {"input": {"saturated": 1.0, "saturated_low": 1.0, "saturated_high": 0.0, "frozen_units": 1.0},
              "forget": {"saturated": 1.0, "saturated_low": 0.0, "saturated_high": 1.0, "frozen_units": 1.0},
              "output": {"saturated": 0.1, "saturated_low": 0.05, "saturated_high": 0.05, "frozen_units": 0.0}}
    pins = pinned_gates({"pin_forget": "1", "pin_input": "0", "pin_output": "learned"})
    panel.set_health(health, health_findings(health, pins), notes=pinned_notes(health, pins))
    text = panel.findings_label.text()
    assert "No gate is stuck" not in text
    assert "forget gate f_t is pinned to 1" in text and "input gate i_t is pinned to 0" in text


def test_conv_filters_normalised_per_filter_and_maps(qtbot, tmp_path):
    filters = np.stack([np.arange(9.0).reshape(1, 3, 3), -100 * np.arange(9.0).reshape(1, 3, 3)])
    maps = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    panel = ConvFeaturesPanel()
    qtbot.addWidget(panel)
    panel.set_filters(filters)
    panel.set_feature_maps(maps)
    picture = panel.filter_image.image
    np.testing.assert_allclose(picture[:, :3], np.arange(9).reshape(3, 3) / 8)       # filter 0, own range
    np.testing.assert_allclose(picture[:, 4:], 1 - np.arange(9).reshape(3, 3) / 8)   # filter 1, own range
    assert np.isnan(picture[:, 3]).all()                                              # the gap
    np.testing.assert_array_equal(panel.map_image.image[:, :5], maps[0])
    np.testing.assert_array_equal(panel.map_image.image[:, 6:], maps[1])
    panel.export_data(tmp_path / "conv.csv")
    table = read_csv(tmp_path / "conv.csv")
    np.testing.assert_allclose(table[:, -1], filters.reshape(-1))
    back = read_csv(ConvFeaturesPanel.feature_map_path(tmp_path / "conv.csv"))
    np.testing.assert_allclose(back[:, -1], maps.reshape(-1))
    assert mosaic(np.ones((3, 2, 2)), gap=1).shape == (5, 5)
    assert normalise_each(np.ones((1, 2, 2))).tolist() == [[[0.5, 0.5], [0.5, 0.5]]]


def test_text_generation_table_and_bars(qtbot, tmp_path):
    panel = TextGenerationPanel()
    qtbot.addWidget(panel)
    assert panel.is_empty and not panel.generate_button.isEnabled()
    panel.set_available(True)
    vocab = list("ehlo")
    probabilities = np.array([[.7, .1, .1, .1], [.1, .1, .7, .1], [.05, .1, .6, .25], [.1, .1, .1, .7]])
    with qtbot.waitSignal(panel.generateRequested) as blocker:
        panel.generate_button.click()
    assert blocker.args == ["h", 1.0, 40]
    panel.set_result("h", "ello", probabilities, vocab)
    np.testing.assert_allclose(panel.table_image.image, probabilities.T, rtol=1e-6)
    marks = panel.chosen_marks.getData()
    assert marks[1].tolist() == [0, 2, 2, 3]                      # e, l, l, o outlined
    np.testing.assert_allclose(panel.bars.opts["height"], probabilities[3], rtol=1e-6)
    assert "drew 'o'" in panel.bar_plot.titleLabel.text
    panel.export_data(tmp_path / "gen.csv")
    table = read_csv(tmp_path / "gen.csv")
    np.testing.assert_allclose(table[:, 2:], probabilities, rtol=1e-6)
    assert table[:, 1].tolist() == [0, 2, 2, 3]
    assert panel.export_picture(tmp_path / "gen.png").stat().st_size > 1000
