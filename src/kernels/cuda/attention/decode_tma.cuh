// v6 decode kernel for KV4 / KV8 (bench/NOTES_decode.md): v5's work items and v2's block math, but the K/V blocks
// reach the registers through shared memory: each warp keeps a ring of kStages blocks filled by bulk copies (TMA,
// cp.async.bulk, completing on one mbarrier per stage), so kStages - 1 blocks per warp are in flight during the math
// instead of one, and the register double buffer (40 registers) is gone. Per block, lane 0 issues four copies (K rows,
// V rows, K params, V params: all contiguous runs of one page block); every lane then reads its fragments with the
// same pattern the global loads had.
#pragma once
#include <type_traits>

#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/attention/decode_combine.cuh"
#include "kernels/cuda/launch.h"

namespace qoq::cuda::attn {

// load_words from shared memory (16-, 8- or 4-byte vectors, as the global version).
template <int N>
__device__ __forceinline__ void load_words_smem(const uint8_t* p, uint32_t (&w)[N]) {
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  } else if constexpr (N % 2 == 0) {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) {
      const uint2 v = reinterpret_cast<const uint2*>(p)[i];
      w[2 * i] = v.x, w[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = reinterpret_cast<const uint32_t*>(p)[i];
  }
}

// KV4 operands with one shift less per 4 codes: a nibble at bits 4..7 of a 16-bit lane masked in place is the fp16
// 1024 + 16c (exact), so those channels need no shift; their factor 16 goes into q (K) or the output row (V).
template <int KW>
__device__ __forceinline__ void k_operand_shift(const uint32_t (&w)[KW], int s, uint32_t& b0, uint32_t& b1) {
  const uint32_t x = s % 2 ? w[s / 2] >> 8 : w[s / 2];
  b0 = codes_to_half2_biased(x, 0x000F000Fu);  // 1024 + c (channels kchan(s, 0, .))
  b1 = codes_to_half2_biased(x, 0x00F000F0u);  // 1024 + 16c (channels kchan(s, 1, .))
}
template <bool kShift, int KW, int BITS>
__device__ __forceinline__ void k_operand_any(const uint32_t (&w)[KW], int s, uint32_t& b0, uint32_t& b1) {
  if constexpr (kShift)
    k_operand_shift<KW>(w, s, b0, b1);
  else
    k_operand<KW, BITS>(w, s, b0, b1);
}
// V channel j of the thread's eighth: c (even j) or 16c (odd j), tokens a and b as (lo, hi).
template <int VW>
__device__ __forceinline__ uint32_t v_operand_shift(const uint32_t (&wa)[VW], const uint32_t (&wb)[VW], int j) {
  const int c = j % 8;
  uint32_t x = prmt(wa[j / 8], wb[j / 8], c < 4 ? 0x5410u : 0x7632u);
  if (c % 4 >= 2) x >>= 8;
  return codes_to_half2(x, c % 2 ? 0x00F000F0u : 0x000F000Fu);
}
template <bool kShift, int VW, int BITS>
__device__ __forceinline__ uint32_t v_operand_any(const uint32_t (&wa)[VW], const uint32_t (&wb)[VW], int j) {
  if constexpr (kShift)
    return v_operand_shift<VW>(wa, wb, j);
  else
    return v_operand<VW, BITS>(wa, wb, j);
}

// KV4 "subnormal" operands (kSub): a code masked into the mantissa of a zero-exponent fp16 is the exact subnormal
// c * 2^-24 (16c * 2^-24 for a nibble at bits 4..7), so an operand is one LOP3 with no bias to remove; the MMA's
// exact products carry the factor 2^-24, undone in fp32. Unlike the 0x6400 magic (1024 + c) this removes the HSUB2 of
// every V operand and the 1024 * sum(q) cancellation of the scores.
template <int KW>
__device__ __forceinline__ void k_operand_sub(const uint32_t (&w)[KW], int s, uint32_t& b0, uint32_t& b1) {
  const uint32_t x = s % 2 ? w[s / 2] >> 8 : w[s / 2];
  b0 = x & 0x000F000Fu;  // c * 2^-24 (channels kchan(s, 0, .))
  b1 = x & 0x00F000F0u;  // 16c * 2^-24 (channels kchan(s, 1, .))
}
template <int VW>
__device__ __forceinline__ uint32_t v_operand_sub(const uint32_t (&wa)[VW], const uint32_t (&wb)[VW], int j) {
  const int c = j % 8;
  uint32_t x = prmt(wa[j / 8], wb[j / 8], c < 4 ? 0x5410u : 0x7632u);
  if (c % 4 >= 2) x >>= 8;
  return x & (c % 2 ? 0x00F000F0u : 0x000F000Fu);
}

// A stage of kTok tokens: K rows, V rows, K params, V params. With kTok == kKvPageTokens it is exactly one page
// block of the pool (docs/kv_cache.md), so one bulk copy fills it instead of four.
template <int D, int BITS, int kTok>
struct TmaFmt {
  using F = Fmt<D, BITS>;
  static constexpr int kRowsBytes = kTok * F::kRow;                  // K (or V) rows of one block
  static constexpr int kStageBytes = 2 * kRowsBytes + 2 * kTok * 4;  // + K and V params
  static constexpr bool kPage = kTok == kKvPageTokens;
  static_assert(!kPage || kStageBytes == F::kBlock, "a page stage is the page block");
};

template <int D, int BITS, int kTok, int kStages>
constexpr size_t tma_smem_bytes() {
  return size_t(kDecodeWarps) * kStages * TmaFmt<D, BITS, kTok>::kStageBytes + kDecodeWarps * kStages * 8;
}

template <int D, int BITS, int kTok, int kStages, int kMinBlocks, bool kFast, bool kLazy, bool kSubReq>
__global__ void __launch_bounds__(kDecodeWarps * 32, kMinBlocks) decode_kernel_tma(const DecodeParams p) {
  constexpr bool kShift = kFast && BITS == 4;  // see k_operand_shift / v_operand_shift
  constexpr bool kSub = kSubReq && kShift;     // see k_operand_sub / v_operand_sub
  using F = Fmt<D, BITS>;
  using T = TmaFmt<D, BITS, kTok>;
  constexpr int R = F::kRow;
  constexpr int kRows = kTok / 8;  // K rows per thread: tokens 8r + g
  constexpr int kMT = kTok / 16;   // S m-tiles = P.V k-steps
  constexpr int kVM = D / 16;      // P.V m-tiles (channels)
  static_assert(BITS != 16, "fp16 runs decode_kernel");
  static_assert(kTok % 16 == 0 && kKvPageTokens % kTok == 0, "blocks tile a page");
  static_assert(sizeof(CombineSmem<D>) <= size_t(kDecodeWarps) * kStages * T::kStageBytes, "combine aliases the rings");
  extern __shared__ __align__(128) uint8_t smem[];
  // The combine kernel of split pairs (a programmatic dependent) may be scheduled from now on: its CTAs wait for this
  // grid to complete.
  if (p.pdl) grid_dependency_wait();
  launch_dependents();
  trace_stamp(p, 0);
  int pair, piece;
  item_pair(p, blockIdx.x, pair, piece);
  const int hkv = p.n_kv_heads;
  const int b = pair / hkv, kvh = pair % hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int G = p.group;
  const int start = piece < 0 ? 0 : piece * p.chunk;
  const int pt0 = b * p.max_pages;
  uint8_t* ring = smem + size_t(warp) * kStages * T::kStageBytes;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + size_t(kDecodeWarps) * kStages * T::kStageBytes) + warp * kStages;
  // Pages of this warp's blocks k = lane (k-th block of the warp: blk = warp + 4k), speculatively inside the table
  // row, beside the length: lane 0 takes them by shuffles when it issues the copies.
  auto page_idx = [&](int k) { return (start + (warp + kDecodeWarps * k) * kTok) / kKvPageTokens; };
  int page_win = page_idx(lane) < p.max_pages ? p.page_table[pt0 + page_idx(lane)] : 0;
  const int len = p.lengths[b];
  if (lane == 0) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) mbar_init(bars + s, 1);
    mbar_fence_init();
  }
  __syncwarp();
  // Q^T fragments of head g (zero for g >= G) in the permuted channel order; sum(q) of heads 2t and 2t+1.
  uint32_t qb[F::kKSteps][2];
  float qs[2], qbs[2];
  {
    __half qv[D / 4];
    if (g < G) {
      const uint4* src = reinterpret_cast<const uint4*>(p.q + (size_t(pair) * G + g) * D + t * (D / 4));
#pragma unroll
      for (int i = 0; i < D / 32; ++i) *reinterpret_cast<uint4*>(&qv[8 * i]) = src[i];
    } else {
#pragma unroll
      for (int i = 0; i < D / 4; ++i) qv[i] = __ushort_as_half(0);
    }
    // kShift: the odd channels of the thread's quarter enter the MMA as 1024 + 16c (kSub: 16c * 2^-24), so their q is
    // q/16 (exact unless subnormal) and the bias removed in fp32 is 1024 * (sum of even q + sum of odd q/16).
    float qsum = 0.f, qbias = 0.f;
#pragma unroll
    for (int i = 0; i < D / 4; ++i) {
      qsum += __half2float(qv[i]);
      if constexpr (kShift) {
        if (i % 2) qv[i] = __hmul(qv[i], __ushort_as_half(0x2C00));  // 1/16
        qbias += __half2float(qv[i]);
      }
    }
    qsum = quad_sum(qsum);
    qs[0] = __shfl_sync(0xffffffffu, qsum, 8 * t);
    qs[1] = __shfl_sync(0xffffffffu, qsum, 8 * t + 4);
    if constexpr (kSub) {
      qbs[0] = qbs[1] = 0.f;
    } else if constexpr (kShift) {
      qbias = 1024.f * quad_sum(qbias);
      qbs[0] = __shfl_sync(0xffffffffu, qbias, 8 * t);
      qbs[1] = __shfl_sync(0xffffffffu, qbias, 8 * t + 4);
    } else {
      qbs[0] = 1024.f * qs[0], qbs[1] = 1024.f * qs[1];
    }
#pragma unroll
    for (int s = 0; s < F::kKSteps; ++s) {
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        const __half2 h = __halves2half2(qv[kchan<BITS>(s, w, 0)], qv[kchan<BITS>(s, w, 1)]);
        qb[s][w] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
  }
  if (start >= len) return;
  const int end = piece < 0 ? len : min(len, start + p.chunk);
  const int nblk = (end - start + kTok - 1) / kTok;
  const int nmine = warp < nblk ? (nblk - warp + kDecodeWarps - 1) / kDecodeWarps : 0;  // this warp's blocks

  // Lane 0: the copies of this warp's k-th block into stage k % kStages (page from the lane holding it).
  auto issue = [&](int k, int page) {
    const int tok0 = start + (warp + kDecodeWarps * k) * kTok;
    const int off = tok0 % kKvPageTokens;
    const uint8_t* blkp = p.pool + (size_t(page) * hkv + kvh) * F::kBlock;
    uint8_t* dst = ring + (k % kStages) * T::kStageBytes;
    uint64_t* bar = bars + k % kStages;
    mbar_arrive_expect_tx(bar, T::kStageBytes);
    if constexpr (T::kPage) {
      bulk_g2s(dst, blkp, T::kStageBytes, bar);
    } else {
      bulk_g2s(dst, blkp + off * R, T::kRowsBytes, bar);
      bulk_g2s(dst + T::kRowsBytes, blkp + kKvPageTokens * R + off * R, T::kRowsBytes, bar);
      bulk_g2s(dst + 2 * T::kRowsBytes, blkp + 2 * kKvPageTokens * R + off * 4, kTok * 4, bar);
      bulk_g2s(dst + 2 * T::kRowsBytes + kTok * 4, blkp + 2 * kKvPageTokens * R + kKvPageTokens * 4 + off * 4, kTok * 4,
               bar);
    }
  };
#pragma unroll
  for (int k = 0; k < kStages; ++k) {
    const int page = __shfl_sync(0xffffffffu, page_win, k);
    if (lane == 0 && k < nmine) issue(k, page);
  }

  float o[kVM][4];
#pragma unroll
  for (int j = 0; j < kVM; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, z[2] = {0.f, 0.f};

  // One block of kTok tokens from stage `src`; kTail: the block reaches past `end` (masked scores, params kept out).
  auto block = [&](const uint8_t* src, int tok0, auto tail_tag) {
    constexpr bool kTail = decltype(tail_tag)::value;
    uint32_t kw[kRows][F::kKWords], vw[kMT][4][F::kVWords], kp[kRows], vp[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) load_words_smem(src + (8 * r + g) * R + t * (R / 4), kw[r]);
#pragma unroll
    for (int s = 0; s < kMT; ++s) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = 16 * s + 2 * t + (r & 1) + 8 * (r >> 1);
        load_words_smem(src + T::kRowsBytes + row * R + g * (R / 8), vw[s][r]);
      }
    }
    const uint32_t* prm = reinterpret_cast<const uint32_t*>(src + 2 * T::kRowsBytes);
#pragma unroll
    for (int r = 0; r < kRows; ++r) kp[r] = prm[8 * r + g], vp[r] = prm[kTok + 8 * r + g];
    // S^T: rows = tokens 16i + g (c0, c1) and 16i + 8 + g (c2, c3), columns = heads 2t, 2t+1.
    // Two accumulator chains per m-tile (even / odd k-steps): the MMA latency chain of a block is on the warp's
    // critical path.
    float sc[kMT][4], sc2[kMT][4];
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
      sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.f;
      sc2[i][0] = sc2[i][1] = sc2[i][2] = sc2[i][3] = 0.f;
#pragma unroll
      for (int s = 0; s < F::kKSteps; ++s) {
        uint32_t a0, a1, a2, a3;
        if constexpr (kSub) {
          k_operand_sub<F::kKWords>(kw[2 * i], s, a0, a2);
          k_operand_sub<F::kKWords>(kw[2 * i + 1], s, a1, a3);
        } else {
          k_operand_any<kShift, F::kKWords, BITS>(kw[2 * i], s, a0, a2);
          k_operand_any<kShift, F::kKWords, BITS>(kw[2 * i + 1], s, a1, a3);
        }
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
        const uint32_t sz = kp[r];
        const float ks = __half2float(__ushort_as_half(uint16_t(sz)));
        const float kz = __half2float(__ushort_as_half(uint16_t(sz >> 16)));
        // K operand = c * 2^-24 (kSub), else 1024 + c (or 1024 + 16c).
        const float dot = kSub ? sc[i][e] * 16777216.f : sc[i][e] - qbs[h];
        float s = ks * (dot - kz * qs[h]) * p.scale_log2;
        if constexpr (kTail) s = tok0 + 8 * r + g < end ? s : -INFINITY;
        sc[i][e] = s;
        mx[h] = fmaxf(mx[h], s);
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 4));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 8));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 16));
    }
    // kLazy: the running max moves (and O, l, z are rescaled) only when a block max exceeds it by more than 8 (log2
    // units), so p <= 256 meanwhile; O / l does not depend on the reference max, only P' = fp16(p * scale_v) is
    // rounded (relatively, as before). Without kLazy: every block, as v2.
    if (!kLazy || __any_sync(0xffffffffu, mx[0] > m[0] + 8.f || mx[1] > m[1] + 8.f)) {
      float alpha[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float m_new = fmaxf(m[h], mx[h]);
        const float mu = m_new == -INFINITY ? 0.f : m_new;
        alpha[h] = kSub ? exp2_ftz(m[h] - mu) : exp2f(m[h] - mu);
        m[h] = m_new;
        l[h] *= alpha[h];
        z[h] *= alpha[h];
      }
#pragma unroll
      for (int j = 0; j < kVM; ++j) o[j][0] *= alpha[0], o[j][1] *= alpha[1], o[j][2] *= alpha[0], o[j][3] *= alpha[1];
    }
    float m_use[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) m_use[h] = m[h] == -INFINITY ? 0.f : m[h];
    // P' = fp16(p * scale_v) as [token row][heads 2t, 2t+1] pairs; z accumulates P' * zero_v with the rounded P'.
    uint32_t ph[kMT][2];
