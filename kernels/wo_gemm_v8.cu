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

// wgmma.m64nNk16 with A (x, K-major 64 rows) and B (the decoded weight, K-major N rows) in shared memory.
template <int N>
WB_DEVICE void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b);
template <>
__device__ __forceinline__ void wgmma_ss<128>(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %66, 0; "
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0; }"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(1));
}
template <>
__device__ __forceinline__ void wgmma_ss<256>(float (&d)[128], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{ .reg .pred p; setp.ne.b32 p, %130, 0; "
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0; }"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(desc_a), "l"(desc_b), "r"(1));
}
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
