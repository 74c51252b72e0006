// Softmax cross-entropy over rows of logits (N, K) with integer labels (N,), int32.
//
// The forward pass computes the softmax once (softmax_forward, when the head's forward runs,
// before the labels are known) and keeps each row's max and log-sum; the loss is then a gather
// (cross_entropy_loss), so the softmax is never computed twice.
#include "common.h"

// One thread per row: p = exp(x - max) / sum exp(x - max), and stats (rows, 2) = (max,
// log sum exp(x - max)). Subtracting the row max keeps every exp() in (0, 1], so nothing
// overflows; keeping the max apart keeps the loss exact for large logits.
extern "C" __global__ void softmax_forward(
        const float* __restrict__ logits, float* __restrict__ probs,
        float* __restrict__ stats, int rows, int classes) {
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
        stats[2 * row] = top;
        stats[2 * row + 1] = logf(sum);
    }
}

// One thread per row: loss = log sum - (x[label] - max) = -log softmax(x)[label], from the
// forward's stats. A label outside [0, K) gives a NaN loss (and is never read past the row),
// which stops training loudly.
extern "C" __global__ void cross_entropy_loss(
        const float* __restrict__ logits, const float* __restrict__ stats,
        const int* __restrict__ labels, float* __restrict__ loss, int rows, int classes) {
    GS_GRID_STRIDE_LOOP(row, (long long)rows) {
        const int label = labels[row];
        loss[row] = (label >= 0 && label < classes)
                        ? stats[2 * row + 1] - (logits[row * classes + label] - stats[2 * row])
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
