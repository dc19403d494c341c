// wb_streamk.cuh: the producer/consumer ring and the stream-K work schedule shared by the streaming
// GEMMs (kernels/wo_gemm.cu v6, kernels/wo_gemm_v5.cu).
// - A STAGES-deep ring in shared memory: per stage a "full" mbarrier (armed by the producer with the
//   bytes its copies will deliver) and an "empty" one (the consumers' arrivals), plus the unit each
//   stage holds (-1: no more work).
// - The schedule: a CTA's producer takes units (row group x k slice) either as an equal contiguous share
//   (static stream-K) or as a static part followed by grabs from a global counter (dynamic).
// - The stream-K fixup: the last contributor of a 16-row tile converts its fp32 workspace rows to bf16.
// - The in-kernel finalize of the reduce-only builds: a grid barrier, then every CTA converts its share of
//   the workspace (grid_finalize).
#pragma once
#include "wb_common.cuh"
#include "wb_tma.cuh"
#include "wb_pdl.cuh"

// Thread 0: the full barriers expect one arrival (the producer's, plus the copies' bytes), the empty
// ones `consumers` arrivals. Followed by a CTA barrier at the call site.
template <int STAGES>
WB_DEVICE void ring_init(uint32_t full0, uint32_t empty0, uint32_t consumers) {
    for (int s = 0; s < STAGES; ++s) {
        mbar_init(full0 + 8 * s, 1);
        mbar_init(empty0 + 8 * s, consumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// Producer warp, all lanes: claim stage i % STAGES for unit u (lane 0 waits until the consumers freed
// it, records u and arms the full barrier for `bytes`; u < 0 completes it empty: the end marker).
// Returns the stage; the lanes then issue the stage's copies on full0 + 8 * stage.
// NB > 1 (kernels/wo_gemm_v5.cu, LEAN bit 9): NB full barriers per stage, full0 + 8 (stage NB + b); barriers 1 ..
// NB - 1 are armed for part_bytes each, barrier 0 for the rest of `bytes`; the end marker completes barrier 0 only.
template <int STAGES, int NB = 1>
WB_DEVICE int ring_claim(int i, int u, uint32_t bytes, uint32_t full0, uint32_t empty0, int* unit_of, int lane,
                         uint32_t part_bytes = 0) {
    const int s = i % STAGES;
    if (lane == 0) {
        mbar_wait(empty0 + 8 * s, ((i / STAGES) & 1) ^ 1);
        unit_of[s] = u;
        if (u >= 0) {
            mbar_arrive_expect_tx(full0 + 8 * s * NB, bytes - (NB - 1) * part_bytes);
            for (int b = 1; b < NB; ++b) mbar_arrive_expect_tx(full0 + 8 * (s * NB + b), part_bytes);
        } else {
            mbar_arrive(full0 + 8 * s * NB);
        }
    }
    __syncwarp();
    return s;
}

// Consumer: wait until stage i % STAGES is full and return its unit (-1: no more work).
template <int STAGES>
WB_DEVICE int ring_take(int i, uint32_t full0, const int* unit_of) {
    mbar_wait(full0 + 8 * (i % STAGES), (i / STAGES) & 1);
    return unit_of[i % STAGES];
}

// Producer warp, all lanes: the units of this CTA, in order, then -1. grab <= 0: an equal contiguous
// share of [0, units); grab > 0: the first s0 units of a contiguous share, then `grab` units at a time
// from the counter work[0] (lane 0 fetches the next grab while the current one is issued; the last
// producer out puts work[0] and work[1] back to zero for the next launch).
template <typename Emit>
WB_DEVICE void produce_units(int units, int s0, int grab, unsigned int* work, int lane, Emit&& emit) {
    if (grab <= 0) {
        const int u0 = (int)((long long)blockIdx.x * units / gridDim.x);
        const int u1 = (int)((long long)(blockIdx.x + 1) * units / gridDim.x);
        for (int u = u0; u < u1; ++u) emit(u);
    } else {
        pdl_wait();  // the counter is reset by the previous launch's last producer (PDL: it may still run)
        int next = lane == 0 ? (int)atomicAdd(work, (unsigned)grab) : 0;  // in flight during the static part
        for (int u = blockIdx.x * s0; u < min((blockIdx.x + 1) * s0, units); ++u) emit(u);
        for (;;) {
            const int base = gridDim.x * s0 + __shfl_sync(0xffffffffu, next, 0);
            if (base >= units) break;
            next = lane == 0 ? (int)atomicAdd(work, (unsigned)grab) : 0;
            for (int u = base; u < min(base + grab, units); ++u) emit(u);
        }
        if (lane == 0 && atomicAdd(work + 1, 1u) == gridDim.x - 1) {
            atomicExch(work, 0u);
            atomicExch(work + 1, 0u);
        }
    }
    emit(-1);
}

// The producer warp of the streaming wgmma GEMMs (kernels/wo_gemm_v5.cu, v7, v8), all lanes: for each unit of
// the CTA's work (produce_units) claim a ring stage, let copy_weight(stage, unit) issue the unit's weight copies
// and load its x tile: CHUNKS TMA boxes of 64 k (lane L < CHUNKS: k = (unit % n_kc) * kc + 64 L), X_ATOM bytes
// apart from xs + stage * x_stage (with_x false: none, a diagnostic build). Programmatic dependent launch: the
// first unit's weight copies go out before pdl_wait (the weight is constant), its x after it (the previous
// kernel may write x). Only that unit: deferring the x of every stage behind its weight delayed the first full
// stage by ~3 us at M = 32 on an H100 (commit d37540c). Without the launch attribute pdl_wait returns at once.
// NB > 1: NB full barriers per stage (ring_claim); x on barrier 0, copy_weight picks each copy's barrier.
// RAMP > 0: after the first RAMP units are issued, the producer waits until stage 0 is full before it issues
// the rest, so the first stage does not share the memory system with every other stage of the ring at the start.
// FIRST (static work only, grab <= 0): the kernel's prologue already claimed stage 0 for the CTA's first unit and
// issued its weight and x (early_first_unit); the producer starts at stage 1.
template <int STAGES, int CHUNKS, int X_ATOM, int NB = 1, int RAMP = 0, bool FIRST = false, typename CopyWeight>
WB_DEVICE void produce_ring(int units, int s0, int grab, unsigned int* work, int lane, uint32_t stage_bytes,
                            uint32_t full0, uint32_t empty0, int* unit_of, uint8_t* xs, int x_stage,
                            const TmaDescriptor* x_map, int n_kc, int kc, bool with_x, CopyWeight&& copy_weight,
                            uint32_t part_bytes = 0) {
    static_assert(RAMP >= 0 && RAMP < STAGES, "RAMP: stages issued before waiting for stage 0");
    static_assert(!FIRST || NB == 1, "FIRST: one full barrier per stage");
    const bool first_done = FIRST && grab <= 0;
    int i = 0, deferred = first_done ? -1 : 0;
    auto load_x = [&](int s, int u) {
        if (with_x && lane < CHUNKS)
            tma_load_2d(smem_addr(xs + s * x_stage + lane * X_ATOM), x_map, (u % n_kc) * kc + 64 * lane, 0,
                        full0 + 8 * s * NB);
    };
    produce_units(units, s0, grab, work, lane, [&](int u) {
        if (first_done && i == 0 && u >= 0) {  // the prologue issued this unit into stage 0
            i = 1;
            return;
        }
        if ((i == 1 || u < 0) && deferred >= 0) {  // the first unit's x, once the previous kernel is done
            pdl_wait();
            for (int s = 0; s < deferred; ++s) load_x(s, unit_of[s]);
            deferred = -1;
        }
        if (RAMP > 0 && i == RAMP) mbar_wait(full0, 0);  // stage 0 full (its first phase) before the rest go out
        const int s = ring_claim<STAGES, NB>(i++, u, stage_bytes, full0, empty0, unit_of, lane, part_bytes);
        if (u < 0) return;
        copy_weight(s, u);
        if (deferred >= 0) ++deferred;
        else load_x(s, u);
    });
}

// Thread 0, in the kernel's prologue (after ring_init, before the CTA barrier), static work only (grab <= 0): claim
// stage 0 for the CTA's first unit (its share as produce_units computes it) and issue that unit's weight, one bulk
// copy of w_bytes from weight_of(u), then, after pdl_wait, its x (CHUNKS TMA boxes of 64 k), all on full0. The
// straight-line prologue runs before the producer warp reaches its own code, which sits after the consumers' in the
// kernel and is fetched cold in every call. produce_ring<..., FIRST = true> then starts at stage 1.
template <int CHUNKS, int X_ATOM, typename WeightOf>
WB_DEVICE void early_first_unit(int units, int grab, uint32_t w_bytes, uint32_t x_bytes, uint32_t full0,
                                int* unit_of, uint32_t wdst, uint8_t* xs, const TmaDescriptor* x_map, int n_kc, int kc,
                                bool with_x, WeightOf&& weight_of) {
    if (grab > 0) return;
    const int u0 = (int)((unsigned)blockIdx.x * (unsigned)units / gridDim.x);
    const int u1 = (int)((unsigned)(blockIdx.x + 1) * (unsigned)units / gridDim.x);
    if (u0 >= u1) {
        pdl_wait();  // (the producer defers nothing then: keep the same wait for every CTA)
        return;
    }
    unit_of[0] = u0;
    mbar_arrive_expect_tx(full0, w_bytes + (with_x ? x_bytes : 0));
    bulk_load(wdst, weight_of(u0), w_bytes, full0);
    pdl_wait();  // the previous kernel may write x until it completes
    if (with_x)
        for (int c = 0; c < CHUNKS; ++c)
            tma_load_2d(smem_addr(xs + c * X_ATOM), x_map, (u0 % n_kc) * kc + 64 * c, 0, full0);
}

// The producer of a chunk-major ring (kernels/wo_gemm_v5.cu, LEAN bit 5), all lanes: stage s has one full barrier
// per 64-k chunk, full0 + 8 (s * CHUNKS + c), armed for chunk_bytes of weight and one X_ATOM x box; chunk c of unit
// u (one contiguous run at unit_base(u) + c * chunk_bytes) goes out as COPIES equal copies from lanes
// c * COPIES .. c * COPIES + COPIES - 1, the first of which also loads the chunk's x box, all on that barrier; so a
// consumer can start on chunk 0 while the rest is in flight. The end marker (u < 0) completes chunk 0's barrier
// only (the consumers stop there). PDL: the first unit's x goes out after pdl_wait, its weight before.
// issued(u): called by every lane once unit u's copies are issued (the timeline builds stamp it).
template <int STAGES, int CHUNKS, int X_ATOM, int COPIES, typename UnitBase, typename Issued>
WB_DEVICE void produce_ring_chunked(int units, int s0, int grab, unsigned int* work, int lane, uint32_t chunk_bytes,
                                    uint32_t full0, uint32_t empty0, int* unit_of, uint8_t* wsm, int w_stage,
                                    uint8_t* xs, int x_stage, const TmaDescriptor* x_map, int n_kc, int kc,
                                    UnitBase&& unit_base, Issued&& issued) {
    int i = 0;
    produce_units(units, s0, grab, work, lane, [&](int u) {
        const int s = i % STAGES;
        if (lane == 0) {
            mbar_wait(empty0 + 8 * s, ((i / STAGES) & 1) ^ 1);
            unit_of[s] = u;
            if (u >= 0) {
                for (int c = 0; c < CHUNKS; ++c) mbar_arrive_expect_tx(full0 + 8 * (s * CHUNKS + c), chunk_bytes + X_ATOM);
            } else {
                mbar_arrive(full0 + 8 * s * CHUNKS);
            }
        }
        __syncwarp();
        ++i;
        if (u < 0) return;
        static_assert(CHUNKS * COPIES <= 32, "one lane per copy");
        if (lane < CHUNKS * COPIES) {
            const int c = lane / COPIES, part = lane % COPIES;
            const uint32_t bar = full0 + 8 * (s * CHUNKS + c), piece = chunk_bytes / COPIES;
            const uint32_t off = c * chunk_bytes + part * piece;
            bulk_load(smem_addr(wsm + s * w_stage + off), unit_base(u) + off, piece, bar);
            if (i == 1) pdl_wait();  // the previous kernel may write x until it completes
            if (part == 0)
                tma_load_2d(smem_addr(xs + s * x_stage + c * X_ATOM), x_map, (u % n_kc) * kc + 64 * c, 0, bar);
        }
        issued(u);
    });
}

// Add one mma accumulator fragment to the fp32 workspace ws[row * ld + col] with half as many
// atomics as a v2 per row: lane (g, t) holds rows g and g+8 at cols c0 + 2t, c0 + 2t + 1 (d0, d1 and
// d2, d3); lanes t and t^1 swap halves so that the even lane owns row g's four cols c0 + 2t .. + 3 and
// the odd lane row g+8's four cols c0 + 2t - 2 .. + 1: one red.global.add.v4.f32 each (16-byte
// aligned: ld and c0 multiples of 4). All 32 lanes must call it (shuffles). Adding a zero column
// (tokens >= M, zero-filled x) leaves the workspace zero, so `valid` need only cut whole 4-col groups.
WB_DEVICE void red_add_frag(float* __restrict__ ws, long long ld, int row_g, int c0, float d0, float d1, float d2,
                            float d3, int t, bool valid) {
    const bool odd = t & 1;
    const float r0 = __shfl_xor_sync(0xffffffffu, odd ? d0 : d2, 1);
    const float r1 = __shfl_xor_sync(0xffffffffu, odd ? d1 : d3, 1);
    const float v0 = odd ? r0 : d0, v1 = odd ? r1 : d1, v2 = odd ? d2 : r0, v3 = odd ? d3 : r1;
    float* p = ws + (long long)(row_g + 8 * odd) * ld + c0 + 2 * (t & ~1);
    if (valid)
        asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v0), "f"(v1), "f"(v2), "f"(v3)
                     : "memory");
}

// The fragment-major workspace (v5 LEAN bit 11): 16-row tile `tile` holds its 16 x ld partials as [ld / 8][32 lanes]
// [4] fp32, lane (g, t)'s four being rows g, g, g+8, g+8 at cols 8j + 2t, + 1 (the wgmma / mma accumulator fragment
// as it is held), so a warp's red.add of one 8-column block is 512 contiguous bytes: four whole 128-byte lines,
// where the row-major [N, ld] layout spreads it over 16 rows (red_add_frag above). Adding zero columns (tokens >= M)
// is harmless; `valid` only skips them.
WB_DEVICE void red_add_frag_major(float* __restrict__ ws, long long ld, int tile, int j, float d0, float d1, float d2,
                                  float d3, int lane, bool valid) {
    float* p = ws + (long long)tile * 16 * ld + 128 * j + 4 * lane;
    if (valid)
        asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(d0), "f"(d1), "f"(d2), "f"(d3)
                     : "memory");
}

