// Direct-load variants of the fused kernels for small M: one CTA per row, the row (and the RMSNorm weight, issued at
// the same time) loaded straight into registers, so a row costs one memory round trip and three (RMSNorm) or two
// (SwiGLU) block barriers. The ring of norm_act_quant.cu pays a bulk copy + mbarrier round trip per row that nothing
// overlaps while every CTA has at most a row or two; v2 (norm_act_quant_v2.cu) loads the weight only after its first
// reduction and has six barriers per row. Math, thread -> vector assignment and numerics are the ring kernels' (the
// codes of a given (warps, vecs) shape are bit-identical to them).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/fused/fused_internal.h"
#include "kernels/cuda/fused/row_quant.cuh"
#include "qoq/cuda_attention.h"

namespace qoq::cuda::fused {
namespace {

template <typename T, int G, int NV>
__global__ void __launch_bounds__(32 * G)
    rmsnorm_quant_direct_kernel(const T* __restrict__ x, int K, const __half* __restrict__ w, float eps,
                                int8_t* __restrict__ codes, float* __restrict__ scales, int32_t* __restrict__ sums,
                                float* __restrict__ inv_out, bool store16) {
  constexpr int TC = 32 * G;
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  __shared__ float red_ss[G], red_max[G];
  __shared__ uint32_t red_sum[G];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, row = blockIdx.x;
  const int nvec = K / 8;
  const uint4* xr = reinterpret_cast<const uint4*>(x + size_t(row) * K);
  uint4 xv[NV], wr[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = vec_index<TC>(v, tid);
    xv[v] = make_uint4(0u, 0u, 0u, 0u);
    wr[v] = make_uint4(0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u);  // 1.0
    if (i < nvec) {
      xv[v] = __ldcs(xr + i);
      if (w) wr[v] = __ldg(reinterpret_cast<const uint4*>(w) + i);
    }
  }
  float y[NV][8];
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    if (vec_index<TC>(v, tid) < nvec) {
      unpack8(xv[v], kBf16, y[v]);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e % 4] = fmaf(y[v][e], y[v][e], acc[e % 4]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) y[v][e] = 0.f;
    }
  }
  const float ss_part = warp_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  if (lane == 0) red_ss[warp] = ss_part;
  __syncthreads();
  const float inv = rms_inv<G>(red_ss, K, eps);
  if (tid == 0 && inv_out) inv_out[row] = inv;
  float amax = warp_max(rms_apply<NV>(y, wr, inv));
  if (lane == 0) red_max[warp] = amax;
  __syncthreads();
  amax = red_max[0];
#pragma unroll
  for (int g = 1; g < G; ++g) amax = fmaxf(amax, red_max[g]);
  const float mul = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
  if (tid == 0) scales[row] = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
  const uint32_t s = warp_sum(uint32_t(quantize_store<TC, NV>(y, mul, nvec, codes + size_t(row) * K, store16)));
  if (lane == 0) red_sum[warp] = s;
  __syncthreads();
  if (tid == 0) {
    uint32_t t = 0;
#pragma unroll
    for (int g = 0; g < G; ++g) t += red_sum[g];
    sums[row] = int32_t(t);
  }
}

template <int G, int NV>
__global__ void __launch_bounds__(32 * G)
    silu_mul_quant_direct_kernel(const __half* __restrict__ gu, int I, int8_t* __restrict__ codes,
                                 float* __restrict__ scales, int32_t* __restrict__ sums, bool store16) {
  constexpr int TC = 32 * G;
  __shared__ float red_max[G];
  __shared__ uint32_t red_sum[G];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, row = blockIdx.x;
  const int nvec = I / 8;
  const uint4* g4 = reinterpret_cast<const uint4*>(gu + size_t(row) * 2 * I);
  const uint4* u4 = g4 + nvec;
  uint4 gv[NV], uv[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = vec_index<TC>(v, tid);
    gv[v] = uv[v] = make_uint4(0u, 0u, 0u, 0u);
    if (i < nvec) gv[v] = __ldcs(g4 + i), uv[v] = __ldcs(u4 + i);
  }
  float y[NV][8];
  float amax = 0.f;
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    if (vec_index<TC>(v, tid) < nvec) {
      float g[8], u[8];
      unpack8(gv[v], false, g);
      unpack8(uv[v], false, u);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        y[v][e] = __fmul_rn(__fdividef(g[e], __fadd_rn(1.f, expf(-g[e]))), u[e]);  // as the ring kernel
        amax = fmaxf(amax, fabsf(y[v][e]));
      }
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) y[v][e] = 0.f;
    }
  }
  amax = warp_max(amax);
  if (lane == 0) red_max[warp] = amax;
  __syncthreads();
  amax = red_max[0];
