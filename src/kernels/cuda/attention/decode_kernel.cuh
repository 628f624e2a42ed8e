// Decode attention over the paged KV cache (docs/kv_cache.md), one template for KV4 / KV8 / fp16 and D 64 / 128.
//
// CTA = (sequence, KV head, split), 4 warps; each warp walks blocks of kTok tokens of the split and serves all G <= 8
// query heads of the KV head from one read of the K/V rows, on tensor cores (mma.m16n8k16, fp16 in, fp32 accumulate):
//   S^T-free form, FlashAttention-2 style: S = Q K^T with the G heads on M (rows >= G are zero), tokens on N.
//   K and V enter the MMA as their integer codes (exact in fp16), so dequantization is one LOP3 (+ one HSUB2 for V) per
//   two codes; scale and zero are applied in fp32: s = scale_k * (q.c - zero_k * sum(q)), and with
//   P' = fp16(p * scale_v): O = P' C_v - sum_t P'_t zero_v,t (the same rounded P' in both terms, so the split is
//   exact up to fp32 rounding).
// Each thread loads its K rows' bytes with one contiguous vector per token: the MMA's K (channel) order is permuted
// to whatever order those bytes decode into, and Q is loaded in the same permuted order (a dot product does not
// care about the order of its terms).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/attention/common.cuh"
#include "qoq/cuda_attention.h"

