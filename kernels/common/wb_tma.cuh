// wb_tma.cuh: Hopper's asynchronous copy engines and mbarriers, as used by the streaming GEMMs.
// - cp.async.bulk: one contiguous global -> shared copy; cp.async.bulk.tensor: one box of a tensor
//   map (TMA; the map is encoded on the host by workbench/runtime/tma.py and passed by value).
// - Both count their bytes on an mbarrier ("complete_tx"); a consumer waits for the barrier's phase.
// A CTA launched without clusters is its own cluster of one, so the .shared::cluster forms address
// the CTA's own shared memory.
#pragma once
#include "wb_common.cuh"

struct alignas(64) TmaDescriptor {
    uint64_t opaque[16];  // CUtensorMap, encoded on the host (workbench/runtime/tma.py)
};

WB_DEVICE uint32_t smem_addr(const void* p) {
    uint32_t r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}
WB_DEVICE u32x4 lds16(uint32_t addr) {
    u32x4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
}
WB_DEVICE uint2 lds8(uint32_t addr) {
    uint2 v;
    asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "r"(addr));
    return v;
}
WB_DEVICE void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
WB_DEVICE void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
WB_DEVICE void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
WB_DEVICE bool mbar_try_wait(uint32_t bar, uint32_t parity) {
    uint32_t ok;
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
    return ok != 0;
}
// Whether the phase of `parity` has completed, without waiting (test_wait never suspends the thread).
WB_DEVICE uint32_t mbar_test_wait(uint32_t bar, uint32_t parity) {
    uint32_t ok;
    asm volatile(
        "{ .reg .pred p; mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
    return ok;
}
// Wait for the phase of `parity` to complete (parity 1 before the first phase returns at once: the
// producer's first pass over the empty barriers).
WB_DEVICE void mbar_wait(uint32_t bar, uint32_t parity) {
    while (!mbar_try_wait(bar, parity)) {
    }
}
// One contiguous global -> shared copy by the bulk-copy engine, counted on `bar` in bytes.
WB_DEVICE void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
// One contiguous global -> shared copy delivered to the same offset in every CTA of `mask` in the cluster, each
// CTA's mbarrier at `bar`'s offset counting the bytes.
WB_DEVICE void bulk_load_multicast(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar, uint32_t mask) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, [%3], %4;"
        ::"r"(dst), "l"(src), "r"(bytes), "r"(bar), "h"((uint16_t)mask) : "memory");
}
// One box of a 2-D tensor map (c0 = innermost coordinate) -> shared, counted on `bar`.
WB_DEVICE void tma_load_2d(uint32_t dst, const TmaDescriptor* map, int c0, int c1, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
        ::"r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(bar) : "memory");
}

