// Softmax cross-entropy over rows of logits (N, K) with integer labels (N,), int32.
#include "common.h"

// One thread per row: p = exp(x - max) / sum exp(x - max), loss = log(sum) - (x[label] - max).
// Subtracting the row max keeps every exp() in (0, 1], so nothing overflows. A label outside
// [0, K) gives a NaN loss (and is never read past the row), which stops training loudly.
extern "C" __global__ void softmax_cross_entropy_forward(
        const float* __restrict__ logits, const int* __restrict__ labels,
        float* __restrict__ probs, float* __restrict__ loss, int rows, int classes) {
    GS_GRID_STRIDE_LOOP(row, (long long)rows) {
        const float* x = logits + row * classes;
        float* p = probs + row * classes;
        float top = x[0];
        for (int k = 1; k < classes; ++k) top = x[k] > top ? x[k] : top;
        float sum = 0.0f;
        for (int k = 0; k < classes; ++k) {
            p[k] = expf(x[k] - top);
            sum += p[k];
        }
        const float inverse = 1.0f / sum;
        for (int k = 0; k < classes; ++k) p[k] *= inverse;
        const int label = labels[row];
        loss[row] = (label >= 0 && label < classes) ? logf(sum) - (x[label] - top)
                                                    : __int_as_float(0x7fc00000);  // NaN
    }
}

// One thread per logit: d_logits = (p - onehot(label)) * scale; scale is 1/N for a mean loss.
extern "C" __global__ void softmax_cross_entropy_backward(
        const float* __restrict__ probs, const int* __restrict__ labels,
        float* __restrict__ d_logits, long long total, int classes, float scale) {
    GS_GRID_STRIDE_LOOP(index, total) {
        const long long row = index / classes;
        const int k = (int)(index - row * classes);
        d_logits[index] = (probs[index] - (labels[row] == k ? 1.0f : 0.0f)) * scale;
    }
}