#pragma unroll
    for (int i = 0; i < kMT; ++i) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = 2 * i + half;
        const uint32_t sz = vp[r];
        // Past `end` the params may be inf / NaN: keep them out of P' and z.
        const bool live = !kTail || tok0 + 8 * r + g < end;
        const float vs = live ? __half2float(__ushort_as_half(uint16_t(sz))) : 0.f;
        const float vz = live ? __half2float(__ushort_as_half(uint16_t(sz >> 16))) : 0.f;
        float pv[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float pe = kSub ? exp2_ftz(sc[i][2 * half + h] - m_use[h]) : exp2f(sc[i][2 * half + h] - m_use[h]);
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
        uint32_t a0, a1, a2, a3;
        if constexpr (kSub) {
          a0 = v_operand_sub<F::kVWords>(vw[s][0], vw[s][1], 2 * mi);
          a1 = v_operand_sub<F::kVWords>(vw[s][0], vw[s][1], 2 * mi + 1);
          a2 = v_operand_sub<F::kVWords>(vw[s][2], vw[s][3], 2 * mi);
          a3 = v_operand_sub<F::kVWords>(vw[s][2], vw[s][3], 2 * mi + 1);
        } else {
          a0 = v_operand_any<kShift, F::kVWords, BITS>(vw[s][0], vw[s][1], 2 * mi);
          a1 = v_operand_any<kShift, F::kVWords, BITS>(vw[s][0], vw[s][1], 2 * mi + 1);
          a2 = v_operand_any<kShift, F::kVWords, BITS>(vw[s][2], vw[s][3], 2 * mi);
          a3 = v_operand_any<kShift, F::kVWords, BITS>(vw[s][2], vw[s][3], 2 * mi + 1);
        }
        mma_16816(o[mi], a0, a1, a2, a3, b0, b1);
      }
    }
  };

  for (int k = 0; k < nmine; ++k) {
    const int tok0 = start + (warp + kDecodeWarps * k) * kTok;
    // The page window holds blocks [32 * (k' / 32), +32) of the block issued next (k + kStages): refill it when that
    // block starts a new window (one round trip per 32 blocks of a warp, overlapped by the blocks in flight).
    const int kn = k + kStages;
    if (kn % 32 == 0 && kn < nmine) {
      const int idx = page_idx(kn + lane);
      page_win = idx < p.max_pages ? p.page_table[pt0 + idx] : 0;
    }
    const int page_n = __shfl_sync(0xffffffffu, page_win, kn % 32);
    mbar_wait(bars + k % kStages, (k / kStages) & 1);
    if (k == 0) trace_stamp(p, 1);
    if (k < 5) trace_stamp(p, 6 + 2 * k);
    const uint8_t* src = ring + (k % kStages) * T::kStageBytes;
    if (tok0 + kTok <= end)
      block(src, tok0, std::false_type{});
    else
      block(src, tok0, std::true_type{});
    if (k < 5) trace_stamp(p, 7 + 2 * k);
    // Every lane's reads of this stage are done (the MMAs above consumed them): refill it with block k + kStages.
    __syncwarp();
    if (lane == 0 && kn < nmine) issue(kn, page_n);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int x = 4; x < 32; x <<= 1) {
      l[h] += __shfl_xor_sync(0xffffffffu, l[h], x);
      z[h] += __shfl_xor_sync(0xffffffffu, z[h], x);
    }
  }
  trace_stamp(p, 2);
  __syncthreads();  // every warp is done with its ring: the combine buffer aliases the rings
  trace_stamp(p, 3);
  CombineSmem<D>& sm = *reinterpret_cast<CombineSmem<D>*>(smem);
  if (g == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) sm.m[warp][2 * t + h] = m[h], sm.l[warp][2 * t + h] = l[h];
  }
