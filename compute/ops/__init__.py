"""Stateless array operations that layers call: the math without the parameters
(Chainer's ``functions`` / ``links`` split). Each op takes NumPy or CuPy arrays and picks
``xp`` from them; the hot spots with fused kernels are the kernel contract's
(``compute.kernels``).
"""
