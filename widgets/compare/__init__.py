"""The Compare view's panels: variants of a model trained side by side, and the run history.

``CompareSetupPanel`` chooses what to compare and starts it; ``ComparedCurvesPanel`` overlays
every variant's loss and accuracy; ``GateSaturationPanel`` shows their gates side by side;
``VariantResultsPanel`` is the table of final metrics; ``RunHistoryPanel`` lists every run of the
project and overlays those chosen. The gradients of all variants share one log axis in
``widgets.inside.gradients.GradientsPanel``. Plain values in, Qt signals out, as every widget.
"""
from gatescope.widgets.compare.curves import ComparedCurvesPanel
from gatescope.widgets.compare.gates import GateSaturationPanel
from gatescope.widgets.compare.results import VariantResultsPanel
from gatescope.widgets.compare.run_history import RunHistoryPanel
from gatescope.widgets.compare.setup import CompareSetupPanel

__all__ = ["CompareSetupPanel", "ComparedCurvesPanel", "GateSaturationPanel", "VariantResultsPanel",
           "RunHistoryPanel"]
