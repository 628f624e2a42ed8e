// v2 of the fused kernels, kept as the benchmark's same-process baseline (fused::rmsnorm_quantize_v2 and
// fused::silu_mul_quantize_v2; production code is norm_act_quant.cu). One 128-thread CTA per token row, the row held in
// registers (one DRAM read, codes written once), fp32 math with each operation rounded once as the CPU references.
// v1 used 256 threads x 8 vectors for every K: 3 CTAs per SM, ~24 KB in flight, 34% of copy bandwidth at K = 4096;
// now the vectors per thread (NV) follow K (65%). A warp-per-row variant (no block barriers) measured worse (57%,
// bf16 41%) and was dropped. SwiGLU uses 512-thread CTAs and a fast division (71%).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/fused/fused_internal.h"

namespace qoq::cuda::fused {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxVec = 16;  // uint4 (8 halves) per thread: K <= 8 * 16 * 128 = 16384

template <int THREADS, typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* smem) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = smem[0];
#pragma unroll
  for (int w = 1; w < THREADS / 32; ++w) v = op(v, smem[w]);
  __syncthreads();
  return v;
}

__device__ __forceinline__ float to_float(__half h) { return __half2float(h); }
__device__ __forceinline__ float to_float(__nv_bfloat16 h) { return __bfloat162float(h); }

// Quantizes the thread's values y[v][0..8) (vector v at column (v * kThreads + tid) * 8) and writes the row's outputs.
template <int THREADS, int NV>
__device__ void quantize_store(const float (&y)[NV][8], int nvec, int8_t* codes_row, float* scale, int32_t* sum) {
  __shared__ float fred[THREADS / 32];
  __shared__ int ired[THREADS / 32];
  float amax = 0.f;
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    if (v * THREADS + int(threadIdx.x) < nvec) {
#pragma unroll
      for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(y[v][e]));
    }
  }
  amax = block_reduce<THREADS>(
      amax, [](float a, float b) { return fmaxf(a, b); }, fred);
  const float mul = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
  int s = 0;
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = v * THREADS + threadIdx.x;
    if (i < nvec) {
      uint32_t w[2] = {0, 0};
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int c = max(-127, min(127, __float2int_rn(__fmul_rn(y[v][e], mul))));
        s += c;
        w[e / 4] |= (uint32_t(c) & 0xFFu) << (8 * (e % 4));
      }
      reinterpret_cast<uint2*>(codes_row)[i] = make_uint2(w[0], w[1]);
    }
  }
  s = block_reduce<THREADS>(
      s, [](int a, int b) { return a + b; }, ired);
  if (threadIdx.x == 0) {
    *scale = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
    *sum = s;
  }
}

template <typename T, int NV>
__global__ void __launch_bounds__(kThreads)
    rmsnorm_quant_kernel(const T* __restrict__ x, int K, const __half* __restrict__ w, float eps, int8_t* codes,
                         float* scales, int32_t* sums, float* inv_out) {
  __shared__ float red[kThreads / 32];
  const int row = blockIdx.x, nvec = K / 8;
  const uint4* xr = reinterpret_cast<const uint4*>(x + size_t(row) * K);
  float y[NV][8];
  float ss = 0.f;
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = v * kThreads + threadIdx.x;
    if (i < nvec) {
      const uint4 raw = __ldcs(xr + i);
      const T* h = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        y[v][e] = to_float(h[e]);
        ss = __fadd_rn(ss, __fmul_rn(y[v][e], y[v][e]));
      }
    }
  }
  ss = block_reduce<kThreads>(
      ss, [](float a, float b) { return __fadd_rn(a, b); }, red);
  const float inv = __fdiv_rn(1.f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, float(K)), eps)));
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = v * kThreads + threadIdx.x;
    if (i < nvec) {
      uint4 wr = make_uint4(0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u);  // 1.0
      if (w) wr = reinterpret_cast<const uint4*>(w)[i];
      const __half* wh = reinterpret_cast<const __half*>(&wr);
#pragma unroll
      for (int e = 0; e < 8; ++e) y[v][e] = __fmul_rn(__half2float(wh[e]), __fmul_rn(y[v][e], inv));
    }
  }
  if (inv_out && threadIdx.x == 0) inv_out[row] = inv;
  quantize_store<kThreads>(y, nvec, codes + size_t(row) * K, scales + row, sums + row);
}

