// wo_gemm_v7.cu: the fused NVFP4 W4A16 wo GEMM with the weight as the wgmma B operand, decoded into
// shared memory, and the activations as the A operand from registers.
//
//   ws[tok, n] += x[tok, :] @ W[n, :]^T (fp32 partial sums, reduce only), then wo_finalize_tm:
//   out[M, N] (bf16) = ws * unit / g_w.  M <= TOKP <= 64.
//
// Why (docs/notes_wo_gemm.md, eighth pass): v5 decodes the weight into the A registers of
// wgmma.m64nTOKPk16, one instruction per 64 x 16 weights, 869 per SM for the wo shape, and its "no decode"
// diagnostic build (each code word fed straight to the tensor cores) was as slow as the full kernel: ~67 SM
// cycles per instruction in place at M = 32 on an H100, where the instruction alone runs at 16
// (scripts/gpu_wgmma_rate.py). The hypothesis tested here: fewer, wider instructions. The tokens (padded to
// 64) are wgmma's M, the weight rows its N (NB = 128 per warpgroup), so one instruction covers NB x 16
// weights. The price: the decoded weight makes a round trip through shared memory (stmatrix writes it in
// the 128-byte-swizzled K-major layout wgmma reads, 4 B per weight). Measured slower than v5 (the notes).
//
// Per CTA (one per SM): one producer warp streams units (ROWS = NB * NWG weight rows x 256 k, the
// unit-grouped v5 stream with scale pairs, plus the x tile by TMA) into a STAGES-deep ring. Each
// consumer warpgroup owns NB rows of a unit; per 64-k chunk its 4 warps
// 1. load the x A fragments of the chunk (ldmatrix from the swizzled x tile; warps whose 16 tokens lie
//    past TOKP hold zeros),
// 2. decode their NB / 64 16-row tiles (the v5 decode: each code word gives one m16k16 fragment) and
//    store them with stmatrix into the warpgroup's B buffer (NBUF buffers of NB rows x 64 k),
// 3. fence the generic-proxy stores for the async proxy, meet at a warpgroup barrier, and issue 4
//    wgmma.m64nNBk16 (one per k16 step) into one accumulator set, committed as one group;
// 4. wait until at most NBUF - 1 groups are in flight (the buffer and the A registers of the oldest are
//    free again).
// The ring stage is released as soon as the chunk loop of a unit is done (the wgmma never reads it).
// A row-group change flushes the accumulators with red.global.add.v4 into the token-major workspace.
#include "wb_common.cuh"
#include "wb_nvfp4_decode.cuh"
#include "wb_tma.cuh"
#include "wb_streamk.cuh"
#include "wb_pdl.cuh"
#include "wb_wgmma.cuh"

