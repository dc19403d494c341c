// wb_wgmma.cuh: warpgroup MMA (wgmma) helpers shared by the wgmma GEMMs (kernels/wo_gemm_v5.cu,
// kernels/wo_gemm_v7.cu): the fence / commit / wait of asynchronous groups, a register pin, and the
// shared-memory matrix descriptor of a K-major bf16 tile in the 128-byte-swizzled layout TMA writes, and
// the stmatrix / ldmatrix moves of m16k16 fragments into and out of that layout.
#pragma once
#include "wb_common.cuh"
#include "wb_nvfp4_decode.cuh"
#include "wb_tma.cuh"

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


WB_DEVICE void stmatrix_x4(uint32_t addr, const uint32_t (&a)[4]) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(a[0]), "r"(a[1]),
                 "r"(a[2]), "r"(a[3])
                 : "memory");
}
WB_DEVICE void ldmatrix_x4(uint32_t addr, uint32_t (&a)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(addr)
                 : "memory");
}
// Byte offset of 16-byte chunk c8 (k 8 c8 .. 8 c8 + 7) of row r in a K-major tile of 64-k rows with the
// 128-byte swizzle (8-row groups of 1024 B; the chunk index XOR-ed with the row within its group).
WB_DEVICE uint32_t sw128_offset(int r, int c8) { return (r >> 3) * 1024 + (r & 7) * 128 + ((c8 ^ (r & 7)) << 4); }


// One warp: chunk c (64 k) of a 16-row tile of the 256-k v5 stream with scale pairs at shared address tb
// (4 chunks x 32 lanes x 16 B of code words, then the 256-byte scale table) decoded (wb_nvfp4_decode.cuh:
// each code word is one m16k16 fragment) and stored with stmatrix as rows r0 .. r0 + 15 of the K-major,
// 128-byte-swizzled bf16 tile at dst (64 k per row): the wgmma B layout. Lane L gives the row address of
// matrix L / 8 (odd matrices: rows + 8; matrices 2, 3: k + 8). bias_reg holds PAIR_BIAS.
WB_DEVICE void decode_chunk_to_tile(uint32_t tb, int c, uint32_t dst, int r0, uint32_t bias_reg, int lane) {
    const int g = lane >> 2, mi = lane >> 3, rr = lane & 7;
    const u32x4 cw = lds16(tb + (c * 32 + lane) * 16);
    const u32x4 sc = lds16(tb + 8 * 256 + ((c >> 1) * 8 + g) * 16);
    uint32_t pg[2], ph[2];
    scale_pairs((c & 1) ? sc.y : sc.x, bias_reg, pg[0], pg[1]);
    scale_pairs((c & 1) ? sc.w : sc.z, bias_reg, ph[0], ph[1]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        uint32_t a[4];
        v4_decode_word(word_of(cw, j), pair_step(pg[0], pg[1], j), pair_step(ph[0], ph[1], j), a);
        stmatrix_x4(dst + sw128_offset(r0 + rr + 8 * (mi & 1), 2 * j + (mi >> 1)), a);
    }
}