// One warp, after its red.add partials of 16-row tile `tile` and a __threadfence: count `done` k slices
// on the tile's counter; the contributor that completes all `total` converts the tile's workspace rows
// (ws[(16 tile + r) * ld + tok], tok in [tok0, tok0 + n_tok)) to bf16 out[tok, 16 tile + r] (tok < M),
// times alpha, zeroes them and the counter for the next call.
WB_DEVICE void finish_tile(float* __restrict__ ws, int ld, int tile, int tok0, int n_tok, unsigned int* counter,
                           unsigned int done, unsigned int total, uint16_t* __restrict__ out, int M, int N,
                           float alpha, int lane) {
    int last = 0;
    if (lane == 0) last = (atomicAdd(counter, done) + done == total);
    last = __shfl_sync(0xffffffffu, last, 0);
    if (!last) return;
    __threadfence();
    for (int idx = lane; idx < 16 * n_tok; idx += 32) {
        const int r = idx & 15, tok = tok0 + (idx >> 4);
        float* p = ws + (long long)(tile * 16 + r) * ld + tok;
        const float v = __ldcg(p);
        __stcg(p, 0.0f);
        if (tok < M) out[(long long)tok * N + tile * 16 + r] = f32_to_bf16(v * alpha);
    }
    __syncwarp();
    if (lane == 0) *counter = 0u;
}

