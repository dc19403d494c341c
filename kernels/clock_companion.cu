// clock_companion.cu: a companion kernel that keeps a few SMs busy with one kind of work for a set time, so that a
// kernel timed beside it (on the other SMs) runs at whatever SM clock that work sets; it measures its own clock
// (clock64 against the global timer) over the whole time (issue 3, nineteenth pass: does the H200's memory stream slow
// down with the SM clock that tensor-core work brings?).
//
// KIND 0: __nanosleep (the SM is held but idle); 1: FFMA chains (the fp32 pipe); 2: wgmma.m64n64k16 back to back
// (A from registers, B from shared memory, as v5's M = 64 build); 3: wgmma.m64n8k16 (v5's M <= 8 shape); 4: mma.sync
// m16n8k16 bf16 back to back (the warp-level tensor-core instruction); 5: one wgmma.m64n8k16 group every ~32 us, idle
// between (a low duty); 6: one wgmma.m64n8k16 group at the start, then idle (does one group set the clock for good?).
// One warpgroup per CTA; the caller sizes the dynamic shared memory so that no other kernel's CTA fits beside it
// (or leaves it small so that one does). Operands are zeros: the tensor cores' work does not depend on the values.
#include "wb_common.cuh"
#include "wb_tma.cuh"
#include "wb_wgmma.cuh"

WB_DEVICE uint64_t global_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// out[4 * block]: SM cycles, ns elapsed, the start and the end on the global timer (ns); sink keeps the work live.
template <int KIND>
__global__ void __launch_bounds__(128, 1) clock_companion(long long ns, unsigned long long* __restrict__ out,
                                                           float* __restrict__ sink) {
    constexpr int N = KIND == 2 ? 64 : 8;
    extern __shared__ uint8_t dyn[];
    uint8_t* b_tile = reinterpret_cast<uint8_t*>((reinterpret_cast<uint64_t>(dyn) + 1023) & ~(uint64_t)1023);
    __shared__ int stop;
    for (int i = threadIdx.x; i < N * 32; i += blockDim.x) reinterpret_cast<uint32_t*>(b_tile)[i] = 0u;
    if (threadIdx.x == 0) stop = 0;
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    const uint32_t sb = smem_addr(b_tile);
    float acc[N / 2];
#pragma unroll
    for (int e = 0; e < N / 2; ++e) acc[e] = 0.0f;
    float f[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = 1e-3f * (float)(threadIdx.x + j);
    const uint32_t a[4] = {0u, 0u, 0u, 0u};
    const uint64_t t0 = global_ns();
    const long long c0 = clock64();
    uint64_t t1 = t0;
    int round = 0;  // the same in every thread (t1 is thread 0's alone)
    // every warp of the warpgroup must run the same number of wgmma (they are warpgroup-wide), so thread 0 alone
    // reads the timer and the block stops together
    while (true) {
#pragma unroll 1
        for (int i = 0; i < 64; ++i) {
            if constexpr (KIND == 0) {
                __nanosleep(500);
            } else if constexpr (KIND == 1) {
#pragma unroll
                for (int r = 0; r < 16; ++r)
#pragma unroll
                    for (int j = 0; j < 8; ++j) f[j] = fmaf(f[j], 0.999f, 1e-3f);
            } else if constexpr (KIND == 4) {
#pragma unroll
                for (int r = 0; r < 4; ++r)
#pragma unroll
                    for (int j = 0; j < 2; ++j)  // two independent accumulator sets: acc[0..3], acc[4..7] (N 8)
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                            "{%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(acc[4 * j]), "+f"(acc[4 * j + 1]), "+f"(acc[4 * j + 2]), "+f"(acc[4 * j + 3])
                            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[0]), "r"(a[1]));
            } else if constexpr (KIND >= 5) {
                if (i == 0 && (KIND == 5 || round == 0)) {
                    wgmma_fence();
                    wgmma_rs<N>(acc, a, desc_kmajor_sw128(sb));
                    wgmma_commit();
                    wgmma_wait<0>();
                } else {
                    __nanosleep(500);
                }
            } else {
                wgmma_fence();
#pragma unroll
                for (int j = 0; j < 4; ++j) wgmma_rs<N>(acc, a, desc_kmajor_sw128(sb + 32 * j));
                wgmma_commit();
                wgmma_wait<1>();
            }
        }
        if (threadIdx.x == 0) {
            t1 = global_ns();
            if (t1 - t0 >= (uint64_t)ns) stop = 1;
        }
        __syncthreads();
        if (stop) break;
        ++round;
        __syncthreads();  // nobody reads `stop` again before every thread has read this round's value
    }
    if constexpr (KIND == 2 || KIND == 3) wgmma_wait<0>();
#pragma unroll
    for (int e = 0; e < N / 2; ++e) keep(acc[e]);
    const long long c1 = clock64();
    if (threadIdx.x == 0) {
        out[4 * blockIdx.x] = (unsigned long long)(c1 - c0);
        out[4 * blockIdx.x + 1] = t1 - t0;
        out[4 * blockIdx.x + 2] = t0;
        out[4 * blockIdx.x + 3] = t1;
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) s += f[j];
#pragma unroll
    for (int e = 0; e < N / 2; ++e) s += acc[e];
    sink[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
// @instantiate clock_companion<0>
// @instantiate clock_companion<1>
// @instantiate clock_companion<2>
// @instantiate clock_companion<3>
// @instantiate clock_companion<4>
// @instantiate clock_companion<5>
// @instantiate clock_companion<6>

// The global timer now, for the stamps around a timed section on another stream.
extern "C" __global__ void global_stamp(unsigned long long* __restrict__ out, int slot) {
    if (threadIdx.x == 0) out[slot] = global_ns();
}
