// knope_copy.cu: assemble MLA's context key k [T, H, Dn + Dr] from k_nope (a strided view into the
// kv_b_proj output) and k_pe [T, Dr] (one rope key per token, shared by every head).
//
// Layouts (elements, bf16 = 2 bytes; DeepSeek-R1: H = 128, Dn = 128, Dr = 64):
//   kv    [T, H * (Dn + Dv)]  k_nope of head h at kv[t, h * kv_head_stride + 0 .. Dn)
//                             (token stride kv_tok_stride = H * 256, head stride 256 for R1)
//   k_pe  [T, Dr]             token stride kpe_tok_stride (64 when contiguous)
//   k     [T, H, Dn + Dr]     contiguous: k[t, h, :Dn] = k_nope[t, h], k[t, h, Dn:] = k_pe[t]
//
// Napkin math at T = 8192, R1: read k_nope 268 MB + k_pe 1 MB, write k 403 MB = 672 MB moved;
// at the ~2.9 TB/s an H100 copies, the floor is ~230 us (~163 us on an H200 at ~4.1 TB/s).
//
// v1 knope_assemble_v1_vec16: one thread block per token row.
//   * Every global access is a 16-byte vector (8 bf16), so a row's k_nope part is 16 vectors per head
//     and its rope part 8 vectors per head (R1); consecutive threads write consecutive 16-byte pieces
//     of k, so every warp stores 512 contiguous bytes.
//   * k_pe is read from global memory once per token (by the first Dr/8 threads) into shared memory
//     and broadcast to all H heads from there, instead of H reads of the same 128 bytes.
//   * Each thread issues all its loads (VEC_PER_THREAD of them, 12 for R1 with 256 threads) before
//     its first store, so a block keeps ~48 KB in flight; streaming hints (.cs) because every byte is
//     touched exactly once and should not evict reusable L2 lines.
//   Measured on an H200: 1.07-1.10x the bound, 3-5% behind torch.compile. Each block waits for its
//   k_pe load (barrier) before it issues a single k_nope load, so every block pays two memory latencies
//   back to back.
// v2 knope_assemble_v2_loads_first<THREADS, VEC_PER_THREAD>: the same data path, reordered: every thread
//   issues its k_nope loads first, then the k_pe vectors go to shared memory and the barrier follows,
//   so the k_pe latency hides under the k_nope loads already in flight. Block size is a template
//   parameter (the grid is still one block per token).
// v3 knope_assemble_v3_l1<THREADS, VEC_PER_THREAD>: no shared memory and no barrier at all: the rope
//   vectors are read straight from global memory through the read-only/L1 path (ld.global.nc); the
//   first head's miss brings the 128 bytes of k_pe into L1 and the other heads of the token hit there,
//   so DRAM still sees k_pe once per token.
//   Measured on an H200: v2 and v3 at every block size land within 1% of v1 (1.07-1.13x the bound), so
//   neither the barrier nor occupancy was what separated v1 from torch.compile.
// v4 knope_assemble_v4_flat<UNROLL>: the mapping of copy.cu v3 (which reaches ~96% of the copy
//   bandwidth): the flattened k is cut into tiles of 256 threads x UNROLL vectors, one block per tile,
//   no loop, plain cached loads/stores (no streaming hints). Each vector finds its token, head and
//   source by integer division (32-bit: the wrapper checks T * H * (Dn+Dr) / 8 < 2^31); rope vectors are
//   plain loads that hit L1/L2 after the first head of a token, so DRAM still sees k_pe once per token.
//   * The wrapper checks 16-byte alignment of the three pointers and that every stride and Dn, Dr
//     are multiples of 8 elements, so the vector accesses are legal.
#include "wb_common.cuh"

#define MAX_ROPE_VEC 32  // Dr / 8 <= 32 (Dr <= 256)

