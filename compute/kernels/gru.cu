// GRU gate math, one thread per (sample, unit). Gate order r, z, n (contract); every gate
// array is (B, 3H) gate-major per sample: element (b, k, j) at b*3H + k*H + j. States are
// (B, H). The update is the lectures' h_t = (1 - z) * h_{t-1} + z * n.
//
// Two forms:
//  - "pytorch": n = tanh(xn + r * (hn + b_hn)), where x_gates = x W + b (B, 3H) and h_gates =
//    h_{t-1} U (B, 3H) straight from the GEMM; the kernel adds the recurrent candidate bias
//    b_hn (H,) (NULL: none), so one step is one recurrent GEMM and one kernel.
//  - "cho" (Cho et al. 2014): n = tanh(xn + (r * h_{t-1}) U_n). The recurrent product needs r
//    first, so the step is: kernel rz -> GEMM (r*h) U_n -> kernel n, and backward mirrors it.
// Pins replace a gate's activated value and zero its pre-activation gradient.
// Backward kernels take dL/dh_t as dh (from above) plus dh_next (carried from step t+1; NULL at
// the last step or after a truncation cut) and add the two themselves.
#include "common.h"

extern "C" __global__ void gru_pytorch_forward(
        const float* __restrict__ x_gates, const float* __restrict__ h_gates,
        const float* __restrict__ b_hn, const float* __restrict__ h_prev,
        float* __restrict__ gates, float* __restrict__ h,
        long long batch_units, int units, float pin_r, float pin_z, float pin_n) {
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const int j = (int)(index - b * units);
        const long long base = b * 3 * units + j;
        const float r = gs_pinned(pin_r, gs_sigmoid(x_gates[base] + h_gates[base]));
        const float z = gs_pinned(pin_z, gs_sigmoid(x_gates[base + units] + h_gates[base + units]));
        const float hn = h_gates[base + 2 * units] + (b_hn != nullptr ? b_hn[j] : 0.0f);
        const float n = gs_pinned(pin_n, tanhf(x_gates[base + 2 * units] + r * hn));
        gates[base] = r;
        gates[base + units] = z;
        gates[base + 2 * units] = n;
        h[index] = (1.0f - z) * h_prev[index] + z * n;
    }
}

// Backward of the pytorch form. Writes the gradients of x_gates and of h_gates (they differ
// only in the n block, where h_gates' is scaled by r) and the direct part of dh_prev,
// dh * (1 - z); the caller adds d_h_gates U^T (a GEMM accumulating into dh_prev).
extern "C" __global__ void gru_pytorch_backward(
        const float* __restrict__ dh, const float* __restrict__ dh_next,
        const float* __restrict__ gates, const float* __restrict__ h_prev,
        const float* __restrict__ h_gates, const float* __restrict__ b_hn,
        float* __restrict__ d_x_gates, float* __restrict__ d_h_gates, float* __restrict__ dh_prev,
        long long batch_units, int units, float pin_r, float pin_z, float pin_n) {
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const int j = (int)(index - b * units);
        const long long base = b * 3 * units + j;
        const float r = gates[base], z = gates[base + units], n = gates[base + 2 * units];
        const float dh_t = dh[index] + (dh_next != nullptr ? dh_next[index] : 0.0f);
        const float hp = h_prev[index];
        const float hn = h_gates[base + 2 * units] + (b_hn != nullptr ? b_hn[j] : 0.0f);
        const float da_n = gs_pinned_grad(pin_n, dh_t * z * (1.0f - n * n));
        const float da_z = gs_pinned_grad(pin_z, dh_t * (n - hp) * z * (1.0f - z));
        // a_n = xn + r*(hn + b_hn): dr = da_n * (hn + b_hn).
        const float da_r = gs_pinned_grad(pin_r, da_n * hn * r * (1.0f - r));
        d_x_gates[base] = da_r;
        d_x_gates[base + units] = da_z;
        d_x_gates[base + 2 * units] = da_n;
        d_h_gates[base] = da_r;
        d_h_gates[base + units] = da_z;
        d_h_gates[base + 2 * units] = da_n * r;
        dh_prev[index] = dh_t * (1.0f - z);
    }
}

