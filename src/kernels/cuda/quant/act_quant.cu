// Per-token int8 activation quantization (DESIGN §3): one CTA per row, two passes over the row (amax, then codes
// and the exact integer sum). The fp32 operations are those of ref::quantize_activations, so codes are bit-exact.
#include <cuda_fp16.h>

#include "kernels/cuda/check.h"
#include "qoq/cuda_gemm.h"

namespace qoq::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* smem) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = smem[0];
  for (int w = 1; w < kThreads / 32; ++w) v = op(v, smem[w]);
  __syncthreads();  // smem is reused by the next reduction
  return v;
}

__global__ void __launch_bounds__(kThreads)
    act_quant_kernel(const uint4* __restrict__ x, int K, int8_t* codes, float* scales, int32_t* sums) {
  __shared__ float fred[kThreads / 32];
  __shared__ int ired[kThreads / 32];
  const int row = blockIdx.x;
  const int vecs = K / 8;
  const uint4* xr = x + size_t(row) * vecs;
  float amax = 0.f;
  for (int i = threadIdx.x; i < vecs; i += kThreads) {
    const uint4 v = xr[i];
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(h[j]);
      amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
    }
  }
  amax = block_reduce(
      amax, [](float a, float b) { return fmaxf(a, b); }, fred);
  // Division is IEEE-rounded (nvcc's default -prec-div=true), like the CPU.
  const float mul = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
  int sum = 0;
  uint2* out = reinterpret_cast<uint2*>(codes + size_t(row) * K);
  for (int i = threadIdx.x; i < vecs; i += kThreads) {
    const uint4 v = xr[i];
    const __half2* h = reinterpret_cast<const __half2*>(&v);
    uint32_t packed[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(h[j]);
      const int c0 = max(-127, min(127, __float2int_rn(__fmul_rn(f.x, mul))));
      const int c1 = max(-127, min(127, __float2int_rn(__fmul_rn(f.y, mul))));
      sum += c0 + c1;
      packed[j / 2] |= (uint32_t(c0) & 0xFFu) << (16 * (j % 2)) | (uint32_t(c1) & 0xFFu) << (16 * (j % 2) + 8);
    }
    out[i] = make_uint2(packed[0], packed[1]);
  }
  sum = block_reduce(
      sum, [](int a, int b) { return a + b; }, ired);
  if (threadIdx.x == 0) {
    scales[row] = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
    sums[row] = sum;
  }
}

}  // namespace

void quantize_activations(const uint16_t* x, int M, int K, int8_t* codes, float* scales, int32_t* sums, Stream stream) {
  QOQ_CUDA_REQUIRE(M >= 0 && K > 0 && K % 8 == 0, "quantize_activations: K must be a positive multiple of 8");
  if (M == 0) return;
  act_quant_kernel<<<M, kThreads, 0, stream>>>(reinterpret_cast<const uint4*>(x), K, codes, scales, sums);
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda
