"""NumPy twins of the CUDA kernels: the same functions, arguments and results as the launch
functions in ``compute.kernels``, written as plain array code.

They are the reference the kernels are tested against (through the CPU emulator), and what a
layer calls when it computes with NumPy (``compute.kernels.implementation_for`` picks). They
work with any float dtype (float64 for gradient checks) and with CuPy arrays too.
Layouts are those of ``compute.kernels``; see its docstrings and ``README.md``.
"""
from __future__ import annotations

from gatescope.compute.backend import get_array_module
from gatescope.compute.kernels import (LSTM_GATES, LSTM_VARIANTS, RNN_ACTIVATIONS, _pair,
                             pin_values, window_output_size)


def _sigmoid(xp, x):
    """tanh(x/2)/2 + 1/2, the kernels' overflow-free sigmoid."""
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def _pinned(xp, activated, pin: float):
    """The gate's value: learned, or the pinned constant."""
    return activated if pin < 0 else xp.full_like(activated, pin)


def _written(out, results):
    """The launch functions' ``out=`` contract: with ``out`` None return ``results``, else
    copy each result into its buffer (None stays None) and return the buffers."""
    if out is None:
        return results
    single = not isinstance(results, tuple)
    buffers, values = ((out,), (results,)) if single else (tuple(out), results)
    if len(buffers) != len(values):
        raise ValueError(f"out must be a tuple of {len(values)} arrays (or None)")
    for buffer, value in zip(buffers, values):
        if buffer is not None and value is not None:
            buffer[...] = value
    return buffers[0] if single else tuple(b if v is not None else None for b, v in zip(buffers, values))


def _total(dh, dh_next):
    """dL/dh_t: the gradient from above plus the one carried from step t+1 (None: zero)."""
    return dh if dh_next is None else dh + dh_next


def _free(xp, grad, pin: float):
    """A pinned gate is a constant: its pre-activation gets no gradient."""
    return grad if pin < 0 else xp.zeros_like(grad)


# --------------------------------------------------------------------------- GEMM

def gemm(a, b, out, accumulate: bool = False):
    """Twin of ``compute.kernels.gemm``: ``out = a @ b`` or ``out += a @ b``; returns ``out``."""
    xp = get_array_module(out)
    if accumulate:
        out += a @ b
    else:
        xp.matmul(a, b, out=out)
    return out


# --------------------------------------------------------------------------- LSTM / ConvLSTM

def _lstm_setup(variant: str, pins, c_prev):
    if variant not in LSTM_VARIANTS:
        raise ValueError(f"unknown LSTM variant {variant!r}; choose one of {', '.join(LSTM_VARIANTS)}")
    names = LSTM_GATES[variant]
    return names, dict(zip(names, pin_values(pins, names))), c_prev.shape


def lstm_forward(pre, c_prev, peephole=None, variant: str = "standard", pins=None,
                 keep_tanh_c: bool = False, out=None):
    """Twin of ``compute.kernels.lstm_forward``: ``(gates, c, h, tanh_c or None)``."""
    xp = get_array_module(pre)
    names, pin, (batch, units) = _lstm_setup(variant, pins, c_prev)
    blocks = pre.reshape(batch, len(names), units)
    if variant == "coupled":
        f = _pinned(xp, _sigmoid(xp, blocks[:, 0]), pin["f"])
        g = _pinned(xp, xp.tanh(blocks[:, 1]), pin["g"])
        o = _pinned(xp, _sigmoid(xp, blocks[:, 2]), pin["o"])
        c = f * c_prev + (1 - f) * g  # C_t = f C_{t-1} + (1 - f) g: input gate i = 1 - f
        gates = xp.stack([f, g, o], axis=1)
    else:
        a_i, a_f, a_g, a_o = blocks[:, 0], blocks[:, 1], blocks[:, 2], blocks[:, 3]
        if variant == "peephole":
            a_i = a_i + peephole[0] * c_prev
            a_f = a_f + peephole[1] * c_prev
        i = _pinned(xp, _sigmoid(xp, a_i), pin["i"])
        f = _pinned(xp, _sigmoid(xp, a_f), pin["f"])
        g = _pinned(xp, xp.tanh(a_g), pin["g"])
        c = f * c_prev + i * g
        if variant == "peephole":
            a_o = a_o + peephole[2] * c  # the output peephole sees the new cell state
        o = _pinned(xp, _sigmoid(xp, a_o), pin["o"])
        gates = xp.stack([i, f, g, o], axis=1)
    tanh_c = xp.tanh(c)
    h = o * tanh_c
    return _written(out, (gates.reshape(pre.shape), c, h, tanh_c if keep_tanh_c else None))


