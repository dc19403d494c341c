// peer.cu: barrier, all-gather and distributed-argmax exchange over peer buffers written through NVLink.
//
// Every rank owns one workspace allocation (cuMemAlloc) whose CUDA IPC handle is opened by every other
// rank of the group, so a kernel can store straight into a peer's memory: NVLink carries the stores,
// no NCCL call, no host round trip. No NVLink multicast anywhere (plain unicast stores only).
//
// Protocol (one rule for all three kernels): data first, then a flag per (source rank, block) in the
// receiver's memory. The writer stores its data with plain stores, `__syncthreads()`, and then one thread
// per destination does `fence.acq_rel.sys` + `st.release.sys` of the flag: cumulativity makes every
// store of the block that the barrier ordered before it visible to the peer before the flag. The reader
// spins with `ld.acquire.sys` on its local flag, `__syncthreads()`, then reads the data (`ld.global.cg`,
// L2 only: a remote write lands in our L2, never in a stale L1 line).
//
// Step counters: each block keeps its own call counter in local memory (`counters[block]`); every rank
// runs the same sequence of calls, so the counters agree across ranks without talking. A flag holds the
// step number of the last write, so buffers are reused with no reset, and the kernels can be replayed in
// a CUDA graph (the step lives on the device, not in a captured kernel argument). Data is double-buffered
// by step parity: a peer can only start step s+2 (which reuses parity s) after we have finished step s+1,
// which stream order puts after our step s, so no peer overwrites data we are still reading.
//
// Timeouts: the spin reads %globaltimer; past `timeout_ns` it records an error word (kind, block, peer)
// with atomicCAS (first error wins) and the kernel returns instead of hanging. The host reads the word
// and raises PeerTimeoutError naming the peer (workbench/runtime/dist.py).
//
// Kernels:
//   peer_barrier           one block; every rank flags every rank, then waits for all.
//   peer_allgather_v1      out[world][n] = every rank's src[n]; block b moves chunk b: push to every peer,
//                          flag, wait for chunk b from every peer, copy it out of the receive buffer
//                          (a copy, so the result outlives the buffer's reuse two calls later).
//   peer_argmax_pick_v1    distributed argmax of the TP LM head: rank r has local (max, argmax) of every
//                          gathered row; it sends rank q the pairs of q's rows, and each rank picks, per
//                          own row, the largest value over sources (ties -> lowest source rank, i.e. the
//                          lowest vocabulary id, since source ranks own increasing vocabulary ranges).
#include "wb_common.cuh"

#define ERR_BARRIER 1
#define ERR_ALLGATHER 2
#define ERR_ARGMAX 3

