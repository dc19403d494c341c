// routing.cu: DeepSeek-R1 noaux_tc routing and the all-to-all "prepare" kernels, chained with
// programmatic dependent launch (PDL). Technique 6 of the mission (TensorRT-LLM PR 7977).
//
// The chain, one stream, each kernel launched right after the previous one:
//   route_noaux_tc      logits [T,256] fp32 + bias [256]      -> expert_ids [T,8] int32, weights [T,8] fp32
//   count_and_indices   expert_ids                            -> per-rank send count, send list, backward list
//                       (+ one receiver CTA: the counts the peers announced, clamped to [0, M])
//   cumsum_counts       send/recv counts [E]                  -> exclusive offsets [E+1] (last = total)
//   move_indices        lists + offsets                       -> compacted send/backward/recv index arrays
//   memset_expert_ids   recv total                            -> expert ids of unused receive rows = sentinel
//
// PDL placement (as TensorRT-LLM does for these kernels): every kernel executes pdl_wait() and then
// pdl_trigger() at the top, after nothing but index arithmetic. Why that is safe:
//   * nothing before pdl_wait() reads memory a predecessor writes, or writes memory anybody reads;
//   * pdl_wait() returns only when the predecessor grid has COMPLETED and its writes are visible. The
//     predecessor itself waited on its own predecessor before doing anything, so completion is
//     transitive: when kernel k passes its wait, every kernel < k of the chain has completed. That is
//     what lets move_indices read count_and_indices' lists two launches later;
//   * pdl_trigger() right after the wait only lets the NEXT grid be scheduled early (its blocks then sit
//     in their own pdl_wait). All our blocks have triggered only once all are resident, so the early
//     dependent blocks can never take the SM resources one of our not-yet-started blocks needs.
// The overlap bought is the dependent's launch latency, block rasterization and prologue, hidden under
// the predecessor's body and tail. Without the launch attribute both instructions are no-ops, so the same
// kernels serve PDL on and off, and give bit-identical results.
//
// Timeline: every kernel takes `timeline` (uint64 [blocks, 3] or null). When non-null, thread 0 of each
// block writes %globaltimer (ns) at entry, when pdl_wait() returned, and at exit (after a block barrier),
// so a Gantt chart can show where each grid started relative to its predecessor's end.
//
// Tie-break (stated, shared with the torch reference): among equal values the lower index wins, for the
// top-2 inside a group, for the top-4 groups and for the top-8 experts; experts come out in descending
// biased score. The sigmoid is evaluated in fp64 and rounded once to fp32, so it is the correctly rounded
// value (up to a ~2^-29 chance per element) on both the GPU and the CPU reference, and the selection,
// which compares fp32 values exactly, agrees bit for bit.
#include "wb_common.cuh"
#include "wb_pdl.cuh"

#define N_EXPERTS 256
#define N_GROUPS 8
#define GROUP_SIZE 32
#define TOPK_GROUPS 4
#define TOPK 8
#define ROUTED_SCALE 2.5f
#define ROUTE_WARPS 4        // tokens per routing block (one warp per token)
#define PREP_THREADS 256     // move/memset block size
#define COUNT_MAX_THREADS 1024  // count block size: T rounded up to a warp, at most 1024 (one tile)
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

WB_DEVICE uint64_t globaltimer_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Timeline bookkeeping (no-ops when timeline == nullptr; the branch is uniform across the grid).
struct BlockStamps {
    uint64_t entry = 0, waited = 0;
    WB_DEVICE void begin(const uint64_t* tl) { if (tl && threadIdx.x == 0) entry = globaltimer_ns(); }
    WB_DEVICE void after_wait(const uint64_t* tl) { if (tl && threadIdx.x == 0) waited = globaltimer_ns(); }
    WB_DEVICE void end(uint64_t* tl) {
        if (!tl) return;
        __syncthreads();  // the block ends when its last thread ends
        if (threadIdx.x == 0) {
            const unsigned b = blockIdx.x + blockIdx.y * gridDim.x;
            tl[3 * b + 0] = entry;
            tl[3 * b + 1] = waited;
            tl[3 * b + 2] = globaltimer_ns();
        }
    }
};

// PDL wait of the routing kernel; the test build -DWB_TEST_SKIP_WAIT removes it to prove the slow-
// predecessor test can see a missing wait (negative control). Never defined in normal builds.
WB_DEVICE void route_wait() {
#ifndef WB_TEST_SKIP_WAIT
    pdl_wait();
#endif
}

// sigmoid(x) = 1 / (1 + exp(-x)) in fp64, rounded once to fp32 (see the header: reproducible on CPU).
WB_DEVICE float sigmoid_rn(float x) { return (float)(1.0 / (1.0 + exp(-(double)x))); }

