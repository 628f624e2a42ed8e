// Work items of the KV4 / KV8 decode kernel and the combine of its warps and pieces (bench/NOTES_decode.md).
// Items [0, whole) are whole (sequence, KV head) pairs, later items `pieces` token ranges of `chunk` tokens of each
// remaining pair (split-K: small batches, and optionally the last wave of a large batch, which the hardware starts
// last). A piece writes an fp32 partial (O, m, l); the last piece of a pair to finish (atomic counter, left at zero
// again) combines them with all loads independent.
#pragma once
#include "kernels/cuda/attention/decode_kernel.cuh"

namespace qoq::cuda::attn {

// Item -> (pair, piece); piece -1: the whole pair.
__device__ __forceinline__ void item_pair(const DecodeParams& p, int item, int& pair, int& piece) {
  if (item < p.whole) {
    pair = item, piece = -1;
  } else {
    const int j = item - p.whole;
    const int k = j / p.pieces;
    pair = p.whole + k, piece = j - k * p.pieces;
  }
}

// Weighted sum of the pieces' partial outputs (float4 per thread and output), kBatch pieces' loads issued together.
template <int D, int kPer, int kBatch>
__device__ __forceinline__ void combine_o(const DecodeParams& p, const float* wgt, const float* inv_l, int slot0,
                                          int n_active, uint16_t* out) {
  const int G = p.group, n4 = G * D / 4;
  const float4* src = reinterpret_cast<const float4*>(p.ws_o) + size_t(slot0) * n4;
  float4 acc[kPer];
#pragma unroll
  for (int k = 0; k < kPer; ++k) acc[k] = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int s0 = 0; s0 < n_active; s0 += kBatch) {
    float4 v[kPer][kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int i = threadIdx.x + k * kDecodeWarps * 32;
        v[k][u] = i < n4 && s0 + u < n_active ? __ldcg(src + size_t(s0 + u) * n4 + i) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const int i = threadIdx.x + k * kDecodeWarps * 32;
        const float f = s0 + u < n_active && i < n4 ? wgt[(s0 + u) * G + 4 * i / D] : 0.f;
        acc[k].x += v[k][u].x * f, acc[k].y += v[k][u].y * f, acc[k].z += v[k][u].z * f, acc[k].w += v[k][u].w * f;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    const int i = threadIdx.x + k * kDecodeWarps * 32;
    if (i < n4) {
      const float r = inv_l[4 * i / D];
      const __half2 lo = __floats2half2_rn(acc[k].x * r, acc[k].y * r);
      const __half2 hi = __floats2half2_rn(acc[k].z * r, acc[k].w * r);
      uint2 v;
      v.x = *reinterpret_cast<const uint32_t*>(&lo), v.y = *reinterpret_cast<const uint32_t*>(&hi);
      reinterpret_cast<uint2*>(out)[i] = v;
    }
  }
}

// After every warp wrote its state to `sm`: combines the warps; a whole pair (or the only non-empty piece) writes its
// output, a piece writes its partial and the last piece of the pair combines all partials. Ends with a barrier, so
// `sm` is free again.
template <int D>
__device__ void combine_items(const DecodeParams& p, CombineSmem<D>& sm, int pair, int piece, int n_active) {
  const int G = p.group;
  __syncthreads();
  uint16_t* out = p.out + size_t(pair) * G * D;
  const bool single = piece < 0 || n_active == 1;
  const int slot = piece < 0 ? 0 : (pair - p.whole) * p.pieces + piece;
  for (int i = threadIdx.x; i < G * D; i += kDecodeWarps * 32) {
    const int h = i / D, d = i % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, sm.m[w][h]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float f = sm.m[w][h] == -INFINITY ? 0.f : exp2f(sm.m[w][h] - M);
      L += sm.l[w][h] * f;
      O += sm.o[w][h][d] * f;
    }
    if (single) {
      out[i] = __half_as_ushort(__float2half_rn(O / L));
    } else {
      p.ws_o[size_t(slot) * G * D + i] = O;
      if (d == 0) p.ws_m[size_t(slot) * G + h] = M, p.ws_l[size_t(slot) * G + h] = L;
    }
  }
  if (!single) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) sm.last = atomicAdd(p.counters + pair, 1) == n_active - 1;
    __syncthreads();
    if (sm.last) {
      __threadfence();
      const int slot0 = (pair - p.whole) * p.pieces;
      // Weights: 16 threads per head, each over pieces sub, sub + 16, ... (at most 64 pieces: 4 each), its m and l
      // loaded at once; max and sum by shuffles. Then the outputs with many loads in flight (combine_o): a chain of
      // L2 round trips per piece or per few pieces cost ~0.12 us per piece (B=1, 43 pieces: ~5 us).
      float* wgt = &sm.o[0][0][0];  // [piece][head] (pieces * G <= 4 * 8 * D floats)
      const int h = threadIdx.x / 16, sub = threadIdx.x % 16;
      float ms[4], ls[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int s = sub + 16 * u;
        const bool ok = h < G && s < n_active;
        ms[u] = ok ? __ldcg(p.ws_m + size_t(slot0 + s) * G + h) : -INFINITY;
        ls[u] = ok ? __ldcg(p.ws_l + size_t(slot0 + s) * G + h) : 0.f;
      }
      float M = fmaxf(fmaxf(ms[0], ms[1]), fmaxf(ms[2], ms[3]));
#pragma unroll
      for (int x = 1; x < 16; x <<= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, x));
      float L = 0.f;
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int s = sub + 16 * u;
        const float f = ms[u] == -INFINITY ? 0.f : exp2f(ms[u] - M);
        if (h < G && s < n_active) wgt[s * G + h] = f;
        L += ls[u] * f;
      }
#pragma unroll
      for (int x = 1; x < 16; x <<= 1) L += __shfl_xor_sync(0xffffffffu, L, x);
      if (h < G && sub == 0) sm.l[0][h] = 1.f / L;
      __syncthreads();
      const int n4 = G * D / 4;
      if (n4 <= kDecodeWarps * 32)
        combine_o<D, 1, 16>(p, wgt, sm.l[0], slot0, n_active, out);
      else
        combine_o<D, 2, 8>(p, wgt, sm.l[0], slot0, n_active, out);
      if (threadIdx.x == 0) p.counters[pair] = 0;
    }
  }
  __syncthreads();
}

}  // namespace qoq::cuda::attn