constexpr int kSiluThreads = 512;

template <int NV>
__global__ void __launch_bounds__(kSiluThreads)
    silu_mul_quant_kernel(const __half* __restrict__ gu, int I, int8_t* codes, float* scales, int32_t* sums) {
  const int row = blockIdx.x, nvec = I / 8;
  const uint4* g4 = reinterpret_cast<const uint4*>(gu + size_t(row) * 2 * I);
  const uint4* u4 = g4 + nvec;
  float y[NV][8];
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = v * kSiluThreads + threadIdx.x;
    if (i < nvec) {
      const uint4 gr = __ldcs(g4 + i), ur = __ldcs(u4 + i);
      const __half* gh = reinterpret_cast<const __half*>(&gr);
      const __half* uh = reinterpret_cast<const __half*>(&ur);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float g = __half2float(gh[e]);
        // Fast division (2 ulp): the IEEE one (v1) and __frcp_rn (v2) made the kernel issue-bound at ~0.4 of copy
        // bandwidth; the codes are not bit-exact here anyway (expf).
        y[v][e] = __fmul_rn(__fdividef(g, __fadd_rn(1.f, expf(-g))), __half2float(uh[e]));
      }
    }
  }
  quantize_store<kSiluThreads>(y, nvec, codes + size_t(row) * I, scales + row, sums + row);
}

// Calls f(std::integral_constant<int, NV>) with the smallest NV in {1, 2, 4, 8, 16} covering K.
template <typename F>
void with_nv(int K, F f) {
  const int need = (K / 8 + kThreads - 1) / kThreads;
  if (need <= 1)
    f(std::integral_constant<int, 1>());
  else if (need <= 2)
    f(std::integral_constant<int, 2>());
  else if (need <= 4)
    f(std::integral_constant<int, 4>());
  else if (need <= 8)
    f(std::integral_constant<int, 8>());
  else
    f(std::integral_constant<int, 16>());
}

}  // namespace

void rmsnorm_quantize_v2(const void* x, bool x_bf16, int M, int K, const uint16_t* weight, float eps, int8_t* codes,
                         float* scales, int32_t* sums, float* inv_out, AttnStream stream) {
  QOQ_CUDA_REQUIRE(M >= 0 && K > 0 && K % 8 == 0 && K <= 8 * kMaxVec * kThreads,
                   "rmsnorm_quantize: K must be a multiple of 8, at most 16384");
  if (M == 0) return;
  const auto* w = reinterpret_cast<const __half*>(weight);
  with_nv(K, [&](auto nv) {
    if (x_bf16)
      rmsnorm_quant_kernel<__nv_bfloat16, nv.value>
          <<<M, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), K, w, eps, codes, scales, sums, inv_out);
    else
      rmsnorm_quant_kernel<__half, nv.value>
          <<<M, kThreads, 0, stream>>>(static_cast<const __half*>(x), K, w, eps, codes, scales, sums, inv_out);
  });
  QOQ_CUDA_CHECK_LAUNCH();
}

void silu_mul_quantize_v2(const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales, int32_t* sums,
                          AttnStream stream) {
  QOQ_CUDA_REQUIRE(M >= 0 && I > 0 && I % 8 == 0 && I <= 8 * 4 * kSiluThreads,
                   "silu_mul_quantize: I must be a multiple of 8, at most 16384");
  if (M == 0) return;
  const int need = (I / 8 + kSiluThreads - 1) / kSiluThreads;
  auto run = [&](auto nv) {
    silu_mul_quant_kernel<nv.value>
        <<<M, kSiluThreads, 0, stream>>>(reinterpret_cast<const __half*>(gate_up), I, codes, scales, sums);
  };
  if (need <= 1)
    run(std::integral_constant<int, 1>());
  else if (need <= 2)
    run(std::integral_constant<int, 2>());
  else
    run(std::integral_constant<int, 4>());
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda::fused
