"""``compute.ops.fastmath``: OpenCV's vectorised float32 exp, and tanh built on it, against
NumPy in float64, in place on the strided views the step loops pass, with NumPy's special
values, and the fallbacks."""
import numpy as np
import pytest

from gatescope.compute.ops import fastmath


def _values(shape, seed=0):
    x = np.random.default_rng(seed).uniform(-30, 30, shape).astype(np.float32)
    x.flat[:8] = [0.0, -0.0, 1e-6, -1e-6, 88.7, 89.0, -104.0, -87.0]
    return x


def test_exp_matches_numpy_to_float32_precision():
    x = _values((37, 129))
    out = np.empty_like(x)
    assert fastmath.exp(x, out) is out
    exact = np.exp(x.astype(np.float64))
    finite = exact < np.finfo(np.float32).max
    np.testing.assert_allclose(out[finite], exact[finite], rtol=1e-6, atol=1e-37)
    assert np.all(np.isinf(out[~finite]))


def test_tanh_matches_numpy_within_float32_resolution():
    x = _values((5, 7, 33)) / 10
    out = np.empty_like(x)
    fastmath.tanh(x, out)
    np.testing.assert_allclose(out, np.tanh(x.astype(np.float64)), rtol=0, atol=2.5e-7)
    assert out.flat[0] == 0.0
    big = np.array([-1e4, -50, 50, 1e4], np.float32)
    np.testing.assert_array_equal(fastmath.tanh(big, np.empty_like(big)), [-1, -1, 1, 1])


def test_in_place_on_strided_column_blocks():
    """What ``activate_gates`` passes: a gate block, a column slice of every row of a 3-D array."""
    gates = _values((4, 6, 40), seed=1) / 10
    before = gates.copy()
    block = gates[:, :, 10:30]
    fastmath.tanh(block, block)
    np.testing.assert_allclose(gates[:, :, 10:30], np.tanh(before[:, :, 10:30]), atol=2.5e-7)
    np.testing.assert_array_equal(gates[:, :, :10], before[:, :, :10])     # the rest untouched
    np.testing.assert_array_equal(gates[:, :, 30:], before[:, :, 30:])
    fastmath.exp(block, block)
    np.testing.assert_allclose(block, np.exp(np.tanh(before[:, :, 10:30])), rtol=1e-6)


def test_special_values_behave_as_in_numpy():
    x = np.array([np.nan, np.inf, -np.inf, 0.0], np.float32)
    e = fastmath.exp(x, np.empty_like(x))
    assert np.isnan(e[0]) and e[1] == np.inf and e[2] == 0.0 and e[3] == 1.0
    t = fastmath.tanh(x, np.empty_like(x))
    assert np.isnan(t[0]) and t[1] == 1.0 and t[2] == -1.0 and t[3] == 0.0


@pytest.mark.parametrize("case", ["float64", "not-viewable", "scalar"])
def test_fallbacks_compute_the_same(case):
    if case == "float64":
        x = _values((3, 9)).astype(np.float64) / 10
    elif case == "not-viewable":
        x = (_values((6, 8)) / 10)[::2, ::3]      # no unit stride along rows
    else:
        x = np.float32(0.5) * np.ones((), np.float32)
    out = np.empty_like(x)
    np.testing.assert_allclose(fastmath.exp(x, out), np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(fastmath.tanh(x, np.empty_like(x)), np.tanh(x), rtol=1e-6, atol=1e-7)
