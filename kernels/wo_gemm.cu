// wo_gemm.cu: fused NVFP4 weight-only (W4A16) GEMM for the DeepSeek-R1 wo projection on Hopper.
//
//   out[M, N] (bf16) = x[M, K] (bf16) @ W^T * (1 / g_w),  W given as NVFP4: codes uint8 [N, K/2]
//   (low nibble = even k), E4M3 block scales uint8 [N, K/16] (linear layout), fp32 global scale g_w.
//
// Napkin math (N = 7168, K = 16384): the weight is 58.7 MB of codes + 7.3 MB of scales = 66.1 MB,
// 3.56x less than bf16. At decode (M <= 64) the GEMM is weight-read bound: 16 us at 4.1 TB/s (H200),
// 23 us at 2.9 TB/s (H100), vs 57 / 80 us for the bf16 weight. So the kernel must stream codes near
// copy bandwidth and keep the software decode (no FP4 hardware on Hopper) under the memory time.
//
// v1 w4a16_mma_v1<NT, MT, WARPS, KU, FAST>: tensor cores with the operands swapped (out^T = W x^T):
//   the weight is the mma A operand (16 rows of W per m16 tile), the tokens are the n8 columns, so
//   M = 1..8 tokens costs one n-tile and the decode of each weight element is shared by all NT
//   n-tiles. mma.sync.m16n8k16 bf16 -> fp32.
// - Each thread loads 16 contiguous bytes of codes (32 elements) of its rows g and g+8 per 128-k
//   step; the k order inside a fragment is permuted (k is a dummy index: A and B just have to agree):
//   fragment register pairs are elements (i, i+4) of an 8-element word, so the two nibbles sit 16
//   bits apart and one shift/mask pattern decodes both halves of a bf16x2 at once.
// - FAST decode: bits = (nibble & 7) << 6 | sign << 15 is the bf16 e2m1(code) * 2^-126 (the e = 0
//   codes land on bf16 subnormals, which is why this is exact), then one fma.rn.bf16x2 multiplies by
//   (float(sf) * 2^63) (exact: at most 6 significant bits). The 2^63 keeps the product a normal bf16;
//   the epilogue multiplies by 2^63 / g_w. FAST = false decodes through fp32 (the check variant).
// - The activations of a k-tile are staged in shared memory once per CTA, already permuted, 16-byte
//   chunks XOR-swizzled with a 64-byte row pad, so each thread's 16-byte B-fragment load is
//   conflict-free.
// - Split-K over gridDim.z: partial sums go to an fp32 workspace [N, Mpad] with red.global.add.v2;
//   the last CTA of a tile (a counter per tile) writes bf16 out, and zeroes the workspace and the
//   counter again, so the kernel needs no memset between calls. splits = 1 writes out directly.
// - gridDim.x walks token chunks of NT*8 (M > 64 reuses each weight tile from L2 across chunks).
// v2 w4a16_mma_v2: v1 + the next tile's codes (and activations for NT <= 2) prefetched in registers,
//    x double-buffered in shared memory, one barrier per tile.
// v3 w4a16_mma_v3: v2 with the weight tiles in a STAGES-deep cp.async ring in shared memory, so
//    several tiles per thread are in flight without holding registers (see the v3 comment).
#include "wb_common.cuh"
#include "wb_nvfp4.cuh"
#include "wb_nvfp4_decode.cuh"
#include "wb_tma.cuh"
#include "wb_streamk.cuh"
#include "wb_pdl.cuh"

__device__ __forceinline__ void mma_16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}


// Elements (i, i+4) of the 8 codes in w as a bf16x2 of e2m1 * 2^-126 (FAST path, before scaling).
template <int I>
__device__ __forceinline__ uint32_t e2m1x2_pair_bits(uint32_t w) {
    const uint32_t x = w >> (4 * I);
    return ((x << 6) & 0x01c001c0u) | ((x << 12) & 0x80008000u);
}

// Same pair decoded exactly through fp32 and multiplied by the scale (FAST = false path).
template <int I>
__device__ __forceinline__ uint32_t e2m1x2_pair_scaled_f32(uint32_t w, float s) {
    return f32x2_to_bf16x2(e2m1_decode(w >> (4 * I)) * s, e2m1_decode(w >> (4 * I + 16)) * s);
}

template <bool FAST, int I>
__device__ __forceinline__ uint32_t decode_pair(uint32_t w, uint32_t s_bf16x2, float s_f32) {
    if constexpr (FAST) return bf16x2_fma_zero(e2m1x2_pair_bits<I>(w), s_bf16x2);
    else return e2m1x2_pair_scaled_f32<I>(w, s_f32);
}

__device__ __forceinline__ int chunk_swizzle(int c) { return c ^ ((c >> 2) & 3); }


// Epilogue shared by v1 and v2: splits == 1 writes bf16 out directly; otherwise red.add into the fp32
// workspace, and the last CTA of the tile converts, writes out and zeroes the workspace and counter.
template <int NT, int MT, int WARPS, bool FAST>
__device__ __forceinline__ void gemm_epilogue(float (&acc)[MT][NT][4], const float* __restrict__ g_w,
                                              uint16_t* __restrict__ out, float* __restrict__ ws,
                                              unsigned int* __restrict__ counters, int M, int N, int splits,
                                              int chunk, int rb, int tok0, int row_base, int g, int t) {
    constexpr int TOK = NT * 8, ROWS = WARPS * MT * 16;
    // acc[i][j]: e0,e1 = (weight row g, tokens 2t, 2t+1), e2,e3 = (row g+8, same tokens).
    const float alpha = (1.0f / g_w[0]) * (FAST ? TWO_POW_63 : 1.0f);
    if (splits == 1) {
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int n = row_base + i * 16 + g + 8 * (e >> 1), tok = tok0 + 8 * j + 2 * t + (e & 1);
                    if (n < N && tok < M) out[(long long)tok * N + n] = f32_to_bf16(acc[i][j][e] * alpha);
                }
        return;
    }
    const int mpad = gridDim.x * TOK;
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int n = row_base + i * 16 + g + 8 * h, tok = tok0 + 8 * j + 2 * t;
                if (n < N && tok < M) {
                    float* p = ws + (long long)n * mpad + tok;
                    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" ::"l"(p), "f"(acc[i][j][2 * h]),
                                 "f"(acc[i][j][2 * h + 1])
                                 : "memory");
                }
            }
    __threadfence();
    __syncthreads();
    __shared__ unsigned int is_last;  // one per CTA
    unsigned int* counter = counters + (long long)rb * gridDim.x + chunk;
    if (threadIdx.x == 0) is_last = (atomicAdd(counter, 1u) == (unsigned)(splits - 1));
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const int n_tok = min(TOK, M - tok0);
    const int row0 = rb * ROWS;
    for (int idx = threadIdx.x; idx < ROWS * n_tok; idx += WARPS * 32) {
        const int tok = tok0 + idx / ROWS, n = row0 + idx % ROWS;
        if (n >= N) continue;
        float* p = ws + (long long)n * mpad + tok;
        const float v = __ldcg(p);
        __stcg(p, 0.0f);
        out[(long long)tok * N + n] = f32_to_bf16(v * alpha);
    }
    if (threadIdx.x == 0) *counter = 0u;
}

