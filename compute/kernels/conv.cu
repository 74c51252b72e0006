// im2col and its adjoint col2im for 2D convolution, dilation 1.
//
// Layout (the same as compute/ops/conv.py, so the GEMMs around it do not change):
//   image x   (N, C, H, W), contiguous
//   columns   (C, kh, kw, N, Ho, Wo), contiguous; as a matrix (C*kh*kw, N*Ho*Wo), so the
//             forward is one GEMM  y(F, N*Ho*Wo) = W(F, C*kh*kw) @ col
//   col[c, u, v, n, i, j] = xpad[n, c, i*sy + u, j*sx + v], where xpad has pad_top rows and
//   pad_left columns of zeros before the image (the bottom/right pads only show in Ho, Wo).
#include "common.h"

// One thread per column element: a gather from the image, zero where the window is in the pad.
extern "C" __global__ void im2col(
        const float* __restrict__ x, float* __restrict__ col, long long total,
        int batch, int channels, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left, int out_h, int out_w) {
    GS_GRID_STRIDE_LOOP(index, total) {
        long long t = index;
        const int j = (int)(t % out_w); t /= out_w;
        const int i = (int)(t % out_h); t /= out_h;
        const int n = (int)(t % batch); t /= batch;
        const int v = (int)(t % kernel_w); t /= kernel_w;
        const int u = (int)(t % kernel_h);
        const int c = (int)(t / kernel_h);
        const int y = i * stride_y - pad_top + u;
        const int xx = j * stride_x - pad_left + v;
        const bool inside = y >= 0 && y < height && xx >= 0 && xx < width;
        col[index] = inside ? x[(((long long)n * channels + c) * height + y) * width + xx] : 0.0f;
    }
}

// col2im as a gather: one thread per image pixel sums the column entries that came from it,
// so no two threads write the same address and no atomics are needed. Pixel (y, x) appears
// in output row i at kernel row u iff i*sy + u = y + pad_top.
extern "C" __global__ void col2im(
        const float* __restrict__ col, float* __restrict__ x, long long total,
        int batch, int channels, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left, int out_h, int out_w) {
    GS_GRID_STRIDE_LOOP(index, total) {
        long long t = index;
        const int xx = (int)(t % width); t /= width;
        const int y = (int)(t % height); t /= height;
        const int c = (int)(t % channels);
        const int n = (int)(t / channels);
        const int y_padded = y + pad_top, x_padded = xx + pad_left;
        float sum = 0.0f;
        for (int u = 0; u < kernel_h && u <= y_padded; ++u) {
            const int row = y_padded - u;
            if (row % stride_y != 0 || row / stride_y >= out_h) continue;
            const int i = row / stride_y;
            for (int v = 0; v < kernel_w && v <= x_padded; ++v) {
                const int column = x_padded - v;
                if (column % stride_x != 0 || column / stride_x >= out_w) continue;
                const int j = column / stride_x;
                sum += col[((((long long)c * kernel_h + u) * kernel_w + v) * batch + n) * out_h * out_w
                           + (long long)i * out_w + j];
            }
        }
        x[index] = sum;
    }
}