// x is wgmma_rs's register A operand here (wb_wgmma.cuh), the decoded weight its shared-memory B.
// TOKP tokens (16, 32 or 64: the x box rows), NB weight rows per consumer warpgroup (wgmma N: 128 or 256),
// NWG consumer warpgroups, STAGES units in flight, NBUF B buffers per warpgroup. Always reduce-only.
// __maxnreg__ instead of __launch_bounds__: with the bounds ptxas capped these 288-thread builds at 168
// registers (as if for 384 threads) and spilled; 288 x 200 registers still fit one CTA per SM.
template <int TOKP, int NB, int NWG, int STAGES, int NBUF>
__global__ void __maxnreg__(200) w4a16_v7(
    const __grid_constant__ TmaDescriptor x_map, const uint8_t* __restrict__ wp, float* __restrict__ ws,
    unsigned int* __restrict__ counters, int M, int N, int K, int s0, int grab) {
    constexpr int BK = 256, BB = 9 * BK, CHUNKS = BK / 64;  // one 256-k stream block per unit
    constexpr int ROWS = NB * NWG, TILES = ROWS / 16, W_STAGE = TILES * BB;
    constexpr int X_ATOM = TOKP * 128, X_STAGE = CHUNKS * X_ATOM;
    constexpr int B_BUF = NB * 128, TPW = NB / 64, ND = NB / 2;
    static_assert(TOKP == 16 || TOKP == 32 || TOKP == 64, "TOKP: 16, 32 or 64 tokens (16 is not instantiated)");
    static_assert(NB == 128 || NB == 256, "NB: a wgmma N of 128 or 256 weight rows");
    static_assert(TILES <= 32 && NBUF >= 2 && CHUNKS % NBUF == 0, "ROWS, NBUF");

    pdl_trigger();  // wo_finalize_tm (launched with PDL) may be scheduled now; it waits for our completion
    extern __shared__ uint8_t smem_raw[];
    __shared__ int unit_of[STAGES];
    // x stages (1024-aligned atoms), then the B buffers (1024-aligned), then the weight stages, then barriers.
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uint64_t>(smem_raw) + 1023) & ~(uint64_t)1023);
    uint8_t* xs = smem;
    uint8_t* bs = xs + STAGES * X_STAGE;
    uint8_t* wsm = bs + NWG * NBUF * B_BUF;
    const uint32_t full0 = smem_addr(wsm + STAGES * W_STAGE), empty0 = full0 + 8 * STAGES;

    const int warp = __shfl_sync(0xffffffffu, threadIdx.x >> 5, 0), lane = threadIdx.x & 31;
    const int n_kc = K / BK, units = (N / ROWS) * n_kc;
    if (threadIdx.x == 0) ring_init<STAGES>(full0, empty0, NWG * 4);
    __syncthreads();

    if (warp == NWG * 4) {  // producer warp: produce_ring (wb_streamk.cuh), the grouped stream
        produce_ring<STAGES, CHUNKS, X_ATOM>(units, s0, grab, counters + (N >> 4), lane, W_STAGE + X_STAGE, full0,
                                             empty0, unit_of, xs, X_STAGE, &x_map, n_kc, BK, true, [&](int s, int u) {
            if (lane < TILES)
                bulk_load(smem_addr(wsm + s * W_STAGE + lane * BB),
                          wp + ((long long)u * TILES + lane) * BB, BB, full0 + 8 * s);  // grouped: unit u is one run
        });
        return;
    }

    const int wg = warp >> 2, q = warp & 3, g = lane >> 2, t = lane & 3;
    uint32_t bias_reg;  // PAIR_BIAS in a register: each scale pair is one LOP3
    asm("mov.b32 %0, %1;" : "=r"(bias_reg) : "n"(PAIR_BIAS));
    float acc[ND];
#pragma unroll
    for (int e = 0; e < ND; ++e) acc[e] = 0.0f;
    uint32_t xa[NBUF][4][4];  // x A fragments of a chunk's 4 k16 steps, one set per group in flight
    const bool has_tokens = 16 * q < TOKP;
    const uint32_t x_base = smem_addr(xs), w_base = smem_addr(wsm);
    const uint32_t b_base = smem_addr(bs) + wg * NBUF * B_BUF;
    // this lane's ldmatrix row: matrix L / 8 of the warp's 16 tokens (odd matrices: rows + 8; 2, 3: k + 8)
    const int mi = lane >> 3, rr = lane & 7;
    const int ld_row = 16 * q + rr + 8 * (mi & 1);

    auto flush = [&](int u) {
        pdl_wait();  // the workspace belongs to the previous kernel until it completes
        wgmma_wait<0>();
#pragma unroll
        for (int e = 0; e < ND; ++e) keep(acc[e]);
        const int n0 = (u / n_kc) * ROWS + wg * NB;
        if (has_tokens) {
#pragma unroll
            for (int j = 0; j < NB / 8; ++j)
                red_add_frag(ws, N, 16 * q + g, n0 + 8 * j, acc[4 * j], acc[4 * j + 1], acc[4 * j + 2],
                             acc[4 * j + 3], t, 16 * q + g + 8 * (t & 1) < M);
        }
#pragma unroll
        for (int e = 0; e < ND; ++e) acc[e] = 0.0f;
    };

    int cur = -1;
    for (int i = 0;; ++i) {
        const int s = i % STAGES, u = ring_take<STAGES>(i, full0, unit_of);
        if (u < 0) break;
        if (cur >= 0 && u / n_kc != cur / n_kc) flush(cur);
        cur = u;
        const uint32_t xb = x_base + s * X_STAGE, wb = w_base + s * W_STAGE;
        // Unrolled, so the buffer index is a constant: a runtime-indexed A register set would live in local
        // memory, and the registers a wgmma reads would be reused before it retires (wrong results).
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            const int buf = c % NBUF;  // one wgmma group per chunk; CHUNKS % NBUF == 0: every unit starts at 0
            const uint32_t bb = b_base + buf * B_BUF;
            // Every warp has retired group c - NBUF (its wait at the end of the last chunk) before any warp
            // overwrites that group's B buffer: one warp's wait covers only its own 16 rows of the wgmma,
            // while all four read the whole buffer.
            asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");
            // x A fragments straight into this group's set (the group that last read it has retired)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if (has_tokens) {
                    ldmatrix_x4(xb + c * X_ATOM + sw128_offset(ld_row, 2 * j + (mi >> 1)), xa[buf][j]);
                } else {
#pragma unroll
                    for (int r = 0; r < 4; ++r) xa[buf][j][r] = 0u;
                }
            }
