"""Axes that read the way the quantities are: whole time steps and epochs, powers of ten.

``IntegerAxis``: ticks only at whole numbers (a time step or an epoch of 1.5 does not exist;
pyqtgraph's automatic ticks put them at 0.5 on a 4-step sequence).
``LogAxis``: for a log-scaled axis, every power of ten written the same way (``10⁻⁵``, ``10⁻⁴``,
..., ``10⁰``, ``10¹``); pyqtgraph mixed "0.0001" with "10⁻⁵" on one axis. Ticks between the
powers are labelled only when less than one decade is in view.

Both take the same arguments as ``pyqtgraph.AxisItem`` (``orientation`` first) and go into a
plot through ``axisItems={"bottom": IntegerAxis("bottom")}``.
"""
from __future__ import annotations

import math

import pyqtgraph as pg

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(exponent: int) -> str:
    """``-5`` -> ``'10⁻⁵'``."""
    return "10" + str(int(exponent)).translate(_SUPERSCRIPT)


class IntegerAxis(pg.AxisItem):
    """An axis whose ticks fall on whole numbers only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal, maxVal, size):  # noqa: N802,N803 - pyqtgraph's names
        levels = super().tickValues(minVal, maxVal, size)
        out = []
        for spacing, values in levels:
            if spacing < 1:
                continue        # finer than one step: no such ticks
            whole = [v for v in values if abs(v - round(v)) < 1e-9]
            out.append((max(1.0, round(spacing)), whole))
        if not out:             # zoomed in to under one step: the whole numbers in view
            out = [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]
        return out


class LogAxis(pg.AxisItem):
    """Labels of a log-scaled axis (the plot's ``setLogMode``) as powers of ten (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.enableAutoSIPrefix(False)

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        low, high = self.range if self.range else (0.0, 1.0)
        decades_in_view = math.floor(max(low, high)) - math.ceil(min(low, high)) + 1
        labels = []
        for v in values:        # v is log10 of the value
            exponent = round(v)
            if abs(v - exponent) < 1e-6:
                labels.append(power_of_ten(exponent))
            elif decades_in_view < 1:
                labels.append(f"{10 ** v:.2g}")
            else:
                labels.append("")
        return labels


def plot_axes(**kinds: str) -> dict[str, pg.AxisItem]:
    """``axisItems`` for a plot: ``plot_axes(bottom="integer", left="log")``."""
    made = {"integer": IntegerAxis, "log": LogAxis}
    return {side: made[kind](side) for side, kind in kinds.items()}
