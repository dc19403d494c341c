// wb_nvfp4.cuh: NVFP4 element and scale helpers shared by the quantize, dequantize, GEMM and
// communication kernels (Hopper has no FP4 convert instruction, so this is the software path).
//
// Format (reference/techniques.md 1.1): a 4-bit E2M1 code, bit 3 = sign, magnitude codes 0..7 =
// 0, 0.5, 1, 1.5, 2, 3, 4, 6; one E4M3 scale per 16 elements along K; an fp32 global scale.
// The Python reference (workbench/techniques/nvfp4.py) defines the exact recipe these mirror.
#pragma once
#include "wb_common.cuh"

// Decoded value of a 4-bit code (the low 4 bits of code4). Exact in fp32.
// Built from the bits: exponent field e = (code >> 1) & 3, mantissa m = code & 1;
// e == 0 -> 0.5 * m, else 2^(e-1) * (1 + m/2); that is an fp32 with exponent e - 1 + 127 and the
// mantissa bit at position 22.
__device__ __forceinline__ float e2m1_decode(uint32_t code4) {
    const uint32_t e = (code4 >> 1) & 3u, m = code4 & 1u;
    const uint32_t mag_bits = e ? (((e + 126u) << 23) | (m << 22)) : (m ? 0x3f000000u : 0u);
    return __uint_as_float(mag_bits | ((code4 & 8u) << 28));
}

// fp32 -> 4-bit code, round-to-nearest-even on the E2M1 grid, |v| > 6 saturates to 6, the sign bit
// is v's sign bit (so -0.1 -> 8, "-0", as the sm_100 cvt.rn.satfinite.e2m1x2 does). This is the tie
// table of techniques.md 1.3 (|v| <= 0.25 -> 0, [0.75,1.25] -> 1, [1.75,2.5] -> 2, [3.5,5] -> 4, the
// odd codes strictly between), computed with float rounding instead of 7 comparisons:
// - |v| < 1 (E2M1 subnormals, step 0.5): |v| + 2^22 rounds to a multiple of 0.5 (the ulp of 2^22) with
//   RNE; the integer difference of the bits is the number of 0.5 steps = the code (0, 1 or 2).
// - |v| >= 1: round the fp32 mantissa to one bit with RNE on the integer bits, move the exponent bias
//   from 127 to 1, and read exponent|mantissa as the code; saturate at 7 (= 6.0).
// A NaN gives an unspecified code. Checked exhaustively against the Python tie table.
__device__ __forceinline__ uint32_t e2m1_encode_rne(float v) {
    const uint32_t bits = __float_as_uint(v);
    const uint32_t a = bits & 0x7fffffffu;
    const float af = __uint_as_float(a);
    const uint32_t sub = __float_as_uint(__fadd_rn(af, 4194304.0f)) - 0x4a800000u;
    const uint32_t nrm = (a + 0x1fffffu + ((a >> 22) & 1u) - (126u << 23)) >> 22;
    const uint32_t c = af < 1.0f ? sub : min(nrm, 7u);
    return c | ((bits >> 28) & 8u);
}

// The same rounding by counting thresholds (the tie table written out; slower, kept as the
// readable definition and for cross-checks): at a tie the comparison is >= when the upper
// neighbour is even and > when it is odd.
__device__ __forceinline__ uint32_t e2m1_encode_rne_compare(float v) {
    const float a = fabsf(v);
    uint32_t c = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) +
                 (a > 5.0f);
    return c | ((__float_as_uint(v) >> 28) & 8u);
}

// Byte offset of scale S[m, kb] in the 128x4 swizzled layout (techniques.md 1.4): 128-row x 4-column
// tiles of 512 bytes, row-tile-major then k-tile; inside a tile (m%32)*16 + ((m%128)/32)*4 + kb%4.
// kb_padded = roundup(K/16, 4).
__device__ __forceinline__ long long swizzled_sf_offset(int m, int kb, int kb_padded) {
    return ((long long)(m >> 7) * (kb_padded >> 2) + (kb >> 2)) * 512 + (m & 31) * 16 + ((m & 127) >> 5) * 4 +
           (kb & 3);
}

// Scale byte of one 16-element block, exact recipe: sf_f32 = min(g * (vmax / 6), 448), RNE to E4M3.
__device__ __forceinline__ uint8_t nvfp4_block_scale(float vmax, float g) {
    return f32_to_e4m3(fminf(g * (vmax / 6.0f), 448.0f));
}

// Multiplier applied to the block's elements before encoding: 1 / (float(sf) * (1 / g)), or 0.
__device__ __forceinline__ float nvfp4_block_qscale(uint8_t sf, float g_inv) {
    const float s = e4m3_to_f32(sf);
    return s != 0.0f ? 1.0f / (s * g_inv) : 0.0f;
}
