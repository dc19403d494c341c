// wo_gemm_v8.cu: v7's product (tokens as wgmma M, weight rows as N, the weight decoded into shared
// memory), warp-specialized: decoder warps and MMA warpgroups meet only at mbarriers.
//
//   ws[tok, n] += x[tok, :] @ W[n, :]^T (fp32, reduce only; kernels/wo_gemm_v7.cu's wo_finalize_tm converts).
//
// Why (docs/notes_wo_gemm.md, eighth pass): v7 made every consumer warpgroup decode its rows, meet its
// other warps at two barriers per 64-k chunk and then issue that chunk's wgmma, so decode, barriers and
// tensor work took turns (44-50 us against v5's 31-37 on an H100). Here they are different warps:
// - one producer warp streams units (ROWS = NB * NMMA weight rows x 256 k of the grouped scale-pairs v5
//   stream, and the x tile as a TMA box of 64 token rows, zero-filled past M) into a STAGES-deep ring;
// - NDEC decoder warpgroups decode each 64-k chunk of a unit (2 tiles of 16 rows per warp at 256 rows)
//   into one of two decoded slots (ROWS x 64 k bf16, the 128-byte-swizzled K-major wgmma B layout),
//   fence the stores for the async proxy and arrive on the slot's "full" barrier;
// - NMMA MMA warpgroups wait for the slot, issue 4 wgmma.m64nNBk16 with both operands in shared memory
//   (A: the x atom, B: their NB rows of the slot), and once a group has retired (every warp's own wait:
//   a warp's wait covers only its 16 rows) arrive on the slot's "empty" barrier and, after a unit's last
//   chunk, on the ring stage's (the wgmma reads x from it).
// A row-group change flushes the accumulators with red.global.add.v4 into the token-major workspace.
#include "wb_common.cuh"
#include "wb_nvfp4_decode.cuh"
#include "wb_tma.cuh"
#include "wb_streamk.cuh"
#include "wb_pdl.cuh"
#include "wb_wgmma.cuh"