// Order-preserving map of a (non-NaN) float to uint32: a < b  <=>  key(a) < key(b); exactly invertible.
// (-0 and +0 get different keys; a biased score s + bias is never -0, since s >= +0.)
// It lets one redux.sync (a single warp-wide integer max/min instruction, sm_80+) replace a five-step
// shuffle butterfly.
WB_DEVICE uint32_t order_key(float f) {
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
WB_DEVICE float from_order_key(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// ---------------------------------------------------------------------------------------------------
// 1. route_noaux_tc: one warp per token. Lane l holds expert g*32 + l in register g, so register g across
//    the warp is exactly group g: group reductions are warp reductions (redux.sync), and the 8 groups are
//    independent, so their reductions overlap. grid = ceil(T / ROUTE_WARPS), block = 32 * ROUTE_WARPS.
// ---------------------------------------------------------------------------------------------------
// No __launch_bounds__: with it ptxas capped this kernel at 40 registers and spilled; it needs ~56.
extern "C" __global__ void route_noaux_tc(const float* __restrict__ logits, const float* __restrict__ bias, int32_t* __restrict__ expert_ids,
               float* __restrict__ weights, int n_tokens, uint64_t* timeline) {
    BlockStamps st;
    st.begin(timeline);
    const int lane = threadIdx.x & 31;
    const int token = blockIdx.x * ROUTE_WARPS + (threadIdx.x >> 5);
    route_wait();   // logits come from the predecessor (the router GEMM): wait before the first load
    pdl_trigger();  // the count kernel may launch now; it waits for our completion before reading ids
    st.after_wait(timeline);

    if (token < n_tokens) {
        const float* row = logits + (size_t)token * N_EXPERTS;
        float s[N_GROUPS], b[N_GROUPS];
#pragma unroll
        for (int g = 0; g < N_GROUPS; ++g) {
            s[g] = sigmoid_rn(row[g * GROUP_SIZE + lane]);
            b[g] = s[g] + bias[g * GROUP_SIZE + lane];
        }
        // Group score = top-1 + top-2 biased score of the group (remove one copy of the max, take the max again).
        float gscore[N_GROUPS];
#pragma unroll
        for (int g = 0; g < N_GROUPS; ++g) {
            const uint32_t key = order_key(b[g]);
            const uint32_t m1 = __reduce_max_sync(FULL_MASK, key);
            const int first = __ffs(__ballot_sync(FULL_MASK, key == m1)) - 1;
            const uint32_t m2 = __reduce_max_sync(FULL_MASK, lane == first ? 0u : key);
            gscore[g] = from_order_key(m1) + from_order_key(m2);
        }
        // Keep the top-4 groups: rank of g = groups strictly better, ties to the lower group index.
        float cand[N_GROUPS];
#pragma unroll
        for (int g = 0; g < N_GROUPS; ++g) {
            int rank = 0;
#pragma unroll
            for (int h = 0; h < N_GROUPS; ++h) rank += (gscore[h] > gscore[g]) || (gscore[h] == gscore[g] && h < g);
            cand[g] = rank < TOPK_GROUPS ? b[g] : NEG_INF;
        }
        // Top-8 by biased score: 8 rounds of a warp argmax over (value desc, index asc). Each lane's local best
        // (strict >, so the lower group = lower index wins ties) is its best element in that order, so the
        // global winner is the largest local value (one redux max) and, among lanes holding it, the smallest
        // index (one redux min). Lane k keeps the k-th pick.
        int my_id = 0;
        float my_s = 0.f;
#pragma unroll
        for (int k = 0; k < TOPK; ++k) {
            float bv = cand[0];
            int bg = 0;
#pragma unroll
            for (int g = 1; g < N_GROUPS; ++g)
                if (cand[g] > bv) { bv = cand[g]; bg = g; }  // strict: lower group (= lower index) wins ties
            const uint32_t key = order_key(bv);
            const uint32_t best = __reduce_max_sync(FULL_MASK, key);
            const int bi = (int)__reduce_min_sync(FULL_MASK, key == best ? (uint32_t)(bg * GROUP_SIZE + lane)
                                                                          : 0xffffffffu);
            const int owner = bi & (GROUP_SIZE - 1), wg = bi / GROUP_SIZE;
            float mine = 0.f;  // the owner's unbiased score of the winner (select chain keeps s[] in registers)
#pragma unroll
            for (int g = 0; g < N_GROUPS; ++g) {
                if (g == wg) mine = s[g];
                if (lane == owner && g == wg) cand[g] = NEG_INF;
            }
            const float sw = __shfl_sync(FULL_MASK, mine, owner);
            if (lane == k) { my_id = bi; my_s = sw; }
        }
        // weight_k = s_k / (s_0 + ... + s_7 + 1e-20) * 2.5, summed in pick order (the reference does the same).
        float denom = 0.f;
#pragma unroll
        for (int k = 0; k < TOPK; ++k) denom += __shfl_sync(FULL_MASK, my_s, k);
        if (lane < TOPK) {
            expert_ids[(size_t)token * TOPK + lane] = my_id;
            weights[(size_t)token * TOPK + lane] = my_s / (denom + 1e-20f) * ROUTED_SCALE;
        }
    }
    st.end(timeline);
}

// ---------------------------------------------------------------------------------------------------
// 2. count_and_indices: grid = E + 1, block = T rounded up to 32, at most 1024 (a small T gets a small,
//    quick block; T <= 1024 needs no serial tile loop). CTA r < E scans every local token and appends the ones with at
//    least one expert on rank r (experts placed contiguously: rank = expert / (256 / E)) to rank r's send
//    list, in ascending token order (a block scan, not atomics, so the result is deterministic), with the
//    backward index token*8 + first matching k. Expert ids outside [0, 256) are ignored (defined result:
//    such a (token, k) goes nowhere). CTA E is the receiver: it takes the counts the peers announced (in a
//    multi-GPU run they arrive in a peer-written workspace; here an input) clamped to [0, M].
//    Lists: [E, T] int32 (row r holds rank r's list, count in send_counts[r]).
// ---------------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(COUNT_MAX_THREADS)
count_and_indices(const int32_t* __restrict__ expert_ids, int n_tokens, int ep_size,
                  const int32_t* __restrict__ peer_counts, int max_tokens_per_rank,
                  int32_t* __restrict__ send_counts, int32_t* __restrict__ send_lists,
                  int32_t* __restrict__ backward_lists, int32_t* __restrict__ recv_counts, uint64_t* timeline) {
    BlockStamps st;
    st.begin(timeline);
    const int rank = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int experts_per_rank = N_EXPERTS / ep_size;
    pdl_wait();     // expert_ids come from route_noaux_tc
    pdl_trigger();  // cumsum may launch; it waits for our completion before reading counts
    st.after_wait(timeline);

    if (rank == ep_size) {  // receiver CTA
        for (int i = tid; i < ep_size; i += blockDim.x)
            recv_counts[i] = min(max(peer_counts[i], 0), max_tokens_per_rank);
    } else {
        __shared__ int warp_totals[COUNT_MAX_THREADS / 32];
        const int n_warps = blockDim.x >> 5;  // blockDim.x is a multiple of 32 (the host rounds T up)
        int base = 0;  // entries of rank's list written so far
        for (int tile = 0; tile < n_tokens; tile += blockDim.x) {
            const int t = tile + tid;
            int first_k = -1;
            if (t < n_tokens) {
                // One token's 8 ids = 32 bytes: two 16-byte loads.
                const u32x4 lo = ld16(expert_ids + (size_t)t * TOPK), hi = ld16(expert_ids + (size_t)t * TOPK + 4);
                const int ids[TOPK] = {(int)lo.x, (int)lo.y, (int)lo.z, (int)lo.w,
                                       (int)hi.x, (int)hi.y, (int)hi.z, (int)hi.w};
#pragma unroll
                for (int k = TOPK - 1; k >= 0; --k)  // descending, so the lowest matching k is kept
                    if (ids[k] >= 0 && ids[k] < N_EXPERTS && ids[k] / experts_per_rank == rank) first_k = k;
            }
            const bool goes = first_k >= 0;
            const unsigned ballot = __ballot_sync(FULL_MASK, goes);
            const int in_warp = __popc(ballot & ((1u << lane) - 1u));
            if (lane == 0) warp_totals[warp] = __popc(ballot);
            __syncthreads();
            int before = 0, tile_total = 0;
            for (int w = 0; w < n_warps; ++w) {
                const int c = warp_totals[w];
                before += w < warp ? c : 0;
                tile_total += c;
            }
            if (goes) {
                const size_t pos = (size_t)rank * n_tokens + base + before + in_warp;
                send_lists[pos] = t;
                backward_lists[pos] = t * TOPK + first_k;
            }
            base += tile_total;
            __syncthreads();  // warp_totals is rewritten by the next tile
        }
        if (tid == 0) send_counts[rank] = base;
    }
    st.end(timeline);
}

// ---------------------------------------------------------------------------------------------------
// 3. cumsum_counts: one block of 64 threads; warp 0 scans the send counts, warp 1 the receive counts.
//    offsets[r] = sum of counts[< r]; offsets[E] = total. E <= 256, 32 per step with a carry.
// ---------------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(64)
cumsum_counts(const int32_t* __restrict__ send_counts, const int32_t* __restrict__ recv_counts, int ep_size,
              int32_t* __restrict__ send_offsets, int32_t* __restrict__ recv_offsets, uint64_t* timeline) {
    BlockStamps st;
    st.begin(timeline);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int32_t* counts = warp == 0 ? send_counts : recv_counts;
    int32_t* offsets = warp == 0 ? send_offsets : recv_offsets;
    pdl_wait();     // counts come from count_and_indices
    pdl_trigger();  // move may launch; it waits for our completion before reading offsets
    st.after_wait(timeline);

    int carry = 0;
    for (int base = 0; base < ep_size; base += 32) {
        const int i = base + lane;
        const int c = i < ep_size ? counts[i] : 0;
        int incl = c;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const int o = __shfl_up_sync(FULL_MASK, incl, off);
            if (lane >= off) incl += o;
        }
        if (i < ep_size) offsets[i] = carry + incl - c;
        carry += __shfl_sync(FULL_MASK, incl, 31);
    }
    if (lane == 0) offsets[ep_size] = carry;
    st.end(timeline);
}

// ---------------------------------------------------------------------------------------------------
// 4. move_indices: grid (E, 2). y = 0: copy rank r's send and backward lists to send_offsets[r] in the
//    compacted arrays. y = 1: the receive side: rows recv_offsets[r] .. + recv_counts[r] get r*M + j, the
//    slot in the [E, M] receive workspace where peer r's j-th token lands.
// ---------------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(PREP_THREADS)
move_indices(const int32_t* __restrict__ send_counts, const int32_t* __restrict__ send_offsets,
             const int32_t* __restrict__ send_lists, const int32_t* __restrict__ backward_lists,
             const int32_t* __restrict__ recv_counts, const int32_t* __restrict__ recv_offsets, int n_tokens,
             int max_tokens_per_rank, int32_t* __restrict__ send_index, int32_t* __restrict__ backward_index,
             int32_t* __restrict__ recv_index, uint64_t* timeline) {
    BlockStamps st;
    st.begin(timeline);
    const int r = blockIdx.x;
    pdl_wait();     // offsets come from cumsum (and the lists from count, which completed before cumsum began)
    pdl_trigger();  // memset may launch; it waits for our completion
    st.after_wait(timeline);

    if (blockIdx.y == 0) {
        const int n = send_counts[r], off = send_offsets[r];
        const int32_t* src_s = send_lists + (size_t)r * n_tokens;
        const int32_t* src_b = backward_lists + (size_t)r * n_tokens;
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            send_index[off + j] = src_s[j];
            backward_index[off + j] = src_b[j];
        }
    } else {
        const int n = recv_counts[r], off = recv_offsets[r];
        for (int j = threadIdx.x; j < n; j += blockDim.x) recv_index[off + j] = r * max_tokens_per_rank + j;
    }
    st.end(timeline);
}