namespace qoq::cuda::attn {

constexpr int kDecodeWarps = 4;
constexpr int kMaxGroup = 8;
constexpr int kMaxSlots = 2048;  // (sequence, KV head, split) partials when splitting

struct DecodeParams {
  const uint8_t* pool;
  const int32_t* page_table;
  int max_pages;
  int n_kv_heads;
  int group;
  const uint16_t* q;
  const int32_t* lengths;
  float scale_log2;  // softmax scale * log2(e)
  int chunk;         // tokens per split (multiple of 64)
  int splits;
  int whole;        // work items (decode_combine.cuh): [0, whole) are whole pairs,
  int pieces;       // then `pieces` items of `chunk` tokens per remaining pair,
  int n_items;      // whole + (pairs - whole) * pieces items in all
  int pdl;          // launched with programmatic stream serialization (griddepcontrol)
  int combine_tpe;  // decode_combine_kernel: threads per output
  uint16_t* out;
  int* counters;
  float* ws_m;  // [slots][group]
  float* ws_l;
  float* ws_o;  // [slots][group][D]
  // Diagnostics (bench_attention --trace): if set, thread 0 of each CTA writes kTraceStamps globaltimer stamps.
  unsigned long long* trace;
};

// Trace stamps of one CTA: 0 start, 1 first stage of warp 0 arrived, 2 warp 0's loop done, 3 all warps done, 4 end
// (output or partial written), 5 the SM; 6 + 2k / 7 + 2k: warp 0's block k (k < 5) arrived / done.
constexpr int kTraceStamps = 16;
__device__ __forceinline__ unsigned long long globaltimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ void trace_stamp(const DecodeParams& p, int i) {
  if (p.trace && threadIdx.x == 0) p.trace[size_t(blockIdx.x) * kTraceStamps + i] = globaltimer();
}

template <int D, int BITS>
struct Fmt {
  static constexpr int kRow = D * BITS / 8;  // bytes of one token row
  static constexpr int kKWords = kRow / 16;  // K: each of the 4 threads of a quad owns a quarter of the row
  static constexpr int kVWords = kRow / 32;  // V: each of the 8 quad groups owns an eighth of the row
  static constexpr int kKSteps = D / 16;
  static constexpr int kOTiles = D / 8;
  static constexpr int kTok = BITS == 4 ? 32 : 16;  // tokens per warp iteration (wider rows need more registers)
  static constexpr int kSN = kTok / 8;              // S n-tiles
  static constexpr int kPK = kTok / 16;             // P.V k-steps
  static constexpr int kBlock = 2 * kKvPageTokens * kRow + (BITS == 16 ? 0 : 2 * kKvPageTokens * 4);
};

template <int N>
__device__ __forceinline__ void load_words(const uint8_t* p, uint32_t (&w)[N]) {
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = __ldcs(reinterpret_cast<const uint4*>(p) + i);
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (N % 2 == 0) {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const uint2 v = __ldcs(reinterpret_cast<const uint2*>(p) + i);
      w[2 * i] = v.x, w[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = __ldcs(reinterpret_cast<const unsigned int*>(p) + i);
  }
}

// K operand of k-step s from the thread's words (KV4/KV8: 1024 + code): b0 pairs channels kchan(s, 0, 0..1), b1
// kchan(s, 1, 0..1) (channels counted inside the thread's quarter of the row).
template <int BITS>
__device__ __forceinline__ constexpr int kchan(int s, int which, int e) {
  if constexpr (BITS == 4) return 8 * (s / 2) + 2 * (s % 2) + which + 4 * e;
  if constexpr (BITS == 8) return 4 * s + which + 2 * e;
  return 4 * s + 2 * which + e;
}

template <int KW, int BITS>
__device__ __forceinline__ void k_operand(const uint32_t (&w)[KW], int s, uint32_t& b0, uint32_t& b1) {
  if constexpr (BITS == 4) {
    const uint32_t x = w[s / 2] >> (8 * (s % 2));
    b0 = codes_to_half2_biased(x, 0x000F000Fu);
    b1 = codes_to_half2_biased(x >> 4, 0x000F000Fu);
  } else if constexpr (BITS == 8) {
    b0 = codes_to_half2_biased(w[s], 0x00FF00FFu);
    b1 = codes_to_half2_biased(w[s] >> 8, 0x00FF00FFu);
  } else {
    b0 = w[2 * s];
    b1 = w[2 * s + 1];
  }
}

// V operand for output channel j of the thread's eighth of the row, tokens a and b as (lo, hi).
template <int VW, int BITS>
__device__ __forceinline__ uint32_t v_operand(const uint32_t (&wa)[VW], const uint32_t (&wb)[VW], int j) {
  if constexpr (BITS == 4) {
    const int c = j % 8;
    const uint32_t x = prmt(wa[j / 8], wb[j / 8], c < 4 ? 0x5410u : 0x7632u);
    return codes_to_half2(x >> (4 * (c % 4)), 0x000F000Fu);
  } else if constexpr (BITS == 8) {
    const int c = j % 4;
    const uint32_t x = prmt(wa[j / 4], wb[j / 4], c < 2 ? 0x5410u : 0x7632u);
    return codes_to_half2(x >> (8 * (c % 2)), 0x00FF00FFu);
  } else {
    return prmt(wa[j / 2], wb[j / 2], j % 2 == 0 ? 0x5410u : 0x7632u);
  }
}

// Shared memory of the warp combine: each warp's unnormalized O [head][D], its max m and sum l per head.
template <int D>
struct CombineSmem {
  float o[kDecodeWarps][kMaxGroup][D];
  float m[kDecodeWarps][kMaxGroup], l[kDecodeWarps][kMaxGroup];
  float f[kDecodeWarps][kMaxGroup], mh[kMaxGroup], lh[kMaxGroup];  // combine_items: warp weights, max and sum per head
  int last;
};

// After every warp wrote its state to `sm`: combines the warps, then writes the output (one split) or this split's
// partial; the last CTA of the (sequence, KV head) then combines all partials.
template <int D>
__device__ void combine_store(const DecodeParams& p, CombineSmem<D>& sm, int b, int kvh, int split, int n_active) {
  auto& sm_o = sm.o;
  auto& sm_m = sm.m;
  auto& sm_l = sm.l;
  int& sm_last = sm.last;
  const int G = p.group;
  __syncthreads();
  const size_t pair = size_t(b) * gridDim.x + kvh;
  uint16_t* out = p.out + (size_t(b) * gridDim.x * G + kvh * G) * D;
  const bool single = n_active == 1;
  const size_t slot = pair * p.splits + split;
  for (int i = threadIdx.x; i < G * D; i += kDecodeWarps * 32) {
    const int h = i / D, d = i % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, sm_m[w][h]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float f = sm_m[w][h] == -INFINITY ? 0.f : exp2f(sm_m[w][h] - M);
      L += sm_l[w][h] * f;
      O += sm_o[w][h][d] * f;
    }
    if (single) {
      out[i] = __half_as_ushort(__float2half_rn(O / L));
    } else {
      p.ws_o[slot * G * D + i] = O;
      if (d == 0) p.ws_m[slot * G + h] = M, p.ws_l[slot * G + h] = L;
    }
  }
  if (single) return;
  // Split-K: the last CTA of this (sequence, KV head) combines the partials.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) sm_last = atomicAdd(p.counters + pair, 1) == n_active - 1;
  __syncthreads();
  if (!sm_last) return;
  __threadfence();
  // Weights of every partial first (shared), then each thread sums its (head, channel) over the partials with
  // independent loads: a serial chain of L2 loads per split cost ~1 us per 2 splits in v1.
  const size_t slot0 = pair * p.splits;
  float* wgt = &sm_o[0][0][0];  // [split][head], reuses the warp buffer (n_active * G <= 4 * 8 * D floats)
  for (int i = threadIdx.x; i < n_active * G; i += kDecodeWarps * 32) wgt[i] = __ldcg(p.ws_m + slot0 * G + i);
  __syncthreads();
  if (threadIdx.x < G) {
    const int h = threadIdx.x;
    float M = -INFINITY, L = 0.f;
    for (int s = 0; s < n_active; ++s) M = fmaxf(M, wgt[s * G + h]);
    for (int s = 0; s < n_active; ++s) {
      const float f = exp2f(wgt[s * G + h] - M);
      wgt[s * G + h] = f;
      L += __ldcg(p.ws_l + (slot0 + s) * G + h) * f;
    }
    sm_l[0][h] = 1.f / L;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += kDecodeWarps * 32) {
    const int h = i / D;
    float O = 0.f;
#pragma unroll 8
    for (int s = 0; s < n_active; ++s) O += __ldcg(p.ws_o + (slot0 + s) * G * D + i) * wgt[s * G + h];
    out[i] = __half_as_ushort(__float2half_rn(O * sm_l[0][h]));
  }
  if (threadIdx.x == 0) p.counters[pair] = 0;
}

template <int D, int BITS>
__global__ void __launch_bounds__(kDecodeWarps * 32, BITS == 16 ? 3 : 2) decode_kernel(const DecodeParams p) {
  using F = Fmt<D, BITS>;
  constexpr int R = F::kRow;
  constexpr bool kQuant = BITS != 16;
  const int kvh = blockIdx.x, b = blockIdx.y, split = blockIdx.z;
  const int len = p.lengths[b];
  const int start = split * p.chunk;
  if (start >= len) return;
  const int end = min(len, start + p.chunk);
  const int n_active = (len + p.chunk - 1) / p.chunk;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int G = p.group;
  const int head = kvh * G + g;

  // Q fragments in the permuted channel order of the K operand; rows >= G are zero.
  uint32_t qa[F::kKSteps][2];
  float qsum = 0.f;
  {
    __half qv[D / 4];
    if (g < G) {
      const uint4* src = reinterpret_cast<const uint4*>(p.q + (size_t(b) * gridDim.x * G + head) * D + t * (D / 4));
#pragma unroll
      for (int i = 0; i < D / 32; ++i) *reinterpret_cast<uint4*>(&qv[8 * i]) = src[i];
    } else {
#pragma unroll
      for (int i = 0; i < D / 4; ++i) qv[i] = __ushort_as_half(0);
    }
#pragma unroll
    for (int i = 0; i < D / 4; ++i) qsum += __half2float(qv[i]);
    qsum = quad_sum(qsum);
#pragma unroll
    for (int s = 0; s < F::kKSteps; ++s) {
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        const __half2 h = __halves2half2(qv[kchan<BITS>(s, w, 0)], qv[kchan<BITS>(s, w, 1)]);
        qa[s][w] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
  }

  float o[F::kOTiles][4];
#pragma unroll
  for (int j = 0; j < F::kOTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m = -INFINITY, l = 0.f, z = 0.f;

  const int32_t* pt = p.page_table + size_t(b) * p.max_pages;
  const int nblk = (end - start + F::kTok - 1) / F::kTok;
  // Register double buffering (KV4/KV8): the next block's loads are in flight while this one computes; v1 without
  // it left the loads idle during the ~1400-instruction compute phase (2.4 TB/s at most). fp16 rows are 4x larger and
  // already fill the memory pipe.
  constexpr bool kPrefetch = kQuant;
  struct Blk {
    uint32_t kw[F::kSN][F::kKWords];
    uint32_t vw[F::kPK][4][F::kVWords];
    uint2 kp[F::kSN], vp[F::kSN];
  };
  auto load = [&](Blk& d, int blk) {
    const int tok0 = start + blk * F::kTok;
    const int page = pt[tok0 / kKvPageTokens];
    const uint8_t* base = p.pool + (size_t(page) * p.n_kv_heads + kvh) * F::kBlock + (tok0 % kKvPageTokens) * R;
#pragma unroll
    for (int j = 0; j < F::kSN; ++j) load_words(base + (8 * j + g) * R + t * (R / 4), d.kw[j]);
#pragma unroll
    for (int s = 0; s < F::kPK; ++s) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = 16 * s + 2 * t + (r & 1) + 8 * (r >> 1);
        load_words(base + kKvPageTokens * R + row * R + g * (R / 8), d.vw[s][r]);
      }
    }
    if constexpr (kQuant) {
      const uint8_t* params = base - (tok0 % kKvPageTokens) * R + 2 * kKvPageTokens * R + (tok0 % kKvPageTokens) * 4;
#pragma unroll
      for (int j = 0; j < F::kSN; ++j) {
        d.kp[j] = __ldcs(reinterpret_cast<const uint2*>(params + (8 * j + 2 * t) * 4));
        d.vp[j] = __ldcs(reinterpret_cast<const uint2*>(params + kKvPageTokens * 4 + (8 * j + 2 * t) * 4));
      }
    }
  };
  Blk cur, nxt;
  if (kPrefetch && warp < nblk) load(cur, warp);
  for (int blk = warp; blk < nblk; blk += kDecodeWarps) {
    const int tok0 = start + blk * F::kTok;
    if constexpr (kPrefetch) {
      if (blk + kDecodeWarps < nblk) load(nxt, blk + kDecodeWarps);
    } else {
      load(cur, blk);
    }
    auto& kw = cur.kw;
    auto& vw = cur.vw;
    auto& kp = cur.kp;
    auto& vp = cur.vp;
    float sc[F::kSN][4];
#pragma unroll
    for (int j = 0; j < F::kSN; ++j) {
      sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
      for (int s = 0; s < F::kKSteps; ++s) {
        uint32_t b0, b1;
        k_operand<F::kKWords, BITS>(kw[j], s, b0, b1);
        mma_16816(sc[j], qa[s][0], 0u, qa[s][1], 0u, b0, b1);
      }
    }
    // Scores of row g at tokens tok0 + 8j + 2t + e, in log2 units; masked past `end`.
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < F::kSN; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float s = sc[j][e];
        if constexpr (kQuant) {
          const uint32_t sz = e == 0 ? kp[j].x : kp[j].y;
          const float ks = __half2float(__ushort_as_half(uint16_t(sz))),
                      kz = __half2float(__ushort_as_half(uint16_t(sz >> 16)));
          s = ks * (s - (1024.f + kz) * qsum);  // the K operand is 1024 + c (no HSUB2: the bias goes here, exact)
        }
        s *= p.scale_log2;
        s = tok0 + 8 * j + 2 * t + e < end ? s : -INFINITY;
        sc[j][e] = s;
        mx = fmaxf(mx, s);
      }
    }
    mx = quad_max(mx);
    const float m_new = fmaxf(m, mx);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    const float alpha = exp2f(m - m_use);
    m = m_new;
    l *= alpha;
    z *= alpha;
#pragma unroll
    for (int j = 0; j < F::kOTiles; ++j) o[j][0] *= alpha, o[j][1] *= alpha;
    uint32_t ph[F::kSN];
#pragma unroll
    for (int j = 0; j < F::kSN; ++j) {
      float pv[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pe = exp2f(sc[j][e] - m_use);
        l += pe;
        pv[e] = pe;
        if constexpr (kQuant) {
          const uint32_t sz = e == 0 ? vp[j].x : vp[j].y;
          const float vs = __half2float(__ushort_as_half(uint16_t(sz)));
          pv[e] = tok0 + 8 * j + 2 * t + e < end ? pe * vs : 0.f;
        }
      }
      ph[j] = pack_half2(pv[0], pv[1]);
      if constexpr (kQuant) {
        const __half2 h = *reinterpret_cast<const __half2*>(&ph[j]);
        // Past `end` the params are whatever the page holds (inf, NaN): 0 * inf would poison z.
        const int tk = tok0 + 8 * j + 2 * t;
        const float vz0 = tk < end ? __half2float(__ushort_as_half(uint16_t(vp[j].x >> 16))) : 0.f;
        const float vz1 = tk + 1 < end ? __half2float(__ushort_as_half(uint16_t(vp[j].y >> 16))) : 0.f;
        z += __low2float(h) * vz0 + __high2float(h) * vz1;
      }
    }
    if constexpr (!kQuant) {
      // fp16 rows past `end` may hold anything (NaN): zero them, since 0 * NaN would reach the accumulators.
      if (tok0 + F::kTok > end) {
#pragma unroll
        for (int s = 0; s < F::kPK; ++s) {
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const bool dead = tok0 + 16 * s + 2 * t + (r & 1) + 8 * (r >> 1) >= end;
#pragma unroll
            for (int i = 0; i < F::kVWords; ++i) vw[s][r][i] = dead ? 0u : vw[s][r][i];
          }
        }
      }
    }
