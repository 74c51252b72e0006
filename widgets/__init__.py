"""Reusable Qt + pyqtgraph widgets of GateScope.

Widgets take plain Python values and NumPy arrays in and emit Qt signals out. They never
import ``compute`` or ``studio`` (DESIGN section 1): the application in ``studio`` turns the
engine's objects into the plain data these widgets show.
"""