def lstm_backward(dh, dc_next, gates, c_prev, c, peephole=None, variant: str = "standard",
                  pins=None, out=None, dh_next=None):
    """Twin of ``compute.kernels.lstm_backward``: ``(d_pre, dc_prev)``."""
    xp = get_array_module(dh)
    dh = _total(dh, dh_next)
    names, pin, (batch, units) = _lstm_setup(variant, pins, c_prev)
    blocks = gates.reshape(batch, len(names), units)
    tanh_c = xp.tanh(c)
    carried = 0 if dc_next is None else dc_next
    if variant == "coupled":
        f, g, o = blocks[:, 0], blocks[:, 1], blocks[:, 2]
        da_o = _free(xp, dh * tanh_c * o * (1 - o), pin["o"])
        dc = dh * o * (1 - tanh_c ** 2) + carried
        da_f = _free(xp, dc * (c_prev - g) * f * (1 - f), pin["f"])
        da_g = _free(xp, dc * (1 - f) * (1 - g ** 2), pin["g"])
        d_pre = xp.stack([da_f, da_g, da_o], axis=1)
        dc_prev = dc * f
    else:
        i, f, g, o = blocks[:, 0], blocks[:, 1], blocks[:, 2], blocks[:, 3]
        da_o = _free(xp, dh * tanh_c * o * (1 - o), pin["o"])
        dc = dh * o * (1 - tanh_c ** 2) + carried
        if variant == "peephole":
            dc = dc + da_o * peephole[2]
        da_i = _free(xp, dc * g * i * (1 - i), pin["i"])
        da_f = _free(xp, dc * c_prev * f * (1 - f), pin["f"])
        da_g = _free(xp, dc * i * (1 - g ** 2), pin["g"])
        d_pre = xp.stack([da_i, da_f, da_g, da_o], axis=1)
        dc_prev = dc * f
        if variant == "peephole":
            dc_prev = dc_prev + da_i * peephole[0] + da_f * peephole[1]
    return _written(out, (d_pre.reshape(gates.shape), dc_prev))


def lstm_peephole_grad(d_pre, c_prev, c, out=None):
    """Twin of ``compute.kernels.lstm_peephole_grad``: (3, U) added into ``out``."""
    xp = get_array_module(d_pre)
    batch, units = c_prev.shape
    blocks = d_pre.reshape(batch, 4, units)
    grads = xp.stack([(blocks[:, 0] * c_prev).sum(axis=0), (blocks[:, 1] * c_prev).sum(axis=0),
                      (blocks[:, 3] * c).sum(axis=0)])
    if out is None:
        return grads
    out += grads
    return out


def convlstm_forward(pre, c_prev, peephole, variant: str = "peephole", pins=None,
                     keep_tanh_c: bool = False):
    """Twin of ``compute.kernels.convlstm_forward``: the LSTM twin over flattened maps."""
    batch = c_prev.shape[0]
    flat_peephole = None if peephole is None else peephole.reshape(3, -1)
    gates, c, h, tanh_c = lstm_forward(pre.reshape(batch, -1), c_prev.reshape(batch, -1),
                                       flat_peephole, variant, pins, keep_tanh_c)
    return (gates.reshape(pre.shape), c.reshape(c_prev.shape), h.reshape(c_prev.shape),
            None if tanh_c is None else tanh_c.reshape(c_prev.shape))


