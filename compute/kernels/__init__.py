"""The kernel contract: the hot spots as functions with one signature, three executions.

Each function takes arrays (and ``out=`` buffers to write, so a step loop allocates nothing)
and runs where its arrays are (DESIGN section 3):

- CuPy float32 arrays: the CUDA kernel of the ``.cu`` file beside its launcher module,
  through ``cupy.RawModule`` (and, in the tests, the same source run on the CPU by the
  emulator installed with :func:`host_backend`);
- NumPy float32 arrays: a serial numba kernel (``compute.jit``);
- anything else, or where numba is unavailable: the kernel's NumPy twin, the fallback and the
  reference every kernel is tested against (float64 for the gradient checks).

``runtime`` holds the machinery (modules, backends, launch, argument checks), ``gemm`` the
one GEMM of the step loops, ``graphs`` the CUDA-graph capture of a step loop; each launcher
module (``lstm``, ``rnn``, ``gru``, ``conv``, ``pool``, ``loss``, ``optim``) documents its
layouts. :func:`prepare` compiles the CPU kernels ahead of the first training.
"""
from gatescope.compute.kernels.conv import col2im, im2col
from gatescope.compute.kernels.gemm import gemm
from gatescope.compute.kernels.gru import (gru_cho_backward_n, gru_cho_backward_r, gru_cho_forward_n,
                                           gru_cho_forward_rz, gru_pytorch_backward, gru_pytorch_forward)
from gatescope.compute.kernels.loss import cross_entropy_loss, softmax_cross_entropy_backward, softmax_forward
from gatescope.compute.kernels.lstm import (LSTM_GATES, LSTM_VARIANTS, lstm_backward, lstm_forward,
                                            lstm_peephole_grad)
from gatescope.compute.kernels.optim import adam_update, sgd_update
from gatescope.compute.kernels.pool import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                                            max_pool2d_forward)
from gatescope.compute.kernels.warmup import prepare
from gatescope.compute.kernels.rnn import RNN_ACTIVATIONS, simple_rnn_backward, simple_rnn_forward
from gatescope.compute.kernels.runtime import (KERNEL_DIR, LEARNED, MODULES, host_backend, kernel_source,
                                               on_device, pin_values, source_path, use_host_backend)

__all__ = [
    "KERNEL_DIR", "LEARNED", "LSTM_GATES", "LSTM_VARIANTS", "MODULES", "RNN_ACTIVATIONS",
    "adam_update", "avg_pool2d_backward", "avg_pool2d_forward", "col2im", "cross_entropy_loss", "gemm",
    "gru_cho_backward_n", "gru_cho_backward_r", "gru_cho_forward_n", "gru_cho_forward_rz",
    "gru_pytorch_backward", "gru_pytorch_forward", "host_backend", "im2col", "kernel_source",
    "lstm_backward", "lstm_forward", "lstm_peephole_grad", "max_pool2d_backward", "max_pool2d_forward",
    "on_device", "pin_values", "prepare", "sgd_update", "simple_rnn_backward", "simple_rnn_forward",
    "softmax_cross_entropy_backward", "softmax_forward", "source_path", "use_host_backend",
]
