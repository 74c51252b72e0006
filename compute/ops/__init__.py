"""Stateless array operations that layers call: the math without the parameters.

Each op takes NumPy or CuPy arrays and picks ``xp`` from them, so a GPU kernel can later
replace an op's body behind the same function (Chainer's ``functions`` / ``links`` split).
"""
