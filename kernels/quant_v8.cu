// quant_v8.cu (experiment): v5 with encoder variants. ENC 0: v5's encode8_v3; 1: the code fields
// summed instead of or-ed (disjoint bits, same result; lets ptxas fuse shift+add into LEA.HI);
// 2: as 1 plus the clamp at 6 skipped for blocks whose largest scaled value vmax * q is below 7
// (every element then rounds to at most 6 without it: [6, 7) rounds to 6 in the binade of step 2).
#include "../nvfp4.cu"
#include "wb_tma.cuh"

// The E2M1 magnitude code of a (>= 0, at most 6 or in (6, 7)) at bits 22-24, by one FMA instead of an add
// and a multiply: with M' = 2^(max(e(a), 0) - 104) = M * 2^-126, fma(a, 2^-126, M') is 2^-126 * fl(a + M)
// (the scaling by a power of two commutes with the single rounding while the sum stays normal, and
// M' >= 2^-104 keeps it so), and subtracting M' is exact: r * 2^-126, the code's bits at 22.
__device__ __forceinline__ uint32_t e2m1_mag_bits22_fma(float a) {
    const int e = max((int)__float_as_uint(a) - (104 << 23), 0x0b800000);  // 0x0b800000 = bits(2^-104)
    const float mp = __uint_as_float((uint32_t)e & 0x7f800000u);          // M'
    return __float_as_uint(__fsub_rn(__fmaf_rn(a, 1.17549435e-38f, mp), mp));
}
template <bool CLAMP, bool FMA = false>
__device__ __forceinline__ uint32_t encode8_sum(const u32x4& v, float q) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t c[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float lo = fabsf(__uint_as_float(w[i] << 16)) * q, hi = fabsf(__uint_as_float(w[i] & 0xffff0000u)) * q;
        if (CLAMP) { lo = fminf(lo, 6.0f); hi = fminf(hi, 6.0f); }
        c[2 * i] = FMA ? e2m1_mag_bits22_fma(lo) : e2m1_mag_bits22(lo);
        c[2 * i + 1] = FMA ? e2m1_mag_bits22_fma(hi) : e2m1_mag_bits22(hi);
    }
    const uint32_t mags = (c[0] >> 22) + (c[1] >> 18) + (c[2] >> 14) + (c[3] >> 10) + (c[4] >> 6) + (c[5] >> 2) +
                          (c[6] << 2) + (c[7] << 6);
    const uint32_t P = prmt_b32(v.x, v.y, 0x7351u), Q = prmt_b32(v.z, v.w, 0x7351u);
    const uint32_t signs = ((P >> 4) & 0x0808u) | ((P >> 16) & 0x8080u) | ((Q << 12) & 0x08080000u) |
                           (Q & 0x80800000u);
    return mags + signs;
}
template <int ENC>
__device__ __forceinline__ uint32_t encode8_v8(const u32x4& v, float q, float vmax) {
    if constexpr (ENC == 0) return encode8_v3(v, q);
    if constexpr (ENC == 1) return encode8_sum<true>(v, q);
    if constexpr (ENC == 2) return vmax * q < 7.0f ? encode8_sum<false>(v, q) : encode8_sum<true>(v, q);
    if constexpr (ENC == 3) return encode8_sum<true, true>(v, q);
    if constexpr (ENC == 9) return v.x ^ v.y ^ v.z ^ v.w;  // diagnostic twin: no encode (output meaningless)
    if constexpr (ENC == 4) return vmax * q < 7.0f ? encode8_sum<false, true>(v, q) : encode8_sum<true, true>(v, q);
}