#pragma unroll
            for (int tt = 0; tt < TPW; ++tt) {
                const int lt = q * TPW + tt;  // tile within the warpgroup's NB rows
                decode_chunk_to_tile(wb + (wg * (NB / 16) + lt) * BB, c, bb, 16 * lt, bias_reg, lane);
            }
            // the stmatrix stores (generic proxy) must be visible to the wgmma (async proxy) of all 4 warps
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < 4; ++j) wgmma_rs<NB>(acc, xa[buf][j], desc_kmajor_sw128(bb + 32 * j));
            wgmma_commit();
            wgmma_wait<NBUF - 1>();  // the oldest group is retired: its B buffer and A registers are free
#pragma unroll
            for (int b = 0; b < NBUF; ++b)
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int r = 0; r < 4; ++r) keep(xa[b][j][r]);
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(empty0 + 8 * s);  // decode and ldmatrix done: the wgmma never reads the stage
    }
    if (cur >= 0) flush(cur);
}

// After a v7 launch: out[tok, n] = bf16(ws[tok * N + n] * unit / g_w) for tok < M, ws zeroed. The workspace
// is token-major, so each thread reads 8 consecutive fp32 (two 16-byte loads) and writes 8 bf16 (one 16-byte
// store) of one token row; launched with PDL, it waits for the GEMM in griddepcontrol.wait.
extern "C" __global__ void __launch_bounds__(256) wo_finalize_tm(float* __restrict__ ws, const float* __restrict__ g_w,
                                                                 uint16_t* __restrict__ out, int M, int N, float unit) {
    pdl_wait();
    pdl_trigger();  // the next kernel may be scheduled; it waits for our completion before touching ws or out
    const long long e = 8 * ((long long)blockIdx.x * blockDim.x + threadIdx.x);
    if (e >= (long long)M * N) return;
    const float alpha = (1.0f / g_w[0]) * unit;
    float4* p = reinterpret_cast<float4*>(ws + e);
    const float4 a = __ldcg(p), b = __ldcg(p + 1);
    __stcg(p, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    __stcg(p + 1, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    *reinterpret_cast<uint4*>(out + e) =
        make_uint4(f32x2_to_bf16x2(a.x * alpha, a.y * alpha), f32x2_to_bf16x2(a.z * alpha, a.w * alpha),
                   f32x2_to_bf16x2(b.x * alpha, b.y * alpha), f32x2_to_bf16x2(b.z * alpha, b.w * alpha));
}
// v7<TOKP, NB, NWG, STAGES, NBUF> (NB = 256 with one warpgroup spilled: 128 accumulators plus the A sets; TOKP 16
// needed 170 registers, which failed to launch: out of resources)
// @instantiate w4a16_v7<32, 128, 2, 3, 2>
// @instantiate w4a16_v7<64, 128, 2, 2, 2>