// NB weight rows per MMA warpgroup (wgmma N), NMMA MMA warpgroups, NDEC decoder warpgroups, STAGES units in
// flight. Warpgroups: MMA first, then decoders, then the producer's (its first warp streams, the other three
// leave). Registers are allocated per warpgroup: the launch gives each thread 65536 / threads; the producer's
// warpgroup hands most of its share back (setmaxnreg.dec to 40) and the MMA warpgroups take it (setmaxnreg.inc
// to MMA_REGS: 64 accumulators, the descriptors and the flush spilled at 128).
template <int NB, int NMMA, int NDEC, int STAGES>
__global__ void __launch_bounds__((NMMA + NDEC + 1) * 128, 1) w4a16_v8(
    const __grid_constant__ TmaDescriptor x_map, const uint8_t* __restrict__ wp, float* __restrict__ ws,
    unsigned int* __restrict__ counters, int M, int N, int K, int s0, int grab) {
    constexpr int BK = 256, BB = 9 * BK, CHUNKS = BK / 64, TOKP = 64;
    constexpr int ROWS = NB * NMMA, TILES = ROWS / 16, W_STAGE = TILES * BB;
    constexpr int X_ATOM = TOKP * 128, X_STAGE = CHUNKS * X_ATOM, SLOT = ROWS * 128, ND = NB / 2;
    constexpr int DEC_WARPS = NDEC * 4, MMA_WARPS = NMMA * 4;
    static_assert(NB == 128 || NB == 256, "NB: a wgmma N of 128 or 256");
    static_assert(TILES <= 32 && TILES >= DEC_WARPS, "every decoder warp has a tile");

    pdl_trigger();  // wo_finalize_tm (launched with PDL) may be scheduled now; it waits for our completion
    extern __shared__ uint8_t smem_raw[];
    __shared__ int unit_of[STAGES];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uint64_t>(smem_raw) + 1023) & ~(uint64_t)1023);
    uint8_t* xs = smem;                      // STAGES x tiles (1024-aligned atoms)
    uint8_t* slots = xs + STAGES * X_STAGE;  // 2 decoded slots
    uint8_t* wsm = slots + 2 * SLOT;         // STAGES weight units
    const uint32_t full0 = smem_addr(wsm + STAGES * W_STAGE), empty0 = full0 + 8 * STAGES;
    const uint32_t sfull0 = empty0 + 8 * STAGES, sempty0 = sfull0 + 16;

    // per thread at launch; setmaxnreg.inc takes only what other warpgroups of the CTA gave back (a larger
    // request waits forever): the producer's warpgroup keeps 40, decoders keep DEC_REGS, the MMA warpgroups
    // share the rest
    constexpr int BASE_REGS = 65536 / ((NMMA + NDEC + 1) * 128) / 8 * 8, PRODUCER_REGS = 40;
    constexpr int DEC_REGS = NDEC > 1 ? BASE_REGS - 8 : BASE_REGS;
    constexpr int MMA_REGS = (BASE_REGS + ((BASE_REGS - PRODUCER_REGS) + NDEC * (BASE_REGS - DEC_REGS)) / NMMA) / 8 * 8;
    static_assert(MMA_REGS * NMMA + DEC_REGS * NDEC + PRODUCER_REGS <= BASE_REGS * (NMMA + NDEC + 1), "pool");
    static_assert(MMA_REGS <= 256 && MMA_REGS >= BASE_REGS, "register split");
    const int warp = __shfl_sync(0xffffffffu, threadIdx.x >> 5, 0), lane = threadIdx.x & 31;
    const int n_kc = K / BK, units = (N / ROWS) * n_kc;
    if (threadIdx.x == 0) {
        ring_init<STAGES>(full0, empty0, DEC_WARPS + MMA_WARPS);  // a stage is free once decoded and multiplied
        for (int s = 0; s < 2; ++s) {
            mbar_init(sfull0 + 8 * s, DEC_WARPS);
            mbar_init(sempty0 + 8 * s, MMA_WARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const uint32_t x_base = smem_addr(xs), slot_base = smem_addr(slots), w_base = smem_addr(wsm);

    if (warp >= MMA_WARPS + DEC_WARPS) {  // producer warpgroup; its first warp streams (produce_ring)
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(PRODUCER_REGS));
        if (warp != MMA_WARPS + DEC_WARPS) return;
        produce_ring<STAGES, CHUNKS, X_ATOM>(units, s0, grab, counters + (N >> 4), lane, W_STAGE + X_STAGE, full0,
                                             empty0, unit_of, xs, X_STAGE, &x_map, n_kc, BK, true, [&](int s, int u) {
            if (lane < TILES)
                bulk_load(smem_addr(wsm + s * W_STAGE + lane * BB),
                          wp + ((long long)u * TILES + lane) * BB, BB, full0 + 8 * s);  // grouped: unit u is one run
        });
        return;
    }

    if (warp >= MMA_WARPS) {  // decoder warp d: tiles d, d + DEC_WARPS, .. of each unit, chunk by chunk
        const int d = warp - MMA_WARPS;
        if constexpr (DEC_REGS < BASE_REGS) asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(DEC_REGS));
        uint32_t bias_reg;
        asm("mov.b32 %0, %1;" : "=r"(bias_reg) : "n"(PAIR_BIAS));
        int k = 0;  // chunks decoded so far: slot k & 1, its (k >> 1)-th fill
        for (int i = 0;; ++i) {
            const int s = i % STAGES, u = ring_take<STAGES>(i, full0, unit_of);
            if (u < 0) break;
            const uint32_t wb = w_base + s * W_STAGE;
#pragma unroll 1
            for (int c = 0; c < CHUNKS; ++c, ++k) {
                const uint32_t slot = slot_base + (k & 1) * SLOT;
                mbar_wait(sempty0 + 8 * (k & 1), ((k >> 1) & 1) ^ 1);  // the MMA warps are done with its last fill
#pragma unroll 1
                for (int lt = d; lt < TILES; lt += DEC_WARPS)
                    decode_chunk_to_tile(wb + lt * BB, c, slot, 16 * lt, bias_reg, lane);
                asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // stmatrix -> wgmma's async proxy
                __syncwarp();
                if (lane == 0) mbar_arrive(sfull0 + 8 * (k & 1));
            }
            __syncwarp();
            if (lane == 0) mbar_arrive(empty0 + 8 * s);  // this warp's reads of the stage are done
        }
        return;
    }

    // MMA warpgroup m, warp q: tokens 16 q .. 16 q + 15 of the accumulator rows, weight rows m * NB .. of a unit
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(MMA_REGS));
    const int m = warp >> 2, q = warp & 3, g = lane >> 2, t = lane & 3;
    float acc[ND];