// Cho form, part 1: r = s(xr + hr), z = s(xz + hz) from h_rz = h_{t-1} U_rz (B, 2H), written
// into gates' r and z blocks, and r_h_prev = r * h_{t-1} (B, H) for the GEMM with U_n.
extern "C" __global__ void gru_cho_forward_rz(
        const float* __restrict__ x_gates, const float* __restrict__ h_rz,
        const float* __restrict__ h_prev, float* __restrict__ gates, float* __restrict__ r_h_prev,
        long long batch_units, int units, float pin_r, float pin_z) {
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const long long j = index - b * units;
        const long long base = b * 3 * units + j;
        const long long base_rz = b * 2 * units + j;
        const float r = gs_pinned(pin_r, gs_sigmoid(x_gates[base] + h_rz[base_rz]));
        const float z = gs_pinned(pin_z, gs_sigmoid(x_gates[base + units] + h_rz[base_rz + units]));
        gates[base] = r;
        gates[base + units] = z;
        r_h_prev[index] = r * h_prev[index];
    }
}

// Cho form, part 2: n = tanh(xn + h_n) with h_n = (r * h_{t-1}) U_n (B, H); writes gates' n
// block (reading its r, z blocks) and h_t.
extern "C" __global__ void gru_cho_forward_n(
        const float* __restrict__ x_gates, const float* __restrict__ h_n,
        const float* __restrict__ h_prev, float* __restrict__ gates, float* __restrict__ h,
        long long batch_units, int units, float pin_n) {
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const long long base = b * 3 * units + (index - b * units);
        const float z = gates[base + units];
        const float n = gs_pinned(pin_n, tanhf(x_gates[base + 2 * units] + h_n[index]));
        gates[base + 2 * units] = n;
        h[index] = (1.0f - z) * h_prev[index] + z * n;
    }
}

// Cho backward, part 1: the z and n blocks of d_gates (the gradient of both x_gates and the
// recurrent pre-activations) and dh_prev = dh * (1 - z). The caller then forms
// d_r_h_prev = d_gates[:, n] U_n^T for part 2. The r block is left for part 2.
extern "C" __global__ void gru_cho_backward_n(
        const float* __restrict__ dh, const float* __restrict__ dh_next,
        const float* __restrict__ gates,
        const float* __restrict__ h_prev, float* __restrict__ d_gates, float* __restrict__ dh_prev,
        long long batch_units, int units, float pin_z, float pin_n) {
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const long long base = b * 3 * units + (index - b * units);
        const float z = gates[base + units], n = gates[base + 2 * units];
        const float dh_t = dh[index] + (dh_next != nullptr ? dh_next[index] : 0.0f);
        d_gates[base + units] = gs_pinned_grad(pin_z, dh_t * (n - h_prev[index]) * z * (1.0f - z));
        d_gates[base + 2 * units] = gs_pinned_grad(pin_n, dh_t * z * (1.0f - n * n));
        dh_prev[index] = dh_t * (1.0f - z);
    }
}

// Cho backward, part 2: from d_r_h_prev = dL/d(r * h_{t-1}) (B, H), the r block of d_gates
// and dh_prev += d_r_h_prev * r. The caller finally adds d_gates[:, r|z] U_rz^T to dh_prev.
extern "C" __global__ void gru_cho_backward_r(
        const float* __restrict__ d_r_h_prev, const float* __restrict__ gates,
        const float* __restrict__ h_prev, float* __restrict__ d_gates, float* __restrict__ dh_prev,
        long long batch_units, int units, float pin_r) {
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const long long base = b * 3 * units + (index - b * units);
        const float r = gates[base];
        const float d_rh = d_r_h_prev[index];
        d_gates[base] = gs_pinned_grad(pin_r, d_rh * h_prev[index] * r * (1.0f - r));
        dh_prev[index] += d_rh * r;
    }
}