// One warp: the 16-row tile t (16 rows x LD tokens of fp32, contiguous) -> bf16 out rows o + tok * N (o = out
// + 16 tile), times alpha, for tok < M; every element zeroed for the next call. Each lane loads all of its
// elements before any store (one round trip to L2), and zeroes exactly the elements it loaded (the same
// thread's load and store of an address stay ordered). Lanes cover (token, rows): LD >= 32: a token per
// lane (two at LD = 64), 16 rows each; LD < 32: 32 / LD lanes per token, 16 * LD / 32 rows each.
template <int LD>
WB_DEVICE void convert_tile(float* __restrict__ t, uint16_t* __restrict__ o, int M, int N, float alpha, int lane) {
    constexpr int LPT = LD >= 32 ? 1 : 32 / LD, TPL = LD >= 32 ? LD / 32 : 1, RPL = 16 / LPT;
    static_assert(RPL == 4 || RPL == 8 || RPL == 16, "LD: 8, 16, 32 or 64 tokens");
    const int tok0 = LD >= 32 ? lane : lane % LD, r0 = LD >= 32 ? 0 : (lane / LD) * RPL;
    float v[TPL][RPL];
#pragma unroll
    for (int i = 0; i < TPL; ++i)
#pragma unroll
        for (int r = 0; r < RPL; ++r) v[i][r] = __ldcg(t + (r0 + r) * LD + tok0 + 32 * i);
#pragma unroll
    for (int i = 0; i < TPL; ++i) {
#pragma unroll
        for (int r = 0; r < RPL; ++r) __stcg(t + (r0 + r) * LD + tok0 + 32 * i, 0.0f);
        const int tok = tok0 + 32 * i;
        if (tok >= M) continue;
        uint32_t p[RPL / 2];
#pragma unroll
        for (int r = 0; r < RPL / 2; ++r) p[r] = f32x2_to_bf16x2(v[i][2 * r] * alpha, v[i][2 * r + 1] * alpha);
        uint16_t* dst = o + (long long)tok * N + r0;  // 2 * RPL-byte aligned: N and 16 tile are multiples of 16
        if constexpr (RPL == 4) {
            *reinterpret_cast<uint2*>(dst) = make_uint2(p[0], p[1]);
        } else {
#pragma unroll
            for (int q = 0; q < RPL / 8; ++q)
                *reinterpret_cast<uint4*>(dst + 8 * q) = make_uint4(p[4 * q], p[4 * q + 1], p[4 * q + 2], p[4 * q + 3]);
        }
    }
}

