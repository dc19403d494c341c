// moe_tail.cu: the MoE tail fusions of the wide-EP DeepSeek-R1 layer (techniques.md section 8).
//
// Part 1, top-k reduce with the shared-expert add (8.1):
//     out[t, :] = shared[t, :] + sum_k w[t, k] * y[t, k, :]      (top-k = 8, H = 7168)
// fp32 accumulation in registers, one bf16 rounding, one write. Memory-bound: per token it reads k rows
// of y, the shared row and k weights, and writes one row.
//   moe_reduce_bf16<K>      y bf16 [T, K, H]. One thread per 8 output columns (16-byte vectors), flat
//                           grid-stride over T * H/8 (a persistent grid for large T); all K+1 loads are
//                           issued before the first FMA so each thread keeps 144 bytes in flight.
//   moe_reduce_nvfp4<K, V>  y as NVFP4 rows (the low-precision combine's payload, techniques.md 2.1):
//                           codes [T*K, H/2], linear E4M3 scales [T*K, H/16], a per-row fp32 global
//                           scale g. Dequantized in registers, never written: value = e2m1(code) *
//                           (sf * (1/g)). One thread per 16-element block (one scale byte, 8 code bytes
//                           per row). V selects the E2M1 decode:
//                             V=1  e2m1_decode() of wb_nvfp4.cuh per element (about 8 integer ops each);
//                             V=2  two codes at once into an f16x2 (e2m1_pair_to_f16x2 below, 3 integer
//                                  ops per pair) whose scale 2^-14 is folded into the row multiplier.
//   nvfp4_rows_dequant_bf16 the unfused path's first kernel: NVFP4 rows -> bf16 rows (what the combine
//                           receiver writes before a bf16 reduce), bit-equal to bf16(dequantize_reference).
//
// Part 2, expand input rows with the memset and the scale swizzle folded in (8.3, 8.4):
//   moe_expand_rows_nvfp4   one persistent kernel. Work units are (128-row tile of the per-expert scale
//                           buffer, slab of 16 scale columns) plus 32 KB chunks of the MoE output to zero.
//                           A tile unit copies the permuted code bytes of its valid rows (16-byte vectors)
//                           and writes its 128 x 64 scale bytes straight into the 128x4 swizzled layout
//                           (techniques.md 1.4) with 16-byte stores, zeros for the padding rows. Expert e's
//                           region starts at row roundup128(offset[e] + 127 e) (TRT-LLM's formula: no prefix
//                           sum over padded counts is needed) and holds roundup128(count[e]) rows. The number
//                           of valid rows is read on the device (offset[E]), so only valid rows cost work and
//                           the launch is CUDA-graph safe.
#include "wb_common.cuh"
#include "wb_nvfp4.cuh"

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

// Two f16 halves of a packed 32-bit word -> fp32 (exact).
WB_DEVICE void f16x2_to_f32(uint32_t h2, float& lo, float& hi) {
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }"
        : "=f"(lo), "=f"(hi) : "r"(h2));
}

// Codes of nibble 0 and nibble 4 of x -> f16x2 (nibble 0 in the low half), each equal to e2m1(code) * 2^-14.
// Why it works: an f16 with exponent field e (2 bits) and top mantissa bit m is 2^(e-15) (1 + m/2) for
// e >= 1 and the subnormal 2^-15 m for e = 0, which is exactly 2^-14 times the E2M1 value
// (2^(e-1) (1 + m/2), or 0.5 m). So the three magnitude bits go to f16 bits 9..11 and the sign to bit 15.
WB_DEVICE uint32_t e2m1_pair_to_f16x2(uint32_t x) {
    return ((x & 0x00070007u) << 9) | ((x & 0x00080008u) << 12);
}

// 8 codes of a 32-bit word (element j in nibble j) -> 8 floats e2m1(code_j) * 2^-14.
WB_DEVICE void e2m1x8_scaled(uint32_t w, float (&f)[8]) {
#pragma unroll
    for (int s = 0; s < 4; ++s) f16x2_to_f32(e2m1_pair_to_f16x2(w >> (4 * s)), f[s], f[s + 4]);
}

// 8 codes via wb_nvfp4.cuh's scalar decode (exact E2M1 values, no scale).
WB_DEVICE void e2m1x8_exact(uint32_t w, float (&f)[8]) {
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = e2m1_decode(w >> (4 * j));
}