#pragma unroll
  for (int mi = 0; mi < kVM; ++mi) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      // kShift: rows g + 8 (odd channels j) were accumulated as 16c; kSub: times 2^-24.
      const float unit = kSub ? (e >= 2 ? 1048576.f : 16777216.f) : (kShift && e >= 2 ? 0.0625f : 1.f);
      sm.o[warp][2 * t + (e & 1)][g * (D / 8) + 2 * mi + (e >> 1)] = o[mi][e] * unit - z[e & 1];
    }
  }
  combine_items<D>(p, sm, pair, piece, piece < 0 ? 1 : (len + p.chunk - 1) / p.chunk);
}

template <int BITS>
void launch_decode_tma(int head_dim, int variant, const DecodeParams& p, int grid, cudaStream_t stream);
template <int BITS>
int decode_tma_ctas_per_sm(int head_dim, int variant);

template <typename K>
inline void launch_tma(K kernel, size_t smem, const DecodeParams& p, int grid, cudaStream_t stream) {
  // Every instantiation has the same type: remember which kernels already have their shared-memory limit raised.
  static const void* raised[16] = {};
  for (int i = 0; i < 16; ++i) {
    if (raised[i] == reinterpret_cast<const void*>(kernel)) break;
    if (!raised[i]) {
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      raised[i] = reinterpret_cast<const void*>(kernel);
      break;
    }
  }
  launch_ex(kernel, dim3(grid), dim3(kDecodeWarps * 32), smem, stream, p.pdl != 0, p);
}
template <typename K>
inline int tma_occupancy(K kernel, size_t smem) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  int n = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kDecodeWarps * 32, smem);
  return n > 0 ? n : 1;
}