template <int NT, int MT, int WARPS, int KU, bool FAST>
__global__ void __launch_bounds__(WARPS * 32) w4a16_mma_v1(
    const uint16_t* __restrict__ x, const uint8_t* __restrict__ codes, const uint8_t* __restrict__ sf,
    const float* __restrict__ g_w, uint16_t* __restrict__ out, float* __restrict__ ws,
    unsigned int* __restrict__ counters, int M, int N, int K, int splits) {
    constexpr int TOK = NT * 8;            // tokens per CTA (one chunk)
    constexpr int KT = 128 * KU;           // k per staged tile
    constexpr int CH = KT / 8;             // 16-byte chunks per token row of the tile
    constexpr int ROWB = KT * 2 + 64;      // smem bytes per token row (64-byte pad: conflict-free)
    constexpr int ROWS = WARPS * MT * 16;  // weight rows per CTA
    extern __shared__ __align__(16) uint8_t smem[];

    const int chunk = blockIdx.x, rb = blockIdx.y, split = blockIdx.z;
    const int tok0 = chunk * TOK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int row_base = rb * ROWS + warp * MT * 16;
    const int n_ktiles = K / KT;
    const int kt_begin = (int)((long long)split * n_ktiles / splits);
    const int kt_end = (int)((long long)(split + 1) * n_ktiles / splits);
    const long long code_row = K >> 1, sf_row = K >> 4;

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    for (int kt = kt_begin; kt < kt_end; ++kt) {
        const int k0 = kt * KT;
        // 1. This tile's weight codes and scales into registers (issued before the barrier so the
        //    HBM latency overlaps the activation staging).
        u32x4 wc[KU][MT][2];
        uint32_t wsf[KU][MT][2];
#pragma unroll
        for (int u = 0; u < KU; ++u)
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = row_base + i * 16 + g + 8 * h;
                    if (r < N) {
                        wc[u][i][h] = ld16_stream(codes + r * code_row + ((k0 + 128 * u) >> 1) + 16 * t);
                        wsf[u][i][h] = *reinterpret_cast<const uint16_t*>(sf + r * sf_row + ((k0 + 128 * u) >> 4) + 2 * t);
                    } else {
                        wc[u][i][h] = u32x4{0, 0, 0, 0};
                        wsf[u][i][h] = 0;
                    }
                }
        __syncthreads();  // the previous tile's B reads are done
        // 2. Stage x[tok0 : tok0+TOK, k0 : k0+KT] into smem, each 8-element chunk permuted to
        //    (e0,e4),(e1,e5),(e2,e6),(e3,e7); tokens >= M are zeros.
        for (int c = threadIdx.x; c < TOK * CH; c += WARPS * 32) {
            const int tok = c / CH, ch = c - tok * CH;
            u32x4 v{0, 0, 0, 0};
            if (tok0 + tok < M) v = ld16(x + (long long)(tok0 + tok) * K + k0 + 8 * ch);
            const u32x4 p{prmt(v.x, v.z, 0x5410), prmt(v.x, v.z, 0x7632), prmt(v.y, v.w, 0x5410),
                          prmt(v.y, v.w, 0x7632)};
            st16(smem + tok * ROWB + chunk_swizzle(ch) * 16, p);
        }
        __syncthreads();
        // 3. Decode and multiply.
#pragma unroll
        for (int u = 0; u < KU; ++u) {
            uint32_t sbf[MT][2][2];  // [tile][row half][block] scale * 2^63 as bf16x2
            float sfl[MT][2][2];
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int b = 0; b < 2; ++b) {
                        const float s = e4m3_to_f32((uint8_t)(wsf[u][i][h] >> (8 * b)));
                        sfl[i][h][b] = s;
                        const float s63 = s * TWO_POW_63;
                        sbf[i][h][b] = f32x2_to_bf16x2(s63, s63);
                    }
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                u32x4 bv[NT];
#pragma unroll
                for (int j = 0; j < NT; ++j)
                    bv[j] = ld16(smem + (8 * j + g) * ROWB + chunk_swizzle(16 * u + 4 * t + q) * 16);
#pragma unroll
                for (int hh = 0; hh < 2; ++hh) {
#pragma unroll
                    for (int i = 0; i < MT; ++i) {
                        const uint32_t w0 = word_of(wc[u][i][0], q), w1 = word_of(wc[u][i][1], q);
                        const int b = q >> 1;
                        uint32_t a[4];
                        if (hh == 0) {
                            a[0] = decode_pair<FAST, 0>(w0, sbf[i][0][b], sfl[i][0][b]);
                            a[1] = decode_pair<FAST, 0>(w1, sbf[i][1][b], sfl[i][1][b]);
                            a[2] = decode_pair<FAST, 1>(w0, sbf[i][0][b], sfl[i][0][b]);
                            a[3] = decode_pair<FAST, 1>(w1, sbf[i][1][b], sfl[i][1][b]);
                        } else {
                            a[0] = decode_pair<FAST, 2>(w0, sbf[i][0][b], sfl[i][0][b]);
                            a[1] = decode_pair<FAST, 2>(w1, sbf[i][1][b], sfl[i][1][b]);
                            a[2] = decode_pair<FAST, 3>(w0, sbf[i][0][b], sfl[i][0][b]);
                            a[3] = decode_pair<FAST, 3>(w1, sbf[i][1][b], sfl[i][1][b]);
                        }
#pragma unroll
                        for (int j = 0; j < NT; ++j) {
                            const uint32_t b0 = hh == 0 ? bv[j].x : bv[j].z;
                            const uint32_t b1 = hh == 0 ? bv[j].y : bv[j].w;
                            mma_16816(acc[i][j], a, b0, b1);
                        }
                    }
                }
            }
        }
    }

    gemm_epilogue<NT, MT, WARPS, FAST>(acc, g_w, out, ws, counters, M, N, splits, chunk, rb, tok0, row_base, g, t);
}

// ---------------------------------------------------------------------------------------------------
// v2: the same math, software-pipelined. v1 issues a tile's weight loads, then stages x, then decodes:
// within a CTA the HBM latency of every tile is exposed and the decode ALU time adds to it (v1 ran at
// about half the copy bandwidth at M = 1 on an H200). v2 keeps two tiles in flight: the codes and
// scales of tile kt+1 are loaded into registers (and, for NT <= 2, its activations too) before tile kt
// is decoded and multiplied; x is double-buffered in shared memory, one barrier per tile.
// ---------------------------------------------------------------------------------------------------
template <int KU, int MT>
__device__ __forceinline__ void load_weight_tile(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ sf,
                                                 int row_base, int N, int K, int k0, int g, int t,
                                                 u32x4 (&wc)[KU][MT][2], uint32_t (&wsf)[KU][MT][2]) {
    const long long code_row = K >> 1, sf_row = K >> 4;
#pragma unroll
    for (int u = 0; u < KU; ++u)
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = row_base + i * 16 + g + 8 * h;
                if (r < N) {
                    wc[u][i][h] = ld16_stream(codes + r * code_row + ((k0 + 128 * u) >> 1) + 16 * t);
                    wsf[u][i][h] = *reinterpret_cast<const uint16_t*>(sf + r * sf_row + ((k0 + 128 * u) >> 4) + 2 * t);
                } else {
                    wc[u][i][h] = u32x4{0, 0, 0, 0};
                    wsf[u][i][h] = 0;
                }
            }
}

__device__ __forceinline__ u32x4 permute_chunk(const u32x4& v) {
    return u32x4{prmt(v.x, v.z, 0x5410), prmt(v.x, v.z, 0x7632), prmt(v.y, v.w, 0x5410), prmt(v.y, v.w, 0x7632)};
}