WB_DEVICE void unpack_bf16x8(const u32x4& v, float (&f)[8]) {
    f[0] = bf16x2_lo(v.x); f[1] = bf16x2_hi(v.x); f[2] = bf16x2_lo(v.y); f[3] = bf16x2_hi(v.y);
    f[4] = bf16x2_lo(v.z); f[5] = bf16x2_hi(v.z); f[6] = bf16x2_lo(v.w); f[7] = bf16x2_hi(v.w);
}

WB_DEVICE u32x4 pack_bf16x8(const float* f) {
    u32x4 v;
    v.x = f32x2_to_bf16x2(f[0], f[1]); v.y = f32x2_to_bf16x2(f[2], f[3]);
    v.z = f32x2_to_bf16x2(f[4], f[5]); v.w = f32x2_to_bf16x2(f[6], f[7]);
    return v;
}

WB_DEVICE uint2 ld8_stream(const void* p) {
    uint2 v;
    asm volatile("ld.global.cs.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

// ---------------------------------------------------------------------------------------------------
// Part 1: top-k reduce + shared-expert add
// ---------------------------------------------------------------------------------------------------

// y [T, K, H] bf16, w [T, K] fp32, shared/out [T, H] bf16; H % 8 == 0, T * H/8 < 2^31 (wrapper checks).
// __launch_bounds__(256, 4): a 64-register budget. With the default ptxas squeezed the kernel into 32
// registers by interleaving loads and FMAs (only 2-4 loads in flight); with 64 all 9 are issued first.
template <int K>
__global__ void __launch_bounds__(256, 4) moe_reduce_bf16(const u32x4* __restrict__ y, const float* __restrict__ w,
                                                       const u32x4* __restrict__ shared, u32x4* __restrict__ out,
                                                       int num_tokens, int h8) {
    const unsigned n = (unsigned)num_tokens * (unsigned)h8;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const unsigned t = i / (unsigned)h8, c = i - t * (unsigned)h8;
        const u32x4* yt = y + (size_t)t * K * h8 + c;
        u32x4 v[K];
#pragma unroll
        for (int k = 0; k < K; ++k) v[k] = ld16_stream(yt + (size_t)k * h8);  // all loads in flight first
        const u32x4 s = ld16_stream(shared + i);
        float wk[K];
#pragma unroll
        for (int k = 0; k < K; ++k) wk[k] = w[(size_t)t * K + k];
        float acc[8], f[8];
        unpack_bf16x8(s, acc);
#pragma unroll
        for (int k = 0; k < K; ++k) {
            unpack_bf16x8(v[k], f);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] = fmaf(wk[k], f[j], acc[j]);
        }
        st16(out + i, pack_bf16x8(acc));  // one rounding to bf16, one write
    }
}

// y as NVFP4 rows: codes [T*K, H/2] (viewed as uint2 [T*K, H/16]), scales [T*K, H/16] E4M3 bytes (linear),
// g [T*K] fp32 (quantization direction, value = e2m1 * sf / g); w [T, K] fp32; shared/out [T, H] bf16.
// H % 16 == 0, T * H/16 < 2^31. __launch_bounds__(256, 3): 85 registers hold a token's 8 code words,
// scales, global scales and weights with all loads issued first (at (256, 4) ptxas spilled).
template <int K, int V>
__global__ void __launch_bounds__(256, 3) moe_reduce_nvfp4(const uint2* __restrict__ codes,
                                                        const uint8_t* __restrict__ scales,
                                                        const float* __restrict__ g, const float* __restrict__ w,
                                                        const u32x4* __restrict__ shared, u32x4* __restrict__ out,
                                                        int num_tokens, int hb) {
    const unsigned n = (unsigned)num_tokens * (unsigned)hb;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const unsigned t = i / (unsigned)hb, b = i - t * (unsigned)hb;
        const size_t row0 = (size_t)t * K;
        uint2 c[K];
        uint8_t sf[K];
        float gk[K], wk[K];
#pragma unroll
        for (int k = 0; k < K; ++k) {  // every load of the token issued before the first use
            c[k] = ld8_stream(codes + (row0 + k) * hb + b);
            sf[k] = scales[(row0 + k) * hb + b];
            gk[k] = g[row0 + k];
            wk[k] = w[row0 + k];
        }
        const u32x4 s0 = ld16_stream(shared + 2 * (size_t)i), s1 = ld16_stream(shared + 2 * (size_t)i + 1);
        float acc[16];
        unpack_bf16x8(s0, *reinterpret_cast<float(*)[8]>(acc));
        unpack_bf16x8(s1, *reinterpret_cast<float(*)[8]>(acc + 8));
#pragma unroll
        for (int k = 0; k < K; ++k) {
            // Row multiplier: w * (sf * (1/g)), the reference's dequant scale times the router weight.
            const float ginv = 1.0f / gk[k];
            float ws = wk[k] * (e4m3_to_f32(sf[k]) * ginv);
            float f[8];
            if (V == 2) ws *= 16384.0f;  // undo the 2^-14 of the f16 decode (exact: a power of two)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const uint32_t word = half ? c[k].y : c[k].x;
                if (V == 1) e2m1x8_exact(word, f); else e2m1x8_scaled(word, f);
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[8 * half + j] = fmaf(ws, f[j], acc[8 * half + j]);
            }
        }
        st16(out + 2 * (size_t)i, pack_bf16x8(acc));
        st16(out + 2 * (size_t)i + 1, pack_bf16x8(acc + 8));
    }
}