#pragma unroll
    for (int s = 0; s < F::kPK; ++s) {
#pragma unroll
      for (int j = 0; j < F::kOTiles; ++j) {
        const uint32_t b0 = v_operand<F::kVWords, BITS>(vw[s][0], vw[s][1], j);
        const uint32_t b1 = v_operand<F::kVWords, BITS>(vw[s][2], vw[s][3], j);
        mma_16816(o[j], ph[2 * s], 0u, ph[2 * s + 1], 0u, b0, b1);
      }
    }
    if constexpr (kPrefetch) cur = nxt;
  }
  l = quad_sum(l);
  z = quad_sum(z);

  // Combine the warps: shared [warp][head][D] plus m and l per (warp, head).
  __shared__ CombineSmem<D> sm;
  auto& sm_o = sm.o;
  auto& sm_m = sm.m;
  auto& sm_l = sm.l;
  if (t == 0) sm_m[warp][g] = m, sm_l[warp][g] = l;
#pragma unroll
  for (int j = 0; j < F::kOTiles; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) sm_o[warp][g][(2 * t + e) * (D / 8) + j] = o[j][e] - z;
  }
  combine_store<D>(p, sm, b, kvh, split, n_active);
}

// v2 for KV4/KV8: tokens on the MMA's M side. S^T = K Q^T (M = 16 tokens, N = 8 heads) and O^T = V^T P'^T
// (M = 16 channels, N = 8 heads): half the MMAs of the heads-on-M form (whose M = 16 rows held only G <= 8 heads) and
// half the accumulators. P'^T reaches the B operand through movmatrix.trans (one per 8x8 tile). Loads and
// dequantization are the same as decode_kernel's.
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t a) {
  uint32_t d;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(d) : "r"(a));
  return d;
}

