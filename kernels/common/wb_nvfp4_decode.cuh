// wb_nvfp4_decode.cuh: the register-level NVFP4 weight decode shared by the fused W4A16 GEMMs
// (kernels/wo_gemm.cu v1-v4 and kernels/wo_gemm_v5.cu). A 32-bit code word holds 8 e2m1 codes placed
// by the host-side weight preparation (workbench/techniques/wo_gemm.py, V4_WORD_LAYOUT) so that the 4
// bf16x2 A-fragment registers of one m16 x k16 tile come out of a few shifts and masks; the re-encoded
// scale byte becomes a bf16x2 with one PRMT and one IMAD. Values carry a 2^63 factor (so e2m1 *
// 2^-126 subnormals times the scale stay normal bf16); the epilogue multiplies by 2^63 / g_w.
#pragma once
#include "wb_common.cuh"

__device__ __forceinline__ uint32_t bf16x2_fma_zero(uint32_t a, uint32_t b) {
    uint32_t d;  // a * b + (-0): exact product, sign of zero kept
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
    return d;
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}

__device__ __forceinline__ uint32_t word_of(const u32x4& v, int q) {
    return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w;
}

constexpr float TWO_POW_63 = 9.223372036854775808e18f;
constexpr uint32_t V4_SCALE_BIAS = 180u;  // bf16 exponent field of s * 2^63 is (u >> 3) + 180

// Scale byte `byte` (0..3) of `word` as bf16x2 (s * 2^63 in both halves): byte into bits 0-7 and
// 16-23 (PRMT with zero), then << 4 puts u's 3 mantissa bits at bf16 bits 4-6 and its exponent at
// 7-11, and the constant adds the exponent bias to both halves.
__device__ __forceinline__ uint32_t v4_scale(uint32_t word, int byte) {
    const uint32_t v = prmt(word, 0u, 0x4040u | (uint32_t)byte | ((uint32_t)byte << 8));
    return v * 16u + ((V4_SCALE_BIAS << 7) | (V4_SCALE_BIAS << 23));
}

// One code word -> the 4 A registers of one m16n8k16 (lane (g, t)): bf16x2 of e2m1 * 2^-126 (bits:
// magnitude at 6-8, sign at 15, per half) times the row scale. Word layout per 16-bit half (the low
// half holds the even k of each pair, the high half the odd k), written by prepare_weight:
//   a0 (row g,   k 4b+0/1): magnitude bits 6-8,   sign 15   -> w & T
//   a1 (row g+8, k 4b+0/1): magnitude bits 0-2,   sign 9    -> (w << 6) & T
//   a2 (row g,   k 4b+2/3): magnitude bits 3-5,   sign 10   -> (w << 3) & MAG | (w << 5) & SGN
//   a3 (row g+8, k 4b+2/3): magnitude bits 11-13, sign 14   -> (w >> 5) & MAG | (w << 1) & SGN
__device__ __forceinline__ void v4_decode_word(uint32_t w, uint32_t sg, uint32_t sh, uint32_t (&a)[4]) {
    constexpr uint32_t T = 0x81c081c0u, MAG = 0x01c001c0u, SGN = 0x80008000u;
    a[0] = bf16x2_fma_zero(w & T, sg);
    a[1] = bf16x2_fma_zero((w << 6) & T, sh);
    a[2] = bf16x2_fma_zero(((w << 3) & MAG) | ((w << 5) & SGN), sg);
    a[3] = bf16x2_fma_zero(((w >> 5) & MAG) | ((w << 1) & SGN), sh);
}

