// The DESIGN §3 epilogue for eight consecutive output channels of one token, shared by the fused GEMM epilogue and
// the split-K reduction. Explicitly rounded fp32 operations (no FMA contraction) reproduce ref::epilogue bit for bit.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace qoq::cuda {

struct EpilogueParams {
  const float* a_scales;     // [M]
  const int32_t* a_sums;     // [M]
  const uint16_t* w_scales;  // fp16 [N]
  const uint8_t* zeros;      // [N] or null: then every channel's zero is zconst
  int32_t zconst;            // 128 for g128 (its weights reach the tensor cores as w8 + 128), else 0
  const uint16_t* bias;      // fp16 [N] or null
  const uint16_t* residual;  // [M, N] output dtype, or null
  uint16_t* out;             // [M, N]
  int M, N;
  bool bf16;
};

__device__ __forceinline__ float out_to_float(uint16_t v, bool bf16) {
  return bf16 ? __bfloat162float(__ushort_as_bfloat16(v)) : __half2float(__ushort_as_half(v));
}

// One output before rounding: the DESIGN §3 order, each fp32 operation rounded once (ref::epilogue).
__device__ __forceinline__ float epilogue_value(int32_t acc, float sa, int32_t asum, float sw, int32_t z, float bias,
                                                float residual) {
  const float v = __int2float_rn(acc - z * asum);
  const float scale = __fmul_rn(sa, sw);
  float y = __fmul_rn(scale, v);
  y = __fadd_rn(y, bias);
  return __fadd_rn(y, residual);
}

__device__ __forceinline__ uint16_t to_out(float y, bool bf16) {
  return bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(y)) : __half_as_ushort(__float2half_rn(y));
}

// The operands of epilogue8 other than the accumulators and the residual: loaded apart so that a kernel can issue
// these loads long before its accumulators are ready (the decode kernels do it before their main loop).
struct Epi8In {
  float sa = 0.f;
  int32_t asum = 0;
  uint4 sw = make_uint4(0, 0, 0, 0), b = make_uint4(0, 0, 0, 0);
  uint2 z = make_uint2(0, 0);
};

__device__ __forceinline__ Epi8In epilogue8_load(int m, int n0, const EpilogueParams& p) {
  Epi8In q;
  q.sa = p.a_scales[m];
  q.asum = p.zeros || p.zconst ? p.a_sums[m] : 0;
  q.sw = *reinterpret_cast<const uint4*>(p.w_scales + n0);
  if (p.zeros) q.z = *reinterpret_cast<const uint2*>(p.zeros + n0);
  if (p.bias) q.b = *reinterpret_cast<const uint4*>(p.bias + n0);
  return q;
}

__device__ __forceinline__ void epilogue8(const int32_t (&acc)[8], int m, int n0, const Epi8In& q,
                                          const EpilogueParams& p) {
  const uint16_t* sw = reinterpret_cast<const uint16_t*>(&q.sw);
  const uint8_t* z = reinterpret_cast<const uint8_t*>(&q.z);
  uint4 r4 = make_uint4(0, 0, 0, 0);
  if (p.residual) r4 = *reinterpret_cast<const uint4*>(p.residual + size_t(m) * p.N + n0);
  const uint16_t* b = reinterpret_cast<const uint16_t*>(&q.b);
  const uint16_t* r = reinterpret_cast<const uint16_t*>(&r4);
  uint4 o4;
  uint16_t* o = reinterpret_cast<uint16_t*>(&o4);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const float y = epilogue_value(
        acc[e], q.sa, q.asum, __half2float(__ushort_as_half(sw[e])), p.zeros ? int32_t(z[e]) : p.zconst,
        p.bias ? __half2float(__ushort_as_half(b[e])) : 0.f, p.residual ? out_to_float(r[e], p.bf16) : 0.f);
    o[e] = to_out(y, p.bf16);
  }
  *reinterpret_cast<uint4*>(p.out + size_t(m) * p.N + n0) = o4;
}

__device__ __forceinline__ void epilogue8(const int32_t (&acc)[8], int m, int n0, const EpilogueParams& p) {
  epilogue8(acc, m, n0, epilogue8_load(m, n0, p), p);
}

}  // namespace qoq::cuda
