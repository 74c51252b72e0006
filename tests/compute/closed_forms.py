"""The kernels' equations written out one sample and one unit at a time in Python floats: the
readable references the NumPy twins are held to (in float64, to 1e-12), independent of any
array code in ``compute``."""
from __future__ import annotations

import math

import numpy as np


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def lstm_step(pre, c_prev, peephole, variant, pins):
    """One LSTM step from the pre-activations ``pre`` (B, G*U) (x W + h U + b): the lecture
    equations. Returns ``(gates, c, h)``."""
    pins = pins or {}
    batch, units = c_prev.shape
    out_gates, out_c, out_h = np.zeros_like(pre), np.zeros_like(c_prev), np.zeros_like(c_prev)
    for b in range(batch):
        for j in range(units):
            def a(k):
                return float(pre[b, k * units + j])
            cp = float(c_prev[b, j])
            if variant == "coupled":
                f = pins.get("f", sigmoid(a(0)))
                g = pins.get("g", math.tanh(a(1)))
                o = pins.get("o", sigmoid(a(2)))
                i = 1.0 - f
                values = (f, g, o)
            else:
                w_ci, w_cf, w_co = (peephole[:, j] if variant == "peephole" else (0.0, 0.0, 0.0))
                i = pins.get("i", sigmoid(a(0) + w_ci * cp))
                f = pins.get("f", sigmoid(a(1) + w_cf * cp))
                g = pins.get("g", math.tanh(a(2)))
            c = f * cp + i * g
            if variant != "coupled":
                o = pins.get("o", sigmoid(a(3) + w_co * c))
                values = (i, f, g, o)
            for k, value in enumerate(values):
                out_gates[b, k * units + j] = value
            out_c[b, j], out_h[b, j] = c, o * math.tanh(c)
    return out_gates, out_c, out_h


def rnn_step(pre, activation):
    act = math.tanh if activation == "tanh" else (lambda v: max(v, 0.0))
    return np.vectorize(act)(pre)


def gru_pytorch_step(x_gates, h_gates, h_prev, b_hn, pins):
    """n = tanh(xn + r (hn + b_hn)), h = (1 - z) h_prev + z n. Returns ``(gates, h)``."""
    p = pins or {}
    batch, units = h_prev.shape
    gates, h = np.zeros_like(x_gates), np.zeros_like(h_prev)
    for b in range(batch):
        for j in range(units):
            r = p.get("r", sigmoid(x_gates[b, j] + h_gates[b, j]))
            z = p.get("z", sigmoid(x_gates[b, units + j] + h_gates[b, units + j]))
            n = p.get("n", math.tanh(x_gates[b, 2 * units + j] + r * (h_gates[b, 2 * units + j] + b_hn[j])))
            gates[b, j::units] = r, z, n
            h[b, j] = (1 - z) * h_prev[b, j] + z * n
    return gates, h


def gru_cho_step(x_gates, h_rz, h_prev, u_n, pins):
    """n = tanh(xn + (r h_prev) U_n), h = (1 - z) h_prev + z n. Returns ``h``."""
    p = pins or {}
    batch, units = h_prev.shape
    h = np.zeros_like(h_prev)
    for b in range(batch):
        r = [p.get("r", sigmoid(x_gates[b, j] + h_rz[b, j])) for j in range(units)]
        for j in range(units):
            z = p.get("z", sigmoid(x_gates[b, units + j] + h_rz[b, units + j]))
            recurrent = sum(r[k] * h_prev[b, k] * u_n[k, j] for k in range(units))
            n = p.get("n", math.tanh(x_gates[b, 2 * units + j] + recurrent))
            h[b, j] = (1 - z) * h_prev[b, j] + z * n
    return h


def cross_entropy(logits, labels):
    """Per row: the softmax and -log softmax[label]."""
    probs, losses = np.zeros_like(logits), np.zeros(len(labels))
    for n, row in enumerate(logits):
        top = max(row)
        total = sum(math.exp(v - top) for v in row)
        probs[n] = [math.exp(v - top) / total for v in row]
        losses[n] = -(row[labels[n]] - top - math.log(total))
    return probs, losses


def sgd(param, grads, lr, momentum, nesterov, weight_decay):
    out = np.array(param, dtype=np.float64)
    for k in range(out.size):
        p, v = float(out.flat[k]), 0.0
        for g in grads:
            g = float(g.flat[k]) + weight_decay * p
            v = momentum * v + g
            p -= lr * ((g + momentum * v) if nesterov else v)
        out.flat[k] = p
    return out


def adam(param, grads, lr, b1, b2, eps, weight_decay, decoupled):
    out = np.array(param, dtype=np.float64)
    for k in range(out.size):
        p, mk, vk = float(out.flat[k]), 0.0, 0.0
        for t, g in enumerate(grads, start=1):
            g = float(g.flat[k])
            if decoupled:
                p -= lr * weight_decay * p
            else:
                g = g + weight_decay * p
            mk, vk = b1 * mk + (1 - b1) * g, b2 * vk + (1 - b2) * g * g
            p -= lr * (mk / (1 - b1 ** t)) / (math.sqrt(vk / (1 - b2 ** t)) + eps)
        out.flat[k] = p
    return out


def pool_windows(x_shape, kh, kw, stride, pads):
    """Every window as (n, c, i, j, [real pixels (y, x)]) by the definition."""
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    batch, channels, height, width = x_shape
    out_h = (height + pads[0] + pads[1] - kh) // sy + 1
    out_w = (width + pads[2] + pads[3] - kw) // sx + 1
    for n, c, i, j in np.ndindex(batch, channels, out_h, out_w):
        pixels = [(i * sy + u - pads[0], j * sx + v - pads[2]) for u in range(kh) for v in range(kw)]
        yield n, c, i, j, [(y, x) for y, x in pixels if 0 <= y < height and 0 <= x < width]