template <int D, int BITS>
__global__ void __launch_bounds__(kDecodeWarps * 32, 3) decode_kernel_tm(const DecodeParams p) {
  using F = Fmt<D, BITS>;
  constexpr int R = F::kRow;
  constexpr int kRows = F::kTok / 8;  // K rows per thread: tokens 8r + g
  constexpr int kMT = F::kTok / 16;   // S m-tiles = P.V k-steps
  constexpr int kVM = D / 16;         // P.V m-tiles (channels)
  static_assert(BITS != 16, "fp16 runs decode_kernel");
  const int kvh = blockIdx.x, b = blockIdx.y, split = blockIdx.z;
  const int len = p.lengths[b];
  const int start = split * p.chunk;
  if (start >= len) return;
  const int end = min(len, start + p.chunk);
  const int n_active = (len + p.chunk - 1) / p.chunk;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int G = p.group;

  // Q^T fragments of head g (zero for g >= G) in the permuted channel order; sum(q) of heads 2t and 2t+1.
  uint32_t qb[F::kKSteps][2];
  float qs[2];
  {
    __half qv[D / 4];
    if (g < G) {
      const uint4* src =
          reinterpret_cast<const uint4*>(p.q + (size_t(b) * gridDim.x * G + kvh * G + g) * D + t * (D / 4));
#pragma unroll
      for (int i = 0; i < D / 32; ++i) *reinterpret_cast<uint4*>(&qv[8 * i]) = src[i];
    } else {
#pragma unroll
      for (int i = 0; i < D / 4; ++i) qv[i] = __ushort_as_half(0);
    }
    float qsum = 0.f;
#pragma unroll
    for (int i = 0; i < D / 4; ++i) qsum += __half2float(qv[i]);
    qsum = quad_sum(qsum);
    qs[0] = __shfl_sync(0xffffffffu, qsum, 8 * t);
    qs[1] = __shfl_sync(0xffffffffu, qsum, 8 * t + 4);
#pragma unroll
    for (int s = 0; s < F::kKSteps; ++s) {
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        const __half2 h = __halves2half2(qv[kchan<BITS>(s, w, 0)], qv[kchan<BITS>(s, w, 1)]);
        qb[s][w] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
  }

  float o[kVM][4];
#pragma unroll
  for (int j = 0; j < kVM; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, z[2] = {0.f, 0.f};

  const int32_t* pt = p.page_table + size_t(b) * p.max_pages;
  const int nblk = (end - start + F::kTok - 1) / F::kTok;
  struct Blk {
    uint32_t kw[kRows][F::kKWords];
    uint32_t vw[kMT][4][F::kVWords];
    uint32_t kp[kRows], vp[kRows];
  };
  auto load = [&](Blk& d, int blk) {
    const int tok0 = start + blk * F::kTok;
    const int off = tok0 % kKvPageTokens;
    const uint8_t* blkp = p.pool + (size_t(pt[tok0 / kKvPageTokens]) * p.n_kv_heads + kvh) * F::kBlock;
    const uint8_t* base = blkp + off * R;
#pragma unroll
    for (int r = 0; r < kRows; ++r) load_words(base + (8 * r + g) * R + t * (R / 4), d.kw[r]);
#pragma unroll
    for (int s = 0; s < kMT; ++s) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = 16 * s + 2 * t + (r & 1) + 8 * (r >> 1);
        load_words(base + kKvPageTokens * R + row * R + g * (R / 8), d.vw[s][r]);
      }
    }
    const unsigned int* params = reinterpret_cast<const unsigned int*>(blkp + 2 * kKvPageTokens * R) + off;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      d.kp[r] = __ldcs(params + 8 * r + g);
      d.vp[r] = __ldcs(params + kKvPageTokens + 8 * r + g);
    }
  };
  Blk cur, nxt;
  if (warp < nblk) load(cur, warp);
  for (int blk = warp; blk < nblk; blk += kDecodeWarps) {
    const int tok0 = start + blk * F::kTok;
    if (blk + kDecodeWarps < nblk) load(nxt, blk + kDecodeWarps);
    // S^T: rows = tokens 16i + g (c0, c1) and 16i + 8 + g (c2, c3), columns = heads 2t, 2t+1.
    // Two accumulator chains per m-tile (even / odd k-steps): the MMA latency chain of a block is the warp's
    // critical path at 3 warps per scheduler.
    float sc[kMT][4], sc2[kMT][4];
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
      sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.f;
      sc2[i][0] = sc2[i][1] = sc2[i][2] = sc2[i][3] = 0.f;
#pragma unroll
      for (int s = 0; s < F::kKSteps; ++s) {
        uint32_t a0, a1, a2, a3;
        k_operand<F::kKWords, BITS>(cur.kw[2 * i], s, a0, a2);
        k_operand<F::kKWords, BITS>(cur.kw[2 * i + 1], s, a1, a3);
        mma_16816(s % 2 ? sc2[i] : sc[i], a0, a1, a2, a3, qb[s][0], qb[s][1]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[i][e] += sc2[i][e];
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = 2 * i + (e >> 1), h = e & 1;
        const uint32_t sz = cur.kp[r];
        const float ks = __half2float(__ushort_as_half(uint16_t(sz)));
        const float kz = __half2float(__ushort_as_half(uint16_t(sz >> 16)));
        float s = ks * (sc[i][e] - (1024.f + kz) * qs[h]) * p.scale_log2;  // K operand = 1024 + c
        s = tok0 + 8 * r + g < end ? s : -INFINITY;
        sc[i][e] = s;
        mx[h] = fmaxf(mx[h], s);
      }
    }
    float alpha[2], m_use[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 4));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 8));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 16));
      const float m_new = fmaxf(m[h], mx[h]);
      m_use[h] = m_new == -INFINITY ? 0.f : m_new;
      alpha[h] = exp2f(m[h] - m_use[h]);
      m[h] = m_new;
      l[h] *= alpha[h];
      z[h] *= alpha[h];
    }
