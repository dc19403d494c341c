// copy.cu: device-to-device copy, the pipeline's first kernel and the bandwidth yardstick.
//
// Napkin math: a copy of N bytes moves 2N bytes through HBM (read + write). On an H100 SXM
// (3.35 TB/s datasheet, ~2.9-3.0 TB/s measured) 1 GiB takes ~0.72 ms.
//
// v1 copy_v1_scalar: one 4-byte word per thread per iteration, grid-stride. Simple, but it needs 4x the
//    instructions of v2 for the same bytes.
// v2 copy_v2_vec16: 16-byte loads/stores, grid-stride, UNROLL independent loads in flight before the
//    first store, streaming cache hints (data touched once). Requires 16-byte aligned pointers and a
//    byte count that is a multiple of 16 (the wrapper checks).
#include "wb_common.cuh"

extern "C" __global__ void copy_v1_scalar(const uint32_t* __restrict__ src, uint32_t* __restrict__ dst,
                                          long long n_words) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n_words; i += stride) {
        dst[i] = src[i];
    }
}

#define UNROLL 4

extern "C" __global__ void __launch_bounds__(256) copy_v2_vec16(const u32x4* __restrict__ src,
                                                                u32x4* __restrict__ dst, long long n_vec) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    // Main loop: UNROLL loads issued before any store, so each thread keeps 64 bytes in flight.
    for (; i + (UNROLL - 1) * stride < n_vec; i += UNROLL * stride) {
        u32x4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) v[u] = ld16_stream(src + i + u * stride);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) st16_stream(dst + i + u * stride, v[u]);
    }
    for (; i < n_vec; i += stride) st16_stream(dst + i, ld16_stream(src + i));
}

// v3 copy_v3_vec16_tiles: no grid-stride loop. Each block copies one tile of 256 threads x UNROLL
//    16-byte vectors (16 KiB) and the grid covers the whole buffer, so the hardware block scheduler,
//    not a loop, keeps every SM busy and no block waits on a long tail. Plain (cached) loads/stores.
extern "C" __global__ void __launch_bounds__(256) copy_v3_vec16_tiles(const u32x4* __restrict__ src,
                                                                      u32x4* __restrict__ dst, long long n_vec) {
    const long long base = (long long)blockIdx.x * (256 * UNROLL) + threadIdx.x;
    u32x4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        long long i = base + u * 256;
        if (i < n_vec) v[u] = ld16(src + i);
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        long long i = base + u * 256;
        if (i < n_vec) st16(dst + i, v[u]);
    }
}
