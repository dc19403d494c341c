// nvfp4_quant_exp.cu: a measured step of the swizzled NVFP4 quantizer (scripts/gpu_quant_exp.py): v5 with
// persistent CTAs. The helpers are nvfp4.cu's (same fp32 operations: bit-identical codes and scale bytes).
#include "wb_common.cuh"
#include "wb_nvfp4.cuh"

__device__ __forceinline__ uint32_t prmt_b32(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}
__device__ __forceinline__ uint32_t bf16x2_absmax(uint32_t a, uint32_t b) {
    uint32_t d;  // max(|a|, |b|) per half; the sign bit is the xor of the signs (masked off later)
    asm("max.xorsign.abs.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}
// max |x| over 16 bf16 (two 16-byte chunks), exact, as fp32.
__device__ __forceinline__ float absmax16(const u32x4& a, const u32x4& b) {
    uint32_t m = bf16x2_absmax(bf16x2_absmax(bf16x2_absmax(a.x, a.y), bf16x2_absmax(a.z, a.w)),
                               bf16x2_absmax(bf16x2_absmax(b.x, b.y), bf16x2_absmax(b.z, b.w)));
    m &= 0x7fff7fffu;
    return fmaxf(__uint_as_float(m << 16), __uint_as_float(m & 0xffff0000u));
}
// E2M1 code (3-bit magnitude) of a >= 0, already clamped to 6, placed at bits 22-24.
// M = 2^(max(e(a), 0) + 22) straight from the bits: bits(a) + (22 << 23) is bits(a * 2^22) for a normal a, the
// integer max with bits(2^22) stands for max(a, 1) (zero and subnormal a included), and the mask keeps the
// exponent. ptxas fuses the add and the max (VIADDMNMX): one instruction per element fewer than
// max, mask, multiply (2-4% of the quantizer's time on an H200: docs/notes_wo_gemm.md, twentieth pass).
__device__ __forceinline__ uint32_t e2m1_mag_bits22(float a) {
    const int e = max((int)__float_as_uint(a) + (22 << 23), 0x4a800000);  // 0x4a800000 = bits(2^22)
    const float m = __uint_as_float((uint32_t)e & 0x7f800000u);           // 2^(max(e(a), 0) + 22)
    const float r = __fsub_rn(__fadd_rn(a, m), m);
    return __float_as_uint(__fmul_rn(r, 1.17549435e-38f));  // r * 2^-126: code << 22
}
// 8 bf16 (one 16-byte chunk) times qscale -> 8 codes, element 0 in the low nibble.
__device__ __forceinline__ uint32_t encode8_v3(const u32x4& v, float q) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t c[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        c[2 * i] = e2m1_mag_bits22(fminf(fabsf(__uint_as_float(w[i] << 16)) * q, 6.0f));
        c[2 * i + 1] = e2m1_mag_bits22(fminf(fabsf(__uint_as_float(w[i] & 0xffff0000u)) * q, 6.0f));
    }
    const uint32_t mags = ((c[0] >> 22) | (c[1] >> 18) | (c[2] >> 14)) | ((c[3] >> 10) | (c[4] >> 6) | (c[5] >> 2)) |
                          ((c[6] << 2) | (c[7] << 6));
    // signs: P holds the sign bits of elements 0, 2, 1, 3 at bits 7, 15, 23, 31; Q those of 4, 6, 5, 7.
    const uint32_t P = prmt_b32(v.x, v.y, 0x7351u), Q = prmt_b32(v.z, v.w, 0x7351u);
    const uint32_t signs = ((P >> 4) & 0x0808u) | ((P >> 16) & 0x8080u) | ((Q << 12) & 0x08080000u) |
                           (Q & 0x80800000u);
    return mags | signs;
}


// v7: v5 (a lane per block) with persistent CTAs: grid = gridDim.x CTAs, each walks tiles blockIdx.x,
// blockIdx.x + gridDim.x, ... (tile t: k segment t % n_seg, row tile t / n_seg), so the scale table is built
// once per CTA and each CTA's next tile's loads follow its previous tile's stores without a CTA launch between.
template <int NB, int U>
__global__ void __launch_bounds__(256) nvfp4_quantize_v7(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    constexpr int WARPS = 8, ROWS = 128, SF_BYTES = ROWS * NB;
    constexpr int UNITS = NB, LPR = UNITS < 32 ? UNITS : 32, RPL = 32 / LPR, SEGS = UNITS / LPR, LD = 2;
    constexpr int RPI = WARPS * U * RPL;
    static_assert(NB % 8 == 0 && NB <= 64 && ROWS % RPI == 0, "NB, U");
    __shared__ float qtable[256];
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / LPR, cl = lane % LPR;
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int n_seg = (KB + NB - 1) / NB, n_tiles = n_seg * ((M + ROWS - 1) / ROWS);
    if (g_stride == 0) {
        const float g_inv = 1.0f / g_in[0];
        for (int s = threadIdx.x; s < 256; s += blockDim.x) qtable[s] = nvfp4_block_qscale((uint8_t)s, g_inv);
    }
#pragma unroll 1
    for (int tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        const int kb0 = (tile % n_seg) * NB, row0 = (tile / n_seg) * ROWS;
        const int nkb = min(NB, KB - kb0);
        if (swizzled)
            for (int i = threadIdx.x; i < SF_BYTES / 16; i += blockDim.x)
                reinterpret_cast<u32x4*>(sf_tile)[i] = u32x4{0, 0, 0, 0};
        __syncthreads();
#pragma unroll 1
        for (int it = 0; it < ROWS; it += RPI) {
            u32x4 v[U][SEGS][LD];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int row = row0 + it + (u * WARPS + warp) * RPL + sub;
                const u32x4* xr = reinterpret_cast<const u32x4*>(x + (long long)row * K) + 2 * kb0;
#pragma unroll
                for (int s = 0; s < SEGS; ++s) {
                    const int c = s * LPR + cl;
#pragma unroll
                    for (int l = 0; l < LD; ++l) {
                        v[u][s][l] = u32x4{0, 0, 0, 0};
                        if (row < M && c < nkb) v[u][s][l] = ld16_stream(xr + LD * c + l);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int rl = it + (u * WARPS + warp) * RPL + sub, row = row0 + rl;
                const float g = g_in[(long long)min(row, M - 1) * g_stride];
                uint32_t* cr = reinterpret_cast<uint32_t*>(codes + (long long)row * (K >> 1)) + 2 * kb0;
#pragma unroll
                for (int s = 0; s < SEGS; ++s) {
                    const int c = s * LPR + cl, j = c;
                    const float m = absmax16(v[u][s][0], v[u][s][1]);
                    const uint8_t sb = nvfp4_block_scale(m, g);
                    const float q = g_stride == 0 ? qtable[sb] : nvfp4_block_qscale(sb, 1.0f / g);
                    if (row < M && c < nkb) {
                        reinterpret_cast<uint2*>(cr)[c] = make_uint2(encode8_v3(v[u][s][0], q), encode8_v3(v[u][s][1], q));
                        if (swizzled)
                            sf_tile[(j >> 2) * 512 + (rl & 31) * 16 + (rl >> 5) * 4 + (j & 3)] = sb;
                        else
                            sf[(long long)row * KB + kb0 + j] = sb;
                    }
                }
            }
        }
        if (swizzled) {
            __syncthreads();
            const int ntiles = min(NB, kb_padded - kb0) >> 2;
            u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
            for (int i = threadIdx.x; i < ntiles * 32; i += blockDim.x) dst[i] = reinterpret_cast<const u32x4*>(sf_tile)[i];
        }
    }
}
// @instantiate nvfp4_quantize_v7<16, 2>
// @instantiate nvfp4_quantize_v7<8, 2>
// @instantiate nvfp4_quantize_v7<8, 4>
// @instantiate nvfp4_quantize_v7<32, 2>
// @instantiate nvfp4_quantize_v7<16, 1>