def convlstm_backward(dh, dc_next, gates, c_prev, c, peephole, variant: str = "peephole",
                      pins=None):
    """Twin of ``compute.kernels.convlstm_backward``: ``(d_pre, dc_prev)`` as maps."""
    batch = c_prev.shape[0]
    flat_peephole = None if peephole is None else peephole.reshape(3, -1)
    d_pre, dc_prev = lstm_backward(
        dh.reshape(batch, -1), None if dc_next is None else dc_next.reshape(batch, -1),
        gates.reshape(batch, -1), c_prev.reshape(batch, -1), c.reshape(batch, -1),
        flat_peephole, variant, pins)
    return d_pre.reshape(gates.shape), dc_prev.reshape(c_prev.shape)


def convlstm_peephole_grad(d_pre, c_prev, c, out=None):
    """Twin of ``compute.kernels.convlstm_peephole_grad``: (3, F, H, W)."""
    batch = c_prev.shape[0]
    flat = lstm_peephole_grad(d_pre.reshape(batch, -1), c_prev.reshape(batch, -1),
                              c.reshape(batch, -1), None if out is None else out.reshape(3, -1))
    return flat.reshape((3,) + tuple(c_prev.shape[1:]))


# --------------------------------------------------------------------------- SimpleRNN

def simple_rnn_forward(pre, activation: str = "tanh", out=None):
    """Twin of ``compute.kernels.simple_rnn_forward``: act(pre)."""
    xp = get_array_module(pre)
    if activation not in RNN_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    return _written(out, xp.tanh(pre) if activation == "tanh" else xp.maximum(pre, 0))


def simple_rnn_backward(dh, h, activation: str = "tanh", out=None, dh_next=None):
    """Twin of ``compute.kernels.simple_rnn_backward``: (dh + dh_next) * act'(pre), read off h."""
    if activation not in RNN_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    dh = _total(dh, dh_next)
    return _written(out, dh * (1 - h * h) if activation == "tanh" else dh * (h > 0))


# --------------------------------------------------------------------------- GRU

def _gru_pins(pins):
    return dict(zip("rzn", pin_values(pins, "rzn")))


def _split3(array):
    batch = array.shape[0]
    blocks = array.reshape(batch, 3, -1)
    return blocks[:, 0], blocks[:, 1], blocks[:, 2]


def gru_pytorch_forward(x_gates, h_gates, h_prev, pins=None, out=None, b_hn=None):
    """Twin of ``compute.kernels.gru_pytorch_forward``: ``(gates, h)``."""
    xp = get_array_module(x_gates)
    pin = _gru_pins(pins)
    xr, xz, xn = _split3(x_gates)
    hr, hz, hn = _split3(h_gates)
    if b_hn is not None:
        hn = hn + b_hn
    r = _pinned(xp, _sigmoid(xp, xr + hr), pin["r"])
    z = _pinned(xp, _sigmoid(xp, xz + hz), pin["z"])
    n = _pinned(xp, xp.tanh(xn + r * hn), pin["n"])
    h = (1 - z) * h_prev + z * n  # the lectures' convention: z chooses the new candidate
    return _written(out, (xp.stack([r, z, n], axis=1).reshape(x_gates.shape), h))