// VEC_PER_THREAD: 16-byte vectors of one k row each thread moves; blockDim.x * VEC_PER_THREAD must
// cover H * (Dn + Dr) / 8 (the wrapper picks it).
template <int VEC_PER_THREAD>
__global__ void __launch_bounds__(256) knope_assemble_v1_vec16(
    const uint16_t* __restrict__ kv, const uint16_t* __restrict__ k_pe, uint16_t* __restrict__ k,
    int num_tokens, int num_heads, int nope_dim, int rope_dim, long long kv_tok_stride, int kv_head_stride,
    long long kpe_tok_stride) {
    __shared__ u32x4 rope_smem[MAX_ROPE_VEC];
    const int nope_vec = nope_dim / 8;
    const int rope_vec = rope_dim / 8;
    const int head_vec = nope_vec + rope_vec;
    const int row_vec = num_heads * head_vec;

    for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
        // k_pe of token t: read once, kept in shared memory for all heads.
        if (threadIdx.x < rope_vec) rope_smem[threadIdx.x] = ld16_stream(k_pe + t * kpe_tok_stride + threadIdx.x * 8);
        __syncthreads();

        const uint16_t* kv_row = kv + t * kv_tok_stride;
        uint16_t* k_row = k + (long long)t * row_vec * 8;
        u32x4 v[VEC_PER_THREAD];
#pragma unroll
        for (int u = 0; u < VEC_PER_THREAD; ++u) {
            const int i = threadIdx.x + u * blockDim.x;  // vector index within the k row
            if (i < row_vec) {
                const int h = i / head_vec;
                const int j = i - h * head_vec;  // vector within the head: [0, nope_vec) nope, then rope
                v[u] = j < nope_vec ? ld16_stream(kv_row + h * kv_head_stride + j * 8) : rope_smem[j - nope_vec];
            }
        }
#pragma unroll
        for (int u = 0; u < VEC_PER_THREAD; ++u) {
            const int i = threadIdx.x + u * blockDim.x;
            if (i < row_vec) st16_stream(k_row + i * 8, v[u]);
        }
        __syncthreads();  // rope_smem is rewritten for the next token
    }
}

// Read-only path (non-coherent L1): k_pe is reused by all heads of a token inside one block.
WB_DEVICE u32x4 ld16_nc(const void* p) {
    u32x4 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

template <int THREADS, int VEC_PER_THREAD>
__global__ void __launch_bounds__(THREADS) knope_assemble_v2_loads_first(
    const uint16_t* __restrict__ kv, const uint16_t* __restrict__ k_pe, uint16_t* __restrict__ k,
    int num_tokens, int num_heads, int nope_dim, int rope_dim, long long kv_tok_stride, int kv_head_stride,
    long long kpe_tok_stride) {
    __shared__ u32x4 rope_smem[MAX_ROPE_VEC];
    const int nope_vec = nope_dim / 8;
    const int rope_vec = rope_dim / 8;
    const int head_vec = nope_vec + rope_vec;
    const int row_vec = num_heads * head_vec;

    for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
        const uint16_t* kv_row = kv + t * kv_tok_stride;
        uint16_t* k_row = k + (long long)t * row_vec * 8;
        u32x4 v[VEC_PER_THREAD];
        // 1. every k_nope load of this thread in flight ...
#pragma unroll
        for (int u = 0; u < VEC_PER_THREAD; ++u) {
            const int i = threadIdx.x + u * THREADS;
            if (i < row_vec) {
                const int h = i / head_vec;
                const int j = i - h * head_vec;
                if (j < nope_vec) v[u] = ld16_stream(kv_row + h * kv_head_stride + j * 8);
            }
        }
        // 2. ... while k_pe (once per token) goes through shared memory
        if (threadIdx.x < rope_vec) rope_smem[threadIdx.x] = ld16_stream(k_pe + t * kpe_tok_stride + threadIdx.x * 8);
        __syncthreads();
#pragma unroll
        for (int u = 0; u < VEC_PER_THREAD; ++u) {
            const int i = threadIdx.x + u * THREADS;
            if (i < row_vec) {
                const int h = i / head_vec;
                const int j = i - h * head_vec;
                if (j >= nope_vec) v[u] = rope_smem[j - nope_vec];
                st16_stream(k_row + i * 8, v[u]);
            }
        }
        __syncthreads();  // rope_smem is rewritten for the next token
    }
}

