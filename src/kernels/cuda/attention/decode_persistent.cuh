// v4 decode kernel for KV4 / KV8 (bench/NOTES_decode.md): v2's block loop (decode_kernel_tm, tokens on M) unchanged,
// with a different outer structure. A persistent grid of resident CTAs walks work items: items [0, whole) are whole
// (sequence, KV head) pairs, later items are `pieces` equal token ranges of each remaining pair (the small-batch
// split-K, and the last round of a large batch, so that no CTA runs a whole pair while the rest of the GPU is idle).
// CTA c takes items c, c + grid, ...; during its last block of an item each warp already loads its first block of the
// next item, and the next item's queries wait in shared memory (cp.async), so a CTA streams without a prologue.
// Pieces write fp32 partials; the last piece of a pair to finish (atomic counter) combines them with all loads
// independent (no serial chain per piece).
#pragma once
#include <climits>

#include "kernels/cuda/attention/decode_kernel.cuh"

namespace qoq::cuda::attn {

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

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

// Copies the G query rows of `pair` (contiguous, G * D halves) into shared memory.
template <int D>
__device__ __forceinline__ void stage_q(const DecodeParams& p, int pair, uint16_t* sq) {
  const int n = p.group * D / 8;
  if (int(threadIdx.x) < n) cp_async16(sq + 8 * threadIdx.x, p.q + size_t(pair) * p.group * D + 8 * threadIdx.x);
  asm volatile("cp.async.commit_group;\n" ::);
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
__device__ void combine_pk(const DecodeParams& p, CombineSmem<D>& sm, int pair, int piece, int n_active) {
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

template <int D, int BITS>
__global__ void __launch_bounds__(kDecodeWarps * 32, 3) decode_kernel_pk(const DecodeParams p) {
  using F = Fmt<D, BITS>;
  constexpr int R = F::kRow;
  constexpr int kRows = F::kTok / 8;  // K rows per thread: tokens 8r + g
  constexpr int kMT = F::kTok / 16;   // S m-tiles = P.V k-steps
  constexpr int kVM = D / 16;         // P.V m-tiles (channels)
  static_assert(BITS != 16, "fp16 runs decode_kernel");
  __shared__ CombineSmem<D> sm;
  __shared__ __align__(16) uint16_t sq[kMaxGroup * D];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int G = p.group, hkv = p.n_kv_heads;
  const int step = gridDim.x;

  struct Blk {
    uint32_t kw[kRows][F::kKWords];
    uint32_t vw[kMT][4][F::kVWords];
    uint32_t kp[kRows], vp[kRows];
  };
  // Loads the block of kTok tokens starting `off` tokens into the (page, KV head) block at blkp.
  auto load = [&](Blk& d, const uint8_t* blkp, int off) {
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
  auto block_ptr = [&](int page, int kvh) { return p.pool + (size_t(page) * hkv + kvh) * F::kBlock; };
  // Token range of an item: [start, end) of its sequence (end <= start: nothing to do).
  auto range = [&](int piece, int len, int& start, int& end) {
    start = piece < 0 ? 0 : piece * p.chunk;
    end = piece < 0 ? len : min(len, start + p.chunk);
  };

  int item = blockIdx.x;
  if (item >= p.n_items) return;
  if (p.pdl) {
    // Programmatic dependent launch: everything this grid reads may come from the previous kernel; let the next one
    // start launching now (its CTAs take the slots this grid's tail leaves idle, then wait here).
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::);
  }
  int pair, piece;
  item_pair(p, item, pair, piece);
  stage_q<D>(p, pair, sq);
  // The length and the page of this warp's first block are loaded side by side (the page speculatively, inside the
  // table row), so the first block waits on one round trip less.
  const int start_first = piece < 0 ? 0 : piece * p.chunk;
  const int tok_first = start_first + warp * F::kTok;
  const int page_first = tok_first / kKvPageTokens < p.max_pages
                             ? p.page_table[size_t(pair / hkv) * p.max_pages + tok_first / kKvPageTokens]
                             : 0;
  int len = p.lengths[pair / hkv];
  Blk cur, nxt;
  if (tok_first < len) load(cur, block_ptr(page_first, pair % hkv), tok_first % kKvPageTokens);
  cp_async_wait_all();
  __syncthreads();

  for (; item < p.n_items; item += step) {
    const int b = pair / hkv, kvh = pair % hkv;
    int start, end;
    range(piece, len, start, end);
    const int32_t* pt = p.page_table + size_t(b) * p.max_pages;
    const int nblk = end > start ? (end - start + F::kTok - 1) / F::kTok : 0;
    // The next item: its length, and the page of this warp's first block (speculative, inside the table row).
    const int item2 = item + step;
    // tok2 >= len2 (or no next item): this warp has no block there.
    int pair2 = 0, piece2 = -1, len2 = 0, page2 = 0, tok2 = 0;
    if (item2 < p.n_items) {
      item_pair(p, item2, pair2, piece2);
      len2 = p.lengths[pair2 / hkv];
      const int start2 = piece2 < 0 ? 0 : piece2 * p.chunk;
      tok2 = start2 + warp * F::kTok;
      if (piece2 >= 0 && warp * F::kTok >= p.chunk) tok2 = INT_MAX;  // past the piece
      if (tok2 / kKvPageTokens < p.max_pages) page2 = p.page_table[size_t(pair2 / hkv) * p.max_pages + tok2 / kKvPageTokens];
    }

    // Q^T fragments of head g (zero for g >= G) in the permuted channel order; sum(q) of heads 2t and 2t+1.
    uint32_t qb[F::kKSteps][2];
    float qs[2];
    {
      __half qv[D / 4];
      if (g < G) {
        const uint4* src = reinterpret_cast<const uint4*>(sq + g * D + t * (D / 4));
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
    __syncthreads();  // every thread has its q: the next item's may overwrite sq
    if (item2 < p.n_items) stage_q<D>(p, pair2, sq);

    float o[kVM][4];
#pragma unroll
    for (int j = 0; j < kVM; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, z[2] = {0.f, 0.f};

    for (int blk = warp; blk < nblk; blk += kDecodeWarps) {
      const int tok0 = start + blk * F::kTok;
      if (blk + kDecodeWarps < nblk) {
        const int tn = tok0 + kDecodeWarps * F::kTok;
        load(nxt, block_ptr(pt[tn / kKvPageTokens], kvh), tn % kKvPageTokens);
      } else if (tok2 < len2) {
        load(nxt, block_ptr(page2, pair2 % hkv), tok2 % kKvPageTokens);
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
    // A warp with no block in this item loads its first block of the next one here.
    if (warp >= nblk && tok2 < len2) load(cur, block_ptr(page2, pair2 % hkv), tok2 % kKvPageTokens);

    if (nblk > 0) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int x = 4; x < 32; x <<= 1) {
          l[h] += __shfl_xor_sync(0xffffffffu, l[h], x);
          z[h] += __shfl_xor_sync(0xffffffffu, z[h], x);
        }
      }
      if (g == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h) sm.m[warp][2 * t + h] = m[h], sm.l[warp][2 * t + h] = l[h];
      }
#pragma unroll
      for (int mi = 0; mi < kVM; ++mi) {
#pragma unroll
        for (int e = 0; e < 4; ++e) sm.o[warp][2 * t + (e & 1)][g * (D / 8) + 2 * mi + (e >> 1)] = o[mi][e] - z[e & 1];
      }
      cp_async_wait_all();
      combine_pk<D>(p, sm, pair, piece, piece < 0 ? 1 : (len + p.chunk - 1) / p.chunk);
    } else {
      cp_async_wait_all();
      __syncthreads();
    }
    pair = pair2, piece = piece2, len = len2;
  }
}

// Host side: instantiated per BITS in decode_kv{4,8}.cu. Resident CTAs per SM of the kernel (occupancy API).
template <int BITS>
void launch_decode_pk(int head_dim, const DecodeParams& p, int grid, cudaStream_t stream);
template <int BITS>
int decode_pk_ctas_per_sm(int head_dim);

// With p.pdl the launch carries the programmatic-stream-serialization attribute (the kernel waits in griddepcontrol).
template <typename K>
inline void launch_pk(K kernel, const DecodeParams& p, int grid, cudaStream_t stream) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(kDecodeWarps * 32);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.pdl ? 1 : 0;
  cudaLaunchKernelEx(&cfg, kernel, p);
}

#define QOQ_INSTANTIATE_DECODE_PK(BITS)                                                                    \
  template <>                                                                                              \
  void launch_decode_pk<BITS>(int head_dim, const DecodeParams& p, int grid, cudaStream_t stream) {        \
    if (head_dim == 64)                                                                                    \
      launch_pk(decode_kernel_pk<64, BITS>, p, grid, stream);                                              \
    else                                                                                                   \
      launch_pk(decode_kernel_pk<128, BITS>, p, grid, stream);                                             \
  }                                                                                                        \
  template <>                                                                                              \
  int decode_pk_ctas_per_sm<BITS>(int head_dim) {                                                          \
    int n = 0;                                                                                             \
    if (head_dim == 64)                                                                                    \
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_kernel_pk<64, BITS>, kDecodeWarps * 32, 0);  \
    else                                                                                                   \
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_kernel_pk<128, BITS>, kDecodeWarps * 32, 0); \
    return n > 0 ? n : 1;                                                                                  \
  }

}  // namespace qoq::cuda::attn
