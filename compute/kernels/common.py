"""What the CPU kernels and their NumPy twins share (the CPU side of ``common.h``).

The numba kernels compute a float32 ``tanh`` as a clamped rational function (Eigen's
``generic_fast_tanh_float``): a 13/6-degree odd/even polynomial ratio, plain multiplies and
adds that LLVM vectorises. numba's ``tanh``/``exp`` call libm per element, which stays scalar
(3.5 times slower than NumPy's on an AVX-512 machine), and SVML cannot be enabled with PyPI's
numba 0.68 / llvmlite 0.50 (issue 16). Inside [-7.905, 7.905] (beyond it float32's tanh is
+-1, which it returns exactly) it is within 3.2e-7 of tanh in absolute and relative terms
(measured against float64 ``numpy.tanh`` on 2.6 million points from 1e-30 to 12,
tests/compute/test_kernels.py), never above 1 in magnitude, and exact at 0. On a (32, 1024)
float32 array it took 16 us against 106 us for NumPy's ``tanh`` on this project's AVX2 machine
(an AMD EPYC, where NumPy's float32 ``tanh`` is scalar). The sigmoid is ``tanh(x/2)/2 + 1/2``,
which cannot overflow (Chainer's LSTM kernel, and the CUDA kernels).

Constants are float32 (``numpy.float32``): numba would promote a float32 times a Python
float to float64, halving the vector width.
"""
from __future__ import annotations

import numpy

from gatescope.compute import jit

_f32 = numpy.float32
# Eigen's coefficients: numerator (odd powers 1..13), denominator (even powers 0..6).
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (_f32(a) for a in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (_f32(b) for b in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))
_CLAMP = _f32(7.90531110763549805)  # the smallest float32 whose tanh rounds to 1
HALF, ONE, ZERO = _f32(0.5), _f32(1.0), _f32(0.0)


@jit.device
def tanh(x):
    """tanh(x) for a float32 ``x`` inside a numba kernel (see the module)."""
    if x >= _CLAMP:                                      # saturated: exactly +-1 (selects,
        return ONE                                       # which vectorise like the rest)
    if x <= -_CLAMP:
        return -ONE
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


@jit.device
def sigmoid(x):
    """The logistic sigmoid as tanh(x/2)/2 + 1/2 (overflow-free)."""
    return tanh(x * HALF) * HALF + HALF


@jit.device
def pinned(pin, learned):
    """A gate's value: ``learned``, or the pinned constant where ``pin`` >= 0."""
    return learned if pin < ZERO else pin


@jit.device
def pinned_grad(pin, grad):
    """A pinned gate is a constant: its pre-activation gets no gradient."""
    return grad if pin < ZERO else ZERO


# --------------------------------------------------------------------------- the twins' helpers

def sigmoid_twin(xp, x):
    """tanh(x/2)/2 + 1/2 on arrays, the kernels' overflow-free sigmoid."""
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def pinned_twin(xp, activated, pin):
    """The gate's values: learned, or the pinned constant (``pin`` >= 0)."""
    return activated if pin < 0 else xp.full_like(activated, pin)


def pinned_grad_twin(xp, grad, pin):
    """A pinned gate's pre-activation gets no gradient."""
    return grad if pin < 0 else xp.zeros_like(grad)


def blocks(array, count: int):
    """The ``count`` gate blocks of a stacked ``(B, count*U)`` array, as ``(B, U)`` views."""
    units = array.shape[-1] // count
    return tuple(array[..., k * units:(k + 1) * units] for k in range(count))