// finish_tile for a whole 16 x LD tile with convert_tile's access pattern (every load of a lane before any store:
// one round trip to L2 per tile instead of one per 32 elements, which cost the v5 fixup builds 4 / 10 / 21 us at
// M = 8 / 32 / 64). The v5 builds without RED call it after their red.adds and a fence; the last contributor of
// the tile (its k slices counted on *counter up to total) converts, zeroes the tile and the counter.
template <int LD>
WB_DEVICE void finish_tile_ld(float* __restrict__ ws, int tile, unsigned int* counter, unsigned int done,
                              unsigned int total, uint16_t* __restrict__ out, int M, int N, float alpha, int lane) {
    int last = 0;
    if (lane == 0) last = (atomicAdd(counter, done) + done == total);
    last = __shfl_sync(0xffffffffu, last, 0);
    if (!last) return;
    __threadfence();
    convert_tile<LD>(ws + (long long)tile * 16 * LD, out + 16 * tile, M, N, alpha, lane);
    __syncwarp();
    if (lane == 0) *counter = 0u;
}

// The in-kernel finalize of a reduce-only GEMM (instead of wo_finalize after it): threads 0 .. nthreads - 1 of
// every CTA call it after their last red.add. Every CTA of the grid must be resident at once (one per SM, grid
// = SM count: the streaming GEMMs' rings allow no second CTA per SM). A grid barrier on bar[0] (each thread's
// red.adds fenced before its CTA arrives), then warp w of CTA b converts tiles b + gridDim.x * w, ... of the
// workspace ws (16 rows x LD tokens each) to out[M, N]; the last CTA to leave puts bar[0] and bar[1] back to
// zero. pdl_wait first: a CTA with no units never waited, and bar belongs to the previous launch until then.
template <int LD>
WB_DEVICE void grid_finalize(float* __restrict__ ws, unsigned int* __restrict__ bar, uint16_t* __restrict__ out,
                             int M, int N, float alpha, int nthreads) {
    const int tid = threadIdx.x;
    pdl_wait();
    __threadfence();
    asm volatile("bar.sync 1, %0;" ::"r"(nthreads) : "memory");
    if (tid == 0) {
        atomicAdd(bar, 1u);
        unsigned int v;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
        } while (v < gridDim.x);
        __threadfence();
    }
    asm volatile("bar.sync 1, %0;" ::"r"(nthreads) : "memory");
    pdl_trigger();  // the next kernel may be scheduled; it waits for our completion before it touches ws or out
    const int warps = nthreads >> 5;
    for (int tile = blockIdx.x + gridDim.x * (tid >> 5); tile < (N >> 4); tile += gridDim.x * warps)
        convert_tile<LD>(ws + (long long)tile * 16 * LD, out + 16 * tile, M, N, alpha, tid & 31);
    asm volatile("bar.sync 1, %0;" ::"r"(nthreads) : "memory");
    if (tid == 0 && atomicAdd(bar + 1, 1u) == gridDim.x - 1) {
        bar[0] = 0u;
        bar[1] = 0u;
    }
}