#pragma unroll
    for (int j = 0; j < kVM; ++j) o[j][0] *= alpha[0], o[j][1] *= alpha[1], o[j][2] *= alpha[0], o[j][3] *= alpha[1];
    // P' = fp16(p * scale_v) as [token row][heads 2t, 2t+1] pairs; z accumulates P' * zero_v with the rounded P'.
    uint32_t ph[kMT][2];
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = 2 * i + half;
        const bool live = tok0 + 8 * r + g < end;
        const uint32_t sz = cur.vp[r];
        // Past `end` the params may be inf / NaN: keep them out of P' and z.
        const float vs = live ? __half2float(__ushort_as_half(uint16_t(sz))) : 0.f;
        const float vz = live ? __half2float(__ushort_as_half(uint16_t(sz >> 16))) : 0.f;
        float pv[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float pe = exp2f(sc[i][2 * half + h] - m_use[h]);
          l[h] += pe;
          pv[h] = pe * vs;
        }
        ph[i][half] = pack_half2(pv[0], pv[1]);
        const __half2 hh = *reinterpret_cast<const __half2*>(&ph[i][half]);
        z[0] += __low2float(hh) * vz;
        z[1] += __high2float(hh) * vz;
      }
    }
    // O^T += V^T P'^T: A = V^T (rows: channels j = 2mi, 2mi+1 of the thread's eighth), B = P'^T by movmatrix.