// ---------------------------------------------------------------------------------------------------
// 5. memset_expert_ids: receive rows >= total received (recv_offsets[E]) of recv_expert_ids [rows, 8]
//    get the sentinel in all 8 slots, so the MoE GEMMs skip them; rows below are left to the dispatch.
//    Two 16-byte stores per row, grid-stride.
// ---------------------------------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(PREP_THREADS)
memset_expert_ids(const int32_t* __restrict__ recv_offsets, int ep_size, int n_rows, int sentinel,
                  int32_t* __restrict__ recv_expert_ids, uint64_t* timeline) {
    BlockStamps st;
    st.begin(timeline);
    const int stride = gridDim.x * blockDim.x;
    const int first = blockIdx.x * blockDim.x + threadIdx.x;
    pdl_wait();     // the total comes from cumsum (completed before move began)
    pdl_trigger();  // whatever follows (the dispatch) may launch
    st.after_wait(timeline);

    const int total = recv_offsets[ep_size];
    const u32x4 v = {(uint32_t)sentinel, (uint32_t)sentinel, (uint32_t)sentinel, (uint32_t)sentinel};
    u32x4* out = reinterpret_cast<u32x4*>(recv_expert_ids);
    for (int i = 2 * total + first; i < 2 * n_rows; i += stride) out[i] = v;
    st.end(timeline);
}

// ---------------------------------------------------------------------------------------------------
// Test helper: a deliberately slow producer. It triggers its dependents at once (so a PDL-launched
// consumer really does start early), spins `spin_ns` nanoseconds, and only then writes dst = src. A
// consumer that reads dst before its pdl_wait() returns sees the old contents.
// ---------------------------------------------------------------------------------------------------
extern "C" __global__ void slow_producer(const float* __restrict__ src, float* __restrict__ dst, long long n,
                                         long long spin_ns, uint64_t* timeline) {
    BlockStamps st;
    st.begin(timeline);
    pdl_trigger();
    const uint64_t t0 = globaltimer_ns();
    st.after_wait(timeline);
    while (globaltimer_ns() - t0 < (uint64_t)spin_ns) {
    }
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = src[i];
    st.end(timeline);
}
