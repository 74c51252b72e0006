// Optimizer updates, one thread per parameter element, in place on the parameter and its
// state buffers (the gradient is only read). Same equations as compute/optim.py.
#include "common.h"

// SGD with weight decay as L2 (g' = g + wd * p) and momentum:
//   v = momentum * v + g';  p -= lr * v  (Nesterov: p -= lr * (g' + momentum * v)).
// velocity is NULL for plain SGD (momentum 0): p -= lr * g'.
extern "C" __global__ void sgd_update(
        float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ velocity,
        long long n, float lr, float momentum, float weight_decay, int nesterov) {
    GS_GRID_STRIDE_LOOP(index, n) {
        const float p = param[index];
        const float g = grad[index] + weight_decay * p;
        float step = g;
        if (velocity != nullptr) {
            const float v = momentum * velocity[index] + g;
            velocity[index] = v;
            step = nesterov ? g + momentum * v : v;
        }
        param[index] = p - lr * step;
    }
}

// Adam / AdamW. bias_correction1 = 1 - beta1^t and bias_correction2 = 1 - beta2^t come from
// the host (the step count lives there), so the kernel needs no power and no sync.
//   decoupled = 0 (Adam):  g' = g + wd * p
//   decoupled = 1 (AdamW): p -= lr * wd * p, apart from the moments
//   m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
//   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
extern "C" __global__ void adam_update(
        float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
        float* __restrict__ v, long long n, float lr, float beta1, float beta2, float eps,
        float weight_decay, float bias_correction1, float bias_correction2, int decoupled) {
    GS_GRID_STRIDE_LOOP(index, n) {
        float p = param[index];
        float g = grad[index];
        if (decoupled) {
            p -= lr * weight_decay * p;
        } else {
            g += weight_decay * p;
        }
        const float m_t = beta1 * m[index] + (1.0f - beta1) * g;
        const float v_t = beta2 * v[index] + (1.0f - beta2) * g * g;
        m[index] = m_t;
        v[index] = v_t;
        param[index] = p - lr * (m_t / bias_correction1) / (sqrtf(v_t / bias_correction2) + eps);
    }
}