// NVFP4 rows -> bf16 rows [rows, H]: bf16(e2m1(code) * (sf * (1/g))), the same fp32 operations as
// nvfp4.dequantize_reference, then one rounding. One thread per 16-element block.
extern "C" __global__ void __launch_bounds__(256) nvfp4_rows_dequant_bf16(const uint2* __restrict__ codes,
                                                                          const uint8_t* __restrict__ scales,
                                                                          const float* __restrict__ g,
                                                                          u32x4* __restrict__ out, int rows, int hb) {
    const unsigned n = (unsigned)rows * (unsigned)hb;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const unsigned r = i / (unsigned)hb;
        const uint2 c = ld8_stream(codes + i);
        const float s = (e4m3_to_f32(scales[i]) * (1.0f / g[r])) * 16384.0f;
        float v[16], f[8];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            e2m1x8_scaled(half ? c.y : c.x, f);
#pragma unroll
            for (int j = 0; j < 8; ++j) v[8 * half + j] = f[j] * s;
        }
        st16(out + 2 * (size_t)i, pack_bf16x8(v));
        st16(out + 2 * (size_t)i + 1, pack_bf16x8(v + 8));
    }
}

// ---------------------------------------------------------------------------------------------------
// Part 2: expand input rows (permute codes, scales straight into the per-expert swizzled layout, memset)
// ---------------------------------------------------------------------------------------------------

#define EXPAND_THREADS 256
#define EXPAND_SLAB 16                    // 4-column scale groups per unit: 16 x 512 B scales, 16 x 32 B codes/row
#define EXPAND_MAX_EXPERTS 1024
#define EXPAND_ZERO_VEC (EXPAND_THREADS * 8)  // 16-byte vectors zeroed per memset unit (32 KB)

WB_DEVICE int roundup128(int x) { return (x + 127) & ~127; }