def gru_pytorch_backward(dh, gates, h_prev, h_gates, pins=None, out=None, dh_next=None,
                         b_hn=None):
    """Twin of ``compute.kernels.gru_pytorch_backward``: ``(d_x_gates, d_h_gates, dh_prev)``."""
    xp = get_array_module(dh)
    pin = _gru_pins(pins)
    dh = _total(dh, dh_next)
    r, z, n = _split3(gates)
    hn = _split3(h_gates)[2]
    if b_hn is not None:
        hn = hn + b_hn
    da_n = _free(xp, dh * z * (1 - n ** 2), pin["n"])
    da_z = _free(xp, dh * (n - h_prev) * z * (1 - z), pin["z"])
    da_r = _free(xp, da_n * hn * r * (1 - r), pin["r"])
    d_x_gates = xp.stack([da_r, da_z, da_n], axis=1).reshape(gates.shape)
    d_h_gates = xp.stack([da_r, da_z, da_n * r], axis=1).reshape(gates.shape)
    return _written(out, (d_x_gates, d_h_gates, dh * (1 - z)))


def gru_cho_forward_rz(x_gates, h_rz, h_prev, pins=None, out=None):
    """Twin of ``compute.kernels.gru_cho_forward_rz``: ``(gates, r_h_prev)``; the n block of
    ``gates`` is zero until :func:`gru_cho_forward_n` fills it."""
    xp = get_array_module(x_gates)
    pin = _gru_pins(pins)
    xr, xz, _ = _split3(x_gates)
    batch, units = h_prev.shape
    r = _pinned(xp, _sigmoid(xp, xr + h_rz[:, :units]), pin["r"])
    z = _pinned(xp, _sigmoid(xp, xz + h_rz[:, units:]), pin["z"])
    gates = xp.stack([r, z, xp.zeros_like(r)], axis=1).reshape(x_gates.shape)
    return _written(out, (gates, r * h_prev))


def gru_cho_forward_n(x_gates, h_n, h_prev, gates, pins=None, out=None):
    """Twin of ``compute.kernels.gru_cho_forward_n``: writes the n block of ``gates``;
    returns ``(gates, h)``."""
    xp = get_array_module(x_gates)
    pin = _gru_pins(pins)
    _, z, n_block = _split3(gates)
    n = _pinned(xp, xp.tanh(_split3(x_gates)[2] + h_n), pin["n"])
    n_block[...] = n
    return gates, _written(out, (1 - z) * h_prev + z * n)


def gru_cho_backward_n(dh, gates, h_prev, pins=None, out=None, dh_next=None):
    """Twin of ``compute.kernels.gru_cho_backward_n``: ``(d_gates, dh_prev)``; the r block of
    ``d_gates`` is zero until :func:`gru_cho_backward_r` fills it."""
    xp = get_array_module(dh)
    pin = _gru_pins(pins)
    dh = _total(dh, dh_next)
    _, z, n = _split3(gates)
    da_z = _free(xp, dh * (n - h_prev) * z * (1 - z), pin["z"])
    da_n = _free(xp, dh * z * (1 - n ** 2), pin["n"])
    d_gates = xp.stack([xp.zeros_like(da_z), da_z, da_n], axis=1).reshape(gates.shape)
    return _written(out, (d_gates, dh * (1 - z)))


def gru_cho_backward_r(d_r_h_prev, gates, h_prev, d_gates, dh_prev, pins=None):
    """Twin of ``compute.kernels.gru_cho_backward_r``: fills the r block of ``d_gates`` and
    adds d_r_h_prev * r to ``dh_prev``, in place; returns ``(d_gates, dh_prev)``."""
    xp = get_array_module(d_r_h_prev)
    pin = _gru_pins(pins)
    r = _split3(gates)[0]
    _split3(d_gates)[0][...] = _free(xp, d_r_h_prev * h_prev * r * (1 - r), pin["r"])
    dh_prev += d_r_h_prev * r
    return d_gates, dh_prev


# --------------------------------------------------------------------------- im2col / col2im

def _geometry(x_shape, kh, kw, stride, pads):
    _, _, height, width = x_shape
    sy, sx = _pair(stride)
    top, bottom, left, right = pads
    return (sy, sx, window_output_size(height, kh, sy, top, bottom),
            window_output_size(width, kw, sx, left, right))