template <int NB, int U, bool SPLIT, int ENC>
__global__ void __launch_bounds__(256) nvfp4_quantize_v8(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    constexpr int WARPS = 8, ROWS = 128, SF_BYTES = ROWS * NB;
    // SPLIT: a lane holds one 16-byte chunk (half a block) per load, pairs of lanes share a block.
    // Otherwise a lane holds a whole block (two 16-byte loads 16 bytes apart, as v1/v3): half the
    // per-block math (the scale byte, its multiplier) per element, for sectors read in two halves.
    constexpr int UNITS = SPLIT ? 2 * NB : NB;   // per-lane units (chunks or blocks) per row segment
    constexpr int LPR = UNITS < 32 ? UNITS : 32;  // lanes per row
    constexpr int RPL = 32 / LPR, SEGS = UNITS / LPR;  // rows per warp step, units per row per lane
    constexpr int LD = SPLIT ? 1 : 2;             // 16-byte loads per unit
    constexpr int RPI = WARPS * U * RPL;          // rows per CTA iteration
    static_assert(NB % 8 == 0 && NB <= 64 && ROWS % RPI == 0, "NB, U");
    __shared__ float qtable[256];
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / LPR, cl = lane % LPR;
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int kb0 = blockIdx.x * NB, row0 = blockIdx.y * ROWS;
    const int nkb = min(NB, KB - kb0);  // valid blocks of this CTA's row segment
    const int n_units = SPLIT ? 2 * nkb : nkb;
    if (g_stride == 0) {
        const float g_inv = 1.0f / g_in[0];
        for (int s = threadIdx.x; s < 256; s += blockDim.x) qtable[s] = nvfp4_block_qscale((uint8_t)s, g_inv);
    }
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
                    if (row < M && c < n_units) v[u][s][l] = ld16_stream(xr + LD * c + l);
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
                const int c = s * LPR + cl, j = SPLIT ? c >> 1 : c;  // unit and block within the segment
                float m;
                if constexpr (SPLIT) {
                    m = absmax8_v5(v[u][s][0]);
                    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));  // all lanes: the pair shares a block
                } else {
                    m = absmax16(v[u][s][0], v[u][s][LD - 1]);
                }
                const uint8_t sb = nvfp4_block_scale(m, g);
                const float q = g_stride == 0 ? qtable[sb] : nvfp4_block_qscale(sb, 1.0f / g);
                if (row < M && c < n_units) {
                    if constexpr (SPLIT) {
                        cr[c] = encode8_v8<ENC>(v[u][s][0], q, m);
                    } else {
                        reinterpret_cast<uint2*>(cr)[c] =
                            make_uint2(encode8_v8<ENC>(v[u][s][0], q, m), encode8_v8<ENC>(v[u][s][LD - 1], q, m));
                    }
                    if (!SPLIT || !(lane & 1)) {
                        if (swizzled)
                            sf_tile[(j >> 2) * 512 + (rl & 31) * 16 + (rl >> 5) * 4 + (j & 3)] = sb;
                        else
                            sf[(long long)row * KB + kb0 + j] = sb;
                    }
                }
            }
        }
    }
    if (!swizzled) return;
    __syncthreads();
    // This CTA's tiles: rows row0..row0+127, k-tiles kb0/4 .. (kb0 + min(NB, kb_padded - kb0))/4 - 1.
    const int ntiles = min(NB, kb_padded - kb0) >> 2;
    u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
    for (int i = threadIdx.x; i < ntiles * 32; i += blockDim.x) dst[i] = reinterpret_cast<const u32x4*>(sf_tile)[i];
}

