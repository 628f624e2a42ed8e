// sm_90 asynchronous-copy building blocks shared by the kernels: shared-memory addresses, mbarriers (init, the fence
// that publishes the init to the async proxy, arrive, arrive with an expected transaction count, parity wait), the 1-D
// bulk copy global -> shared completing on an mbarrier (cp.async.bulk), the generic -> async proxy fence, and the
// programmatic-dependent-launch controls (griddepcontrol). Every wrapper that orders memory has a "memory" clobber so
// the compiler keeps ordinary loads and stores on the right side of it.
#pragma once
#include <cstdint>

namespace qoq::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarriers (one 64-bit word in shared memory, CTA scope).
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
// Makes the initialization of the barriers visible to the async proxy (bulk copies) before their first use.
__device__ __forceinline__ void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
// Arrives once and adds `bytes` to the transaction count the current phase waits for (the copies' complete_tx).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
// Spins until the phase with the given parity has completed (try_wait suspends for a while between polls).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

// ---- bulk copies.
// Contiguous global -> shared copy by the copy engine; completes `bytes` of transactions on `bar`. bytes % 16 == 0,
// both addresses 16-byte aligned.
__device__ __forceinline__ void bulk_g2s(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(smem_u32(bar))
      : "memory");
}
// Orders this thread's earlier generic-proxy shared-memory accesses before later async-proxy ones (a bulk copy that
// overwrites a buffer just read, or a wgmma reading what the threads just stored; a barrier makes it CTA-wide).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// ---- programmatic dependent launch: wait until the grids this one depends on have completed and their writes are
// visible; let the next grid on the stream start launching. Both are no-ops for an ordinary launch.
__device__ __forceinline__ void grid_dependency_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void launch_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

}  // namespace qoq::cuda