template <int NT, int MT, int KU, bool FAST, int ROWB>
__device__ __forceinline__ void mma_tile(const uint8_t* buf, const u32x4 (&wc)[KU][MT][2],
                                         const uint32_t (&wsf)[KU][MT][2], float (&acc)[MT][NT][4], int g, int t) {
#pragma unroll
    for (int u = 0; u < KU; ++u) {
        uint32_t sbf[MT][2][2];
        float sfl[MT][2][2];
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    const float s = e4m3_to_f32((uint8_t)(wsf[u][i][h] >> (8 * b)));
                    sfl[i][h][b] = s;
                    const float s63 = s * TWO_POW_63;
                    sbf[i][h][b] = f32x2_to_bf16x2(s63, s63);
                }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            u32x4 bv[NT];
#pragma unroll
            for (int j = 0; j < NT; ++j)
                bv[j] = ld16(buf + (8 * j + g) * ROWB + chunk_swizzle(16 * u + 4 * t + q) * 16);
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    const uint32_t w0 = word_of(wc[u][i][0], q), w1 = word_of(wc[u][i][1], q);
                    const int b = q >> 1;
                    uint32_t a[4];
                    if (hh == 0) {
                        a[0] = decode_pair<FAST, 0>(w0, sbf[i][0][b], sfl[i][0][b]);
                        a[1] = decode_pair<FAST, 0>(w1, sbf[i][1][b], sfl[i][1][b]);
                        a[2] = decode_pair<FAST, 1>(w0, sbf[i][0][b], sfl[i][0][b]);
                        a[3] = decode_pair<FAST, 1>(w1, sbf[i][1][b], sfl[i][1][b]);
                    } else {
                        a[0] = decode_pair<FAST, 2>(w0, sbf[i][0][b], sfl[i][0][b]);
                        a[1] = decode_pair<FAST, 2>(w1, sbf[i][1][b], sfl[i][1][b]);
                        a[2] = decode_pair<FAST, 3>(w0, sbf[i][0][b], sfl[i][0][b]);
                        a[3] = decode_pair<FAST, 3>(w1, sbf[i][1][b], sfl[i][1][b]);
                    }
#pragma unroll
                    for (int j = 0; j < NT; ++j)
                        mma_16816(acc[i][j], a, hh == 0 ? bv[j].x : bv[j].z, hh == 0 ? bv[j].y : bv[j].w);
                }
            }
        }
    }
}

template <int NT, int MT, int WARPS, int KU, bool FAST, bool XPF>
__global__ void __launch_bounds__(WARPS * 32) w4a16_mma_v2(
    const uint16_t* __restrict__ x, const uint8_t* __restrict__ codes, const uint8_t* __restrict__ sf,
    const float* __restrict__ g_w, uint16_t* __restrict__ out, float* __restrict__ ws,
    unsigned int* __restrict__ counters, int M, int N, int K, int splits) {
    constexpr int TOK = NT * 8, KT = 128 * KU, CH = KT / 8, ROWB = KT * 2 + 64, ROWS = WARPS * MT * 16;
    constexpr int THREADS = WARPS * 32;
    constexpr int XCH = (TOK * CH + THREADS - 1) / THREADS;  // x chunks per thread per tile
    constexpr int BUF = TOK * ROWB;
    extern __shared__ __align__(16) uint8_t smem[];

    const int chunk = blockIdx.x, rb = blockIdx.y, split = blockIdx.z;
    const int tok0 = chunk * TOK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int row_base = rb * ROWS + warp * MT * 16;
    const int n_ktiles = K / KT;
    const int kt_begin = (int)((long long)split * n_ktiles / splits);
    const int kt_end = (int)((long long)(split + 1) * n_ktiles / splits);

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    auto x_chunk = [&](int c, int k0) -> u32x4 {
        const int tok = c / CH, ch = c - tok * CH;
        u32x4 v{0, 0, 0, 0};
        if (c < TOK * CH && tok0 + tok < M) v = ld16(x + (long long)(tok0 + tok) * K + k0 + 8 * ch);
        return v;
    };
    auto x_store = [&](uint8_t* buf, int c, const u32x4& v) {
        if (c < TOK * CH) {
            const int tok = c / CH, ch = c - tok * CH;
            st16(buf + tok * ROWB + chunk_swizzle(ch) * 16, permute_chunk(v));
        }
    };

    u32x4 wc[KU][MT][2];
    uint32_t wsf[KU][MT][2];
    if (kt_begin < kt_end) {
        load_weight_tile<KU, MT>(codes, sf, row_base, N, K, kt_begin * KT, g, t, wc, wsf);
#pragma unroll
        for (int r = 0; r < XCH; ++r) {
            const int c = threadIdx.x + r * THREADS;
            x_store(smem, c, x_chunk(c, kt_begin * KT));
        }
    }
    __syncthreads();
    for (int kt = kt_begin; kt < kt_end; ++kt) {
        const int cur = (kt - kt_begin) & 1;
        const bool has_next = kt + 1 < kt_end;
        u32x4 wn[KU][MT][2];
        uint32_t wsn[KU][MT][2];
        u32x4 xr[XPF ? XCH : 1];
        if (has_next) {
            load_weight_tile<KU, MT>(codes, sf, row_base, N, K, (kt + 1) * KT, g, t, wn, wsn);
            if constexpr (XPF) {
#pragma unroll
                for (int r = 0; r < XCH; ++r) xr[r] = x_chunk(threadIdx.x + r * THREADS, (kt + 1) * KT);
            }
        }
        mma_tile<NT, MT, KU, FAST, ROWB>(smem + cur * BUF, wc, wsf, acc, g, t);
        if (has_next) {
            uint8_t* nb = smem + (cur ^ 1) * BUF;
#pragma unroll
            for (int r = 0; r < XCH; ++r) {
                const int c = threadIdx.x + r * THREADS;
                if constexpr (XPF) x_store(nb, c, xr[r]);
                else x_store(nb, c, x_chunk(c, (kt + 1) * KT));
            }
        }
        __syncthreads();
#pragma unroll
        for (int u = 0; u < KU; ++u)
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    wc[u][i][h] = wn[u][i][h];
                    wsf[u][i][h] = wsn[u][i][h];
                }
    }
    gemm_epilogue<NT, MT, WARPS, FAST>(acc, g_w, out, ws, counters, M, N, splits, chunk, rb, tok0, row_base, g, t);
}

// ---------------------------------------------------------------------------------------------------
// v3: a multi-stage cp.async pipeline for the weights. v2 measured no faster than v1: with one tile of
// codes in registers per thread, a thread has ~128 bytes in flight and then waits a full HBM latency
// (~2 us under load) for them, so an SM keeps only ~50 KB in flight and streams at ~half of copy
// bandwidth. v3 copies the codes (16 B per thread per row half and 128-k step) and the scales (8 B per
// row, by one thread of the row) asynchronously into a STAGES-deep ring in shared memory, so
// STAGES-1 tiles are in flight without holding registers; each thread reads back the code chunks it
// copied itself, the scales after the per-tile barrier. Activations as in v2.
// ---------------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    uint32_t r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async8(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 8 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