#pragma unroll
    for (int s = 0; s < kMT; ++s) {
      const uint32_t b0 = movmatrix_trans(ph[s][0]), b1 = movmatrix_trans(ph[s][1]);
#pragma unroll
      for (int mi = 0; mi < kVM; ++mi) {
        const uint32_t a0 = v_operand<F::kVWords, BITS>(cur.vw[s][0], cur.vw[s][1], 2 * mi);
        const uint32_t a1 = v_operand<F::kVWords, BITS>(cur.vw[s][0], cur.vw[s][1], 2 * mi + 1);
        const uint32_t a2 = v_operand<F::kVWords, BITS>(cur.vw[s][2], cur.vw[s][3], 2 * mi);
        const uint32_t a3 = v_operand<F::kVWords, BITS>(cur.vw[s][2], cur.vw[s][3], 2 * mi + 1);
        mma_16816(o[mi], a0, a1, a2, a3, b0, b1);
      }
    }
    cur = nxt;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int x = 4; x < 32; x <<= 1) {
      l[h] += __shfl_xor_sync(0xffffffffu, l[h], x);
      z[h] += __shfl_xor_sync(0xffffffffu, z[h], x);
    }
  }
  __shared__ CombineSmem<D> sm;
  if (g == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) sm.m[warp][2 * t + h] = m[h], sm.l[warp][2 * t + h] = l[h];
  }
