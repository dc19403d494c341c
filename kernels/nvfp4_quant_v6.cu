// nvfp4_quant_v6.cu: a measured step of the swizzled NVFP4 quantizer (scripts/gpu_quant_v6.py).
//
// On the H200 the recorded quantizer (nvfp4.cu v5) reached 76-80% of copy bandwidth at [8192, 7168]
// (86% at [8192, 16384]) where the H100 reached 89% / 94%. v5 loads a row step, then encodes and stores
// it, then loads the next: while a warp encodes, it has no loads in flight, and the H200 needs ~1.4x the
// bytes in flight of an H100 for its bandwidth. v6 is v5 with a lane per block (SPLIT false) and the next
// row step's loads issued before the current one's math (two register buffers), so every warp keeps one
// step of loads in flight while it encodes.
// MODE 1 is a diagnostic twin: the same loads and the same stores (bytes and places), with the encode
// replaced by a xor of the loaded words: the floor of this access pattern, never validated.
// The helpers below are nvfp4.cu's (same fp32 operations: bit-identical codes and scale bytes).
#include "wb_common.cuh"
#include "wb_nvfp4.cuh"

namespace q6 {
__device__ __forceinline__ uint32_t prmt_b32(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}
__device__ __forceinline__ uint32_t bf16x2_absmax(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("max.xorsign.abs.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}
__device__ __forceinline__ float absmax16(const u32x4& a, const u32x4& b) {
    uint32_t m = bf16x2_absmax(bf16x2_absmax(bf16x2_absmax(a.x, a.y), bf16x2_absmax(a.z, a.w)),
                               bf16x2_absmax(bf16x2_absmax(b.x, b.y), bf16x2_absmax(b.z, b.w)));
    m &= 0x7fff7fffu;
    return fmaxf(__uint_as_float(m << 16), __uint_as_float(m & 0xffff0000u));
}
__device__ __forceinline__ uint32_t e2m1_mag_bits22(float a) {
    const float m = __uint_as_float(__float_as_uint(fmaxf(a, 1.0f)) & 0x7f800000u) * 4194304.0f;
    const float r = __fsub_rn(__fadd_rn(a, m), m);
    return __float_as_uint(__fmul_rn(r, 1.17549435e-38f));
}
__device__ __forceinline__ uint32_t encode8(const u32x4& v, float q) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t c[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        c[2 * i] = e2m1_mag_bits22(fminf(fabsf(__uint_as_float(w[i] << 16)) * q, 6.0f));
        c[2 * i + 1] = e2m1_mag_bits22(fminf(fabsf(__uint_as_float(w[i] & 0xffff0000u)) * q, 6.0f));
    }
    const uint32_t mags = ((c[0] >> 22) | (c[1] >> 18) | (c[2] >> 14)) | ((c[3] >> 10) | (c[4] >> 6) | (c[5] >> 2)) |
                          ((c[6] << 2) | (c[7] << 6));
    const uint32_t P = prmt_b32(v.x, v.y, 0x7351u), Q = prmt_b32(v.z, v.w, 0x7351u);
    const uint32_t signs = ((P >> 4) & 0x0808u) | ((P >> 16) & 0x8080u) | ((Q << 12) & 0x08080000u) |
                           (Q & 0x80800000u);
    return mags | signs;
}
}  // namespace q6

template <int NB, int U>
struct Q6Shape {
    static constexpr int WARPS = 8, ROWS = 128;
    static constexpr int LPR = NB < 32 ? NB : 32;        // lanes per row (a lane per 16-element block)
    static constexpr int RPL = 32 / LPR, SEGS = NB / LPR;  // rows per warp step, blocks per row per lane
    static constexpr int RPI = WARPS * U * RPL;            // rows per CTA step
    static_assert(NB % 8 == 0 && NB <= 64 && ROWS % RPI == 0, "NB, U");
};

template <int NB, int U>
__device__ __forceinline__ void q6_load(u32x4 (&v)[U][Q6Shape<NB, U>::SEGS][2], const uint16_t* __restrict__ x,
                                        int M, int K, int row0, int kb0, int nkb, int it, int warp, int sub, int cl) {
    using S = Q6Shape<NB, U>;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int row = row0 + it + (u * S::WARPS + warp) * S::RPL + sub;
        const u32x4* xr = reinterpret_cast<const u32x4*>(x + (long long)row * K) + 2 * kb0;
#pragma unroll
        for (int s = 0; s < S::SEGS; ++s) {
            const int c = s * S::LPR + cl;
            v[u][s][0] = u32x4{0, 0, 0, 0};
            v[u][s][1] = u32x4{0, 0, 0, 0};
            if (row < M && c < nkb) {
                v[u][s][0] = ld16_stream(xr + 2 * c);
                v[u][s][1] = ld16_stream(xr + 2 * c + 1);
            }
        }
    }
}

