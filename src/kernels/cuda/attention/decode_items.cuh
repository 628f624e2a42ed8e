// v5 decode kernel for KV4 / KV8 (bench/NOTES_decode.md): v2's kernel (decode_kernel_tm) with one CTA per work item
// instead of one per (KV head, sequence, split): items [0, whole) are whole (sequence, KV head) pairs, later items
// `pieces` token ranges of the remaining pairs (split-K of small batches, and of the last wave's pairs of large ones,
// which the hardware starts last). Changes to v2's CTA, all outside its block math: the first block's page and
// the queries are loaded side by side with the length (no dependent chain), with kLook the page of the block after
// next is loaded one iteration early (the next block's loads then never wait on a page-table round trip), and the
// pieces' partials are combined by the last piece with independent loads (combine_pk).
#pragma once
#include "kernels/cuda/attention/decode_persistent.cuh"

namespace qoq::cuda::attn {

template <int D, int BITS, bool kLook>
__global__ void __launch_bounds__(kDecodeWarps * 32, 3) decode_kernel_it(const DecodeParams p) {
  using F = Fmt<D, BITS>;
  constexpr int R = F::kRow;
  constexpr int kRows = F::kTok / 8;  // K rows per thread: tokens 8r + g
  constexpr int kMT = F::kTok / 16;   // S m-tiles = P.V k-steps
  constexpr int kVM = D / 16;         // P.V m-tiles (channels)
  static_assert(BITS != 16, "fp16 runs decode_kernel");
  if (p.pdl) {
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::);
  }
  int pair, piece;
  item_pair(p, blockIdx.x, pair, piece);
  const int hkv = p.n_kv_heads;
  const int b = pair / hkv, kvh = pair % hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int G = p.group;
  const int start = piece < 0 ? 0 : piece * p.chunk;
  const int pt0 = b * p.max_pages;  // an index, not a pointer: one register less through the loop
  // Pages of this warp's first two blocks, speculatively (inside the table row), beside the length and the queries.
  const int pi0 = (start + warp * F::kTok) / kKvPageTokens;
  const int pi1 = (start + (warp + kDecodeWarps) * F::kTok) / kKvPageTokens;
  const int page0 = pi0 < p.max_pages ? p.page_table[pt0 + pi0] : 0;
  int page_next = kLook && pi1 < p.max_pages ? p.page_table[pt0 + pi1] : 0;
  const int len = p.lengths[b];

  // Q^T fragments of head g (zero for g >= G) in the permuted channel order; sum(q) of heads 2t and 2t+1.
  uint32_t qb[F::kKSteps][2];
  float qs[2];
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
  if (start >= len) return;
  const int end = piece < 0 ? len : min(len, start + p.chunk);

  float o[kVM][4];
#pragma unroll
  for (int j = 0; j < kVM; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, z[2] = {0.f, 0.f};

  const int nblk = (end - start + F::kTok - 1) / F::kTok;
  struct Blk {
    uint32_t kw[kRows][F::kKWords];
    uint32_t vw[kMT][4][F::kVWords];
    uint32_t kp[kRows], vp[kRows];
  };
  auto load = [&](Blk& d, int blk, int page) {
    const int tok0 = start + blk * F::kTok;
    const int off = tok0 % kKvPageTokens;
    const uint8_t* blkp = p.pool + (size_t(page) * hkv + kvh) * F::kBlock;
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
  auto page_of = [&](int blk) { return p.page_table[pt0 + (start + blk * F::kTok) / kKvPageTokens]; };
  Blk cur, nxt;
  if (warp < nblk) load(cur, warp, page0);
  for (int blk = warp; blk < nblk; blk += kDecodeWarps) {
    const int tok0 = start + blk * F::kTok;
    if (blk + kDecodeWarps < nblk) load(nxt, blk + kDecodeWarps, kLook ? page_next : page_of(blk + kDecodeWarps));
    if constexpr (kLook) {
      if (blk + 2 * kDecodeWarps < nblk) page_next = page_of(blk + 2 * kDecodeWarps);
    }
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
  // The item again from blockIdx (cheaper than keeping pair / piece / length live through the loop).
  {
    int pair_e, piece_e;
    item_pair(p, blockIdx.x, pair_e, piece_e);
    int len_e;
    asm volatile("ld.global.nc.b32 %0, [%1];" : "=r"(len_e) : "l"(p.lengths + pair_e / hkv));
    combine_pk<D>(p, sm, pair_e, piece_e, piece_e < 0 ? 1 : (len_e + p.chunk - 1) / p.chunk);
  }
}

template <int BITS>
void launch_decode_it(int head_dim, bool look, const DecodeParams& p, int grid, cudaStream_t stream);

#define QOQ_INSTANTIATE_DECODE_IT(BITS)                                                                      \
  template <>                                                                                                \
  void launch_decode_it<BITS>(int head_dim, bool look, const DecodeParams& p, int grid, cudaStream_t stream) { \
    if (head_dim == 64)                                                                                      \
      look ? launch_pk(decode_kernel_it<64, BITS, true>, p, grid, stream)                                    \
           : launch_pk(decode_kernel_it<64, BITS, false>, p, grid, stream);                                  \
    else                                                                                                     \
      look ? launch_pk(decode_kernel_it<128, BITS, true>, p, grid, stream)                                   \
           : launch_pk(decode_kernel_it<128, BITS, false>, p, grid, stream);                                 \
  }

}  // namespace qoq::cuda::attn