#pragma unroll
  for (int g = 1; g < G; ++g) amax = fmaxf(amax, red_max[g]);
  const float mul = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
  if (tid == 0) scales[row] = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
  const uint32_t s = warp_sum(uint32_t(quantize_store<TC, NV>(y, mul, nvec, codes + size_t(row) * I, store16)));
  if (lane == 0) red_sum[warp] = s;
  __syncthreads();
  if (tid == 0) {
    uint32_t t = 0;
#pragma unroll
    for (int g = 0; g < G; ++g) t += red_sum[g];
    sums[row] = int32_t(t);
  }
}

// Default shape: the fewest warps that cover the row with <= 2 vectors per thread (short per-thread chains: nothing
// else hides a row's latency here), 4 vectors once 16 warps do not suffice. Only warps in {1, 2, 4, 8, 16} and vecs
// in {2, 4} are instantiated; warps = 0 when the configuration does not cover the row.
Config direct_shape(int nvec, Config cfg) {
  if (cfg.warps == 0) {
    cfg.warps = 1;
    while (cfg.warps < 16 && nvec > 2 * 32 * cfg.warps) cfg.warps *= 2;
  }
  if (cfg.vecs == 0) cfg.vecs = nvec <= 2 * 32 * cfg.warps ? 2 : 4;
  const bool ok = (cfg.warps == 1 || cfg.warps == 2 || cfg.warps == 4 || cfg.warps == 8 || cfg.warps == 16) &&
                  (cfg.vecs == 2 || cfg.vecs == 4) && nvec <= 32 * cfg.warps * cfg.vecs;
  return ok ? Config{cfg.warps, cfg.vecs, 0, 0} : Config{};
}

// Calls f(integral_constant<G>, integral_constant<NV>) for a shape direct_shape accepted.
template <typename F>
void with_shape(const Config& c, F f) {
  using std::integral_constant;
  auto by_nv = [&](auto gc) {
    if (c.vecs == 2)
      f(gc, integral_constant<int, 2>());
    else
      f(gc, integral_constant<int, 4>());
  };
  switch (c.warps) {
    case 1:
      return by_nv(integral_constant<int, 1>());
    case 2:
      return by_nv(integral_constant<int, 2>());
    case 4:
      return by_nv(integral_constant<int, 4>());
    case 8:
      return by_nv(integral_constant<int, 8>());
    default:
      return by_nv(integral_constant<int, 16>());
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

Config rmsnorm_quantize_direct(const Config& want, const void* x, bool x_bf16, int M, int K, const uint16_t* weight,
                               float eps, int8_t* codes, float* scales, int32_t* sums, float* inv_out,
                               AttnStream stream) {
  QOQ_CUDA_REQUIRE(M >= 0 && K > 0 && K % 8 == 0 && K <= 16384,
                   "rmsnorm_quantize: K must be a multiple of 8, at most 16384");
  const Config shape = direct_shape(K / 8, want);
  if (shape.warps == 0 || M == 0) return shape;
  const bool store16 = K % 16 == 0 && aligned16(codes);
  const auto* w = reinterpret_cast<const __half*>(weight);
  with_shape(shape, [&](auto g, auto nv) {
    if (x_bf16)
      rmsnorm_quant_direct_kernel<__nv_bfloat16, g.value, nv.value><<<M, 32 * g.value, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(x), K, w, eps, codes, scales, sums, inv_out, store16);
    else
      rmsnorm_quant_direct_kernel<__half, g.value, nv.value><<<M, 32 * g.value, 0, stream>>>(
          static_cast<const __half*>(x), K, w, eps, codes, scales, sums, inv_out, store16);
  });
  QOQ_CUDA_CHECK_LAUNCH();
  return shape;
}

Config silu_mul_quantize_direct(const Config& want, const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales,
                                int32_t* sums, AttnStream stream) {
  QOQ_CUDA_REQUIRE(M >= 0 && I > 0 && I % 8 == 0 && I <= 16384,
                   "silu_mul_quantize: I must be a multiple of 8, at most 16384");
  const Config shape = direct_shape(I / 8, want);
  if (shape.warps == 0 || M == 0) return shape;
  const bool store16 = I % 16 == 0 && aligned16(codes);
  with_shape(shape, [&](auto g, auto nv) {
    silu_mul_quant_direct_kernel<g.value, nv.value>
        <<<M, 32 * g.value, 0, stream>>>(reinterpret_cast<const __half*>(gate_up), I, codes, scales, sums, store16);
  });
  QOQ_CUDA_CHECK_LAUNCH();
  return shape;
}

}  // namespace qoq::cuda::fused