// MODE 2: the e2m1 step's power of two from the fp32 bits by one integer add-and-max (VIADDMNMX) and a mask,
// instead of a max, a mask and a multiply: bits(max(a, 1) * 2^22) & exponent = max(bits(a) + 22 << 23,
// bits(2^22)) & exponent for 0 <= a <= 6 (a subnormal or zero a gives 2^22, as max(a, 1) does).
__device__ __forceinline__ uint32_t e2m1_mag_bits22_lean(float a) {
    const int e = max((int)__float_as_uint(a) + (22 << 23), 0x4a800000);  // 0x4a800000: bits(2^22)
    const float m = __uint_as_float((uint32_t)e & 0x7f800000u);
    const float r = __fsub_rn(__fadd_rn(a, m), m);
    return __float_as_uint(__fmul_rn(r, 1.17549435e-38f));
}
__device__ __forceinline__ uint32_t encode8_lean(const u32x4& v, float q) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t c[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        c[2 * i] = e2m1_mag_bits22_lean(fminf(fabsf(__uint_as_float(w[i] << 16)) * q, 6.0f));
        c[2 * i + 1] = e2m1_mag_bits22_lean(fminf(fabsf(__uint_as_float(w[i] & 0xffff0000u)) * q, 6.0f));
    }
    const uint32_t mags = ((c[0] >> 22) | (c[1] >> 18) | (c[2] >> 14)) | ((c[3] >> 10) | (c[4] >> 6) | (c[5] >> 2)) |
                          ((c[6] << 2) | (c[7] << 6));
    const uint32_t P = q6::prmt_b32(v.x, v.y, 0x7351u), Q = q6::prmt_b32(v.z, v.w, 0x7351u);
    const uint32_t signs = ((P >> 4) & 0x0808u) | ((P >> 16) & 0x8080u) | ((Q << 12) & 0x08080000u) |
                           (Q & 0x80800000u);
    return mags | signs;
}

template <int NB, int U, int MODE>
__device__ __forceinline__ void q6_encode(const u32x4 (&v)[U][Q6Shape<NB, U>::SEGS][2], int M, int K,
                                          const float* __restrict__ g_in, int g_stride, const float* qtable,
                                          uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, uint8_t* sf_tile,
                                          int swizzled, int row0, int kb0, int nkb, int it, int warp, int sub, int cl) {
    using S = Q6Shape<NB, U>;
    const int KB = K >> 4;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int rl = it + (u * S::WARPS + warp) * S::RPL + sub, row = row0 + rl;
        const float g = g_in[(long long)min(row, M - 1) * g_stride];
        uint2* cr = reinterpret_cast<uint2*>(codes + (long long)row * (K >> 1)) + kb0;
#pragma unroll
        for (int s = 0; s < S::SEGS; ++s) {
            const int j = s * S::LPR + cl;  // block within the segment
            uint8_t sb;
            uint2 cw;
            if constexpr (MODE == 0 || MODE == 2) {
                sb = nvfp4_block_scale(q6::absmax16(v[u][s][0], v[u][s][1]), g);
                const float q = g_stride == 0 ? qtable[sb] : nvfp4_block_qscale(sb, 1.0f / g);
                if constexpr (MODE == 0)
                    cw = make_uint2(q6::encode8(v[u][s][0], q), q6::encode8(v[u][s][1], q));
                else
                    cw = make_uint2(encode8_lean(v[u][s][0], q), encode8_lean(v[u][s][1], q));
            } else {  // diagnostic twin: the same bytes to the same places, no encode
                cw = make_uint2(v[u][s][0].x ^ v[u][s][0].y ^ v[u][s][0].z ^ v[u][s][0].w,
                                v[u][s][1].x ^ v[u][s][1].y ^ v[u][s][1].z ^ v[u][s][1].w);
                sb = (uint8_t)(cw.x ^ cw.y);
            }
            if (row < M && j < nkb) {
                cr[j] = cw;
                if (swizzled)
                    sf_tile[(j >> 2) * 512 + (rl & 31) * 16 + (rl >> 5) * 4 + (j & 3)] = sb;
                else
                    sf[(long long)row * KB + kb0 + j] = sb;
            }
        }
    }
}

