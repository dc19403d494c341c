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
// (The one right shift as IMAD.HI, moving it from the ALU to the FMA pipe, was measured slower on an H100:
// M = 32 31.5 against 31.1 us, M = 64 39.6 against 36.7; docs/notes_wo_gemm.md, seventh pass.)
__device__ __forceinline__ void v4_decode_word(uint32_t w, uint32_t sg, uint32_t sh, uint32_t (&a)[4]) {
    constexpr uint32_t T = 0x81c081c0u, MAG = 0x01c001c0u, SGN = 0x80008000u;
    a[0] = bf16x2_fma_zero(w & T, sg);
    a[1] = bf16x2_fma_zero((w << 6) & T, sh);
    a[2] = bf16x2_fma_zero(((w << 3) & MAG) | ((w << 5) & SGN), sg);
    a[3] = bf16x2_fma_zero(((w >> 5) & MAG) | ((w << 1) & SGN), sh);
}

// The rotate layout (the v5 stream with word_layout="rot", LEAN bit 7): the same 4 fragment registers in 8
// integer instructions per code word instead of 11. Per register the 8 bits that land on T (bf16 sign 15 and
// magnitude 6-8, each half) come from one rotate of the word (a0: none, a1: by 10, a2: by 13), and those of a3 from
// the 8 bits left over, {0, 1, 3, 4} and {16, 17, 19, 20}: masked, then one multiply by 2^2 + 2^7 + 2^12 places three
// disjoint copies (no carries, so the product is their OR) whose T bits are exactly the 8 wanted ones. Four rotates
// cannot tile the word (workbench/techniques/wo_gemm_v5.py ROT_LAYOUT, and docs/notes_wo_gemm.md, tenth pass).
constexpr uint32_t ROT_T = 0x81c081c0u, ROT_LEFT = 0x001b001bu, ROT_MUL = (1u << 2) | (1u << 7) | (1u << 12);
__device__ __forceinline__ void rot_decode_word(uint32_t w, uint32_t sg, uint32_t sh, uint32_t (&a)[4]) {
    a[0] = bf16x2_fma_zero(w & ROT_T, sg);
    a[1] = bf16x2_fma_zero(__funnelshift_l(w, w, 10) & ROT_T, sh);
    a[2] = bf16x2_fma_zero(__funnelshift_l(w, w, 13) & ROT_T, sg);
    a[3] = bf16x2_fma_zero(((w & ROT_LEFT) * ROT_MUL) & ROT_T, sh);
}

// Scale pairs (the v5 stream with scale_pairs=True): the scale word of one row for 4 k16 steps holds the
// re-encoded bytes u0..u3 at bits 4-11 (u0), 12-19 (u1), 20-27 (u2) and 28-31 + 0-3 (u3, split), so one
// LOP3 gives the bf16x2 (s0, s2) * 2^107 and a rotate plus one LOP3 gives (s1, s3) * 2^107: the bias is
// OR-ed (bf16 exponent field of s * 2^107 = (u >> 3) + 224, and u >> 3 <= 18 leaves bits 5-7 of 224 free).
// The A operand then takes one half of the pair through HMUL2's .H0_H0 / .H1_H1 operand swizzle
// (half_lo / half_hi fold into it), instead of one PRMT + one LEA per step and row. Values carry 2^-19
// (e2m1 * 2^-126 times s * 2^107); the epilogue multiplies by 2^19 / g_w.
constexpr float TWO_POW_19 = 524288.0f;
constexpr uint32_t PAIR_MASK = 0x0ff00ff0u, PAIR_BIAS = 0x70007000u;  // 224 << 7 in both halves

__device__ __forceinline__ uint32_t mask_or_bias(uint32_t a, uint32_t bias_reg) {
    uint32_t d;  // (a & PAIR_MASK) | bias in one LOP3 (the bias in a register, the mask as the immediate)
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(PAIR_MASK), "r"(bias_reg));
    return d;
}

// Row scale word -> (s0, s2) and (s1, s3) as bf16x2 * 2^107; bias_reg holds PAIR_BIAS.
__device__ __forceinline__ void scale_pairs(uint32_t w, uint32_t bias_reg, uint32_t& p02, uint32_t& p13) {
    p02 = mask_or_bias(w, bias_reg);
    p13 = mask_or_bias(__funnelshift_r(w, w, 8), bias_reg);
}

// The scale of step j (0..3) of a row as a bf16x2 with both halves equal: a half of p02 / p13.
__device__ __forceinline__ uint32_t half_lo(uint32_t p) {
    uint32_t d;
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %1; mov.b32 %0, {l, l}; }" : "=r"(d) : "r"(p));
    return d;
}
__device__ __forceinline__ uint32_t half_hi(uint32_t p) {
    uint32_t d;
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %1; mov.b32 %0, {h, h}; }" : "=r"(d) : "r"(p));
    return d;
}
__device__ __forceinline__ uint32_t pair_step(uint32_t p02, uint32_t p13, int j) {
    return j == 0 ? half_lo(p02) : j == 1 ? half_lo(p13) : j == 2 ? half_hi(p02) : half_hi(p13);
}

