// The copy-bandwidth reference of the fused kernels' benchmark: reads 2 (RMSNorm: fp16 in, int8 out) or 4 (SwiGLU:
// gate and up in) bytes for every byte it writes, four independent 16-byte loads in flight per thread, no arithmetic
// beyond a byte select.
#include "kernels/cuda/check.h"
#include "kernels/cuda/fused/fused_internal.h"

namespace qoq::cuda::fused {
namespace {

template <int RATIO>
__global__ void __launch_bounds__(256) copy_shaped_kernel(const uint4* __restrict__ in, size_t n_in, uint4* out) {
  const size_t i = (size_t(blockIdx.x) * 256 + threadIdx.x) * 4;
  if (i >= n_in) return;
  uint4 a[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) a[j] = __ldcs(in + i + j);
  if (RATIO == 2) {  // low byte of every 16-bit element: 2 input vectors -> 1 output vector
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint4 p = a[2 * j], q = a[2 * j + 1];
      out[i / 2 + j] = make_uint4(__byte_perm(p.x, p.y, 0x6420), __byte_perm(p.z, p.w, 0x6420),
                                  __byte_perm(q.x, q.y, 0x6420), __byte_perm(q.z, q.w, 0x6420));
    }
  } else {  // low byte of every 32-bit word: 4 input vectors -> 1 output vector
    uint32_t o[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      o[j] = __byte_perm(__byte_perm(a[j].x, a[j].y, 0x0040), __byte_perm(a[j].z, a[j].w, 0x0040), 0x5410);
    out[i / 4] = make_uint4(o[0], o[1], o[2], o[3]);
  }
}

}  // namespace

void copy_shaped(const void* in, size_t in_bytes, void* out, int ratio, AttnStream stream) {
  QOQ_CUDA_REQUIRE(in_bytes % 64 == 0 && (ratio == 2 || ratio == 4), "copy_shaped: in_bytes % 64 != 0 or bad ratio");
  const size_t n = in_bytes / 16;
  if (n == 0) return;
  const unsigned grid = unsigned((n / 4 + 255) / 256);
  if (ratio == 2)
    copy_shaped_kernel<2><<<grid, 256, 0, stream>>>(static_cast<const uint4*>(in), n, static_cast<uint4*>(out));
  else
    copy_shaped_kernel<4><<<grid, 256, 0, stream>>>(static_cast<const uint4*>(in), n, static_cast<uint4*>(out));
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda::fused
