// wb_common.cuh: types and conversions shared by every workbench kernel.
//
// Kernels are compiled by NVRTC with no CUDA toolkit include directory (the same way on a GPU host
// and on the CPU-only CI), so this header defines the little it needs itself: fixed-width integers,
// bf16 <-> fp32 through bit operations and PTX cvt, fp8 e4m3 through PTX cvt (sm_89+), and 16-byte
// vector access.
#pragma once

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef signed char int8_t;
typedef int int32_t;
typedef long long int64_t;

#define WB_DEVICE __device__ __forceinline__

// bf16 is carried as its 16 raw bits; widening to fp32 is exact (shift into the high half).
WB_DEVICE float bf16_to_f32(uint16_t h) { return __uint_as_float(((uint32_t)h) << 16); }

// Round-to-nearest-even fp32 -> bf16 (PTX cvt.rn.bf16.f32, sm_80+); NaN stays NaN.
WB_DEVICE uint16_t f32_to_bf16(float f) {
    uint16_t r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
    return r;
}

// Two fp32 -> packed bf16x2 (lo in the low half), one instruction.
WB_DEVICE uint32_t f32x2_to_bf16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

WB_DEVICE float bf16x2_lo(uint32_t v) { return __uint_as_float(v << 16); }
WB_DEVICE float bf16x2_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

// fp32 -> fp8 e4m3 (round-to-nearest-even, saturate to +-448), one byte.
WB_DEVICE uint8_t f32_to_e4m3(float f) {
    uint16_t r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.0f), "f"(f));
    return (uint8_t)(r & 0xff);
}

// fp8 e4m3 -> fp32 (exact) through f16x2.
WB_DEVICE float e4m3_to_f32(uint8_t b) {
    uint32_t h2;
    uint16_t in = b;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(in));
    float f;
    asm("{ .reg .b16 lo, hi; mov.b32 {lo, hi}, %1; cvt.f32.f16 %0, lo; }" : "=f"(f) : "r"(h2));
    return f;
}

// 16-byte vector loads/stores (the unit of a coalesced, fully used memory transaction per thread).
struct alignas(16) u32x4 { uint32_t x, y, z, w; };

WB_DEVICE u32x4 ld16(const void* p) { return *reinterpret_cast<const u32x4*>(p); }
WB_DEVICE void st16(void* p, const u32x4& v) { *reinterpret_cast<u32x4*>(p) = v; }

// Streaming variants: data touched once should not evict reusable lines from L2.
WB_DEVICE u32x4 ld16_stream(const void* p) {
    u32x4 v;
    asm volatile("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
WB_DEVICE void st16_stream(void* p, const u32x4& v) {
    asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};"
                 :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
