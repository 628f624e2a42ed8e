// Per-row building blocks of the fused kernels (norm_act_quant.cu, norm_act_quant_direct.cu): warp reductions, fp16 /
// bf16 unpacking, the thread -> vector assignment of a row, and the int8 quantization + code stores + code sum.
// rne(v) for |v| <= 127 is taken from the bits of v + 1.5 * 2^23 (exact, round half to even; no F2I on the
// conversion pipe), and the row sum from the packed codes by dp4a.
#pragma once
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

namespace qoq::cuda::fused {

constexpr float kRoundMagic = 12582912.f;  // 1.5 * 2^23: v + this rounds v to an integer, half to even
// bits(v + magic) = 0x4B400000 + rne(v) for |v| < 2^22: the low byte is the int8 code.

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ uint32_t warp_sum(uint32_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ void unpack8(const uint4& r, bool bf16, float (&f)[8]) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (bf16) {
      f[2 * j] = __uint_as_float(w[j] << 16);
      f[2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
    } else {
      const float2 t = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
      f[2 * j] = t.x;
      f[2 * j + 1] = t.y;
    }
  }
}

// Thread tid's vector v of a row: pairs of adjacent 16-byte input vectors, so that the 16 codes of a pair leave in
// one 16-byte store.
template <int TC>
__device__ __forceinline__ int vec_index(int v, int tid) {
  return (v / 2) * 2 * TC + 2 * tid + (v % 2);
}

// Quantizes y (the thread's vectors) with multiplier mul, stores the codes of the row and returns the sum of the
// thread's codes (one dp4a per 4 packed codes; padding slots hold y = 0, code 0).
template <int TC, int NV>
__device__ __forceinline__ int quantize_store(const float (&y)[NV][8], float mul, int nvec, int8_t* codes_row,
                                              bool store16) {
  int s = 0;
#pragma unroll
  for (int p = 0; p < NV / 2; ++p) {
    uint32_t word[4];
#pragma unroll
    for (int q = 0; q < 2; ++q) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint32_t b[4];
#pragma unroll
        for (int e = 0; e < 4; ++e)
          b[e] = __float_as_uint(__fadd_rn(__fmul_rn(y[2 * p + q][4 * h + e], mul), kRoundMagic));
        word[2 * q + h] = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
        s = __dp4a(int(word[2 * q + h]), 0x01010101, s);
      }
    }
    const int i0 = vec_index<TC>(2 * p, threadIdx.x);
    if (store16 && i0 + 1 < nvec) {
      *reinterpret_cast<uint4*>(codes_row + 8 * size_t(i0)) = make_uint4(word[0], word[1], word[2], word[3]);
    } else {
      if (i0 < nvec) *reinterpret_cast<uint2*>(codes_row + 8 * size_t(i0)) = make_uint2(word[0], word[1]);
      if (i0 + 1 < nvec) *reinterpret_cast<uint2*>(codes_row + 8 * size_t(i0 + 1)) = make_uint2(word[2], word[3]);
    }
  }
  return s;
}

// RMSNorm's 1 / rms from the G warps' partial sums of squares (one order for all threads: the same inv everywhere).
template <int G>
__device__ __forceinline__ float rms_inv(const float* red_ss, int K, float eps) {
  float ss = red_ss[0];
#pragma unroll
  for (int g = 1; g < G; ++g) ss += red_ss[g];
  return __fdiv_rn(1.f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, float(K)), eps)));
}

// y = w * (y * inv) in place (the weight as fp16 vectors wr); returns the thread's max |y|.
template <int NV>
__device__ __forceinline__ float rms_apply(float (&y)[NV][8], const uint4 (&wr)[NV], float inv) {
  float amax = 0.f;
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    float wf[8];
    unpack8(wr[v], false, wf);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      y[v][e] = __fmul_rn(wf[e], __fmul_rn(y[v][e], inv));
      amax = fmaxf(amax, fabsf(y[v][e]));
    }
  }
  return amax;
}

}  // namespace qoq::cuda::fused