#pragma unroll
  for (int mi = 0; mi < kVM; ++mi) {
#pragma unroll
    for (int e = 0; e < 4; ++e) sm.o[warp][2 * t + (e & 1)][g * (D / 8) + 2 * mi + (e >> 1)] = o[mi][e] - z[e & 1];
  }
  combine_store<D>(p, sm, b, kvh, split, n_active);
}

// Host side: instantiated per BITS in decode_kv{4,8,16}.cu.
template <int BITS>
void launch_decode(int head_dim, const DecodeParams& p, dim3 grid, cudaStream_t stream);

#define QOQ_INSTANTIATE_DECODE(BITS)                                                              \
  template <>                                                                                     \
  void launch_decode<BITS>(int head_dim, const DecodeParams& p, dim3 grid, cudaStream_t stream) { \
    if constexpr (BITS == 16) {                                                                   \
      if (head_dim == 64)                                                                         \
        decode_kernel<64, BITS><<<grid, kDecodeWarps * 32, 0, stream>>>(p);                       \
      else                                                                                        \
        decode_kernel<128, BITS><<<grid, kDecodeWarps * 32, 0, stream>>>(p);                      \
    } else {                                                                                      \
      if (head_dim == 64)                                                                         \
        decode_kernel_tm<64, BITS><<<grid, kDecodeWarps * 32, 0, stream>>>(p);                    \
      else                                                                                        \
        decode_kernel_tm<128, BITS><<<grid, kDecodeWarps * 32, 0, stream>>>(p);                   \
    }                                                                                             \
  }

}  // namespace qoq::cuda::attn
