// dequant_exp.cu (experiment): nvfp4_dequantize_v1's grid-stride loop (two blocks per step) with the decode and the
// row lookup varied. MODE 0: v1's decode; 1: the branch-free decode (magnitude bits at bit 22 = e2m1 * 2^-126, times
// 2^126, times the scale, the sign xor-ed in) and a 32-bit row division; 9: no decode (writes the code words
// spread over the output: the access pattern's floor, output meaningless).
#include "../nvfp4.cu"

__device__ __forceinline__ float e2m1_mul_x(uint32_t w, int j, float s) {
    const uint32_t mag = (j <= 5 ? (w << (22 - 4 * j)) : (w >> (4 * j - 22))) & 0x01c00000u;
    const float v = __fmul_rn(__fmul_rn(__uint_as_float(mag), 0x1p126f), s);
    return __uint_as_float(__float_as_uint(v) ^ ((w << (28 - 4 * j)) & 0x80000000u));
}
template <int MODE>
__device__ __forceinline__ void dequant_block_x(uint2 c, float s, void* out, long long i) {
    u32x4* o = reinterpret_cast<u32x4*>(reinterpret_cast<uint16_t*>(out) + i * 16);
    if constexpr (MODE == 9) {
        st16_stream(o, u32x4{c.x, c.y, c.x, c.y});
        st16_stream(o + 1, u32x4{c.y, c.x, c.y, c.x});
    } else if constexpr (MODE == 1) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const uint32_t w = h ? c.y : c.x;
            st16_stream(o + h, u32x4{f32x2_to_bf16x2(e2m1_mul_x(w, 0, s), e2m1_mul_x(w, 1, s)),
                                     f32x2_to_bf16x2(e2m1_mul_x(w, 2, s), e2m1_mul_x(w, 3, s)),
                                     f32x2_to_bf16x2(e2m1_mul_x(w, 4, s), e2m1_mul_x(w, 5, s)),
                                     f32x2_to_bf16x2(e2m1_mul_x(w, 6, s), e2m1_mul_x(w, 7, s))});
        }
    } else {
        dequant_block(c, s, out, i, 0);
    }
}
// bf16 output only.
template <int MODE>
__global__ void __launch_bounds__(256) nvfp4_dequantize_x(
    const uint8_t* __restrict__ codes, const uint8_t* __restrict__ sf, const float* __restrict__ g_in,
    int g_stride, int M, int K, int swizzled, void* __restrict__ out) {
    const int KB = K >> 4;
    const long long n_blocks = (long long)M * KB;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const int kb_padded = (KB + 3) & ~3;
    for (long long i0 = (long long)blockIdx.x * blockDim.x + threadIdx.x; i0 < n_blocks; i0 += 2 * stride) {
        const long long i1 = i0 + stride;
        const bool has1 = i1 < n_blocks;
        const uint2 c0 = *reinterpret_cast<const uint2*>(codes + i0 * 8);
        const uint2 c1 = has1 ? *reinterpret_cast<const uint2*>(codes + i1 * 8) : make_uint2(0, 0);
        int row0, row1 = 0;
        if (MODE == 0) { row0 = (int)(i0 / KB); if (has1) row1 = (int)(i1 / KB); }
        else { row0 = (int)((unsigned)i0 / (unsigned)KB); if (has1) row1 = (int)((unsigned)i1 / (unsigned)KB); }
        const int kb0 = (int)(i0 - (long long)row0 * KB), kb1 = (int)(i1 - (long long)row1 * KB);
        const uint8_t f0 = sf[swizzled ? swizzled_sf_offset(row0, kb0, kb_padded) : i0];
        const float g0 = g_in[(long long)row0 * g_stride];
        uint8_t f1 = 0;
        float g1 = 1.0f;
        if (has1) {
            f1 = sf[swizzled ? swizzled_sf_offset(row1, kb1, kb_padded) : i1];
            g1 = g_in[(long long)row1 * g_stride];
        }
        dequant_block_x<MODE>(c0, e4m3_to_f32(f0) * (1.0f / g0), out, i0);
        if (has1) dequant_block_x<MODE>(c1, e4m3_to_f32(f1) * (1.0f / g1), out, i1);
    }
}

// MODE 2 / 3: a lane per half block (8 elements), so one 16-byte store per lane and a warp's store covers 512
// contiguous bytes (whole sectors; v1's lanes each write a whole block's 32 bytes in two stores, half a sector per
// lane per store). 2: the branch-free decode; 3: v1's decode. 32-bit row division (n_blocks < 2^31 here).
template <int MODE>
__global__ void __launch_bounds__(256) nvfp4_dequantize_h(
    const uint8_t* __restrict__ codes, const uint8_t* __restrict__ sf, const float* __restrict__ g_in,
    int g_stride, int M, int K, int swizzled, void* __restrict__ out) {
    const unsigned KB = K >> 4;
    const unsigned n_half = 2u * M * KB;
    const unsigned stride = gridDim.x * blockDim.x;
    const int kb_padded = (KB + 3) & ~3;
    for (unsigned h0 = blockIdx.x * blockDim.x + threadIdx.x; h0 < n_half; h0 += 2 * stride) {
        const unsigned h1 = h0 + stride;
        const bool has1 = h1 < n_half;
        const uint32_t w0 = reinterpret_cast<const uint32_t*>(codes)[h0];
        const uint32_t w1 = has1 ? reinterpret_cast<const uint32_t*>(codes)[h1] : 0u;
        const unsigned i0 = h0 >> 1, i1 = h1 >> 1;
        const int row0 = i0 / KB, row1 = has1 ? i1 / KB : 0;
        const int kb0 = i0 - row0 * KB, kb1 = i1 - row1 * KB;
        const float s0 = e4m3_to_f32(sf[swizzled ? swizzled_sf_offset(row0, kb0, kb_padded) : (long long)i0]) *
                         (1.0f / g_in[(long long)row0 * g_stride]);
        float s1 = 0.0f;
        if (has1)
            s1 = e4m3_to_f32(sf[swizzled ? swizzled_sf_offset(row1, kb1, kb_padded) : (long long)i1]) *
                 (1.0f / g_in[(long long)row1 * g_stride]);
#pragma unroll
        for (int t = 0; t < 2; ++t) {
            if (t == 1 && !has1) break;
            const uint32_t w = t ? w1 : w0;
            const float s = t ? s1 : s0;
            float v[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = MODE == 2 ? e2m1_mul_x(w, j, s) : e2m1_decode(w >> (4 * j)) * s;
            st16_stream(reinterpret_cast<u32x4*>(out) + (t ? h1 : h0),
                        u32x4{f32x2_to_bf16x2(v[0], v[1]), f32x2_to_bf16x2(v[2], v[3]), f32x2_to_bf16x2(v[4], v[5]),
                              f32x2_to_bf16x2(v[6], v[7])});
        }
    }
}
// @instantiate nvfp4_dequantize_h<2>
// @instantiate nvfp4_dequantize_h<3>
// @instantiate nvfp4_dequantize_x<0>
// @instantiate nvfp4_dequantize_x<1>
// @instantiate nvfp4_dequantize_x<9>