WB_DEVICE void st_release_sys(uint32_t* p, uint32_t v) {
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
WB_DEVICE uint32_t ld_acquire_sys(const uint32_t* p) {
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
WB_DEVICE void fence_acq_rel_sys() { asm volatile("fence.acq_rel.sys;" ::: "memory"); }
WB_DEVICE uint64_t globaltimer_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
// 16-byte load that bypasses L1 (peers write into our L2).
WB_DEVICE u32x4 ld16_cg(const void* p) {
    u32x4 v;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
    return v;
}
WB_DEVICE uint2 ld8_cg(const void* p) {
    uint2 v;
    asm volatile("ld.global.cg.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p) : "memory");
    return v;
}

// Error word: kind in bits 28..31, block in bits 8..27, peer rank in bits 0..7.
WB_DEVICE int error_code(int kind, int block, int peer) { return (kind << 28) | ((block & 0xFFFFF) << 8) | (peer & 0xFF); }

// Spin until the flag reaches `step` (wrap-safe signed difference), or the timeout passes.
WB_DEVICE bool wait_flag(const uint32_t* flag, uint32_t step, unsigned long long timeout_ns) {
    const uint64_t t0 = globaltimer_ns();
    for (;;) {
        if ((int)(ld_acquire_sys(flag) - step) >= 0) return true;
        if (globaltimer_ns() - t0 > timeout_ns) return false;
    }
}

// Next step number of this block (counters live in this rank's own memory, one per block).
WB_DEVICE uint32_t next_step(uint32_t* counters) {
    __shared__ uint32_t s_step;
    if (threadIdx.x == 0) {
        s_step = counters[blockIdx.x] + 1;
        counters[blockIdx.x] = s_step;
    }
    __syncthreads();
    return s_step;
}

// ---------------------------------------------------------------------------------------------------
// Barrier. flag_ptrs[p] = base of rank p's barrier flags (uint32 [world]), mapped in this process.
extern "C" __global__ void peer_barrier(const uint64_t* __restrict__ flag_ptrs, uint32_t* counters, int rank,
                                        int world, unsigned long long timeout_ns, int* error) {
    const uint32_t step = next_step(counters);
    const int t = threadIdx.x;
    if (t < world) {
        fence_acq_rel_sys();  // our earlier work (previous kernels) is visible before peers pass
        st_release_sys(reinterpret_cast<uint32_t*>(flag_ptrs[t]) + rank, step);
        const uint32_t* mine = reinterpret_cast<const uint32_t*>(flag_ptrs[rank]) + t;
        if (!wait_flag(mine, step, timeout_ns)) atomicCAS(error, 0, error_code(ERR_BARRIER, 0, t));
    }
    __syncthreads();
}

// ---------------------------------------------------------------------------------------------------
// All-gather v1 (push). Region layout on every rank (same offsets):
//   flags uint32 [world][gridDim.x] at region_ptrs[p]; data at region_ptrs[p] + data_offset:
//   u32x4 [2 parity][world][cap_vec], where source s of step parity q lives at (q*world + s)*cap_vec
//   and occupies n_vec vectors.
// src: this rank's shard, n_vec 16-byte vectors. out: [world][n_vec].
extern "C" __global__ void __launch_bounds__(512, 1)
    peer_allgather_v1(const u32x4* __restrict__ src, u32x4* __restrict__ out, const uint64_t* __restrict__ region_ptrs,
                      uint32_t* counters, int rank, int world, long long n_vec, long long cap_vec,
                      long long data_offset, unsigned long long timeout_ns, int* error) {
    __shared__ int s_failed;
    const uint32_t step = next_step(counters);
    const int b = blockIdx.x, nb = gridDim.x;
    if (threadIdx.x == 0) s_failed = 0;
    const long long chunk = (n_vec + nb - 1) / nb;
    const long long lo = min((long long)b * chunk, n_vec), hi = min(lo + chunk, n_vec);
    const long long parity_base = (long long)(step & 1) * world * cap_vec;

    // 1. Push chunk b of our shard: one load, `world` stores (the peers' over NVLink, ours locally).
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        const u32x4 v = ld16(src + i);
        for (int p = 0; p < world; ++p) {
            if (p == rank) {
                st16(out + (long long)rank * n_vec + i, v);
            } else {
                u32x4* data = reinterpret_cast<u32x4*>(region_ptrs[p] + data_offset);
                st16(data + parity_base + (long long)rank * n_vec + i, v);
            }
        }
    }
    __syncthreads();
    // 2. Flag: thread p tells rank p that chunk b of this step has landed.
    const int t = threadIdx.x;
    if (t < world && t != rank) {
        fence_acq_rel_sys();
        st_release_sys(reinterpret_cast<uint32_t*>(region_ptrs[t]) + rank * nb + b, step);
    }
    // 3. Wait for chunk b from every peer.
    if (t < world && t != rank) {
        const uint32_t* mine = reinterpret_cast<const uint32_t*>(region_ptrs[rank]) + t * nb + b;
        if (!wait_flag(mine, step, timeout_ns)) {
            atomicCAS(error, 0, error_code(ERR_ALLGATHER, b, t));
            s_failed = 1;
        }
    }
    __syncthreads();
    if (s_failed) return;
    // 4. Copy the peers' chunks out of our receive buffer.
    const u32x4* recv = reinterpret_cast<const u32x4*>(region_ptrs[rank] + data_offset) + parity_base;
    for (int p = 0; p < world; ++p) {
        if (p == rank) continue;
        for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x)
            st16(out + (long long)p * n_vec + i, ld16_cg(recv + (long long)p * n_vec + i));
    }
}

// ---------------------------------------------------------------------------------------------------
// Distributed argmax exchange + pick (one block). Inputs on rank r: vals/idx [world*rows] = local max and
// local argmax (0-based within r's vocabulary slice) of every gathered row; rows q*rows..(q+1)*rows-1
// belong to rank q. vocab_offset = first vocabulary id of r's slice.
// Region layout: flags uint32 [world] at region_ptrs[p]; data at + data_offset:
//   uint2 (value bits, global id) [2 parity][world source][cap_rows].
// Output: ids[rows] int32 for this rank's own rows.
extern "C" __global__ void __launch_bounds__(256)
    peer_argmax_pick_v1(const float* __restrict__ vals, const long long* __restrict__ idx, long long vocab_offset,
                        int* __restrict__ ids, const uint64_t* __restrict__ region_ptrs, uint32_t* counters, int rank,
                        int world, int rows, int cap_rows, long long data_offset, unsigned long long timeout_ns,
                        int* error) {
    __shared__ int s_failed;
    const uint32_t step = next_step(counters);
    if (threadIdx.x == 0) s_failed = 0;
    const long long parity_base = (long long)(step & 1) * world * cap_rows;
    // 1. Send rank q the (value, global id) pairs of q's rows (to ourselves too: one code path).
    for (int k = threadIdx.x; k < world * rows; k += blockDim.x) {
        const int q = k / rows, j = k - q * rows;
        uint2 pair;
        pair.x = __float_as_uint(vals[k]);
        pair.y = (uint32_t)(idx[k] + vocab_offset);
        uint2* data = reinterpret_cast<uint2*>(region_ptrs[q] + data_offset);
        data[parity_base + (long long)rank * cap_rows + j] = pair;
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t < world && t != rank) {
        fence_acq_rel_sys();
        st_release_sys(reinterpret_cast<uint32_t*>(region_ptrs[t]) + rank, step);
    }
    if (t < world && t != rank) {
        const uint32_t* mine = reinterpret_cast<const uint32_t*>(region_ptrs[rank]) + t;
        if (!wait_flag(mine, step, timeout_ns)) {
            atomicCAS(error, 0, error_code(ERR_ARGMAX, 0, t));
            s_failed = 1;
        }
    }
    __syncthreads();
    if (s_failed) return;
    // 2. Pick per own row: strict '>' over sources in rank order keeps the lowest id on ties.
    const uint2* recv = reinterpret_cast<const uint2*>(region_ptrs[rank] + data_offset) + parity_base;
    for (int j = threadIdx.x; j < rows; j += blockDim.x) {
        uint2 best = ld8_cg(recv + j);
        for (int s = 1; s < world; ++s) {
            const uint2 c = ld8_cg(recv + (long long)s * cap_rows + j);
            if (__uint_as_float(c.x) > __uint_as_float(best.x)) best = c;
        }
        ids[j] = (int)best.y;
    }
}
