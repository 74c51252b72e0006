"""Optimizers and schedules against the update rules written out independently."""
import math

import numpy as np
import pytest

from conftest import close
from gatescope.compute.optim import SGD, Adam, clip_by_global_norm, global_norm, learning_rate, make_optimizer


def _param(values):
    p = np.array(values, dtype=np.float64)
    return p, np.zeros_like(p)


def test_sgd_momentum_and_nesterov_follow_the_textbook_rule():
    for nesterov in (False, True):
        p, g = _param([1.0, -2.0])
        opt = SGD([("w", p, g)], momentum=0.9, nesterov=nesterov)
        ref_p, v = np.array([1.0, -2.0]), np.zeros(2)
        for grad in ([0.5, 0.1], [-0.2, 0.3], [0.0, 1.0]):
            g[...] = grad
            opt.step(0.1)
            v = 0.9 * v + np.array(grad)
            ref_p = ref_p - 0.1 * ((np.array(grad) + 0.9 * v) if nesterov else v)
        np.testing.assert_allclose(p, ref_p, rtol=1e-12)


def test_adam_matches_kingma_and_ba_with_bias_correction():
    p, g = _param([0.3, -0.7, 1.5])
    opt = Adam([("w", p, g)])
    ref, m, v = p.copy(), np.zeros(3), np.zeros(3)
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        grad = rng.standard_normal(3)
        g[...] = grad
        opt.step(0.01)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        ref = ref - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(p, ref, rtol=1e-10)


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    p1, g1 = _param([2.0])
    p2, g2 = _param([2.0])
    make_optimizer("adamw", [("w", p1, g1)], weight_decay=0.1).step(0.1)
    make_optimizer("adam", [("w", p2, g2)], weight_decay=0.1).step(0.1)
    # zero gradient: AdamW only shrinks by lr * wd * p; Adam's L2 gradient 0.2 gives a full Adam step
    np.testing.assert_allclose(p1, [2.0 - 0.1 * 0.1 * 2.0])
    np.testing.assert_allclose(p2, [2.0 - 0.1], rtol=1e-6)


def test_optimizer_state_round_trips_exactly():
    p, g = _param([1.0, 2.0])
    opt = Adam([("w", p, g)])
    g[...] = [0.3, -0.1]
    opt.step(0.1)
    saved = opt.state_dict()
    p2, g2 = _param(p.copy())
    other = Adam([("w", p2, g2)])
    other.load_state_dict(saved)
    for o in (opt, other):
        o.params[0][2][...] = [0.2, 0.2]
        o.step(0.1)
    np.testing.assert_array_equal(p, p2)
    assert other.step_count == 2


def test_schedules():
    assert learning_rate(0.1, "constant", 7, 10) == 0.1
    assert learning_rate(0.1, "step", 25, 100, step_epochs=10, gamma=0.5) == pytest.approx(0.025)
    assert learning_rate(0.1, "cosine", 0, 10) == pytest.approx(0.1)
    assert learning_rate(0.1, "cosine", 5, 10) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate(0.1, "linear", 0, 10)


def test_global_norm_clipping():
    grads = [np.array([3.0, 0.0]), np.array([[4.0]])]
    norm = global_norm(grads)
    assert norm == pytest.approx(5.0)
    clip_by_global_norm(grads, 1.0, norm)
    assert global_norm(grads) == pytest.approx(1.0, rel=1e-5)
    clip_by_global_norm(grads, 10.0, global_norm(grads))  # under the threshold: unchanged
    assert math.isclose(global_norm(grads), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, momentum=0.0),
    lambda ps: SGD(ps, momentum=0.9, weight_decay=0.01),
    lambda ps: SGD(ps, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, weight_decay=0.01),
    lambda ps: Adam(ps, weight_decay=0.01, decoupled=True),
], ids=["sgd", "sgd-momentum-wd", "sgd-nesterov", "adam-l2", "adamw"])
def test_optimizer_steps_match_float64_on_every_backend(backend, make):
    rng = np.random.default_rng(5)
    start = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]

    def run(xp, dtype, active):
        params = {k: xp.asarray(v, dtype=dtype) for k, v in start.items()}
        current = {k: xp.zeros(v.shape, dtype=dtype) for k, v in start.items()}
        opt = make([(k, params[k], current[k]) for k in params])
        with active:
            for step_grads in grads:
                for k in current:
                    current[k][...] = xp.asarray(step_grads[k], dtype=dtype)
                opt.step(0.05)
        return {k: backend.host(v) for k, v in params.items()}

    got = run(backend.xp, np.float32, backend.active())
    want = run(np, np.float64, backend.active())
    if backend.name == "emulated":
        assert {name for name, _, _ in backend.emulator.launches} <= {"sgd_update", "adam_update"}
        assert backend.emulator.launches
    for k in start:
        close(got[k], want[k], k, rtol=1e-5)
