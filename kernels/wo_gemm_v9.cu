// wo_gemm_v9.cu: fused NVFP4 W4A16 GEMM for decode with row-owned CTAs (no split-K, one kernel per call).
//
//   out[M, N] (bf16) = x[M, K] (bf16) @ W^T * (1 / g_w),  M <= XR, W as the v9 stream (below).
//
// Why: the stream-K kernels (v4-v6, v5) split K across CTAs, so every call ends with fp32 partials reduced by
// red.add into a workspace and a second kernel (wo_finalize) that converts them: on the H200 the finalize's tail
// and its launch cost ~2 us of a ~21 us call at M <= 8 (docs/notes_wo_gemm.md, fifteenth pass), about what the
// 3x target misses by. v9 gives each CTA whole output rows over the full K instead: the CTA sums its own
// partials in shared memory and writes bf16 out itself. No workspace, no atomics, no second kernel.
//
// Balance: the weight is the mma.sync B operand (n8 = 8 weight rows, the "slice"), so rows split in units of 8:
// wo's 896 slices over 132 CTAs is 6 or 7 slices each, 3% above the mean (16-row tiles would be 4 against 3.4).
// The tokens are the m16 A operand: rows 0-7 (and 8-15 when XR >= 16) of each m16 tile; XR = 8 passes zeros for
// the upper half, whose products land in accumulator rows that are never stored.
//
// The v9 stream (workbench/techniques/wo_gemm_v9.py, prepare_stream_v9): uint8 [K/128 chunks][N/8 slices][576]:
// per slice and 128-k chunk, 32 lanes x 16 B of code words, then 64 scale bytes. Lane l = 4g + t holds row
// 8 slice + g, words jw = 0..3 with the 8 codes at k = 128 c + 32 jw + 8 t + 0..7 (one 16-k scale block per word),
// bits placed for rot_decode_word (wb_nvfp4_decode.cuh) so that registers r0, r2 are the B fragment of the first
// k16 step (k + 0..1, k + 2..3) and r1, r3 of the second (k + 4..5, 6..7). The k order inside an mma is permuted
// (k is a dummy index; x's A fragment uses the same order, so a lane's x is 16 contiguous bytes per word). Scale
// byte jw of the 4-byte word at 512 + 8 g + 4 (t >> 1): row g's re-encoded scale of block 2 jw + (t >> 1).
// A CTA's slices of one chunk are adjacent, so a stage of CH chunks is CH bulk copies of cnt * 576 bytes.
//
// Pipeline: a producer warp streams weight chunks and x rows into a STAGES-deep shared-memory ring
// (cp.async.bulk); with PDL the weight copies of the first stages go out before griddepcontrol.wait, x after it.
// Consumer warp w takes chunks w, w + WARPS, ... of each stage and accumulates all of the CTA's slices, so each x
// fragment it loads serves every slice. At the end the warps' partials meet in shared memory.
//
// Two kernels share this layout of work (docs/notes_wo_gemm.md, twenty-second and twenty-third passes):
// - w4a16_v9 (above): the weight as the n8 B operand. A measured step: its consumer issues twice the HMMAs per
//   weight element of an A-operand form.
// - w4a16_v9p (below, the dispatcher's at M = 1 on the H200): the weight as the m16 A operand, the CTA's slices in
//   pairs (rows g / g + 8) and an odd count's last slice alone, on a stream laid out for the launch grid. Its
//   producer copies each stage's x before the stage's weight with ordinary launches (argument x_first); PDL launches
//   keep the weight's first stages ahead of griddepcontrol.wait. Builds: warp groups that take stages in turn,
//   early release (a warp's chunks to registers before the math), clusters sharing x by multicast, the lone
//   unit in two accumulator sets (LS), diagnostic twins, and timeline builds (PROF) with clock stamps.
#include "wb_common.cuh"
#include "wb_nvfp4_decode.cuh"
#include "wb_tma.cuh"
#include "wb_pdl.cuh"
#include "wb_cluster.cuh"
#include "wb_streamk.cuh"

constexpr int V9_CHUNK_K = 128;      // k per chunk
constexpr int V9_CHUNK_BYTES = 576;  // one slice's share of a chunk: 512 code + 64 scale bytes

__device__ __forceinline__ uint32_t lds4(uint32_t addr) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr));
    return v;
}

