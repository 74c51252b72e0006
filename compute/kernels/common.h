// Device helpers shared by every GateScope kernel.
//
// The loader pastes this file in place of `#include "common.h"` before handing a source to
// NVRTC (so CuPy's compile cache, keyed on the source text, sees edits here); the CPU
// emulator compiles the .cu file as it is, finding this header with -I.
#ifndef GATESCOPE_KERNELS_COMMON_H
#define GATESCOPE_KERNELS_COMMON_H

// Logistic sigmoid as tanh(x/2)/2 + 1/2: identical in value, and unlike 1/(1+exp(-x)) it
// cannot overflow for large |x| (Chainer's LSTM kernel does the same).
__device__ __forceinline__ float gs_sigmoid(float x) {
    return tanhf(0.5f * x) * 0.5f + 0.5f;
}

// Gate overrides: a pin below zero means "learned"; otherwise the gate is the pinned constant.
__device__ __forceinline__ float gs_pinned(float pin, float learned) {
    return pin < 0.0f ? learned : pin;
}

// A pinned gate is a constant, so the gradient of its pre-activation is zero.
__device__ __forceinline__ float gs_pinned_grad(float pin, float grad) {
    return pin < 0.0f ? grad : 0.0f;
}

// Grid-stride loop over [0, n): correct for any grid size, so the launcher may cap the grid
// (a few thousand blocks keep every SM busy) and the emulator can test the wrap-around with a
// tiny grid. 64-bit indices: im2col buffers can pass 2^31 elements.
#define GS_GRID_STRIDE_LOOP(index, n)                                                  \
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;          \
         index < (n); index += (long long)blockDim.x * gridDim.x)

#endif  // GATESCOPE_KERNELS_COMMON_H