template <int THREADS, int VEC_PER_THREAD>
__global__ void __launch_bounds__(THREADS) knope_assemble_v3_l1(
    const uint16_t* __restrict__ kv, const uint16_t* __restrict__ k_pe, uint16_t* __restrict__ k,
    int num_tokens, int num_heads, int nope_dim, int rope_dim, long long kv_tok_stride, int kv_head_stride,
    long long kpe_tok_stride) {
    const int nope_vec = nope_dim / 8;
    const int head_vec = nope_vec + rope_dim / 8;
    const int row_vec = num_heads * head_vec;

    for (int t = blockIdx.x; t < num_tokens; t += gridDim.x) {
        const uint16_t* kv_row = kv + t * kv_tok_stride;
        const uint16_t* kpe_row = k_pe + t * kpe_tok_stride;
        uint16_t* k_row = k + (long long)t * row_vec * 8;
        u32x4 v[VEC_PER_THREAD];
#pragma unroll
        for (int u = 0; u < VEC_PER_THREAD; ++u) {
            const int i = threadIdx.x + u * THREADS;
            if (i < row_vec) {
                const int h = i / head_vec;
                const int j = i - h * head_vec;
                v[u] = j < nope_vec ? ld16_stream(kv_row + h * kv_head_stride + j * 8)
                                    : ld16_nc(kpe_row + (j - nope_vec) * 8);
            }
        }
#pragma unroll
        for (int u = 0; u < VEC_PER_THREAD; ++u) {
            const int i = threadIdx.x + u * THREADS;
            if (i < row_vec) st16_stream(k_row + i * 8, v[u]);
        }
    }
}

template <int UNROLL>
__global__ void __launch_bounds__(256) knope_assemble_v4_flat(
    const uint16_t* __restrict__ kv, const uint16_t* __restrict__ k_pe, uint16_t* __restrict__ k,
    int num_tokens, int num_heads, int nope_dim, int rope_dim, long long kv_tok_stride, int kv_head_stride,
    long long kpe_tok_stride) {
    const unsigned nope_vec = nope_dim / 8;
    const unsigned head_vec = nope_vec + rope_dim / 8;
    const unsigned row_vec = num_heads * head_vec;
    const unsigned total = (unsigned)num_tokens * row_vec;
    const unsigned base = blockIdx.x * (256u * UNROLL) + threadIdx.x;
    u32x4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        const unsigned g = base + u * 256u;  // vector index in the flattened k
        if (g < total) {
            const unsigned t = g / row_vec;
            const unsigned i = g - t * row_vec;
            const unsigned h = i / head_vec;
            const unsigned j = i - h * head_vec;
            v[u] = j < nope_vec ? ld16(kv + t * kv_tok_stride + h * kv_head_stride + j * 8)
                                : ld16(k_pe + t * kpe_tok_stride + (j - nope_vec) * 8);
        }
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
        const unsigned g = base + u * 256u;
        if (g < total) st16(k + (long long)g * 8, v[u]);
    }
}

// v1: VEC_PER_THREAD for 256 threads
// @instantiate knope_assemble_v1_vec16<1>
// @instantiate knope_assemble_v1_vec16<2>
// @instantiate knope_assemble_v1_vec16<4>
// @instantiate knope_assemble_v1_vec16<8>
// @instantiate knope_assemble_v1_vec16<12>
// @instantiate knope_assemble_v1_vec16<16>
// v2 / v3: <THREADS, VEC_PER_THREAD>; R1 rows are 3072 vectors = 256 x 12 = 384 x 8 = 512 x 6 = 768 x 4 = 1024 x 3
// @instantiate knope_assemble_v2_loads_first<256, 12>
// @instantiate knope_assemble_v2_loads_first<384, 8>
// @instantiate knope_assemble_v2_loads_first<512, 6>
// @instantiate knope_assemble_v2_loads_first<768, 4>
// @instantiate knope_assemble_v2_loads_first<1024, 3>
// @instantiate knope_assemble_v2_loads_first<256, 1>
// @instantiate knope_assemble_v2_loads_first<256, 2>
// @instantiate knope_assemble_v2_loads_first<256, 4>
// @instantiate knope_assemble_v2_loads_first<256, 8>
// @instantiate knope_assemble_v2_loads_first<256, 16>
// @instantiate knope_assemble_v3_l1<256, 12>
// @instantiate knope_assemble_v3_l1<384, 8>
// @instantiate knope_assemble_v3_l1<512, 6>
// @instantiate knope_assemble_v3_l1<768, 4>
// @instantiate knope_assemble_v3_l1<1024, 3>
// v4: <UNROLL> vectors per thread, 256 threads
// @instantiate knope_assemble_v4_flat<2>
// @instantiate knope_assemble_v4_flat<4>
// @instantiate knope_assemble_v4_flat<8>