template <int NT, int MT, int WARPS, int KU, int STAGES>
__global__ void __launch_bounds__(WARPS * 32) w4a16_mma_v3(
    const uint16_t* __restrict__ x, const uint8_t* __restrict__ codes, const uint8_t* __restrict__ sf,
    const float* __restrict__ g_w, uint16_t* __restrict__ out, float* __restrict__ ws,
    unsigned int* __restrict__ counters, int M, int N, int K, int splits) {
    constexpr bool XPF = NT <= 2;
    constexpr int TOK = NT * 8, KT = 128 * KU, CH = KT / 8, ROWB = KT * 2 + 64, ROWS = WARPS * MT * 16;
    constexpr int THREADS = WARPS * 32;
    constexpr int XCH = (TOK * CH + THREADS - 1) / THREADS;
    constexpr int XBUF = TOK * ROWB;
    constexpr int SLOTS = KU * MT * 2;               // (u, i, h) code chunks per thread per tile
    constexpr int CODE_BYTES = SLOTS * THREADS * 16;  // per stage
    constexpr int SF_BYTES = SLOTS * WARPS * 8 * 8;   // per stage: 8 bytes per (slot, warp, row g)
    constexpr int STAGE = CODE_BYTES + SF_BYTES;
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t* xs = smem + STAGES * STAGE;

    const int chunk = blockIdx.x, rb = blockIdx.y, split = blockIdx.z;
    const int tok0 = chunk * TOK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int row_base = rb * ROWS + warp * MT * 16;
    const int n_ktiles = K / KT;
    const int kt_begin = (int)((long long)split * n_ktiles / splits);
    const int kt_end = (int)((long long)(split + 1) * n_ktiles / splits);
    const long long code_row = K >> 1, sf_row = K >> 4;

    auto issue = [&](int kt, int stage) {
        uint8_t* cs = smem + stage * STAGE;
        uint8_t* ss = cs + CODE_BYTES;
        const int k0 = kt * KT;
#pragma unroll
        for (int u = 0; u < KU; ++u)
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int slot = (u * MT + i) * 2 + h;
                    const int r = row_base + i * 16 + g + 8 * h;
                    const bool ok = r < N;
                    const long long rr = ok ? r : 0;
                    cp_async16(cs + (slot * THREADS + threadIdx.x) * 16, codes + rr * code_row + ((k0 + 128 * u) >> 1) + 16 * t, ok);
                    if (t == 0)
                        cp_async8(ss + ((slot * WARPS + warp) * 8 + g) * 8, sf + rr * sf_row + ((k0 + 128 * u) >> 4), ok);
                }
    };
    auto x_chunk = [&](int c, int k0) -> u32x4 {
        const int tok = c / CH, ch = c - tok * CH;
        u32x4 v{0, 0, 0, 0};
        if (c < TOK * CH && tok0 + tok < M) v = ld16(x + (long long)(tok0 + tok) * K + k0 + 8 * ch);
        return v;
    };
    auto x_store = [&](uint8_t* buf, int c, const u32x4& v) {
        if (c < TOK * CH) {
            const int tok = c / CH, ch = c - tok * CH;
            st16(buf + tok * ROWB + chunk_swizzle(ch) * 16, permute_chunk(v));
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int p = 0; p < STAGES - 1; ++p) {
        if (kt_begin + p < kt_end) issue(kt_begin + p, p);
        cp_async_commit();
    }
    if (kt_begin < kt_end) {
#pragma unroll
        for (int r = 0; r < XCH; ++r) {
            const int c = threadIdx.x + r * THREADS;
            x_store(xs, c, x_chunk(c, kt_begin * KT));
        }
    }
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    for (int kt = kt_begin; kt < kt_end; ++kt) {
        const int it = kt - kt_begin;
        if (kt + STAGES - 1 < kt_end) issue(kt + STAGES - 1, (it + STAGES - 1) % STAGES);
        cp_async_commit();
        const bool has_next = kt + 1 < kt_end;
        u32x4 xr[XPF ? XCH : 1];
        if constexpr (XPF) {
            if (has_next) {
#pragma unroll
                for (int r = 0; r < XCH; ++r) xr[r] = x_chunk(threadIdx.x + r * THREADS, (kt + 1) * KT);
            }
        }
        const uint8_t* cs = smem + (it % STAGES) * STAGE;
        const uint8_t* ss = cs + CODE_BYTES;
        u32x4 wc[KU][MT][2];
        uint32_t wsf[KU][MT][2];
#pragma unroll
        for (int u = 0; u < KU; ++u)
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int slot = (u * MT + i) * 2 + h;
                    wc[u][i][h] = ld16(cs + (slot * THREADS + threadIdx.x) * 16);
                    wsf[u][i][h] = *reinterpret_cast<const uint16_t*>(ss + ((slot * WARPS + warp) * 8 + g) * 8 + 2 * t);
                }
        mma_tile<NT, MT, KU, true, ROWB>(xs + (it & 1) * XBUF, wc, wsf, acc, g, t);
        if (has_next) {
            uint8_t* nb = xs + ((it & 1) ^ 1) * XBUF;
#pragma unroll
            for (int r = 0; r < XCH; ++r) {
                const int c = threadIdx.x + r * THREADS;
                if constexpr (XPF) x_store(nb, c, xr[r]);
                else x_store(nb, c, x_chunk(c, (kt + 1) * KT));
            }
        }
        cp_async_wait<STAGES - 2>();
        __syncthreads();
    }
    cp_async_wait<0>();
    gemm_epilogue<NT, MT, WARPS, true>(acc, g_w, out, ws, counters, M, N, splits, chunk, rb, tok0, row_base, g, t);
}

// Tile configurations: v1<NT tokens/8, MT m16 tiles per warp, WARPS, KU (k tile = 128*KU), FAST>,
// v2<..., XPF (prefetch the next tile's activations through registers)>.
// @instantiate w4a16_mma_v1<1, 2, 4, 2, true>
// @instantiate w4a16_mma_v1<1, 2, 8, 2, false>
// @instantiate w4a16_mma_v1<8, 2, 4, 1, true>
// @instantiate w4a16_mma_v1<8, 2, 4, 1, false>
// @instantiate w4a16_mma_v2<1, 2, 4, 2, true, true>
// @instantiate w4a16_mma_v2<1, 2, 8, 2, true, true>
// @instantiate w4a16_mma_v2<1, 1, 8, 4, true, true>
// @instantiate w4a16_mma_v2<2, 2, 4, 2, true, true>
// @instantiate w4a16_mma_v2<2, 2, 8, 2, true, true>
// @instantiate w4a16_mma_v2<4, 2, 4, 2, true, false>
// @instantiate w4a16_mma_v2<4, 2, 8, 1, true, false>
// @instantiate w4a16_mma_v2<8, 2, 4, 1, true, false>
// @instantiate w4a16_mma_v2<8, 2, 8, 1, true, false>
// @instantiate w4a16_mma_v2<8, 1, 8, 2, true, false>
// v3<NT, MT, WARPS, KU, STAGES>
// @instantiate w4a16_mma_v3<1, 2, 4, 1, 6>
// @instantiate w4a16_mma_v3<1, 2, 4, 2, 4>
// @instantiate w4a16_mma_v3<1, 2, 8, 1, 4>
// @instantiate w4a16_mma_v3<2, 2, 4, 1, 6>
// @instantiate w4a16_mma_v3<2, 2, 4, 2, 4>
// @instantiate w4a16_mma_v3<4, 2, 4, 1, 4>
// @instantiate w4a16_mma_v3<4, 2, 4, 2, 3>
// @instantiate w4a16_mma_v3<8, 2, 4, 1, 4>
// @instantiate w4a16_mma_v3<8, 1, 8, 1, 4>

