// Fused LSTM gate math, one thread per (sample, unit); the GEMMs stay in cuBLAS.
//
// Layout (contract): a step's pre-activations are (B, G*U), gate-major inside each sample:
// element (b, k, u) lives at b*G*U + k*U + u. Standard and peephole LSTMs have G = 4 gates in
// the order i, f, g, o; the coupled LSTM has G = 3 in the order f, g, o (its input gate is
// 1 - f). Cell and hidden states are (B, U). U is the hidden size for a dense LSTM and
// F*H*W for a ConvLSTM whose maps are (B, 4F, H, W): the same formula addresses both.
// Peephole weights are (3, U) stacked w_ci, w_cf, w_co.
#include "common.h"

#define GS_LSTM_STANDARD 0
#define GS_LSTM_PEEPHOLE 1
#define GS_LSTM_COUPLED 2

// Forward, for one step, from a = pre + rec (pre = x W + b, rec = h_prev U, both (B, G*U)):
//   standard   i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o); C = f*C_prev + i*g
//   peephole   i = s(a_i + w_ci*C_prev), f = s(a_f + w_cf*C_prev), o = s(a_o + w_co*C)
//   coupled    C = f*C_prev + (1 - f)*g
//   h = o * tanh(C)
// Pins replace a gate's activated value (pin_i is ignored by the coupled variant, whose
// input gate follows the forget gate).
extern "C" __global__ void lstm_forward(
        const float* __restrict__ pre, const float* __restrict__ rec,
        const float* __restrict__ c_prev, const float* __restrict__ peephole,
        float* __restrict__ gates, float* __restrict__ c, float* __restrict__ h,
        long long batch_units, int units, int variant,
        float pin_i, float pin_f, float pin_g, float pin_o) {
    const int n_gates = variant == GS_LSTM_COUPLED ? 3 : 4;
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const int u = (int)(index - b * units);
        const long long base = b * n_gates * units + u;
        const float cp = c_prev[index];
        float c_t, o;
        if (variant == GS_LSTM_COUPLED) {
            const float f = gs_pinned(pin_f, gs_sigmoid(pre[base] + rec[base]));
            const float g = gs_pinned(pin_g, tanhf(pre[base + units] + rec[base + units]));
            o = gs_pinned(pin_o, gs_sigmoid(pre[base + 2 * units] + rec[base + 2 * units]));
            c_t = f * cp + (1.0f - f) * g;
            gates[base] = f;
            gates[base + units] = g;
            gates[base + 2 * units] = o;
        } else {
            float a_i = pre[base] + rec[base], a_f = pre[base + units] + rec[base + units];
            float a_o = pre[base + 3 * units] + rec[base + 3 * units];
            if (variant == GS_LSTM_PEEPHOLE) {
                a_i += peephole[u] * cp;
                a_f += peephole[units + u] * cp;
            }
            const float i = gs_pinned(pin_i, gs_sigmoid(a_i));
            const float f = gs_pinned(pin_f, gs_sigmoid(a_f));
            const float g = gs_pinned(pin_g, tanhf(pre[base + 2 * units] + rec[base + 2 * units]));
            c_t = f * cp + i * g;
            // The output peephole looks at the new cell state.
            if (variant == GS_LSTM_PEEPHOLE) a_o += peephole[2 * units + u] * c_t;
            o = gs_pinned(pin_o, gs_sigmoid(a_o));
            gates[base] = i;
            gates[base + units] = f;
            gates[base + 2 * units] = g;
            gates[base + 3 * units] = o;
        }
        c[index] = c_t;
        h[index] = o * tanhf(c_t);
    }
}