__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
    asm(  // not volatile: a pure function of its operands, so ptxas may interleave it with the decode
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The four fragment registers of one code word (the rotate layout, rows / steps scaled by sg and sh), or for the
// mma-only twin (DIAG 3) the raw word mixed with the scales, no decode.
template <int DIAG>
__device__ __forceinline__ void v9_decode(uint32_t w, uint32_t sg, uint32_t sh, uint32_t (&r)[4]) {
    if constexpr (DIAG == 3) {
        r[0] = w;
        r[1] = w ^ sg;
        r[2] = w + sh;
        r[3] = w - sg;
    } else {
        rot_decode_word(w, sg, sh, r);
    }
}
// The decode-only twin (DIAG 2): one FADD keeps the decoded registers alive in place of the mma.
__device__ __forceinline__ void v9_sink(float& a, const uint32_t (&r)[4]) {
    a += __uint_as_float((r[0] ^ r[1] ^ r[2] ^ r[3]) & 0x3fffffffu);
}

// A CTA's share of the slices (the first N / 8 % grid CTAs one more) and its stages of CH chunks.
struct V9Share {
    int S, lo, cnt, n_chunks, n_st;
};
template <int CH>
__device__ __forceinline__ V9Share v9_share(int N, int K) {
    V9Share sh;
    sh.S = N >> 3;
    const int G = gridDim.x, b = blockIdx.x, q = sh.S / G, rem = sh.S % G;
    sh.lo = b * q + min(b, rem);
    sh.cnt = q + (b < rem ? 1 : 0);
    sh.n_chunks = K / V9_CHUNK_K;
    sh.n_st = (sh.n_chunks + CH - 1) / CH;
    return sh;
}

// PROF builds of v9p (timelines, diagnostic; the math is unchanged): clock64 stamps per CTA in v9_prof[CTA][256]
// (read by scripts/gpu_wo_v9_timeline.py). Slots: 0 / 3 globaltimer at the start / end; 1 clock at the start, 2 after
// the CTA barrier, 4 after the stores, 5 after the consumers' first barrier (all chunks done), 6 after the second
// (partials in shared memory); for stage st < 32: 8 + st the producer's clock after issuing its copies, 40 + st / 72
// + st / 104 + st the clock of the stage's group leader (warp (st % NG) WPG) when it asks for the stage, when the
// stage is full, when its chunks are done; 136 + w: consumer warp w's end of the stage loop.
constexpr int V9_PROF_SLOTS = 256;
__device__ unsigned long long v9_prof[160 * V9_PROF_SLOTS];
template <bool PROF>
__device__ __forceinline__ void v9_stamp(int slot, bool global_timer = false) {
    if constexpr (PROF) {
        unsigned long long t;
        if (global_timer) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        else t = clock64();
        v9_prof[blockIdx.x * V9_PROF_SLOTS + slot] = t;
    }
}

// The producer warp of v9 and v9p (all lanes): stage st of the ring (slot st % STAGES, STAGE bytes: W_STAGE of weight
// chunks, then x rows X_PITCH apart) gets the CTA's cnt slices of each of its CH chunks (lane j copies chunk j: one
// bulk copy, the slices are adjacent) and x's m_rows rows of its k range. x_first false (launches with PDL): the
// weight copies of the first stages go out before griddepcontrol.wait (the weight is constant; x belongs to the
// previous kernel until it completes) and x's after it. x_first true (ordinary launches): each stage's x copies go
// before its weight copies; the SM's copies are served about in issue order, and x queued behind STAGES stages of
// weight delayed the first full stage by ~2.2 us at M = 1 (docs/notes_wo_gemm.md, twenty-third pass).
// CL = 2: this CTA (cluster rank `rank`) copies every second x row into both CTAs' stages (multicast); the empty
// barriers then count both CTAs' consumers.
template <int MAXS, int CH, int STAGES, int STAGE, int W_STAGE, int X_PITCH, int CL, bool PROF = false>
__device__ __forceinline__ void v9_produce(const uint16_t* __restrict__ x, const uint8_t* __restrict__ wp, int m_rows,
                                           int K, const V9Share& sh, uint32_t ring0, uint32_t full0, uint32_t empty0,
                                           int lane, uint32_t rank, bool x_first = false) {
    const uint32_t slice_bytes = (uint32_t)sh.cnt * V9_CHUNK_BYTES;
    auto arm = [&](int st) {
        const int slot = st % STAGES, nc = min(CH, sh.n_chunks - st * CH);
        if (lane == 0) mbar_arrive_expect_tx(full0 + 8 * slot, nc * (slice_bytes + m_rows * 2 * V9_CHUNK_K));
        __syncwarp();
    };
    auto copy_w = [&](int st) {
        const int slot = st % STAGES, c0 = st * CH, nc = min(CH, sh.n_chunks - c0);
        if (lane < nc)
            bulk_load(ring0 + slot * STAGE + lane * MAXS * V9_CHUNK_BYTES,
                      wp + ((long long)(c0 + lane) * sh.S + sh.lo) * V9_CHUNK_BYTES, slice_bytes, full0 + 8 * slot);
    };
    auto copy_x = [&](int st) {
        const int slot = st % STAGES, c0 = st * CH, nc = min(CH, sh.n_chunks - c0);
        for (int m = CL * lane + (int)rank; m < m_rows; m += 32 * CL) {
            const uint32_t dst = ring0 + slot * STAGE + W_STAGE + m * X_PITCH;
            const uint16_t* src = x + (long long)m * K + c0 * V9_CHUNK_K;
            if constexpr (CL > 1) bulk_load_multicast(dst, src, nc * 2 * V9_CHUNK_K, full0 + 8 * slot, (1u << CL) - 1);
            else bulk_load(dst, src, nc * 2 * V9_CHUNK_K, full0 + 8 * slot);
        }
    };
    const int pre = min(STAGES, sh.n_st);
    auto stage = [&](int st) {  // both halves of a stage, x first or last
        arm(st);
        if (x_first) copy_x(st);
        copy_w(st);
        if (!x_first) copy_x(st);
        if (PROF && lane == 0 && st < 32) v9_stamp<PROF>(8 + st);
    };
    if (x_first) {
        pdl_wait();
        for (int st = 0; st < pre; ++st) stage(st);
    } else {
        for (int st = 0; st < pre; ++st) {
            arm(st);
            copy_w(st);
        }
        pdl_wait();
        for (int st = 0; st < pre; ++st) {
            copy_x(st);
            if (PROF && lane == 0 && st < 32) v9_stamp<PROF>(8 + st);
        }
    }
    for (int st = pre; st < sh.n_st; ++st) {
        mbar_wait(empty0 + 8 * (st % STAGES), ((st / STAGES) + 1) & 1);
        stage(st);
    }
}

// MAXS: most slices a CTA owns (the host checks ceil(N / 8 / grid) <= MAXS); XR: x rows staged (M <= XR; 8, 16
// or 32); WARPS consumer warps; CH chunks per stage (a multiple of WARPS); STAGES ring depth; DIAG 1: stream only
// (the consumers wait for and release each stage; no decode, no mma, no output), 2: the decode without the mma,
// 3: the mma on undecoded words (2 and 3 write a meaningless output). Diagnostics are never validated.
template <int MAXS, int XR, int WARPS, int CH, int STAGES, int DIAG = 0>
__global__ void __launch_bounds__((WARPS + 1) * 32, 1) w4a16_v9(
    const uint16_t* __restrict__ x, const uint8_t* __restrict__ wp, const float* __restrict__ g_w,
    uint16_t* __restrict__ out, int M, int N, int K) {
    static_assert(CH % WARPS == 0, "each consumer warp takes the same number of chunks per stage");
    static_assert(XR == 8 || XR == 16 || XR == 32, "x rows: 8, 16 or 32");
    constexpr int MT = XR > 16 ? 2 : 1;          // m16 token tiles
    constexpr bool UPPER = XR > 8;               // rows 8-15 of each m16 tile carry tokens
    constexpr int X_PITCH = CH * 256 + 64;       // bytes per staged x row: 64 mod 128 -> conflict-free 16-B reads
    constexpr int W_STAGE = CH * MAXS * V9_CHUNK_BYTES;
    constexpr int STAGE = W_STAGE + XR * X_PITCH;
    extern __shared__ __align__(128) uint8_t ring[];
    const uint32_t ring0 = smem_addr(ring), full0 = ring0 + STAGES * STAGE, empty0 = full0 + 8 * STAGES;
    const V9Share sh = v9_share<CH>(N, K);
    const int lo = sh.lo, cnt = sh.cnt, n_chunks = sh.n_chunks, n_st = sh.n_st;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // The next kernel may be scheduled now: it waits in its own griddepcontrol.wait for our completion.
    pdl_trigger();
    if (threadIdx.x == 0) ring_init<STAGES>(full0, empty0, WARPS);
    __syncthreads();

    if (warp == WARPS) {
        v9_produce<MAXS, CH, STAGES, STAGE, W_STAGE, X_PITCH, 1>(x, wp, DIAG ? 0 : M, K, sh, ring0, full0, empty0, lane, 0u);
        return;
    }

    const int g = lane >> 2, t = lane & 3;
    float acc[MAXS][MT][4];
#pragma unroll
    for (int s = 0; s < MAXS; ++s)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[s][mt][i] = 0.0f;

    for (int st = 0; st < n_st; ++st) {
        const int slot = st % STAGES, nc = min(CH, n_chunks - st * CH);
        mbar_wait(full0 + 8 * slot, (st / STAGES) & 1);
        if constexpr (DIAG != 1) {
            for (int j = warp; j < nc; j += WARPS) {
                const uint32_t wbase = ring0 + slot * STAGE + j * MAXS * V9_CHUNK_BYTES;
                const uint32_t xbase = ring0 + slot * STAGE + W_STAGE + g * X_PITCH + j * 256 + t * 16;
                u32x4 xa[MT][UPPER ? 2 : 1][4];  // [token tile][row half][word]: 8 k of row g (+ 8) per word
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int h = 0; h < (UPPER ? 2 : 1); ++h)
#pragma unroll
                        for (int jw = 0; jw < 4; ++jw) xa[mt][h][jw] = lds16(xbase + (16 * mt + 8 * h) * X_PITCH + jw * 64);
                // Every slot of the stage is decoded, also those past the CTA's cnt slices (stale bytes whose
                // accumulators are never stored): a branch per slice would serialize the slices' mma chains.
                u32x4 wv[MAXS];
                uint32_t sw[MAXS];
#pragma unroll
                for (int s = 0; s < MAXS; ++s) {
                    wv[s] = lds16(wbase + s * V9_CHUNK_BYTES + lane * 16);
                    sw[s] = lds4(wbase + s * V9_CHUNK_BYTES + 512 + g * 8 + (t >> 1) * 4);
                }
#pragma unroll
                for (int jw = 0; jw < 4; ++jw) {
#pragma unroll
                    for (int s = 0; s < MAXS; ++s) {
                        const uint32_t sc = v4_scale(sw[s], jw);
                        uint32_t r[4];
                        v9_decode<DIAG>(word_of(wv[s], jw), sc, sc, r);
                        if constexpr (DIAG == 2) {
                            v9_sink(acc[s][0][0], r);
                            continue;
                        }
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt) {
                            const u32x4& lo4 = xa[mt][0][jw];
                            const u32x4& hi4 = xa[mt][UPPER ? 1 : 0][jw];
                            mma_bf16_16816(acc[s][mt], lo4.x, UPPER ? hi4.x : 0u, lo4.y, UPPER ? hi4.y : 0u, r[0], r[2]);
                            mma_bf16_16816(acc[s][mt], lo4.z, UPPER ? hi4.z : 0u, lo4.w, UPPER ? hi4.w : 0u, r[1], r[3]);
                        }
                    }
                }
            }
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(empty0 + 8 * slot);  // every lane's shared reads of this stage are done
    }
    if constexpr (DIAG == 1) {
        return;
    } else {
        // The warps' partials meet in shared memory (the drained ring): red[warp][s][mt][i][lane].
        asm volatile("bar.sync 1, %0;" ::"n"(WARPS * 32) : "memory");
        float* red = reinterpret_cast<float*>(ring);
#pragma unroll
        for (int s = 0; s < MAXS; ++s)
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int i = 0; i < 4; ++i) red[(((warp * MAXS + s) * MT + mt) * 4 + i) * 32 + lane] = acc[s][mt][i];
        asm volatile("bar.sync 1, %0;" ::"n"(WARPS * 32) : "memory");
        pdl_wait();  // out may still be read or written by the previous kernel (returns at once without PDL)
        const float alpha = (1.0f / g_w[0]) * TWO_POW_63;  // the decoded weights carry 2^63
        // Pair p = ((s MT + mt) 2 + hh) 32 + lane: accumulator elements 2 hh, 2 hh + 1 of that lane = token
        // 16 mt + 8 hh + g, rows 8 (lo + s) + 2 t, + 1: one bf16x2 store.
        for (int p = threadIdx.x; p < MAXS * MT * 64; p += WARPS * 32) {
            const int pl = p & 31, hh = (p >> 5) & 1, smt = p >> 6, s = smt / MT, mt = smt % MT;
            const int tok = 16 * mt + 8 * hh + (pl >> 2);
            if (s >= cnt || tok >= M) continue;
            float v0 = 0.0f, v1 = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; ++w) {
                v0 += red[(((w * MAXS + s) * MT + mt) * 4 + 2 * hh) * 32 + pl];
                v1 += red[(((w * MAXS + s) * MT + mt) * 4 + 2 * hh + 1) * 32 + pl];
            }
            const int row = 8 * (lo + s) + 2 * (pl & 3);
            *reinterpret_cast<uint32_t*>(out + (long long)tok * N + row) = f32x2_to_bf16x2(v0 * alpha, v1 * alpha);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// v9p: the same row-owned CTAs with the weight as the mma A operand. The first v9 (above) puts 8 weight rows in
// the n8 B operand, so each HMMA.16816 covers 128 weight elements and half of its m16 token rows are empty at
// M <= 8; its diagnostic twins on the H200 put the mma alone and the decode alone at ~3 us each over the stream,
// and the two together at ~9 us. v9p pairs the CTA's slices: slices 2u, 2u + 1 are the rows g and g + 8 of an m16
// A tile (one HMMA per 256 weight elements, half of v9's), an odd count's last slice is a "lone" unit with zero
// rows g + 8, and the tokens are the n8 B operand (NT n8 tiles, M <= 8 NT).
//
// The v9p stream (prepare_stream_v9p, for a given grid: which slices pair depends on each CTA's first slice):
// uint8 [K/128][N/8][576] as v9's, each CTA's cnt slices of a chunk adjacent (the same offsets), holding
// cnt / 2 pair units of 1152 B, then (cnt odd) one lone unit of 576 B. The mma k order is permuted as in v4: in
// each 64-k atom a, lane t owns k = 64 a + 16 t + 0..15 (one scale block per row), step j' of the atom
// 16 t + 4 j' + 0..3 (pair p: + 2p, + 1), so x's B fragments of an atom are 32 contiguous bytes per lane.
// - pair unit: [2 atoms a][32 lanes][4 words j'][4 B] of code words (rot layout: r0 row g pair 0, r1 row g + 8 pair
//   0, r2 row g pair 1, r3 row g + 8 pair 1), then [32 lanes][4 B]: scale bytes (a0 row g, a0 row g + 8, a1 row g,
//   a1 row g + 8) of block 4 a + t. (Atom-major: each 16-byte load of a warp is 512 contiguous bytes.)
// - lone unit: [32 lanes][4 words (a, jj)][4 B], word (a, jj) = row g, k 64 a + 16 t + 8 jj + 0..7 (r0 / r2: step
//   2 jj pairs 0 / 1, r1 / r3: step 2 jj + 1), then [32 lanes][2 B]: the scale bytes of atoms 0, 1.
// LS: the lone unit's two HMMAs per code word accumulate into two sets (summed at the end), so its chain of dependent
// HMMAs per chunk is 8 long, as a pair unit's, instead of 16.
template <int MAXS, int NT, int WARPS, int CH, int STAGES, int DIAG = 0, int CL = 1, bool ER = false, bool PROF = false,
          bool LS = false>
__global__ void __launch_bounds__((WARPS + 1) * 32, 1) w4a16_v9p(
    const uint16_t* __restrict__ x, const uint8_t* __restrict__ wp, const float* __restrict__ g_w,
    uint16_t* __restrict__ out, int M, int N, int K, int x_first) {
    static_assert(CH % WARPS == 0 || WARPS % CH == 0, "warps split a stage's chunks, or groups of CH warps take turns");
    static_assert(MAXS % 2 == 1, "MAXS odd: (MAXS - 1) / 2 pair slots and one lone slot");
    static_assert(NT == 1 || NT == 2, "NT: 8 or 16 tokens");
    static_assert(CL == 1 || CL == 2, "CL: clusters of 1 or 2 CTAs");
    constexpr int XR = 8 * NT, NP = MAXS / 2;
    constexpr int WPG = WARPS < CH ? WARPS : CH, NG = WARPS / WPG;  // warps per group, groups (stage st: group st % NG)
    constexpr int X_PITCH = CH * 256 + 16;  // 16 mod 128: the 8 lanes of a 16-byte load phase hit distinct banks
    constexpr int W_STAGE = CH * MAXS * V9_CHUNK_BYTES;
    constexpr int STAGE = W_STAGE + XR * X_PITCH;
    extern __shared__ __align__(128) uint8_t ring[];
    const uint32_t ring0 = smem_addr(ring), full0 = ring0 + STAGES * STAGE, empty0 = full0 + 8 * STAGES;
    const V9Share sh = v9_share<CH>(N, K);
    const int cnt = sh.cnt, n_chunks = sh.n_chunks, n_st = sh.n_st;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // CL = 2: the two CTAs of a cluster share x's copies: each copies half of the rows into both CTAs' stages
    // (multicast), so x is read from L2 once per cluster. A stage is refilled only once both CTAs' consumers
    // released it: every consumer warp arrives on its own CTA's empty barrier and on the peer's.
    const uint32_t rank = CL > 1 ? cluster_rank() : 0u;
    pdl_trigger();
    if (threadIdx.x == 0) {
        v9_stamp<PROF>(0, true);
        v9_stamp<PROF>(1);
        ring_init<STAGES>(full0, empty0, WPG * CL);
    }
    if constexpr (CL > 1) cluster_sync();  // the peer's barriers exist before any multicast or remote arrive
    else __syncthreads();

    if (warp == WARPS) {
        v9_produce<MAXS, CH, STAGES, STAGE, W_STAGE, X_PITCH, CL, PROF>(x, wp, DIAG == 1 ? 0 : M, K, sh, ring0, full0,
                                                                       empty0, lane, rank, x_first != 0);
    } else {  // consumers
        if (threadIdx.x == 0) v9_stamp<PROF>(2);
        // The weight's global scale is constant (not the previous kernel's output): read it now, not in the tail
        // (~0.3 us there), and park it in shared memory (a register live across the loop spills the 16-warp NT = 2
        // build). The decoded weights carry 2^63.
        float* alpha_slot = reinterpret_cast<float*>(ring + STAGES * STAGE + 16 * STAGES);
        if (threadIdx.x == 0) *alpha_slot = (1.0f / g_w[0]) * TWO_POW_63;
        const int g = lane >> 2;
        const uint32_t lone_off = (uint32_t)(cnt >> 1) * 2 * V9_CHUNK_BYTES;  // after the cnt / 2 pair units
        const uint32_t lone_sel = (uint32_t)(lane & 1) * 2;                   // this lane's 2 bytes in its scale word
        float acc[NP + 1][NT][4];  // units 0 .. NP - 1: pairs, NP: the lone slice
        float acc_l2[NT][4];       // LS: the lone unit's second set
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int u = 0; u <= NP; ++u) acc[u][n][i] = 0.0f;
                acc_l2[n][i] = 0.0f;
            }
        }

        // One chunk's operands, read from the stage into registers: x's B fragments, the pair units' code words and
        // scale words, the lone unit's.
        struct Chunk {
            u32x4 xb[NT][2][2];  // [token tile][atom][half]: x[tok][64 a + 16 t + 8 half + 0..7]
            u32x4 pw[NP][2];     // pair unit u, atom a: 4 code words (steps 0..3)
            uint32_t ps[NP];     // pair unit u: scale bytes (a0 row g, a0 row g + 8, a1 row g, a1 row g + 8)
            u32x4 lw;            // lone unit: 4 code words (atom a, jj) = word 2 a + jj
            uint32_t ls;         // lone unit: the scale word holding this lane's 2 bytes
        };
        auto load_chunk = [&](Chunk& c, int slot, int j) {
            const uint32_t wbase = ring0 + slot * STAGE + j * MAXS * V9_CHUNK_BYTES;
            const uint32_t xbase = ring0 + slot * STAGE + W_STAGE + g * X_PITCH + j * 256 + (lane & 3) * 32;
#pragma unroll
            for (int n = 0; n < NT; ++n)
#pragma unroll
                for (int a = 0; a < 2; ++a)
#pragma unroll
                    for (int h = 0; h < 2; ++h) c.xb[n][a][h] = lds16(xbase + 8 * n * X_PITCH + a * 128 + h * 16);
            // every pair slot is read and decoded (stale bytes past cnt / 2 give accumulators never stored)
#pragma unroll
            for (int u = 0; u < NP; ++u) {
                c.pw[u][0] = lds16(wbase + u * 2 * V9_CHUNK_BYTES + lane * 16);
                c.pw[u][1] = lds16(wbase + u * 2 * V9_CHUNK_BYTES + 512 + lane * 16);
                c.ps[u] = lds4(wbase + u * 2 * V9_CHUNK_BYTES + 1024 + lane * 4);
            }
            c.lw = lds16(wbase + lone_off + lane * 16);
            c.ls = lds4(wbase + lone_off + 512 + (lane >> 1) * 4);
        };
        auto compute_chunk = [&](const Chunk& c) {
#pragma unroll
            for (int a = 0; a < 2; ++a) {
#pragma unroll
                for (int jp = 0; jp < 4; ++jp) {  // k16 step jp of atom a
#pragma unroll
                    for (int u = 0; u < NP; ++u) {
                        const uint32_t sg = v4_scale(c.ps[u], 2 * a), sh = v4_scale(c.ps[u], 2 * a + 1);
                        uint32_t r[4];
                        v9_decode<DIAG>(word_of(c.pw[u][a], jp), sg, sh, r);
                        if constexpr (DIAG == 2) {
                            v9_sink(acc[u][0][0], r);
                            continue;
                        }
#pragma unroll
                        for (int n = 0; n < NT; ++n) {
                            const u32x4& xv = c.xb[n][a][jp >> 1];
                            mma_bf16_16816(acc[u][n], r[0], r[1], r[2], r[3], (jp & 1) ? xv.z : xv.x, (jp & 1) ? xv.w : xv.y);
                        }
                    }
                    if (jp & 1) {  // the lone unit: one word per two steps (2 jj, 2 jj + 1 with jj = jp / 2)
                        const uint32_t sl = v4_scale(c.ls, (int)lone_sel + a);
                        uint32_t r[4];
                        v9_decode<DIAG>(word_of(c.lw, 2 * a + (jp >> 1)), sl, sl, r);
                        if constexpr (DIAG == 2) {
                            v9_sink(acc[NP][0][0], r);
                            continue;
                        }
#pragma unroll
                        for (int n = 0; n < NT; ++n) {
                            const u32x4& xv = c.xb[n][a][jp >> 1];
                            mma_bf16_16816(acc[NP][n], r[0], 0u, r[2], 0u, xv.x, xv.y);
                            mma_bf16_16816(LS ? acc_l2[n] : acc[NP][n], r[1], 0u, r[3], 0u, xv.z, xv.w);
                        }
                    }
                }
            }
        };
        auto release = [&](int slot) {
            __syncwarp();
            if (lane == 0) {
                mbar_arrive(empty0 + 8 * slot);
                if constexpr (CL > 1) mbar_arrive_remote(empty0 + 8 * slot, rank ^ 1u);
            }
        };
        constexpr int JJ = CH / WPG;  // chunks per warp and stage
        // x rows M .. XR - 1 are never copied: the consumers zero them once in every stage (so their mma columns are
        // exact zeros) while the first copies are in flight; the producer starts at once (zeroing ~58 KB before the
        // CTA barrier delayed the first copies by ~1 us at M = 1).
        for (int i = threadIdx.x; i < STAGES * (XR - M) * (X_PITCH / 16); i += WARPS * 32) {
            const int st = i / ((XR - M) * (X_PITCH / 16)), r = i % ((XR - M) * (X_PITCH / 16));
            *reinterpret_cast<uint4*>(ring + st * STAGE + W_STAGE + M * X_PITCH + r * 16) = make_uint4(0, 0, 0, 0);
        }
        asm volatile("bar.sync 1, %0;" ::"n"(WARPS * 32) : "memory");
        const bool leader = PROF && warp % WPG == 0 && lane == 0;
        for (int st = warp / WPG; st < n_st; st += NG) {
            const int slot = st % STAGES, nc = min(CH, n_chunks - st * CH);
            if (leader && st < 32) v9_stamp<PROF>(40 + st);
            mbar_wait(full0 + 8 * slot, (st / STAGES) & 1);
            if (leader && st < 32) v9_stamp<PROF>(72 + st);
            if constexpr (DIAG == 1 || DIAG == 4) {
                release(slot);
            } else if constexpr (ER) {
                // early release: the warp's chunks to registers, the stage freed for the next copies, then the math
                Chunk c[JJ];
#pragma unroll
                for (int jj = 0; jj < JJ; ++jj) load_chunk(c[jj], slot, warp % WPG + jj * WPG);
                release(slot);
#pragma unroll
                for (int jj = 0; jj < JJ; ++jj)
                    if (warp % WPG + jj * WPG < nc) compute_chunk(c[jj]);
            } else {
                for (int j = warp % WPG; j < nc; j += WPG) {
                    Chunk c;
                    load_chunk(c, slot, j);
                    compute_chunk(c);
                }
                release(slot);
            }
            if (leader && st < 32) v9_stamp<PROF>(104 + st);
        }
        if (PROF && lane == 0) v9_stamp<PROF>(136 + warp);
        if constexpr (DIAG != 1 && DIAG != 4) {
            asm volatile("bar.sync 1, %0;" ::"n"(WARPS * 32) : "memory");
            if (threadIdx.x == 0) v9_stamp<PROF>(5);
            float* red = reinterpret_cast<float*>(ring);  // [warp][unit][nt][i][lane]
            if constexpr (LS) {
#pragma unroll
                for (int n = 0; n < NT; ++n)
#pragma unroll
                    for (int i = 0; i < 4; ++i) acc[NP][n][i] += acc_l2[n][i];
            }
#pragma unroll
            for (int u = 0; u <= NP; ++u)
#pragma unroll
                for (int n = 0; n < NT; ++n)
#pragma unroll
                    for (int i = 0; i < 4; ++i) red[(((warp * (NP + 1) + u) * NT + n) * 4 + i) * 32 + lane] = acc[u][n][i];
            asm volatile("bar.sync 1, %0;" ::"n"(WARPS * 32) : "memory");
            if (threadIdx.x == 0) v9_stamp<PROF>(6);
            pdl_wait();
            const float alpha = *alpha_slot;
            // Element e = ((u NT + n) 4 + i) 32 + lane: row g (i < 2) or g + 8 of unit u, token 8 n + 2 t + (i & 1).
            for (int e = threadIdx.x; e < (NP + 1) * NT * 128; e += WARPS * 32) {
                const int el = e & 31, i = (e >> 5) & 3, un = e >> 7, u = un / NT, n = un % NT;
                const int tok = 8 * n + 2 * (el & 3) + (i & 1);
                // the slice: pair u's first (i < 2) or second slice, or the lone slice (rows g + 8 of a lone unit: none)
                const int sl = u < NP ? 2 * u + (i >> 1) : ((cnt & 1) && i < 2 ? cnt - 1 : MAXS);
                if (tok >= M || sl >= cnt || (u < NP && 2 * u + 1 >= cnt)) continue;
                float v = 0.0f;
#pragma unroll
                for (int w = 0; w < WARPS; ++w) v += red[(((w * (NP + 1) + u) * NT + n) * 4 + i) * 32 + el];
                out[(long long)tok * N + 8 * (sh.lo + sl) + (el >> 2)] = f32_to_bf16(v * alpha);
            }
            if (threadIdx.x == 0) {
                v9_stamp<PROF>(4);
                v9_stamp<PROF>(3, true);
            }
        }
    }  // consumers
    // No CTA may exit while its peer can still multicast into its stages or arrive on its barriers.
    if constexpr (CL > 1) cluster_sync();
}
// v9p<MAXS, NT, WARPS, CH, STAGES, DIAG>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4>
// @instantiate w4a16_v9p<7, 1, 8, 16, 2>
// @instantiate w4a16_v9p<7, 1, 12, 12, 3>
// @instantiate w4a16_v9p<7, 1, 16, 8, 4>
// @instantiate w4a16_v9p<7, 1, 16, 4, 8>
// @instantiate w4a16_v9p<7, 2, 8, 8, 3>
// @instantiate w4a16_v9p<7, 2, 16, 8, 3>
// clusters of 2 sharing x's copies (multicast)
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 0, 2>
// @instantiate w4a16_v9p<7, 1, 12, 12, 3, 0, 2>
// @instantiate w4a16_v9p<7, 1, 16, 8, 4, 0, 2>
// @instantiate w4a16_v9p<7, 2, 8, 8, 3, 0, 2>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 4, 2>
// early release (ER): each warp's chunks copied to registers, the stage freed before the math
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 0, 1, true>
// @instantiate w4a16_v9p<7, 1, 8, 16, 2, 0, 1, true>
// @instantiate w4a16_v9p<7, 1, 12, 12, 3, 0, 1, true>
// @instantiate w4a16_v9p<7, 1, 16, 8, 4, 0, 1, true>
// @instantiate w4a16_v9p<7, 1, 16, 4, 8, 0, 1, true>
// @instantiate w4a16_v9p<7, 2, 8, 8, 3, 0, 1, true>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 1>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 2>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 3>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 4>
// timelines (PROF: clock stamps in v9_prof)
// @instantiate w4a16_v9p<7, 1, 16, 8, 4, 0, 1, true, true>
// @instantiate w4a16_v9p<7, 1, 16, 8, 4, 1, 1, true, true>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 0, 1, false, true>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 1, 1, false, true>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 2, 1, false, true>
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 3, 1, false, true>
// the lone unit in two accumulator sets (LS)
// @instantiate w4a16_v9p<7, 1, 8, 8, 4, 0, 1, false, false, true>
// @instantiate w4a16_v9p<7, 1, 16, 8, 4, 0, 1, true, false, true>
// @instantiate w4a16_v9p<7, 1, 12, 12, 3, 0, 1, true, false, true>

// v9<MAXS, XR, WARPS, CH, STAGES, DIAG>
// @instantiate w4a16_v9<7, 8, 8, 8, 4>
// @instantiate w4a16_v9<7, 8, 8, 16, 2>
// @instantiate w4a16_v9<7, 8, 12, 12, 3>
// @instantiate w4a16_v9<7, 16, 8, 8, 3>
// @instantiate w4a16_v9<7, 16, 12, 12, 2>
// @instantiate w4a16_v9<7, 32, 4, 4, 4>
// diagnostic (no output)
// @instantiate w4a16_v9<7, 8, 8, 8, 4, 1>
// @instantiate w4a16_v9<7, 8, 8, 8, 4, 2>
// @instantiate w4a16_v9<7, 8, 8, 8, 4, 3>