// Grid, arguments and layouts as nvfp4_quantize_v5 (SPLIT false): CTA (blockIdx.x: NB-block segment,
// blockIdx.y: 128-row tile), 256 threads; MINB: CTAs per SM the registers must allow (__launch_bounds__);
// PF false: v5's order (no step of loads in flight during an encode), for the lean encode in v5's structure.
template <int NB, int U, int MODE, int MINB, bool PF = true>
__global__ void __launch_bounds__(256, MINB) nvfp4_quantize_v6(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    using S = Q6Shape<NB, U>;
    constexpr int SF_BYTES = S::ROWS * NB;
    __shared__ float qtable[256];
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / S::LPR, cl = lane % S::LPR;
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int kb0 = blockIdx.x * NB, row0 = blockIdx.y * S::ROWS;
    const int nkb = min(NB, KB - kb0);
    u32x4 va[U][S::SEGS][2], vb[U][S::SEGS][2];
    q6_load<NB, U>(va, x, M, K, row0, kb0, nkb, 0, warp, sub, cl);  // before the table: loads in flight early
    if (g_stride == 0) {
        const float g_inv = 1.0f / g_in[0];
        for (int s = threadIdx.x; s < 256; s += blockDim.x) qtable[s] = nvfp4_block_qscale((uint8_t)s, g_inv);
    }
    if (swizzled)
        for (int i = threadIdx.x; i < SF_BYTES / 16; i += blockDim.x)
            reinterpret_cast<u32x4*>(sf_tile)[i] = u32x4{0, 0, 0, 0};
    __syncthreads();
    if constexpr (!PF) {  // v5's order: a row step's loads, then its encode, then the next step's loads
#pragma unroll 1
        for (int it = 0; it < S::ROWS; it += S::RPI) {
            if (it) q6_load<NB, U>(va, x, M, K, row0, kb0, nkb, it, warp, sub, cl);
            q6_encode<NB, U, MODE>(va, M, K, g_in, g_stride, qtable, codes, sf, sf_tile, swizzled, row0, kb0, nkb, it,
                                   warp, sub, cl);
        }
    } else {
#pragma unroll 1
    for (int it = 0; it < S::ROWS; it += 2 * S::RPI) {
        const bool second = it + S::RPI < S::ROWS;
        if (second) q6_load<NB, U>(vb, x, M, K, row0, kb0, nkb, it + S::RPI, warp, sub, cl);
        q6_encode<NB, U, MODE>(va, M, K, g_in, g_stride, qtable, codes, sf, sf_tile, swizzled, row0, kb0, nkb, it,
                               warp, sub, cl);
        if (second) {
            if (it + 2 * S::RPI < S::ROWS)
                q6_load<NB, U>(va, x, M, K, row0, kb0, nkb, it + 2 * S::RPI, warp, sub, cl);
            q6_encode<NB, U, MODE>(vb, M, K, g_in, g_stride, qtable, codes, sf, sf_tile, swizzled, row0, kb0, nkb,
                                   it + S::RPI, warp, sub, cl);
        }
    }
    }
    if (!swizzled) return;
    __syncthreads();
    const int ntiles = min(NB, kb_padded - kb0) >> 2;
    u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
    for (int i = threadIdx.x; i < ntiles * 32; i += blockDim.x) dst[i] = reinterpret_cast<const u32x4*>(sf_tile)[i];
}

