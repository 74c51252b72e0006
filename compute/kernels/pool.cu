// 2D max and average pooling, NCHW, with stride and (top, left) padding; the bottom/right
// pads only show in out_h, out_w. x is (N, C, H, W), y and argmax are (N, C, out_h, out_w);
// "planes" = N*C. Forward is one thread per output; backward is one thread per input pixel
// gathering from the windows that contain it (no atomics).
#include "common.h"

// Max pooling. argmax stores the winner's offset inside its window, u*kernel_w + v (the
// first maximum in row-major order); padded cells never win. The launcher requires
// pad < kernel so every window holds at least one real pixel.
extern "C" __global__ void max_pool2d_forward(
        const float* __restrict__ x, float* __restrict__ y, int* __restrict__ argmax,
        long long total, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left, int out_h, int out_w) {
    GS_GRID_STRIDE_LOOP(index, total) {
        const int j = (int)(index % out_w);
        const int i = (int)(index / out_w % out_h);
        const long long plane = index / ((long long)out_w * out_h);
        const float* image = x + plane * height * width;
        const int y0 = i * stride_y - pad_top, x0 = j * stride_x - pad_left;
        float best = __int_as_float(0xff800000);  // -inf: any real pixel beats it
        int best_offset = -1;
        for (int u = 0; u < kernel_h; ++u) {
            const int yy = y0 + u;
            if (yy < 0 || yy >= height) continue;
            for (int v = 0; v < kernel_w; ++v) {
                const int xx = x0 + v;
                if (xx < 0 || xx >= width) continue;
                const float value = image[yy * width + xx];
                if (best_offset < 0 || value > best) {
                    best = value;
                    best_offset = u * kernel_w + v;
                }
            }
        }
        y[index] = best;
        argmax[index] = best_offset;
    }
}

// The windows (of size kernel, moving by stride) that cover padded coordinate p are the
// output positions first..last; the range is empty when first > last.
__device__ __forceinline__ int gs_first_window(int p, int kernel, int stride) {
    return p < kernel ? 0 : (p - kernel) / stride + 1;
}

__device__ __forceinline__ int gs_last_window(int p, int stride, int out) {
    return p / stride < out - 1 ? p / stride : out - 1;
}

// Max pooling backward: pixel (yy, xx) receives dy of every window whose argmax points at it.
// The windows containing row yy are i in [ceil((yy + pad - k + 1) / s), floor((yy + pad) / s)].
extern "C" __global__ void max_pool2d_backward(
        const float* __restrict__ dy, const int* __restrict__ argmax, float* __restrict__ dx,
        long long total, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left, int out_h, int out_w) {
    GS_GRID_STRIDE_LOOP(index, total) {
        const int xx = (int)(index % width);
        const int yy = (int)(index / width % height);
        const long long plane = index / ((long long)width * height);
        const long long out_base = plane * out_h * out_w;
        const int y_padded = yy + pad_top, x_padded = xx + pad_left;
        const int i_first = gs_first_window(y_padded, kernel_h, stride_y);
        const int i_last = gs_last_window(y_padded, stride_y, out_h);
        const int j_first = gs_first_window(x_padded, kernel_w, stride_x);
        const int j_last = gs_last_window(x_padded, stride_x, out_w);
        float sum = 0.0f;
        for (int i = i_first; i <= i_last; ++i) {
            for (int j = j_first; j <= j_last; ++j) {
                const long long o = out_base + (long long)i * out_w + j;
                const int offset = (y_padded - i * stride_y) * kernel_w + (x_padded - j * stride_x);
                if (argmax[o] == offset) sum += dy[o];
            }
        }
        dx[index] = sum;
    }
}

// Number of real (unpadded) pixels in window (i, j); the divisor when padding is not counted.
__device__ __forceinline__ int gs_window_count(
        int i, int j, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left) {
    const int y0 = i * stride_y - pad_top, x0 = j * stride_x - pad_left;
    const int y_lo = y0 < 0 ? 0 : y0, x_lo = x0 < 0 ? 0 : x0;
    const int y_hi = y0 + kernel_h < height ? y0 + kernel_h : height;
    const int x_hi = x0 + kernel_w < width ? x0 + kernel_w : width;
    return (y_hi - y_lo) * (x_hi - x_lo);
}

// Average pooling: the window mean, dividing by kernel_h*kernel_w when count_pad is set
// (padding counts as zeros, PyTorch's default) or by the number of real pixels otherwise.
extern "C" __global__ void avg_pool2d_forward(
        const float* __restrict__ x, float* __restrict__ y,
        long long total, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left, int out_h, int out_w,
        int count_pad) {
    GS_GRID_STRIDE_LOOP(index, total) {
        const int j = (int)(index % out_w);
        const int i = (int)(index / out_w % out_h);
        const long long plane = index / ((long long)out_w * out_h);
        const float* image = x + plane * height * width;
        const int y0 = i * stride_y - pad_top, x0 = j * stride_x - pad_left;
        float sum = 0.0f;
        for (int u = 0; u < kernel_h; ++u) {
            const int yy = y0 + u;
            if (yy < 0 || yy >= height) continue;
            for (int v = 0; v < kernel_w; ++v) {
                const int xx = x0 + v;
                if (xx >= 0 && xx < width) sum += image[yy * width + xx];
            }
        }
        const int count = count_pad ? kernel_h * kernel_w
                                    : gs_window_count(i, j, height, width, kernel_h, kernel_w,
                                                      stride_y, stride_x, pad_top, pad_left);
        y[index] = sum / (float)count;
    }
}

// Average pooling backward: each pixel sums dy / count over the windows that contain it.
extern "C" __global__ void avg_pool2d_backward(
        const float* __restrict__ dy, float* __restrict__ dx,
        long long total, int height, int width, int kernel_h, int kernel_w,
        int stride_y, int stride_x, int pad_top, int pad_left, int out_h, int out_w,
        int count_pad) {
    GS_GRID_STRIDE_LOOP(index, total) {
        const int xx = (int)(index % width);
        const int yy = (int)(index / width % height);
        const long long plane = index / ((long long)width * height);
        const long long out_base = plane * out_h * out_w;
        const int y_padded = yy + pad_top, x_padded = xx + pad_left;
        const int i_first = gs_first_window(y_padded, kernel_h, stride_y);
        const int i_last = gs_last_window(y_padded, stride_y, out_h);
        const int j_first = gs_first_window(x_padded, kernel_w, stride_x);
        const int j_last = gs_last_window(x_padded, stride_x, out_w);
        float sum = 0.0f;
        for (int i = i_first; i <= i_last; ++i) {
            for (int j = j_first; j <= j_last; ++j) {
                const int count = count_pad ? kernel_h * kernel_w
                                            : gs_window_count(i, j, height, width, kernel_h, kernel_w,
                                                              stride_y, stride_x, pad_top, pad_left);
                sum += dy[out_base + (long long)i * out_w + j] / (float)count;
            }
        }
        dx[index] = sum;
    }
}