def _padded_window(padded, u, v, sy, sx, out_h, out_w):
    """The (N, C, Ho, Wo) view of ``padded`` seen at offset (u, v) of every window."""
    return padded[:, :, u:u + sy * (out_h - 1) + 1:sy, v:v + sx * (out_w - 1) + 1:sx]


def im2col(x, kh: int, kw: int, stride, pads, out=None):
    """Twin of ``compute.kernels.im2col``: pad once, then kh*kw strided slice copies."""
    xp = get_array_module(x)
    batch, channels, height, width = x.shape
    sy, sx, out_h, out_w = _geometry(x.shape, kh, kw, stride, pads)
    top, bottom, left, right = pads
    padded = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    col = xp.empty((channels, kh, kw, batch, out_h, out_w), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            col[:, u, v] = _padded_window(padded, u, v, sy, sx, out_h, out_w).transpose(1, 0, 2, 3)
    return _written(out, col)


def col2im(col, x_shape, stride, pads):
    """Twin of ``compute.kernels.col2im``: the reverse strided adds, then the crop."""
    xp = get_array_module(col)
    channels, kh, kw, batch, out_h, out_w = col.shape
    sy, sx, _, _ = _geometry(x_shape, kh, kw, stride, pads)
    _, _, height, width = x_shape
    top, bottom, left, right = pads
    padded = xp.zeros((batch, channels, height + top + bottom, width + left + right), dtype=col.dtype)
    for u in range(kh):
        for v in range(kw):
            _padded_window(padded, u, v, sy, sx, out_h, out_w)[...] += col[:, u, v].transpose(1, 0, 2, 3)
    return padded[:, :, top:top + height, left:left + width].copy()


# --------------------------------------------------------------------------- pooling

def max_pool2d_forward(x, kh: int, kw: int, stride, pads=(0, 0, 0, 0)):
    """Twin of ``compute.kernels.max_pool2d_forward``: ``(y, argmax)``, first maximum wins."""
    xp = get_array_module(x)
    sy, sx, out_h, out_w = _geometry(x.shape, kh, kw, stride, pads)
    top, bottom, left, right = pads
    padded = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-xp.inf)
    windows = xp.stack([_padded_window(padded, u, v, sy, sx, out_h, out_w)
                        for u in range(kh) for v in range(kw)])
    argmax = windows.argmax(axis=0).astype(xp.int32)
    return windows.max(axis=0), argmax