// ---------------------------------------------------------------------------------------------------
// v4 w4a16_v4: a weight stream laid out for the kernel once, at load time (the weight is static).
// v1-v3 read the NVFP4 tensor as stored ([N, K/2] codes, [N, K/16] scales): every thread gathered
// 16-byte pieces from 2 rows 8 KB apart plus 2-byte scale pieces, staged activations in shared memory
// behind block-wide barriers, and decoded with ~5 integer ops per bf16x2 (~10 us of ALU-pipe time for
// the wo weight on an H200, next to a 15.5 us memory bound). v4 changes three things:
// 1. prepare_weight() (workbench/techniques/wo_gemm.py) rewrites codes and scales as one stream of
//    16-byte lane chunks: for each 16-row tile and 512-k "super-atom", 9 chunks x 32 lanes x 16 B
//    (chunks 0-7: the lane's codes of 8 k64 atoms, chunk 8: its 16 scale bytes), 4608 contiguous bytes,
//    so a warp reads it with 9 fully coalesced 512-byte loads and holds the next unit in registers
//    while it computes the current one (DB), with no shared memory and no barriers.
// 2. Lane (g, t) owns rows g and g+8 and the 16 consecutive k of block 4*atom + t, i.e. exactly one
//    scale block per row: the mma k order is permuted (k is a dummy index; B uses the same order), so
//    the 16 B of x a lane needs per atom are contiguous and the scale is one byte per row per atom.
// 3. The nibble positions inside each 32-bit code word are chosen so that the 4 bf16x2 A registers of
//    an mma come out of 1, 2 (shift + and), 4 and 4 integer ops (see v4_decode_word), and the scale
//    byte is re-encoded (s = 2^(u>>3 - 10) * (1 + (u&7)/8), u = 0 for a zero scale, whose codes are
//    zeroed) so that its bf16x2 (times 2^63) is one PRMT and one IMAD.
// Work split: "stream-K" over units (group of WARPS*MT tiles, super-atom): CTA c of gridDim.x takes a
// contiguous, equal share of the units, so every SM gets the same bytes whatever the grid; a warp
// flushes its fp32 tile partials with red.global.add when its unit range leaves a tile group, and the
// last contributor of a tile (counter of super-atoms done) converts to bf16 with alpha = 2^63 / g_w and
// leaves the workspace and counter zero for the next call. Activations come from global memory
// through L1 (read-only path): every warp of a CTA reads the same k slice.
// ---------------------------------------------------------------------------------------------------
constexpr int V4_UNIT_K = 512;      // k per super-atom
constexpr int V4_CHUNKS = 9;        // 16-byte chunks per lane per unit (8 code atoms + scales)

__device__ __forceinline__ u32x4 ld16_nc(const void* p) {
    u32x4 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
// Streaming weight loads: read once, do not keep in L1.
__device__ __forceinline__ u32x4 ld16_weight(const void* p) {
    u32x4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// The per-warp state and work of v4 (and v6, which feeds it from a shared-memory ring instead of
// registers loaded from global memory): the warp's fp32 tile accumulators, its activation rows, the
// decode + mma of one unit, and the stream-K flush.
template <int NT, int MT, int WARPS, bool XPF, int NACC = 1, bool RED = false>
struct V4Warp {
    static constexpr int TOK = NT * 8, TILES = WARPS * MT;
    static constexpr int X_PITCH = 1040;  // v6: bytes per staged x row (1024 + 16: conflict-free reads)
    const uint16_t* xrow[NT];
    bool xok[NT];
    float acc[MT][NT][4];
    float acc2[NACC - 1 > 0 ? NACC - 1 : 1][MT][NT][4];  // extra accumulation chains (v6), summed at flush
    int sa_done, warp, lane, g, t, chunk, tok0, n_sa, n_tiles, mpad, M, N;
    float alpha;

    __device__ __forceinline__ void init(const uint16_t* __restrict__ x, const float* __restrict__ g_w, int warp_,
                                         int M_, int N_, int K, int chunk_, int n_chunks) {
        warp = warp_;
        lane = threadIdx.x & 31;
        g = lane >> 2;
        t = lane & 3;
        chunk = chunk_;
        tok0 = chunk * TOK;
        n_sa = K / V4_UNIT_K;
        n_tiles = N_ >> 4;
        mpad = n_chunks * TOK;
        M = M_;
        N = N_;
        alpha = (1.0f / g_w[0]) * TWO_POW_63;
        sa_done = 0;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int tok = tok0 + 8 * j + g;
            xok[j] = tok < M;
            xrow[j] = x + (long long)(xok[j] ? tok : 0) * K + 16 * t;
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    acc[i][j][e] = 0.0f;
#pragma unroll
                    for (int a = 0; a + 1 < NACC; ++a) acc2[a][i][j][e] = 0.0f;
                }
    }
    __device__ __forceinline__ int tile_of(int u, int i) const { return (u / n_sa) * TILES + warp * MT + i; }
    __device__ __forceinline__ void load_x(int k, u32x4 (&xb)[NT][2]) const {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            if (xok[j]) {
                xb[j][0] = ld16_nc(xrow[j] + k);
                xb[j][1] = ld16_nc(xrow[j] + k + 8);
            } else {
                xb[j][0] = u32x4{0, 0, 0, 0};
                xb[j][1] = u32x4{0, 0, 0, 0};
            }
        }
    }

    // Decode + mma of one unit (tile group of this warp, one super-atom).
    __device__ __forceinline__ void compute(int u, const u32x4 (&wc)[MT][V4_CHUNKS]) {
        const int kbase = (u % n_sa) * V4_UNIT_K;
        if constexpr (NT >= 4) {
            // Many token tiles: x per mma step (8 bytes per tile) keeps the live registers bounded.
#pragma unroll
            for (int a = 0; a < 8; ++a) {
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    uint2 xv[NT];
#pragma unroll
                    for (int j = 0; j < NT; ++j)
                        xv[j] = xok[j] ? __ldg(reinterpret_cast<const uint2*>(xrow[j] + kbase + 64 * a + 4 * b))
                                       : make_uint2(0u, 0u);
#pragma unroll
                    for (int i = 0; i < MT; ++i) {
                        const uint32_t sw = word_of(wc[i][8], a >> 1);
                        const uint32_t sg = v4_scale(sw, (a & 1) * 2), sh = v4_scale(sw, (a & 1) * 2 + 1);
                        uint32_t A[4];
                        v4_decode_word(word_of(wc[i][a], b), sg, sh, A);
#pragma unroll
                        for (int j = 0; j < NT; ++j) mma_16816(acc[i][j], A, xv[j].x, xv[j].y);
                    }
                }
            }
            ++sa_done;
            return;
        }
        u32x4 xb[NT][2];
        load_x(kbase, xb);
#pragma unroll
        for (int a = 0; a < 8; ++a) {
            u32x4 xn[NT][2];
            if (XPF && a < 7) load_x(kbase + 64 * (a + 1), xn);
            mma_atom(wc, a, xb);
            if (a < 7) {
                if constexpr (XPF) {
#pragma unroll
                    for (int j = 0; j < NT; ++j) { xb[j][0] = xn[j][0]; xb[j][1] = xn[j][1]; }
                } else {
                    load_x(kbase + 64 * (a + 1), xb);
                }
            }
        }
        ++sa_done;
    }

    // Decode 64-k atom a of the unit (4 mma k-steps per tile) and multiply with the lane's x fragments
    // xb (per token tile: the atom's 16 k of this lane). k-step s of the unit accumulates into chain
    // s % NACC (acc, then acc2): independent chains, so consecutive mma.sync do not wait on each other.
    __device__ __forceinline__ void mma_atom(const u32x4 (&wc)[MT][V4_CHUNKS], int a, const u32x4 (&xb)[NT][2]) {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const uint32_t sw = word_of(wc[i][8], a >> 1);
            const uint32_t sg = v4_scale(sw, (a & 1) * 2), sh = v4_scale(sw, (a & 1) * 2 + 1);
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                uint32_t A[4];
                v4_decode_word(word_of(wc[i][a], b), sg, sh, A);
                const int chain = (4 * a + b) % NACC;
#pragma unroll
                for (int j = 0; j < NT; ++j) {
                    float* c = chain == 0 ? acc[i][j] : acc2[chain > 0 ? chain - 1 : 0][i][j];
                    mma_16816(c, A, word_of(xb[j][b >> 1], (b & 1) * 2), word_of(xb[j][b >> 1], (b & 1) * 2 + 1));
                }
            }
        }
    }

    // v6: the unit's x rows staged in shared memory by the producer (row tok at xs + tok * X_PITCH,
    // rows >= M never read); NT token tiles share each decoded weight fragment.
    __device__ __forceinline__ void compute_smem(const u32x4 (&wc)[MT][V4_CHUNKS], uint32_t xs) {
        static_assert(NT <= 4, "v6 serves up to 4 token tiles (32 x rows per stage)");
#pragma unroll
        for (int a = 0; a < 8; ++a) {
            u32x4 xb[NT][2];
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                xb[j][0] = u32x4{0, 0, 0, 0};
                xb[j][1] = u32x4{0, 0, 0, 0};
                if (xok[j]) {
                    const uint32_t xa = xs + (8 * j + g) * X_PITCH + 32 * t + 128 * a;
                    xb[j][0] = lds16(xa);
                    xb[j][1] = lds16(xa + 16);
                }
            }
            mma_atom(wc, a, xb);
        }
        ++sa_done;
    }

    // Partial sums of the warp's tiles -> workspace; the last contributor of a tile writes out.
    __device__ __forceinline__ void flush(int u, uint16_t* __restrict__ out, float* __restrict__ ws,
                                          unsigned int* __restrict__ counters) {
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e)
#pragma unroll
                    for (int a = 0; a + 1 < NACC; ++a) {
                        acc[i][j][e] += acc2[a][i][j][e];
                        acc2[a][i][j][e] = 0.0f;
                    }
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int tile = tile_of(u, i);
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                red_add_frag(ws, mpad, tile * 16 + g, tok0 + 8 * j, acc[i][j][0], acc[i][j][1], acc[i][j][2],
                             acc[i][j][3], t, true);
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
            }
        }
        if constexpr (RED) {  // reduce only: wo_finalize converts the workspace after the kernel
            sa_done = 0;
            return;
        }
        __threadfence();
        __syncwarp();