// Backward through one step. dL/dh_t is dh (from above) plus dh_next (carried from step t+1
// through its recurrent GEMM; NULL at the last step or after a truncation cut), added here so
// the step loop needs no separate add; dc_next is dL/dC_t carried from step t+1 (NULL
// likewise). Writes the gradient of the pre-activations (B, G*U), dL/dC_{t-1} (B, U) and,
// when dc_total is not NULL, the total dL/dC_t (B, U) (the probes' cell-state gradient).
// tanh(C) is recomputed: it is cheaper than storing it.
extern "C" __global__ void lstm_backward(
        const float* __restrict__ dh, const float* __restrict__ dh_next,
        const float* __restrict__ dc_next,
        const float* __restrict__ gates, const float* __restrict__ c_prev,
        const float* __restrict__ c, const float* __restrict__ peephole,
        float* __restrict__ d_pre, float* __restrict__ dc_prev, float* __restrict__ dc_total,
        long long batch_units, int units, int variant,
        float pin_i, float pin_f, float pin_g, float pin_o) {
    const int n_gates = variant == GS_LSTM_COUPLED ? 3 : 4;
    GS_GRID_STRIDE_LOOP(index, batch_units) {
        const long long b = index / units;
        const int u = (int)(index - b * units);
        const long long base = b * n_gates * units + u;
        const float cp = c_prev[index];
        const float tc = tanhf(c[index]);
        const float dh_t = dh[index] + (dh_next != nullptr ? dh_next[index] : 0.0f);
        const float carried = dc_next != nullptr ? dc_next[index] : 0.0f;
        float dc;
        if (variant == GS_LSTM_COUPLED) {
            const float f = gates[base], g = gates[base + units], o = gates[base + 2 * units];
            const float da_o = gs_pinned_grad(pin_o, dh_t * tc * o * (1.0f - o));
            // dL/dC_t through h_t = o*tanh(C_t), plus what step t+1 carried back.
            dc = dh_t * o * (1.0f - tc * tc) + carried;
            // C = f*C_prev + (1-f)*g: dC/df = C_prev - g, dC/dg = 1 - f.
            d_pre[base] = gs_pinned_grad(pin_f, dc * (cp - g) * f * (1.0f - f));
            d_pre[base + units] = gs_pinned_grad(pin_g, dc * (1.0f - f) * (1.0f - g * g));
            d_pre[base + 2 * units] = da_o;
            dc_prev[index] = dc * f;
        } else {
            const float i = gates[base], f = gates[base + units];
            const float g = gates[base + 2 * units], o = gates[base + 3 * units];
            const float da_o = gs_pinned_grad(pin_o, dh_t * tc * o * (1.0f - o));
            dc = dh_t * o * (1.0f - tc * tc) + carried;
            // With a peephole, o_t also depends on C_t.
            if (variant == GS_LSTM_PEEPHOLE) dc += da_o * peephole[2 * units + u];
            const float da_i = gs_pinned_grad(pin_i, dc * g * i * (1.0f - i));
            const float da_f = gs_pinned_grad(pin_f, dc * cp * f * (1.0f - f));
            d_pre[base] = da_i;
            d_pre[base + units] = da_f;
            d_pre[base + 2 * units] = gs_pinned_grad(pin_g, dc * i * (1.0f - g * g));
            d_pre[base + 3 * units] = da_o;
            float dcp = dc * f;
            // ... and i_t, f_t look at C_{t-1}.
            if (variant == GS_LSTM_PEEPHOLE) dcp += da_i * peephole[u] + da_f * peephole[units + u];
            dc_prev[index] = dcp;
        }
        if (dc_total != nullptr) dc_total[index] = dc;
    }
}

// Peephole weight gradients of one step, summed over the batch and added to d_peephole (3, U):
//   dw_ci += sum_b da_i * C_prev,  dw_cf += sum_b da_f * C_prev,  dw_co += sum_b da_o * C.
// One thread per weight walks the batch, so the sum needs no atomics and is deterministic.
// d_pre comes from lstm_backward (peephole variant, G = 4). The layers pass every step at
// once, as a batch of T*B rows: one launch after the step loop.
extern "C" __global__ void lstm_peephole_grad(
        const float* __restrict__ d_pre, const float* __restrict__ c_prev,
        const float* __restrict__ c, float* __restrict__ d_peephole,
        int batch, int units) {
    GS_GRID_STRIDE_LOOP(index, 3LL * units) {
        const int which = (int)(index / units);  // 0: w_ci, 1: w_cf, 2: w_co
        const int u = (int)(index - (long long)which * units);
        const int gate = which == 2 ? 3 : which;  // rows i, f, o of the (i, f, g, o) stack
        const float* state = which == 2 ? c : c_prev;
        float sum = 0.0f;
        for (int b = 0; b < batch; ++b) {
            sum += d_pre[((long long)b * 4 + gate) * units + u] * state[(long long)b * units + u];
        }
        d_peephole[index] += sum;
    }
}
