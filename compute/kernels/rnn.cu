// SimpleRNN step, elementwise: h_t = act(pre + rec) with pre = x_t W + b and rec = h_{t-1} U
// from the caller's GEMMs. Arrays are (B, H), contiguous; n = B*H.
#include "common.h"

#define GS_RNN_TANH 0
#define GS_RNN_RELU 1

extern "C" __global__ void simple_rnn_forward(
        const float* __restrict__ pre, const float* __restrict__ rec, float* __restrict__ h,
        long long n, int activation) {
    GS_GRID_STRIDE_LOOP(index, n) {
        const float a = pre[index] + rec[index];
        h[index] = activation == GS_RNN_RELU ? (a > 0.0f ? a : 0.0f) : tanhf(a);
    }
}

// d_pre = (dh + dh_next) * act'(a), with act' read off the output: tanh' = 1 - h^2,
// relu' = [h > 0]. dh comes from above, dh_next from step t+1's recurrent GEMM (NULL at the
// last step or after a truncation cut).
extern "C" __global__ void simple_rnn_backward(
        const float* __restrict__ dh, const float* __restrict__ dh_next,
        const float* __restrict__ h, float* __restrict__ d_pre,
        long long n, int activation) {
    GS_GRID_STRIDE_LOOP(index, n) {
        const float y = h[index];
        const float slope = activation == GS_RNN_RELU ? (y > 0.0f ? 1.0f : 0.0f) : 1.0f - y * y;
        const float total = dh[index] + (dh_next != nullptr ? dh_next[index] : 0.0f);
        d_pre[index] = total * slope;
    }
}