#pragma unroll 1
        for (int i = 0; i < MT; ++i) {
            const int tile = tile_of(u, i);
            finish_tile(ws, mpad, tile, tok0, TOK, counters + (long long)chunk * n_tiles + tile, (unsigned)sa_done,
                        (unsigned)n_sa, out, M, N, alpha, lane);
        }
        sa_done = 0;
    }
};

template <int NT, int MT, int WARPS, int MINB, bool DB, bool XPF>
__global__ void __launch_bounds__(WARPS * 32, MINB) w4a16_v4(
    const uint16_t* __restrict__ x, const u32x4* __restrict__ wp, const float* __restrict__ g_w,
    uint16_t* __restrict__ out, float* __restrict__ ws, unsigned int* __restrict__ counters, int M, int N, int K,
    int grab) {
    V4Warp<NT, MT, WARPS, XPF> w;
    w.init(x, g_w, threadIdx.x >> 5, M, N, K, blockIdx.y, gridDim.y);
    const int lane = w.lane, chunk = blockIdx.y;
    const int n_sa = w.n_sa;
    const int units = (N / (16 * w.TILES)) * n_sa;
    auto load_unit = [&](int u, u32x4 (&dst)[MT][V4_CHUNKS]) {
        const int sa = u % n_sa;
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const u32x4* p = wp + ((long long)w.tile_of(u, i) * n_sa + sa) * (V4_CHUNKS * 32) + lane;
#pragma unroll
            for (int c = 0; c < V4_CHUNKS; ++c) dst[i][c] = ld16_weight(p + c * 32);
        }
    };

    // Static stream-K (grab <= 0): one range, an equal contiguous share of units per CTA. Dynamic
    // (grab > 0): CTAs take `grab` units at a time from a counter per token chunk, so SMs that stream
    // faster (H100 GPCs differ in SM count, hence in per-SM bandwidth) take more and all finish
    // together. Thread 0 fetches the next grab while the CTA works on the current one (two smem
    // slots); the last CTA to leave puts the work and exit counters back to zero for the next launch.
    const bool dynamic = grab > 0;
    unsigned int* work = counters + (long long)gridDim.y * w.n_tiles + 2 * chunk;
    __shared__ int grab_slot[2];
    int pending = 0;
    if (dynamic) {
        if (threadIdx.x == 0) {
            grab_slot[0] = (int)atomicAdd(work, (unsigned)grab);
            pending = (int)atomicAdd(work, (unsigned)grab);
        }
        __syncthreads();
    }
    for (int slot = 0;; slot ^= 1) {
        int u_begin, u_end;
        if (dynamic) {
            u_begin = grab_slot[slot];
            u_end = min(u_begin + grab, units);
        } else {
            u_begin = (int)((long long)blockIdx.x * units / gridDim.x);
            u_end = (int)((long long)(blockIdx.x + 1) * units / gridDim.x);
        }
        if (u_begin >= u_end) break;
        // Units [u_begin, u_end): stream, compute, flush at the range end and at tile-group boundaries.
        u32x4 wa[MT][V4_CHUNKS];
        load_unit(u_begin, wa);
        if constexpr (DB) {
            u32x4 wb[MT][V4_CHUNKS];
            // Two units per trip so the two register buffers swap roles without copies.
            for (int u = u_begin; u < u_end; u += 2) {
                if (u + 1 < u_end) load_unit(u + 1, wb);
                w.compute(u, wa);
                if (u + 1 == u_end || (u + 1) % n_sa == 0) w.flush(u, out, ws, counters);
                if (u + 1 >= u_end) break;
                if (u + 2 < u_end) load_unit(u + 2, wa);
                w.compute(u + 1, wb);
                if (u + 2 == u_end || (u + 2) % n_sa == 0) w.flush(u + 1, out, ws, counters);
            }
        } else {
            for (int u = u_begin; u < u_end; ++u) {
                w.compute(u, wa);
                if (u + 1 == u_end || (u + 1) % n_sa == 0) w.flush(u, out, ws, counters);
                if (u + 1 < u_end) load_unit(u + 1, wa);
            }
        }
        if (!dynamic) break;
        if (threadIdx.x == 0) grab_slot[slot ^ 1] = pending;  // read by nobody since the last barrier
        __syncthreads();
        if (threadIdx.x == 0) pending = (int)atomicAdd(work, (unsigned)grab);
    }
    if (dynamic && threadIdx.x == 0) {
        __threadfence();  // this CTA's grabs are done before it counts itself out
        if (atomicAdd(work + 1, 1u) == gridDim.x - 1) {
            atomicExch(work, 0u);
            atomicExch(work + 1, 0u);
        }
    }
}
// v4<NT, MT, WARPS, MINB (min CTAs per SM, caps registers), DB (next unit in registers), XPF (next x atom)>
// @instantiate w4a16_v4<1, 1, 4, 4, true, true>
// @instantiate w4a16_v4<1, 1, 4, 3, true, true>
// @instantiate w4a16_v4<1, 1, 8, 2, true, true>
// @instantiate w4a16_v4<1, 1, 4, 4, false, true>
// @instantiate w4a16_v4<1, 2, 4, 2, true, true>
// @instantiate w4a16_v4<1, 2, 4, 3, false, true>
// @instantiate w4a16_v4<2, 1, 4, 3, true, true>
// @instantiate w4a16_v4<2, 2, 4, 2, true, false>
// @instantiate w4a16_v4<4, 2, 4, 2, false, false>
// @instantiate w4a16_v4<1, 1, 4, 5, false, true>
// @instantiate w4a16_v4<1, 1, 4, 6, false, true>
// @instantiate w4a16_v4<1, 1, 8, 3, false, true>

