"""GateScope's engine: layers, the model graph, data and training, on NumPy or CuPy.

Never imports Qt, ``studio`` or ``widgets`` (DESIGN section 1).
"""
