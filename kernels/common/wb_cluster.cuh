// wb_cluster.cuh: thread-block clusters on sm_90 (distributed shared memory).
//
// A kernel launched with a cluster dimension (runtime/tma.py launch_by_value(cluster=...)) runs its CTAs in
// groups that are co-scheduled on one GPC and can read each other's shared memory:
//   cluster_sync()          barrier.cluster arrive (release) + wait (acquire): every thread of every CTA of the
//                           cluster, all lanes of each warp (.aligned); shared-memory writes before it are visible
//                           to the whole cluster after it.
//   cluster_rank()          this CTA's rank in its cluster (%cluster_ctarank).
//   ld_cluster_f4(a, r)     16 bytes at the shared-memory address a of the CTA of rank r (mapa + ld.shared::cluster).
//   mbar_arrive_remote(b, r) arrive on the mbarrier at offset b in the CTA of rank r (release, cluster scope).
#pragma once
#include "wb_common.cuh"

__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

__device__ __forceinline__ float4 ld_cluster_f4(uint32_t addr, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
    float4 v;
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(remote)
                 : "memory");
    return v;
}

// Arrive on the mbarrier at the same shared-memory offset in the cluster's CTA `rank`.
__device__ __forceinline__ void mbar_arrive_remote(uint32_t bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(bar), "r"(rank));
    asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}
