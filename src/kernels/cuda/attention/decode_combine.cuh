// Work items of the KV4 / KV8 decode kernel and the combine of its warps and pieces (bench/NOTES_decode.md).
// Items [0, whole) are whole (sequence, KV head) pairs, later items `pieces` token ranges of `chunk` tokens of each
// remaining pair (split-K: small batches, and optionally the last wave of a large batch, which the hardware starts
// last). A piece writes an fp32 partial (O, m, l); a second kernel, launched as a programmatic dependent, combines
// them once the decode kernel is complete (bench/NOTES_decode.md, v7: no fence or atomic round trips in the kernel).
#pragma once
#include "kernels/cuda/async_copy.cuh"
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

// After every warp wrote its state to `sm`: combines the warps; a whole pair (or the only non-empty piece) writes its
// output, a piece of a split pair its partial (decode_combine_kernel combines them). Ends with a barrier, so `sm` is
// free again.
template <int D>
__device__ void combine_items(const DecodeParams& p, CombineSmem<D>& sm, int pair, int piece, int n_active) {
  const int G = p.group;
  __syncthreads();
  uint16_t* out = p.out + size_t(pair) * G * D;
  const bool single = piece < 0 || n_active == 1;
  const size_t slot = single ? 0 : size_t(pair - p.whole) * p.pieces + piece;
  // The warps' weights per head once (not per output): thread h < G.
  if (threadIdx.x < G) {
    const int h = threadIdx.x;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, sm.m[w][h]);
    float L = 0.f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float f = sm.m[w][h] == -INFINITY ? 0.f : exp2f(sm.m[w][h] - M);
      sm.f[w][h] = f;
      L += sm.l[w][h] * f;
    }
    sm.mh[h] = M, sm.lh[h] = L;
    if (!single) p.ws_m[slot * G + h] = M, p.ws_l[slot * G + h] = L;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D / 4; i += kDecodeWarps * 32) {  // float4 i: head h, channels 4i % D ..
    const int h = 4 * i / D, d = 4 * i % D;
    float4 O = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float4 v = *reinterpret_cast<const float4*>(&sm.o[w][h][d]);
      const float f = sm.f[w][h];
      O.x += v.x * f, O.y += v.y * f, O.z += v.z * f, O.w += v.w * f;
    }
    if (single) {
      const float r = 1.f / sm.lh[h];
      const __half2 lo = __floats2half2_rn(O.x * r, O.y * r), hi = __floats2half2_rn(O.z * r, O.w * r);
      uint2 u;
      u.x = *reinterpret_cast<const uint32_t*>(&lo), u.y = *reinterpret_cast<const uint32_t*>(&hi);
      reinterpret_cast<uint2*>(out)[i] = u;
    } else {
      reinterpret_cast<float4*>(p.ws_o + slot * G * D)[i] = O;
    }
  }
  __syncthreads();
  if (p.trace && threadIdx.x == 0) {
    unsigned long long* tr = p.trace + size_t(blockIdx.x) * kTraceStamps;
    unsigned smid;
    asm volatile("mov.u32 %0, %smid;" : "=r"(smid));
    tr[4] = globaltimer(), tr[5] = smid;
  }
}

// The combine of split pairs: CTA (split pair, slice of 128 / tpe outputs), p.combine_tpe threads per output (a
// power of two: about pieces / 8) over the pieces sub, sub + tpe, ... (8 pieces' loads issued together, online max),
// then a shuffle reduction; the order is fixed, so the result is deterministic. Launched after the decode kernel with
// programmatic stream serialization: its CTAs wait in griddepcontrol.wait for the decode kernel to complete (and its
// stores to be visible), with no fence or counter in the decode kernel.

template <int D>
__global__ void __launch_bounds__(kDecodeWarps * 32) decode_combine_kernel(const DecodeParams p) {
  const int pair = p.whole + blockIdx.x;
  const int G = p.group, total = G * D;
  const int len = p.lengths[pair / p.n_kv_heads];
  const int n = (len + p.chunk - 1) / p.chunk;  // active pieces (the kernel wrote the output itself if n == 1)
  const int tpe = p.combine_tpe, outs = kDecodeWarps * 32 / tpe;
  const int i = blockIdx.y * outs + threadIdx.x / tpe, sub = threadIdx.x % tpe;
  grid_dependency_wait();
  launch_dependents();
  if (n <= 1 || blockIdx.y * outs >= total) return;
  const bool ok = i < total;
  const int h = (ok ? i : 0) / D;
  const size_t slot0 = size_t(blockIdx.x) * p.pieces;
  constexpr int kB = 8;
  float M = -INFINITY, L = 0.f, O = 0.f;
  for (int s0 = sub; s0 < n; s0 += kB * tpe) {
    float mv[kB], lv[kB], ov[kB];
#pragma unroll
    for (int u = 0; u < kB; ++u) {
      const int s = s0 + u * tpe;
      const bool v = ok && s < n;
      const size_t slot = slot0 + (v ? s : 0);
      mv[u] = v ? __ldcg(p.ws_m + slot * G + h) : -INFINITY;
      lv[u] = v ? __ldcg(p.ws_l + slot * G + h) : 0.f;
      ov[u] = v ? __ldcg(p.ws_o + slot * total + i) : 0.f;
    }
    float mb = M;
#pragma unroll
    for (int u = 0; u < kB; ++u) mb = fmaxf(mb, mv[u]);
    if (mb != -INFINITY) {
      const float a = M == -INFINITY ? 0.f : exp2f(M - mb);
      O *= a, L *= a;
#pragma unroll
      for (int u = 0; u < kB; ++u) {
        const float f = mv[u] == -INFINITY ? 0.f : exp2f(mv[u] - mb);
        O += ov[u] * f, L += lv[u] * f;
      }
      M = mb;
    }
  }
  for (int x = 1; x < tpe; x <<= 1) {
    const float Mo = __shfl_xor_sync(0xffffffffu, M, x);
    const float Lo = __shfl_xor_sync(0xffffffffu, L, x);
    const float Oo = __shfl_xor_sync(0xffffffffu, O, x);
    const float Mn = fmaxf(M, Mo);
    const float a = M == -INFINITY ? 0.f : exp2f(M - Mn), c = Mo == -INFINITY ? 0.f : exp2f(Mo - Mn);
    O = O * a + Oo * c, L = L * a + Lo * c, M = Mn;
  }
  if (ok && sub == 0) p.out[size_t(pair) * total + i] = __half_as_ushort(__float2half_rn(O / L));
}

}  // namespace qoq::cuda::attn