// ---------------------------------------------------------------------------------------------------
// v6 w4a16_v6: v4's warps, fed from a shared-memory ring by a producer warp (M <= 8).
// v4's profile (docs/notes_wo_gemm.md): each warp holds only the unit it is about to decode, so the
// HBM latency is exposed once per unit and the weight streams at ~73% of copy bandwidth. v6 keeps the
// v4 stream, decode and stream-K flush (V4Warp) and moves the weight loads to the bulk-copy engine:
// one producer warp keeps STAGES units of the CTA in flight (one cp.async.bulk of 4608 contiguous
// bytes per warp and unit, counted on the stage's mbarrier); a consumer warp waits for its stage,
// copies its 9 chunks to registers (conflict-free 16-byte shared loads), releases the stage at once
// (every lane arrives on the stage's empty barrier after its own loads) and decodes.
// ---------------------------------------------------------------------------------------------------
// DIAG (diagnostics, output not computed): 1 = stream and read the stages only, 2 = also decode (no
// mma, no flush): how fast the data path runs without the math.
template <int MT, int WARPS, int STAGES, int MINB, int NACC, bool RED, int DIAG = 0, int NT = 1>
__global__ void __launch_bounds__((WARPS + 1) * 32, MINB) w4a16_v6(
    const uint16_t* __restrict__ x, const uint8_t* __restrict__ wp, const float* __restrict__ g_w,
    uint16_t* __restrict__ out, float* __restrict__ ws, unsigned int* __restrict__ counters, int M, int N, int K,
    int s0, int grab) {
    using Warp = V4Warp<NT, MT, WARPS, true, NACC, RED>;
    constexpr int TILES = WARPS * MT, UNIT_BYTES = V4_CHUNKS * 32 * 16, W_STAGE = TILES * UNIT_BYTES;
    constexpr int STAGE = W_STAGE + 8 * NT * Warp::X_PITCH;  // weight units, then up to 8 * NT x rows
    static_assert(TILES <= 32, "one producer lane per tile");
    if (RED) pdl_trigger();  // wo_finalize (launched with PDL) may be scheduled now; it waits for us
    extern __shared__ __align__(16) uint8_t ring[];
    __shared__ int unit_of[STAGES];  // the unit in each stage, -1: no more work
    const uint32_t ring0 = smem_addr(ring), full0 = ring0 + STAGES * STAGE, empty0 = full0 + 8 * STAGES;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n_sa = K / V4_UNIT_K, units = (N / (16 * TILES)) * n_sa;
    if (threadIdx.x == 0) ring_init<STAGES>(full0, empty0, WARPS * 32);
    __syncthreads();
    if (warp == WARPS) {
        // Producer. Work: grab <= 0: an equal contiguous share of the units (static stream-K); grab > 0:
        // the first s0 units of a contiguous share, then `grab` units at a time from a global counter,
        // so SMs whose memory requests are served faster take more (per-SM bandwidth is unequal when the
        // memory system is saturated). Lane 0 claims a stage and records its unit; lane L < TILES copies
        // tile L of the unit, lane 31 - r the x row r.
        // PDL (as in v5): the first unit's weight copies go out before pdl_wait, its x rows after it.
        const int m_rows = DIAG ? 0 : min(M, 8 * NT);
        int i = 0, deferred = 0;
        auto load_x = [&](int s, int u) {
            const int r = 31 - lane;
            if (r < m_rows)
                bulk_load(ring0 + s * STAGE + W_STAGE + r * Warp::X_PITCH, x + (long long)r * K + (u % n_sa) * V4_UNIT_K,
                          2 * V4_UNIT_K, full0 + 8 * s);
        };
        produce_units(units, s0, grab, counters + (N >> 4), lane, [&](int u) {
            if ((i == 1 || u < 0) && deferred >= 0) {
                pdl_wait();
                for (int d = 0; d < deferred; ++d) load_x(d, unit_of[d]);
                deferred = -1;
            }
            const int s = ring_claim<STAGES>(i++, u, W_STAGE + m_rows * 2 * V4_UNIT_K, full0, empty0, unit_of, lane);
            if (u < 0) return;
            if (lane < TILES)
                bulk_load(ring0 + s * STAGE + lane * UNIT_BYTES,
                          wp + ((long long)((u / n_sa) * TILES + lane) * n_sa + u % n_sa) * UNIT_BYTES, UNIT_BYTES,
                          full0 + 8 * s);
            if (deferred >= 0) ++deferred;
            else load_x(s, u);
        });
        return;
    }
    Warp w;
    w.init(x, g_w, warp, M, N, K, 0, 1);
    uint32_t sink = 0;
    int cur = -1;  // the last unit accumulated (its tile group is the one held in the accumulators)
    for (int i = 0;; ++i) {
        const int s = i % STAGES, u = ring_take<STAGES>(i, full0, unit_of);
        if (u < 0) break;
        if (!DIAG && cur >= 0 && u / n_sa != cur / n_sa) {
            pdl_wait();  // ws, counters and out belong to the previous kernel until it completes
            w.flush(cur, out, ws, counters);
        }
        cur = u;
        u32x4 wc[MT][V4_CHUNKS];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
            for (int c = 0; c < V4_CHUNKS; ++c)
                wc[m][c] = lds16(ring0 + s * STAGE + (warp * MT + m) * UNIT_BYTES + (c * 32 + lane) * 16);
        if constexpr (DIAG == 1) {
            mbar_arrive(empty0 + 8 * s);
#pragma unroll
            for (int m = 0; m < MT; ++m)
#pragma unroll
                for (int c = 0; c < V4_CHUNKS; ++c) sink ^= wc[m][c].x ^ wc[m][c].y ^ wc[m][c].z ^ wc[m][c].w;
        } else if constexpr (DIAG == 2) {
            mbar_arrive(empty0 + 8 * s);
#pragma unroll
            for (int m = 0; m < MT; ++m)
#pragma unroll
                for (int a = 0; a < 8; ++a) {
                    const uint32_t sw = word_of(wc[m][8], a >> 1);
                    const uint32_t sg = v4_scale(sw, (a & 1) * 2), sh = v4_scale(sw, (a & 1) * 2 + 1);
#pragma unroll
                    for (int b = 0; b < 4; ++b) {
                        uint32_t A[4];
                        v4_decode_word(word_of(wc[m][a], b), sg, sh, A);
                        sink ^= A[0] ^ A[1] ^ A[2] ^ A[3];
                    }
                }
        } else {
            w.compute_smem(wc, ring0 + s * STAGE + W_STAGE);
            mbar_arrive(empty0 + 8 * s);  // after the x reads of this stage
        }
    }
    if (!DIAG && cur >= 0) {
        pdl_wait();
        w.flush(cur, out, ws, counters);
    }
    if (DIAG && sink == 0x9e3779b9u && M < 0) out[0] = 0;  // never true: keeps the diagnostic work alive
}
// v6<MT, WARPS (consumer warps), STAGES, MINB (CTAs per SM), NACC (accumulation chains), RED (reduce
// only; wo_finalize writes out), DIAG, NT (token tiles: M <= 8 * NT)>
// @instantiate w4a16_v6<1, 8, 5, 1, 1, false>
// @instantiate w4a16_v6<1, 8, 5, 1, 4, false>
// @instantiate w4a16_v6<1, 4, 2, 4, 2, false>
// @instantiate w4a16_v6<1, 4, 4, 2, 4, false>
// @instantiate w4a16_v6<1, 16, 2, 1, 4, false>
// @instantiate w4a16_v6<2, 8, 2, 1, 2, false>
// @instantiate w4a16_v6<1, 8, 5, 1, 4, true>
// @instantiate w4a16_v6<1, 4, 2, 4, 2, true>
// @instantiate w4a16_v6<1, 4, 4, 2, 4, true>
// @instantiate w4a16_v6<1, 16, 2, 1, 4, true>
// @instantiate w4a16_v6<2, 8, 2, 1, 2, true>
// NT = 2, 4: 16 / 32 tokens share each decoded weight fragment (x rows staged per stage: 16-32 KB)
// @instantiate w4a16_v6<1, 8, 3, 1, 1, true, 0, 4>
// @instantiate w4a16_v6<1, 16, 2, 1, 1, true, 0, 4>
// @instantiate w4a16_v6<1, 8, 4, 1, 1, true, 0, 2>
// @instantiate w4a16_v6<1, 16, 2, 1, 1, true, 0, 2>
// diagnostics (not validated: they compute no output)
// @instantiate w4a16_v6<1, 8, 5, 1, 1, false, 1>
// @instantiate w4a16_v6<1, 8, 5, 1, 1, false, 2>

