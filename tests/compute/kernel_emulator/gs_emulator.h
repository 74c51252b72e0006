// Just enough of CUDA to run a GateScope kernel on the CPU, for tests without a GPU.
//
// A kernel source is compiled by g++ with this header included first. Kernels become plain
// functions; gs_emu::launch then runs the whole grid as loops, one thread after another,
// with blockIdx/threadIdx/blockDim/gridDim set as the GPU would set them. Sequential
// threads are faithful for kernels whose threads never talk to each other (no shared memory,
// no __syncthreads, no atomics), which is how every GateScope kernel is written; the
// harness also runs the threads in reverse order to catch any that secretly depend on
// another thread's writes. Using shared memory or a barrier here is a compile error.
#ifndef GATESCOPE_KERNEL_EMULATOR_H
#define GATESCOPE_KERNEL_EMULATOR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};

namespace gs_emu {
inline uint3 thread_index, block_index;
inline dim3 block_dim, grid_dim;

// Launch limits of every GPU since compute capability 3.0; a configuration outside them
// fails on the device, so it fails here too.
enum LaunchStatus { kLaunchOk = 0, kBadGrid = 1, kBadBlock = 2 };

// Runs body() once per thread of the grid described by config = {grid x, y, z, block x, y, z}.
template <class Body>
int launch(const unsigned int* config, int reverse, Body&& body) {
    const dim3 grid{config[0], config[1], config[2]};
    const dim3 block{config[3], config[4], config[5]};
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535u ||
        grid.z > 65535u)
        return kBadGrid;
    if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024u || block.y > 1024u ||
        block.z > 64u || (unsigned long long)block.x * block.y * block.z > 1024ull)
        return kBadBlock;
    grid_dim = grid;
    block_dim = block;
    const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    for (unsigned long long nb = 0; nb < blocks; ++nb) {
        const unsigned long long b = reverse ? blocks - 1 - nb : nb;
        block_index = {(unsigned int)(b % grid.x), (unsigned int)(b / grid.x % grid.y),
                       (unsigned int)(b / grid.x / grid.y)};
        for (unsigned long long nt = 0; nt < threads; ++nt) {
            const unsigned long long t = reverse ? threads - 1 - nt : nt;
            thread_index = {(unsigned int)(t % block.x), (unsigned int)(t / block.x % block.y),
                            (unsigned int)(t / block.x / block.y)};
            body();
        }
    }
    return kLaunchOk;
}
}  // namespace gs_emu

#define threadIdx (::gs_emu::thread_index)
#define blockIdx (::gs_emu::block_index)
#define blockDim (::gs_emu::block_dim)
#define gridDim (::gs_emu::grid_dim)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ gatescope_emulator_has_no_shared_memory
#define __syncthreads() static_assert(false, "the emulator runs threads one by one: no barriers")

// Device intrinsics used by the kernels, with their exact meaning on the host.
inline float __int_as_float(int bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}
inline int __float_as_int(float value) {
    int bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float x, float y) { return x / y; }

#endif  // GATESCOPE_KERNEL_EMULATOR_H
