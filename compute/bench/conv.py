"""Conv2D timings (BENCHMARKS.md): ours, the im2col GEMMs timed bare, and PyTorch.

The reference is im2col's arithmetic: forward is one GEMM ``(F, C*k*k) @ (C*k*k, N*Ho*Wo)``;
forward+backward adds ``dW = dy col^T`` and ``dcol = W^T dy``, timed bare on prebuilt matrices.
Where the layer runs im2col, ``ours / gemm`` is the cost of im2col, col2im and the reordering
copies; where it runs Winograd F(4x4, 3x3) (fewer multiplications), ``ours / gemm`` below 1 is
what that saves. Each row names the algorithm the layer ran (``Row.extra["algorithm"]``).
PyTorch runs the same layer (``torch.nn.functional.conv2d``) with as many threads as BLAS
uses (``compute.bench.torch_or_none``), or on the GPU (cuDNN, TF32 off). On the CPU the CPU set runs, on a GPU the DeepBench
set; both through the same code, only the shapes and the timer's synchronisation differ.
"""
from __future__ import annotations

import numpy as np

from gatescope.compute.backend import Device, to_numpy
from gatescope.compute.bench import Row, case, median_time, torch_or_none
from gatescope.compute.layers import create

# (name, channels, height/width, filters, kernel, batch, stride, padding)
CPU_SHAPES = (
    ("32x32x3->32 3x3 N=64", 3, 32, 32, 3, 64, 1, 1),
    ("16x16x32->64 3x3 N=64", 32, 16, 64, 3, 64, 1, 1),
    ("28x28x1->8 5x5 N=32", 1, 28, 8, 5, 32, 1, 2),
    ("8x8x64->64 3x3 N=64", 64, 8, 64, 3, 64, 1, 1),
)
GPU_SHAPES = (
    ("56x56x64->64 3x3 N=16", 64, 56, 64, 3, 16, 1, 1),
    ("28x28x128->128 3x3 N=16", 128, 28, 128, 3, 16, 1, 1),
    ("14x14x256->256 3x3 N=16", 256, 14, 256, 3, 16, 1, 1),
    ("224x224x3->64 7x7 s2 N=16", 3, 224, 64, 7, 16, 2, 3),
)


@case("conv2d")
def conv2d(device: Device, quick: bool) -> list[Row]:
    """Forward and forward+backward of Conv2D for each shape of the device's set, float32."""
    xp = device.xp
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if device.is_gpu else None
    repeats, warmup = (3, 1) if quick else (9, 2)
    torch = torch_or_none()
    if torch is not None and device.is_gpu and not torch.cuda.is_available():
        torch = None                                   # a CPU-only PyTorch is no GPU reference
    target = "cuda" if device.is_gpu else "cpu"
    torch_sync = torch.cuda.synchronize if torch is not None and device.is_gpu else None
    rows = []
    for name, c, size, f, k, n, stride, pad in (GPU_SHAPES if device.is_gpu else CPU_SHAPES):
        rng = np.random.default_rng(0)
        layer = create("Conv2D", {"filters": f, "kernel_size": k, "stride": stride, "padding": pad})
        layer.build([(c, size, size)], rng, xp, np.float32)
        x = xp.asarray(rng.standard_normal((n, c, size, size)), dtype=np.float32)
        y = layer.forward([x], True)
        grad_y = xp.asarray(rng.standard_normal(y.shape), dtype=np.float32)

        def ours_forward():
            return layer.forward([x], True)

        def ours_train():
            layer.forward([x], True)
            return layer.backward(grad_y)

        # The same three matrix products, bare.
        rows_k, cols = c * k * k, n * y.shape[2] * y.shape[3]
        w_mat = xp.asarray(rng.standard_normal((f, rows_k)), dtype=np.float32)
        col = xp.asarray(rng.standard_normal((rows_k, cols)), dtype=np.float32)
        dy = xp.asarray(rng.standard_normal((f, cols)), dtype=np.float32)
        product = xp.empty((f, cols), dtype=np.float32)
        dcol = xp.empty((rows_k, cols), dtype=np.float32)

        def gemm_forward():
            return xp.matmul(w_mat, col, out=product)

        def gemm_train():
            xp.matmul(w_mat, col, out=product)
            dw = dy @ col.T
            xp.matmul(w_mat.T, dy, out=dcol)
            return dw

        torch_fwd = torch_train = None
        if torch is not None:
            def tensor(a, grad=False):
                return torch.from_numpy(to_numpy(a)).to(target).requires_grad_(grad)

            tx, tw, tb = tensor(x, True), tensor(layer.params["W"], True), tensor(layer.params["b"], True)
            tdy = tensor(grad_y)

            def torch_forward():
                with torch.no_grad():
                    return torch.nn.functional.conv2d(tx, tw, tb, stride, pad)

            def torch_step():
                tx.grad = tw.grad = tb.grad = None
                out = torch.nn.functional.conv2d(tx, tw, tb, stride, pad)
                out.backward(tdy)

            torch_fwd = median_time(torch_forward, repeats, warmup, torch_sync)
            torch_train = median_time(torch_step, repeats, warmup, torch_sync)

        used = {"algorithm": layer.algorithm}
        rows.append(Row("conv2d", f"{name} forward", median_time(ours_forward, repeats, warmup, sync),
                        median_time(gemm_forward, repeats, warmup, sync), torch_fwd, used))
        rows.append(Row("conv2d", f"{name} forward+backward", median_time(ours_train, repeats, warmup, sync),
                        median_time(gemm_train, repeats, warmup, sync), torch_train, used))
    return rows