// Variants (block tokens, ring stages, CTAs per SM, KV4 shift trick, lazy rescale, KV4 subnormal operands); 0 is the
// default, the others are kept for the benchmark's side-by-side runs (bench/NOTES_decode.md):
//   KV4: 0 (64 = a page, 2, 3, yes, yes, yes), 1 (64, 3, 2, yes, yes, yes), 2 (32, 3, 4, yes, yes, yes),
//        3 (32, 3, 4, yes, yes, no: v6), 4 (32, 3, 4, no, no, no: v6 without its tricks);
//   KV8: 16-token blocks, 3 stages, 4 CTAs per SM, lazy rescale (4: without).
constexpr int kTmaVariants = 5;
template <int BITS>
constexpr int tma_block_tokens(int variant) {
  return BITS == 8 ? 16 : (variant <= 1 ? 64 : 32);
}
template <int BITS, int D, typename Fn>
inline void tma_dispatch_d(int variant, Fn&& fn) {
  constexpr int kT = Fmt<D, BITS>::kTok;
  if constexpr (BITS == 4) {
    switch (variant) {
      case 1:
        return fn(decode_kernel_tma<D, BITS, 64, 3, 2, true, true, true>, tma_smem_bytes<D, BITS, 64, 3>());
      case 2:
        return fn(decode_kernel_tma<D, BITS, kT, 3, 4, true, true, true>, tma_smem_bytes<D, BITS, kT, 3>());
      case 3:
        return fn(decode_kernel_tma<D, BITS, kT, 3, 4, true, true, false>, tma_smem_bytes<D, BITS, kT, 3>());
      case 4:
        return fn(decode_kernel_tma<D, BITS, kT, 3, 4, false, false, false>, tma_smem_bytes<D, BITS, kT, 3>());
      default:
        return fn(decode_kernel_tma<D, BITS, 64, 2, 3, true, true, true>, tma_smem_bytes<D, BITS, 64, 2>());
    }
  } else {
    if (variant == 4)
      return fn(decode_kernel_tma<D, BITS, kT, 3, 4, false, false, false>, tma_smem_bytes<D, BITS, kT, 3>());
    return fn(decode_kernel_tma<D, BITS, kT, 3, 4, true, true, false>, tma_smem_bytes<D, BITS, kT, 3>());
  }
}
template <int BITS, typename Fn>
inline void tma_dispatch(int head_dim, int variant, Fn&& fn) {
  if (head_dim == 64)
    tma_dispatch_d<BITS, 64>(variant, fn);
  else
    tma_dispatch_d<BITS, 128>(variant, fn);
}

#define QOQ_INSTANTIATE_DECODE_TMA(BITS)                                                                          \
  template <>                                                                                                     \
  void launch_decode_tma<BITS>(int head_dim, int variant, const DecodeParams& p, int grid, cudaStream_t stream) { \
    tma_dispatch<BITS>(head_dim, variant,                                                                         \
                       [&](auto kernel, size_t smem) { launch_tma(kernel, smem, p, grid, stream); });             \
  }                                                                                                               \
  template <>                                                                                                     \
  int decode_tma_ctas_per_sm<BITS>(int head_dim, int variant) {                                                   \
    int n = 1;                                                                                                    \
    tma_dispatch<BITS>(head_dim, variant, [&](auto kernel, size_t smem) { n = tma_occupancy(kernel, smem); });    \
    return n;                                                                                                     \
  }

}  // namespace qoq::cuda::attn