// v9 (experiment): v5's non-split loop (a lane holds a 16-element block) fed from shared memory by the bulk-copy
// engine instead of by ld.global into registers, so the bytes in flight no longer depend on how many warps are
// between encodes: at the start the CTA issues one cp.async.bulk per row of its 128 x NB-block tile (all of it:
// NB * 32 bytes per row, 64 KB at NB = 16), counted on one mbarrier per row step; warps encode a row step as soon
// as its barrier completes. SWAP: lanes 4-7 of each quarter warp read their block's second half first, so a
// quarter warp's 16-byte shared loads hit 8 distinct bank groups (with a 32-byte stride they conflict 2-way).
template <int NB, int U, int ENC, bool SWAP>
__global__ void __launch_bounds__(256) nvfp4_quantize_v9(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    constexpr int WARPS = 8, ROWS = 128, SF_BYTES = ROWS * NB;
    constexpr int LPR = NB < 32 ? NB : 32, RPL = 32 / LPR, SEGS = NB / LPR;
    constexpr int RPI = WARPS * U * RPL, STEPS = ROWS / RPI;  // rows per step; steps (and barriers) per CTA
    constexpr int ROWB = NB * 32;                              // shared bytes per row
    static_assert(NB % 8 == 0 && NB <= 32 && ROWS % RPI == 0, "NB, U");
    extern __shared__ __align__(128) uint8_t xs[];  // ROWS * ROWB
    __shared__ float qtable[256];
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    __shared__ __align__(8) uint64_t bars[STEPS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / LPR, cl = lane % LPR;
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int kb0 = blockIdx.x * NB, row0 = blockIdx.y * ROWS;
    const int nkb = min(NB, KB - kb0), nrows = min(ROWS, M - row0);
    const uint32_t xs0 = smem_addr(xs), bar0 = smem_addr(bars);
    if (threadIdx.x == 0) {
        for (int t = 0; t < STEPS; ++t) mbar_init(bar0 + 8 * t, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (int t = 0; t < STEPS; ++t)
            mbar_arrive_expect_tx(bar0 + 8 * t, (uint32_t)(min(max(nrows - t * RPI, 0), RPI) * nkb * 32));
    }
    if (g_stride == 0) {
        const float g_inv = 1.0f / g_in[0];
        for (int t = threadIdx.x; t < 256; t += blockDim.x) qtable[t] = nvfp4_block_qscale((uint8_t)t, g_inv);
    }
    if (swizzled)
        for (int i = threadIdx.x; i < SF_BYTES / 16; i += blockDim.x)
            reinterpret_cast<u32x4*>(sf_tile)[i] = u32x4{0, 0, 0, 0};
    __syncthreads();
    if (threadIdx.x < nrows)
        bulk_load(xs0 + threadIdx.x * ROWB, x + (long long)(row0 + threadIdx.x) * K + kb0 * 16, nkb * 32,
                  bar0 + 8 * (threadIdx.x / RPI));
    const bool swap = SWAP && ((lane >> 2) & 1);
#pragma unroll 1
    for (int it = 0; it < STEPS; ++it) {
        mbar_wait(bar0 + 8 * it, 0);
        u32x4 v[U][SEGS][2];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int rl = it * RPI + (u * WARPS + warp) * RPL + sub;
#pragma unroll
            for (int s = 0; s < SEGS; ++s) {
                const int c = s * LPR + cl;
                v[u][s][0] = v[u][s][1] = u32x4{0, 0, 0, 0};
                if (rl < nrows && c < nkb) {
                    const uint32_t a = xs0 + rl * ROWB + c * 32 + (swap ? 16 : 0);
                    v[u][s][0] = lds16(a);
                    v[u][s][1] = lds16(a ^ 16);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int rl = it * RPI + (u * WARPS + warp) * RPL + sub, row = row0 + rl;
            const float g = g_in[(long long)min(row, M - 1) * g_stride];
            uint2* cr = reinterpret_cast<uint2*>(codes + (long long)row * (K >> 1)) + kb0;
#pragma unroll
            for (int s = 0; s < SEGS; ++s) {
                const int c = s * LPR + cl;
                const float m = ENC == 9 ? 1.0f : absmax16(v[u][s][0], v[u][s][1]);
                const uint8_t sb = nvfp4_block_scale(m, g);
                const float q = g_stride == 0 ? qtable[sb] : nvfp4_block_qscale(sb, 1.0f / g);
                if (rl < nrows && c < nkb) {
                    const uint32_t e0 = encode8_v8<ENC>(v[u][s][0], q, m), e1 = encode8_v8<ENC>(v[u][s][1], q, m);
                    cr[c] = swap ? make_uint2(e1, e0) : make_uint2(e0, e1);
                    if (swizzled)
                        sf_tile[(c >> 2) * 512 + (rl & 31) * 16 + (rl >> 5) * 4 + (c & 3)] = sb;
                    else
                        sf[(long long)row * KB + kb0 + c] = sb;
                }
            }
        }
    }
    if (!swizzled) return;
    __syncthreads();
    const int ntiles = min(NB, kb_padded - kb0) >> 2;
    u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
    for (int i = threadIdx.x; i < ntiles * 32; i += blockDim.x) dst[i] = reinterpret_cast<const u32x4*>(sf_tile)[i];
}


// v10 (experiment): v9 made persistent with BUFS tile buffers, so a CTA's next tiles are in flight while it encodes
// the current one. CTA b takes tiles b, b + gridDim.x, ... (tile = 128 rows x NB blocks, column strips fastest);
// buffer i % BUFS holds tile i; its STEPS barriers complete once per use (parity = (i / BUFS) & 1). After a
// tile is encoded and its scale tile written, the CTA syncs and refills the buffer with tile i + BUFS.
template <int NB, int U, int ENC, int BUFS>
__global__ void __launch_bounds__(256) nvfp4_quantize_v10(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    constexpr int WARPS = 8, ROWS = 128, SF_BYTES = ROWS * NB;
    constexpr int LPR = NB < 32 ? NB : 32, RPL = 32 / LPR, SEGS = NB / LPR;
    constexpr int RPI = WARPS * U * RPL, STEPS = ROWS / RPI;
    constexpr int ROWB = NB * 32, TILEB = ROWS * ROWB;
    static_assert(NB % 8 == 0 && NB <= 32 && ROWS % RPI == 0, "NB, U");
    extern __shared__ __align__(128) uint8_t xs[];  // BUFS * TILEB
    __shared__ float qtable[256];
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    __shared__ __align__(8) uint64_t bars[BUFS * STEPS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / LPR, cl = lane % LPR;
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int strips = (KB + NB - 1) / NB, ntile = strips * ((M + ROWS - 1) / ROWS);
    const uint32_t xs0 = smem_addr(xs), bar0 = smem_addr(bars);
    const bool swap = (lane >> 2) & 1;
    // Issue tile t into buffer b: expect the bytes of each step, then one bulk copy per row (threads 0..127).
    auto issue = [&](int t, int b) {
        const int kb0 = (t % strips) * NB, row0 = (t / strips) * ROWS;
        const int nkb = min(NB, KB - kb0), nrows = min(ROWS, M - row0);
        if (threadIdx.x < STEPS)
            mbar_arrive_expect_tx(bar0 + 8 * (b * STEPS + threadIdx.x),
                                  (uint32_t)(min(max(nrows - (int)threadIdx.x * RPI, 0), RPI) * nkb * 32));
        if (threadIdx.x < nrows)
            bulk_load(xs0 + b * TILEB + threadIdx.x * ROWB, x + (long long)(row0 + threadIdx.x) * K + kb0 * 16,
                      nkb * 32, bar0 + 8 * (b * STEPS + threadIdx.x / RPI));
    };
    if (threadIdx.x == 0) {
        for (int i = 0; i < BUFS * STEPS; ++i) mbar_init(bar0 + 8 * i, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (g_stride == 0) {
        const float g_inv = 1.0f / g_in[0];
        for (int t = threadIdx.x; t < 256; t += blockDim.x) qtable[t] = nvfp4_block_qscale((uint8_t)t, g_inv);
    }
    for (int i = threadIdx.x; i < SF_BYTES / 16; i += blockDim.x) reinterpret_cast<u32x4*>(sf_tile)[i] = u32x4{0, 0, 0, 0};
    __syncthreads();
    for (int i = 0; i < BUFS; ++i)
        if (blockIdx.x + i * gridDim.x < ntile) issue(blockIdx.x + i * gridDim.x, i);
#pragma unroll 1
    for (int i = 0, t = blockIdx.x; t < ntile; ++i, t += gridDim.x) {
        const int b = i % BUFS;
        const uint32_t parity = (i / BUFS) & 1;
        const int kb0 = (t % strips) * NB, row0 = (t / strips) * ROWS;
        const int nkb = min(NB, KB - kb0), nrows = min(ROWS, M - row0);
        const uint32_t tile0 = xs0 + b * TILEB;
#pragma unroll 1
        for (int it = 0; it < STEPS; ++it) {
            mbar_wait(bar0 + 8 * (b * STEPS + it), parity);
            u32x4 v[U][SEGS][2];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int rl = it * RPI + (u * WARPS + warp) * RPL + sub;
#pragma unroll
                for (int s = 0; s < SEGS; ++s) {
                    const int c = s * LPR + cl;
                    v[u][s][0] = v[u][s][1] = u32x4{0, 0, 0, 0};
                    if (rl < nrows && c < nkb) {
                        const uint32_t a = tile0 + rl * ROWB + c * 32 + (swap ? 16 : 0);
                        v[u][s][0] = lds16(a);
                        v[u][s][1] = lds16(a ^ 16);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int rl = it * RPI + (u * WARPS + warp) * RPL + sub, row = row0 + rl;
                const float g = g_in[(long long)min(row, M - 1) * g_stride];
                uint2* cr = reinterpret_cast<uint2*>(codes + (long long)row * (K >> 1)) + kb0;
#pragma unroll
                for (int s = 0; s < SEGS; ++s) {
                    const int c = s * LPR + cl;
                    const float m = ENC == 9 ? 1.0f : absmax16(v[u][s][0], v[u][s][1]);
                    const uint8_t sb = nvfp4_block_scale(m, g);
                    const float q = g_stride == 0 ? qtable[sb] : nvfp4_block_qscale(sb, 1.0f / g);
                    if (rl < nrows && c < nkb) {
                        const uint32_t e0 = encode8_v8<ENC>(v[u][s][0], q, m), e1 = encode8_v8<ENC>(v[u][s][1], q, m);
                        cr[c] = swap ? make_uint2(e1, e0) : make_uint2(e0, e1);
                        if (swizzled)
                            sf_tile[(c >> 2) * 512 + (rl & 31) * 16 + (rl >> 5) * 4 + (c & 3)] = sb;
                        else
                            sf[(long long)row * KB + kb0 + c] = sb;
                    }
                }
            }
        }
        __syncthreads();  // every warp is done with buffer b and the scale tile
        if (t + BUFS * gridDim.x < ntile) issue(t + BUFS * gridDim.x, b);
        if (swizzled) {
            const int ntiles = min(NB, kb_padded - kb0) >> 2;
            u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
            for (int j = threadIdx.x; j < ntiles * 32; j += blockDim.x) {
                dst[j] = reinterpret_cast<const u32x4*>(sf_tile)[j];
                reinterpret_cast<u32x4*>(sf_tile)[j] = u32x4{0, 0, 0, 0};
            }
            __syncthreads();
        }
    }
}


// v11 (experiment): v5's layout with the per-block and per-row overhead taken out of the common case. Per-tensor
// given scale and swizzled scales only. A CTA whose 128 x NB tile lies inside the tensor (and g <= 2^100) runs the
// lean body: no bounds checks, pointers advanced by constant strides, g read once, one 8-byte table load per
// block giving both the multiplier q and the clamp bound xc (below), and the clamp at 6 done on bf16 pairs:
// min(|x|, xc) with xc = bf16_rn(6 / q) leaves every element whose code is below 7 unchanged and moves the others
// to xc, whose scaled value fl(xc * q) = 6 (1 +- 2^-8) still encodes to 7 (and any scaled value below 7 rounds to
// at most 6, so the per-element fp32 clamp is not needed). q = 0 gives xc = inf (no clamp; every code 0);
// 6 / q past the bf16 range gives xc = inf too, and then |x| * q < 6.01 for every finite bf16 x. g <= 2^100 keeps
// q finite. Edge CTAs run the general body (bounds checks, per-element clamp): same codes.
__device__ __forceinline__ uint32_t bf16x2_min_abs(uint32_t a, uint32_t b) {
    uint32_t d;  // min(|a|, |b|) per half; the sign bit is the xor of the signs (ignored: only |.| is used)
    asm("min.xorsign.abs.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}
__device__ __forceinline__ uint32_t encode8_lean(const u32x4& v, float q, uint32_t xc2) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t c[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t t = bf16x2_min_abs(w[i], xc2);
        c[2 * i] = e2m1_mag_bits22_fma(fabsf(__uint_as_float(t << 16)) * q);
        c[2 * i + 1] = e2m1_mag_bits22_fma(fabsf(__uint_as_float(t & 0xffff0000u)) * q);
    }
    const uint32_t mags = (c[0] >> 22) + (c[1] >> 18) + (c[2] >> 14) + (c[3] >> 10) + (c[4] >> 6) + (c[5] >> 2) +
                          (c[6] << 2) + (c[7] << 6);
    const uint32_t P = prmt_b32(v.x, v.y, 0x7351u), Q = prmt_b32(v.z, v.w, 0x7351u);
    const uint32_t signs = ((P >> 4) & 0x0808u) | ((P >> 16) & 0x8080u) | ((Q << 12) & 0x08080000u) |
                           (Q & 0x80800000u);
    return mags + signs;
}

template <int NB, int U, bool FULL>
__device__ __forceinline__ void v11_body(const uint16_t* __restrict__ x, int M, int K, float g,
                                         const uint2* __restrict__ qx, uint8_t* __restrict__ codes,
                                         uint8_t* __restrict__ sf_tile, int row0, int kb0, int nkb) {
    constexpr int WARPS = 8, ROWS = 128, LPR = NB < 32 ? NB : 32, RPL = 32 / LPR, SEGS = NB / LPR;
    constexpr int RPI = WARPS * U * RPL;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sub = lane / LPR, cl = lane % LPR;
    const int r_lane = warp * RPL + sub;  // this lane's row within a step, for u = 0
    const uint16_t* xr = x + (long long)(row0 + r_lane) * K + (kb0 + cl) * 16;
    uint2* cr = reinterpret_cast<uint2*>(codes + (long long)(row0 + r_lane) * (K >> 1)) + kb0 + cl;
    const long long xstep = (long long)RPI * K, ustep = (long long)WARPS * RPL * K;
#pragma unroll 1
    for (int it = 0; it < ROWS; it += RPI, xr += xstep, cr += xstep >> 4) {
        u32x4 v[U][SEGS][2];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int s = 0; s < SEGS; ++s) {
                const u32x4* p = reinterpret_cast<const u32x4*>(xr + u * ustep + s * LPR * 16);
                if (FULL || (row0 + it + u * WARPS * RPL + r_lane < M && s * LPR + cl < nkb)) {
                    v[u][s][0] = ld16_stream(p);
                    v[u][s][1] = ld16_stream(p + 1);
                } else {
                    v[u][s][0] = v[u][s][1] = u32x4{0, 0, 0, 0};
                }
            }
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int s = 0; s < SEGS; ++s) {
                const int rl = it + u * WARPS * RPL + r_lane, c = s * LPR + cl;
                const uint8_t sb = nvfp4_block_scale(absmax16(v[u][s][0], v[u][s][1]), g);
                const uint2 t = qx[sb];
                const float q = __uint_as_float(t.x);
                if (FULL || (row0 + rl < M && c < nkb)) {
                    uint2* dst = cr + (u * ustep >> 4) + s * LPR;
                    if (FULL)
                        *dst = make_uint2(encode8_lean(v[u][s][0], q, t.y), encode8_lean(v[u][s][1], q, t.y));
                    else
                        *dst = make_uint2(encode8_sum<true, true>(v[u][s][0], q), encode8_sum<true, true>(v[u][s][1], q));
                    sf_tile[(c >> 2) * 512 + (rl & 31) * 16 + (rl >> 5) * 4 + (c & 3)] = sb;
                }
            }
    }
}

template <int NB, int U>
__global__ void __launch_bounds__(256) nvfp4_quantize_v11(
    const uint16_t* __restrict__ x, int M, int K, const float* __restrict__ g_in, int g_stride,
    uint8_t* __restrict__ codes, uint8_t* __restrict__ sf, int swizzled) {
    constexpr int ROWS = 128, SF_BYTES = ROWS * NB;
    __shared__ uint2 qx[256];  // per scale byte: {bits(q), bf16x2 clamp bound xc in both halves}
    __shared__ __align__(16) uint8_t sf_tile[SF_BYTES];
    const int KB = K >> 4, kb_padded = (KB + 3) & ~3;
    const int kb0 = blockIdx.x * NB, row0 = blockIdx.y * ROWS, nkb = min(NB, KB - kb0);
    const float g = g_in[0];
    {
        const float g_inv = 1.0f / g;
        for (int s = threadIdx.x; s < 256; s += blockDim.x) {
            const float q = nvfp4_block_qscale((uint8_t)s, g_inv);
            uint32_t xc = 0x7f80u;  // inf: no clamp (q = 0, or 6 / q beyond bf16)
            if (q != 0.0f) {
                const uint32_t b = __float_as_uint(6.0f / q);
                xc = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;  // bf16 round-to-nearest-even (positive, finite or inf)
            }
            qx[s] = make_uint2(__float_as_uint(q), xc | (xc << 16));
        }
    }
    for (int i = threadIdx.x; i < SF_BYTES / 16; i += blockDim.x) reinterpret_cast<u32x4*>(sf_tile)[i] = u32x4{0, 0, 0, 0};
    __syncthreads();
    if (row0 + ROWS <= M && nkb == NB && g <= 0x1p100f)
        v11_body<NB, U, true>(x, M, K, g, qx, codes, sf_tile, row0, kb0, nkb);
    else
        v11_body<NB, U, false>(x, M, K, g, qx, codes, sf_tile, row0, kb0, nkb);
    __syncthreads();
    const int ntiles = min(NB, kb_padded - kb0) >> 2;
    u32x4* dst = reinterpret_cast<u32x4*>(sf + ((long long)(row0 >> 7) * (kb_padded >> 2) + (kb0 >> 2)) * 512);
    for (int i = threadIdx.x; i < ntiles * 32; i += blockDim.x) dst[i] = reinterpret_cast<const u32x4*>(sf_tile)[i];
}

// @instantiate nvfp4_quantize_v8<16, 2, false, 0>
// @instantiate nvfp4_quantize_v8<8, 4, false, 3>
// @instantiate nvfp4_quantize_v8<16, 4, false, 3>
// @instantiate nvfp4_quantize_v8<16, 2, false, 9>
// @instantiate nvfp4_quantize_v11<16, 2>
// @instantiate nvfp4_quantize_v11<16, 4>
// @instantiate nvfp4_quantize_v11<8, 4>
// @instantiate nvfp4_quantize_v11<8, 2>
// @instantiate nvfp4_quantize_v11<32, 2>
// @instantiate nvfp4_quantize_v11<32, 1>
// @instantiate nvfp4_quantize_v11<16, 1>