#pragma unroll
    for (int e = 0; e < ND; ++e) acc[e] = 0.0f;
    auto flush = [&](int u) {
        pdl_wait();  // the workspace belongs to the previous kernel until it completes
        wgmma_wait<0>();
#pragma unroll
        for (int e = 0; e < ND; ++e) keep(acc[e]);
        const int n0 = (u / n_kc) * ROWS + m * NB;
        if (16 * q < M) {
#pragma unroll
            for (int j = 0; j < NB / 8; ++j)
                red_add_frag(ws, N, 16 * q + g, n0 + 8 * j, acc[4 * j], acc[4 * j + 1], acc[4 * j + 2],
                             acc[4 * j + 3], t, 16 * q + g + 8 * (t & 1) < M);
        }
#pragma unroll
        for (int e = 0; e < ND; ++e) acc[e] = 0.0f;
    };
    // group k (chunk k) retired by this warp: free its slot; after a unit's last chunk, its ring stage too
    auto retire = [&](int k, int stage_of_k) {
        if (lane == 0) {
            mbar_arrive(sempty0 + 8 * (k & 1));
            if ((k & (CHUNKS - 1)) == CHUNKS - 1) mbar_arrive(empty0 + 8 * stage_of_k);
        }
    };
    int k = 0, cur = -1, prev_stage = 0;
    for (int i = 0;; ++i) {
        const int s = i % STAGES, u = ring_take<STAGES>(i, full0, unit_of);
        if (u < 0) break;
        if (cur >= 0 && u / n_kc != cur / n_kc) flush(cur);
        cur = u;
        const uint32_t xb = x_base + s * X_STAGE;
#pragma unroll 1
        for (int c = 0; c < CHUNKS; ++c, ++k) {
            const uint32_t slot = slot_base + (k & 1) * SLOT + m * NB * 128;
            mbar_wait(sfull0 + 8 * (k & 1), (k >> 1) & 1);
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < 4; ++j)
                wgmma_ss<NB>(acc, desc_kmajor_sw128(xb + c * X_ATOM + 32 * j), desc_kmajor_sw128(slot + 32 * j));
            wgmma_commit();
            wgmma_wait<1>();  // group k - 1 retired
            if (k > 0) retire(k - 1, c == 0 ? prev_stage : s);
        }
        prev_stage = s;
    }
    wgmma_wait<0>();
    if (k > 0) retire(k - 1, prev_stage);
    if (cur >= 0) flush(cur);
}
// v8<NB, NMMA, NDEC, STAGES>. Two decoder warpgroups do not fit: 640 threads get 96 registers each at launch, and
// with the MMA warpgroups raised to 128 (all the others gave back) the build still spilled 44 B; with a larger
// request (counting the SM's unallocated registers) setmaxnreg.inc waited forever on an H100 (the pool is the
// CTA's own). N = 256 with one MMA warpgroup and three decoder warpgroups does not compile (ptxas needs 154
// registers at the launch bound for the m64n256k16 instruction).
// @instantiate w4a16_v8<128, 2, 1, 2>