// v6a: the row steps' loads as cp.async copies into a STAGES-deep ring in shared memory, STAGES - 1 steps
// ahead of the step being encoded (each thread reads back only what it copied: no barrier per step).
// One row step per stage (U = 1). Same grid and arguments as nvfp4_quantize_v6.
__device__ __forceinline__ void q6_cp_async16(void* dst, const void* src, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
template <int NB, int STAGES, int MODE, int MINB>
__global__ void __launch_bounds__(256, MINB) nvfp4_quantize_v6a(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    using S = Q6Shape<NB, 1>;
    constexpr int SF_BYTES = S::ROWS * NB, STEPS = S::ROWS / S::RPI, CH = 2 * S::SEGS;
    __shared__ float qtable[256];
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    __shared__ u32x4 ring[STAGES][CH][256];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, sub = lane / S::LPR, cl = lane % S::LPR;
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int kb0 = blockIdx.x * NB, row0 = blockIdx.y * S::ROWS;
    const int nkb = min(NB, KB - kb0);
    auto issue = [&](int step) {
        const int row = row0 + step * S::RPI + warp * S::RPL + sub, st = step % STAGES;
        const u32x4* xr = reinterpret_cast<const u32x4*>(x + (long long)min(row, M - 1) * K) + 2 * kb0;
#pragma unroll
        for (int s = 0; s < S::SEGS; ++s) {
            const int c = s * S::LPR + cl;
            const bool valid = row < M && c < nkb;
            const u32x4* src = xr + 2 * min(c, nkb - 1);
            q6_cp_async16(&ring[st][2 * s][tid], src, valid);
            q6_cp_async16(&ring[st][2 * s + 1][tid], src + 1, valid);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
#pragma unroll
    for (int p = 0; p < STAGES - 1; ++p) {
        if (p < STEPS) issue(p);
        else asm volatile("cp.async.commit_group;" ::: "memory");
    }
    if (g_stride == 0) {
        const float g_inv = 1.0f / g_in[0];
        for (int s = tid; s < 256; s += blockDim.x) qtable[s] = nvfp4_block_qscale((uint8_t)s, g_inv);
    }
    if (swizzled)
        for (int i = tid; i < SF_BYTES / 16; i += blockDim.x) reinterpret_cast<u32x4*>(sf_tile)[i] = u32x4{0, 0, 0, 0};
    __syncthreads();
#pragma unroll 1
    for (int step = 0; step < STEPS; ++step) {
        if (step + STAGES - 1 < STEPS) issue(step + STAGES - 1);
        else asm volatile("cp.async.commit_group;" ::: "memory");
        asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 1) : "memory");
        const int st = step % STAGES;
        u32x4 v[1][S::SEGS][2];
#pragma unroll
        for (int s = 0; s < S::SEGS; ++s) {
            v[0][s][0] = ring[st][2 * s][tid];
            v[0][s][1] = ring[st][2 * s + 1][tid];
        }
        q6_encode<NB, 1, MODE>(v, M, K, g_in, g_stride, qtable, codes, sf, sf_tile, swizzled, row0, kb0, nkb,
                               step * S::RPI, warp, sub, cl);
    }
    if (!swizzled) return;
    __syncthreads();
    const int ntiles = min(NB, kb_padded - kb0) >> 2;
    u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
    for (int i = tid; i < ntiles * 32; i += blockDim.x) dst[i] = reinterpret_cast<const u32x4*>(sf_tile)[i];
}
// @instantiate nvfp4_quantize_v6<8, 1, 0, 6>
// @instantiate nvfp4_quantize_v6<8, 1, 0, 8>
// @instantiate nvfp4_quantize_v6<8, 2, 0, 4>
// @instantiate nvfp4_quantize_v6<8, 2, 0, 5>
// @instantiate nvfp4_quantize_v6<16, 1, 0, 5>
// @instantiate nvfp4_quantize_v6<16, 1, 0, 6>
// @instantiate nvfp4_quantize_v6<16, 2, 0, 4>
// @instantiate nvfp4_quantize_v6<32, 1, 0, 5>
// @instantiate nvfp4_quantize_v6<32, 1, 0, 6>
// @instantiate nvfp4_quantize_v6<32, 2, 0, 4>
// @instantiate nvfp4_quantize_v6<8, 1, 1, 6>
// @instantiate nvfp4_quantize_v6<16, 1, 1, 6>
// @instantiate nvfp4_quantize_v6<16, 2, 1, 4>
// @instantiate nvfp4_quantize_v6<32, 1, 1, 6>
// @instantiate nvfp4_quantize_v6<16, 2, 2, 4>
// @instantiate nvfp4_quantize_v6<8, 2, 2, 4>
// @instantiate nvfp4_quantize_v6a<16, 3, 0, 6>
// @instantiate nvfp4_quantize_v6a<16, 4, 0, 5>
// @instantiate nvfp4_quantize_v6a<16, 3, 2, 6>
// @instantiate nvfp4_quantize_v6a<32, 3, 0, 4>
// @instantiate nvfp4_quantize_v6a<8, 3, 0, 6>
// @instantiate nvfp4_quantize_v6a<16, 3, 1, 6>
// @instantiate nvfp4_quantize_v6<16, 2, 0, 6, false>
// @instantiate nvfp4_quantize_v6<16, 2, 2, 6, false>
// @instantiate nvfp4_quantize_v6<16, 1, 2, 8, false>
// @instantiate nvfp4_quantize_v6<16, 1, 0, 8, false>
// @instantiate nvfp4_quantize_v6<8, 2, 2, 6, false>
// @instantiate nvfp4_quantize_v6<32, 1, 2, 8, false>
// @instantiate nvfp4_quantize_v6<32, 2, 2, 5, false>