// ---------------------------------------------------------------------------------------------------
// wo_finalize: the second half of the RED mode of v5/v6. With RED the GEMM kernels end their stream-K
// shares with fire-and-forget red.global.add of fp32 partials into the workspace ws [N, ldw] and no
// fence, counter or conversion (a cross-CTA handshake costs several serialized L2 round trips at every
// flush, which made fine-grained dynamic work hand-out a loss). This kernel, launched right after with
// programmatic dependent launch, waits for the GEMM grid (griddepcontrol.wait: its writes visible),
// writes out[tok, n] = bf16(ws[n, tok] * unit / g_w) and leaves ws zero for the next call (unit: the power
// of two the GEMM's decoded weights carry away, 2^63 or 2^19 with scale pairs; see wb_nvfp4_decode.cuh).
// ---------------------------------------------------------------------------------------------------
// ws [N, ldw] fp32 (token fastest, ldw <= 64, a multiple of 4) -> out [M, N] bf16 = ws * unit / g,
// and ws zeroed for the next call. A CTA transposes 64 rows of ws through shared memory: all of its
// coalesced 16-byte reads (and zero stores) of ws are issued first, the values go to shared memory as
// bf16, then bf16x2 stores run along out's rows. 64 rows per CTA keep wo's grid (112 CTAs) to one wave
// that is resident while the GEMM runs (8.4 KB of shared memory fits beside the GEMM's ring), so the
// tail after the GEMM is one round trip to L2. (The first version, a thread per element storing
// out[tok, n] directly, scattered 2-byte stores over M rows: ~7 us at M = 64 on an H100.)
// frag = 1: ws in the fragment-major order of v5's LEAN bit 11 (red_add_frag_major in wb_streamk.cuh): each
// 16-row tile's 16 x ldw block as [ldw / 8][32 lanes][4]; the float4 of lane (g, t) in block j holds rows g and
// g + 8 of the tile at cols 8j + 2t, + 1. Same bytes per CTA, same reads; only the tile placement differs.
extern "C" __global__ void __launch_bounds__(256) wo_finalize(float* __restrict__ ws, const float* __restrict__ g_w,
                                                   uint16_t* __restrict__ out, int M, int N, int ldw,
                                                   float unit, int frag) {
    constexpr int ROWS = 64, PITCH = 66;  // bf16 per tile row (ldw <= 64, + 2: fewer bank conflicts)
    __shared__ __align__(16) uint16_t tile[ROWS * PITCH];
    pdl_wait();
    // The next kernel may be scheduled now (not earlier: a GEMM launched with PDL after us must not start
    // beside the GEMM we wait for); it waits for our completion before touching ws or out.
    pdl_trigger();
    const int n0 = blockIdx.x * ROWS, rows = min(ROWS, N - n0), nvec = rows * ldw / 4;
    const float alpha = (1.0f / g_w[0]) * unit;
    float4* src = reinterpret_cast<float4*>(ws + (long long)n0 * ldw);
    float4 a[ROWS * 64 / 4 / 256];  // up to 4 float4 per thread
#pragma unroll
    for (int k = 0; k < ROWS * 64 / 4 / 256; ++k) {
        const int v = threadIdx.x + 256 * k;
        if (v < nvec) a[k] = __ldcg(src + v);
    }
#pragma unroll
    for (int k = 0; k < ROWS * 64 / 4 / 256; ++k) {
        const int v = threadIdx.x + 256 * k;
        if (v < nvec) {
            __stcg(src + v, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
            const uint32_t lo = f32x2_to_bf16x2(a[k].x * alpha, a[k].y * alpha);
            const uint32_t hi = f32x2_to_bf16x2(a[k].z * alpha, a[k].w * alpha);
            if (frag) {  // float4 v: tile v / (4 ldw), block j, lane (g, t): rows g, g + 8 at cols 8j + 2t, + 1
                const int tl = v / (4 * ldw), w = v - tl * 4 * ldw, j = w >> 5, lane = w & 31;
                const int r = 16 * tl + (lane >> 2), c = 8 * j + 2 * (lane & 3);
                *reinterpret_cast<uint32_t*>(tile + r * PITCH + c) = lo;  // 4-byte aligned: c is even
                *reinterpret_cast<uint32_t*>(tile + (r + 8) * PITCH + c) = hi;
            } else {
                const int r = (4 * v) / ldw, c = 4 * v - r * ldw;
                uint32_t* t = reinterpret_cast<uint32_t*>(tile + r * PITCH + c);  // 4-byte aligned: c is even
                t[0] = lo;
                t[1] = hi;
            }
        }
    }
    __syncthreads();
    uint32_t* o = reinterpret_cast<uint32_t*>(out);
    for (int w = threadIdx.x; w < M * (ROWS / 2); w += blockDim.x) {
        const int tok = w / (ROWS / 2), p = w % (ROWS / 2);
        if (2 * p < rows)
            o[((long long)tok * N + n0) / 2 + p] =
                (uint32_t)tile[2 * p * PITCH + tok] | ((uint32_t)tile[(2 * p + 1) * PITCH + tok] << 16);
    }
}