// codes_in [T, H/2] u8, scales_in [T, H/16] u8 (linear), permuted_src [R_cap] int32 (expanded row ->
// source token, rows grouped by expert), expert_offsets [E+1] int32 (first expanded row of each expert;
// offsets[E] = number of valid rows, read here on the device), codes_out [R_cap, H/2],
// scales_out [roundup128(R_cap + 127 E) * H/16] (per-expert 128x4 swizzled regions), zero_out: n_zero16
// 16-byte vectors to zero (the MoE output that FC2's finalize fusion accumulates into).
// Requires H % 64 == 0 (whole 4-column scale groups) and E <= EXPAND_MAX_EXPERTS (wrapper checks).
extern "C" __global__ void __launch_bounds__(EXPAND_THREADS) moe_expand_rows_nvfp4(
    const uint8_t* __restrict__ codes_in, const uint8_t* __restrict__ scales_in,
    const int* __restrict__ permuted_src, const int* __restrict__ expert_offsets,
    uint8_t* __restrict__ codes_out, uint8_t* __restrict__ scales_out, u32x4* __restrict__ zero_out,
    int num_experts, int H, long long n_zero16) {
    __shared__ int s_off[EXPAND_MAX_EXPERTS + 1];    // first expanded row of each expert
    __shared__ int s_start[EXPAND_MAX_EXPERTS + 1];  // first scale-buffer row of each expert's region
    __shared__ int s_src[128];                       // source token of each row of the current tile, -1 = padding

    const int tid = threadIdx.x;
    for (int e = tid; e <= num_experts; e += EXPAND_THREADS) {
        const int off = expert_offsets[e];
        s_off[e] = off;
        s_start[e] = roundup128(off + 127 * e);
    }
    __syncthreads();

    const int row_bytes = H >> 1;          // code bytes per row
    const int kb = H >> 4;                 // scale bytes per row
    const int groups = kb >> 2;            // 4-column scale groups (one 512-byte tile each per 128 rows)
    const int n_slabs = (groups + EXPAND_SLAB - 1) / EXPAND_SLAB;
    const int n_tiles = s_start[num_experts] >> 7;  // tiles up to the end of the last region (device count)
    const long long n_tile_units = (long long)n_tiles * n_slabs;
    const long long n_units = n_tile_units + (n_zero16 + EXPAND_ZERO_VEC - 1) / EXPAND_ZERO_VEC;

    for (long long u = blockIdx.x; u < n_units; u += gridDim.x) {
        if (u >= n_tile_units) {  // memset unit: 32 KB of the MoE output
            const long long base = (u - n_tile_units) * EXPAND_ZERO_VEC;
            const u32x4 z = {0u, 0u, 0u, 0u};
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const long long v = base + j * EXPAND_THREADS + tid;
                if (v < n_zero16) st16(zero_out + v, z);
            }
            continue;
        }
        const int tile = (int)(u / n_slabs), slab = (int)(u - (long long)tile * n_slabs);
        const int row0 = tile << 7;
        // Expert owning row0: the last e with s_start[e] <= row0 (starts are non-decreasing; an expert
        // with no rows may share its start with the next one, and the later one wins).
        int lo = 0, hi = num_experts - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if (s_start[mid] <= row0) lo = mid; else hi = mid - 1;
        }
        const int e = lo;
        const int count = s_off[e + 1] - s_off[e];
        const int local0 = row0 - s_start[e];
        if (local0 >= roundup128(count)) continue;  // a gap between regions: nobody reads it (uniform branch)

        __syncthreads();  // the previous unit's readers of s_src are done
        if (tid < 128) {
            const int j = local0 + tid;
            s_src[tid] = j < count ? permuted_src[s_off[e] + j] : -1;
        }
        __syncthreads();

        const int g0 = slab * EXPAND_SLAB;
        const int ng = min(EXPAND_SLAB, groups - g0);
        // Codes of the valid rows of this tile, columns of this slab: 32 bytes per scale group.
        const int valid_rows = min(128, count - local0);
        const int chunks = ng * 2;  // 16-byte chunks per row in this slab
        const int total = valid_rows * chunks;
        const size_t out_row0 = (size_t)s_off[e] + local0;
        for (int idx0 = tid; idx0 < total; idx0 += 4 * EXPAND_THREADS) {
            u32x4 v[4];
            size_t dst[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {  // four independent 16-byte loads in flight per thread
                const int idx = idx0 + q * EXPAND_THREADS;
                if (idx < total) {
                    const int r = idx / chunks, ch = idx - r * chunks;
                    const size_t col = (size_t)g0 * 32 + (size_t)ch * 16;
                    v[q] = ld16(codes_in + (size_t)s_src[r] * row_bytes + col);
                    dst[q] = (out_row0 + r) * row_bytes + col;
                }
            }
#pragma unroll
            for (int q = 0; q < 4; ++q)
                if (idx0 + q * EXPAND_THREADS < total) st16(codes_out + dst[q], v[q]);
        }
        // Scales: per group, one 512-byte swizzled tile = 32 chunks of 16 bytes; chunk r32 holds rows
        // r32, r32+32, r32+64, r32+96 (4 bytes = 4 scale columns each). Padding rows get zeros.
        for (int idx = tid; idx < ng * 32; idx += EXPAND_THREADS) {
            const int g = g0 + (idx >> 5), r32 = idx & 31;
            uint32_t word[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int src = s_src[q * 32 + r32];
                word[q] = src >= 0 ? *reinterpret_cast<const uint32_t*>(scales_in + (size_t)src * kb + 4 * g) : 0u;
            }
            const u32x4 out = {word[0], word[1], word[2], word[3]};
            st16(scales_out + ((size_t)tile * groups + g) * 512 + r32 * 16, out);
        }
    }
}

// @instantiate moe_reduce_bf16<8>
// @instantiate moe_reduce_bf16<4>
// @instantiate moe_reduce_nvfp4<8, 1>
// @instantiate moe_reduce_nvfp4<8, 2>
// @instantiate moe_reduce_nvfp4<4, 2>