def max_pool2d_backward(dy, argmax, x_shape, kh: int, kw: int, stride, pads=(0, 0, 0, 0)):
    """Twin of ``compute.kernels.max_pool2d_backward``: dy routed to each window's winner."""
    xp = get_array_module(dy)
    sy, sx, out_h, out_w = _geometry(x_shape, kh, kw, stride, pads)
    batch, channels, height, width = x_shape
    top, bottom, left, right = pads
    padded = xp.zeros((batch, channels, height + top + bottom, width + left + right), dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            _padded_window(padded, u, v, sy, sx, out_h, out_w)[...] += dy * (argmax == u * kw + v)
    return padded[:, :, top:top + height, left:left + width].copy()


def _window_counts(xp, x_shape, kh, kw, stride, pads, count_pad, dtype):
    """The divisor of every window: kh*kw, or its number of real pixels, (Ho, Wo)."""
    sy, sx, out_h, out_w = _geometry(x_shape, kh, kw, stride, pads)
    if count_pad:
        return xp.full((out_h, out_w), kh * kw, dtype=dtype)
    _, _, height, width = x_shape
    top, bottom, left, right = pads
    real = xp.pad(xp.ones((1, 1, height, width), dtype=dtype), ((0, 0), (0, 0), (top, bottom), (left, right)))
    return sum(_padded_window(real, u, v, sy, sx, out_h, out_w)[0, 0]
               for u in range(kh) for v in range(kw))


def avg_pool2d_forward(x, kh: int, kw: int, stride, pads=(0, 0, 0, 0), count_pad: bool = True):
    """Twin of ``compute.kernels.avg_pool2d_forward``."""
    xp = get_array_module(x)
    sy, sx, out_h, out_w = _geometry(x.shape, kh, kw, stride, pads)
    top, bottom, left, right = pads
    padded = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    total = sum(_padded_window(padded, u, v, sy, sx, out_h, out_w) for u in range(kh) for v in range(kw))
    return total / _window_counts(xp, x.shape, kh, kw, stride, pads, count_pad, x.dtype)


def avg_pool2d_backward(dy, x_shape, kh: int, kw: int, stride, pads=(0, 0, 0, 0),
                        count_pad: bool = True):
    """Twin of ``compute.kernels.avg_pool2d_backward``."""
    xp = get_array_module(dy)
    sy, sx, out_h, out_w = _geometry(x_shape, kh, kw, stride, pads)
    batch, channels, height, width = x_shape
    top, bottom, left, right = pads
    share = dy / _window_counts(xp, x_shape, kh, kw, stride, pads, count_pad, dy.dtype)
    padded = xp.zeros((batch, channels, height + top + bottom, width + left + right), dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            _padded_window(padded, u, v, sy, sx, out_h, out_w)[...] += share
    return padded[:, :, top:top + height, left:left + width].copy()


# --------------------------------------------------------------------------- loss

def softmax_forward(logits):
    """Twin of ``compute.kernels.softmax_forward``: ``(probs, stats)``, stats = (max, log sum)."""
    xp = get_array_module(logits)
    top = logits.max(axis=1)
    exps = xp.exp(logits - top[:, None])  # every exp() is in (0, 1]
    sums = exps.sum(axis=1)
    return exps / sums[:, None], xp.stack([top, xp.log(sums)], axis=1).astype(logits.dtype)


def cross_entropy_loss(logits, stats, labels):
    """Twin of ``compute.kernels.cross_entropy_loss``: ``log sum - (logits[label] - max)``, NaN
    for a label outside [0, K)."""
    xp = get_array_module(logits)
    rows, classes = logits.shape
    valid = (labels >= 0) & (labels < classes)
    picked = xp.take_along_axis(logits, xp.where(valid, labels, 0)[:, None].astype(xp.int64), axis=1)[:, 0]
    return xp.where(valid, stats[:, 1] - (picked - stats[:, 0]), xp.nan).astype(logits.dtype)


def softmax_cross_entropy_forward(logits, labels):
    """Twin of ``compute.kernels.softmax_cross_entropy_forward``: ``(loss (N,), probs)``."""
    probs, stats = softmax_forward(logits)
    return cross_entropy_loss(logits, stats, labels), probs


def softmax_cross_entropy_backward(probs, labels, scale: float | None = None):
    """Twin of ``compute.kernels.softmax_cross_entropy_backward``: (p - onehot) * scale."""
    xp = get_array_module(probs)
    rows, classes = probs.shape
    onehot = labels[:, None] == xp.arange(classes)[None, :]
    return ((probs - onehot) * (1.0 / rows if scale is None else scale)).astype(probs.dtype)


# --------------------------------------------------------------------------- optimizers

def sgd_update(param, grad, velocity, lr: float, momentum: float = 0.0, nesterov: bool = False,
               weight_decay: float = 0.0):
    """Twin of ``compute.kernels.sgd_update``, in place."""
    g = grad + weight_decay * param
    if velocity is None:
        step = g
    else:
        velocity *= momentum
        velocity += g
        step = g + momentum * velocity if nesterov else velocity
    param -= lr * step


def adam_update(param, grad, m, v, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, bias_correction1: float, bias_correction2: float,
                decoupled: bool = False):
    """Twin of ``compute.kernels.adam_update``, in place."""
    xp = get_array_module(param)
    if decoupled:
        param -= lr * weight_decay * param
        g = grad
    else:
        g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    param -= lr * (m / bias_correction1) / (xp.sqrt(v / bias_correction2) + eps)
