// wb_wgmma.cuh: warpgroup MMA (wgmma) helpers shared by the wgmma GEMMs (kernels/wo_gemm_v5.cu,
// kernels/wo_gemm_v7.cu): the fence / commit / wait of asynchronous groups, a register pin, and the
// shared-memory matrix descriptor of a K-major bf16 tile in the 128-byte-swizzled layout TMA writes.
#pragma once
#include "wb_common.cuh"

WB_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
WB_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
WB_DEVICE void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Pin a register value at this point: the compiler may not reuse a register an in-flight wgmma still
// reads (its A operand) or writes (its accumulator) before the wait that retires it.
WB_DEVICE void keep(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
WB_DEVICE void keep(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// Shared-memory matrix descriptor of a K-major bf16 tile written by TMA with 128-byte swizzle: rows of
// 64 k (128 B), 8-row groups 1024 B apart (SBO), LBO unused for this layout, swizzle mode 1 (128 B).
// Advancing k by 16 inside the 128-byte row adds 32 B to the start address (the tile is 1024-aligned).
WB_DEVICE uint64_t desc_kmajor_sw128(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

