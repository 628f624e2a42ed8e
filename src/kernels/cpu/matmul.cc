#include "kernels/cpu/matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#include "core/thread_pool.h"
#include "kernels/cpu/vec.h"

namespace qoq::cpu {

void matmul_ref(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t t = 0; t < k; ++t) acc += x[i * k + t] * w[j * k + t];
      y[i * n + j] = bias ? acc + bias[j] : acc;
    }
}

namespace {

// An MR x NR tile of Y: MR rows of X against NR rows of W, all accumulators in registers.
template <int MR, int NR>
[[gnu::always_inline]] inline void tile(const float* x, const float* w, const float* bias, float* y, int64_t n,
                                        int64_t k) {
  v8f acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = v8f{};
  int64_t t = 0;
  for (; t + 8 <= k; t += 8) {
    v8f xv[MR], wv[NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = at8(x + i * k + t);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = at8(w + j * k + t);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] += xv[i] * wv[j];
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t u = t; u < k; ++u) s += x[i * k + u] * w[j * k + u];
      y[i * n + j] = bias ? s + bias[j] : s;
    }
}

constexpr int64_t kMBlock = 64;  // rows of X kept hot in L2 while a block of W streams through L1

// Rows [n0, n1) of W against all of X.
[[gnu::always_inline]] inline void matmul_rows(const float* x, const float* w, const float* bias, float* y, int64_t m,
                                               int64_t n, int64_t k, int64_t n0, int64_t n1) {
  if (m == 1) {
    // Decode: one pass over the weights, 8 rows at a time to keep several loads in flight.
    int64_t j = n0;
    for (; j + 8 <= n1; j += 8) tile<1, 8>(x, w + j * k, bias ? bias + j : nullptr, y + j, n, k);
    for (; j < n1; ++j) tile<1, 1>(x, w + j * k, bias ? bias + j : nullptr, y + j, n, k);
    return;
  }
  for (int64_t mb = 0; mb < m; mb += kMBlock) {
    const int64_t me = std::min(m, mb + kMBlock);
    int64_t j = n0;
    for (; j + 4 <= n1; j += 4) {
      const float* wj = w + j * k;
      const float* bj = bias ? bias + j : nullptr;
      int64_t i = mb;
      for (; i + 2 <= me; i += 2) tile<2, 4>(x + i * k, wj, bj, y + i * n + j, n, k);
      for (; i < me; ++i) tile<1, 4>(x + i * k, wj, bj, y + i * n + j, n, k);
    }
    for (; j < n1; ++j) {
      const float* bj = bias ? bias + j : nullptr;
      int64_t i = mb;
      for (; i + 2 <= me; i += 2) tile<2, 1>(x + i * k, w + j * k, bj, y + i * n + j, n, k);
      for (; i < me; ++i) tile<1, 1>(x + i * k, w + j * k, bj, y + i * n + j, n, k);
    }
  }
}

QOQ_TARGET_AVX2 void matmul_rows_avx2(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                                      int64_t k, int64_t n0, int64_t n1) {
  matmul_rows(x, w, bias, y, m, n, k, n0, n1);
}

void matmul_rows_generic(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                         int64_t n0, int64_t n1) {
  matmul_rows(x, w, bias, y, m, n, k, n0, n1);
}

}  // namespace

void matmul_blocked_v1(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0) return;
  // Blocks of W rows: a multiple of 8, at most 64 (fits L2 with its K), and enough blocks to balance threads.
  const int64_t threads = ThreadPool::global().num_threads();
  int64_t block = (n + threads * 8 - 1) / (threads * 8);
  block = std::clamp<int64_t>((block + 7) / 8 * 8, 8, 64);
  const int64_t blocks = (n + block - 1) / block;
  // Tiny products are not worth waking the pool.
  const int64_t grain = m * n * k < (1 << 15) ? blocks : 1;
  parallel_for(
      blocks,
      [&, avx2 = has_avx2_fma()](int64_t b, int64_t e) {
        (avx2 ? matmul_rows_avx2 : matmul_rows_generic)(x, w, bias, y, m, n, k, b * block, std::min(n, e * block));
      },
      grain);
}

namespace {

// ---- Packed path (AVX2+FMA). Y^T = W * X^T in BLIS terms: X^T is the packed operand (16-row panels, k-major:
// panel[t * 16 + r] = X[i0 + r, t]), W is the broadcast operand read in place, 6 rows at a time. Packing X instead
// of W keeps the per-call copy at M*K floats, which is what makes the path pay off already at M = 16.
constexpr int kMR = 16;              // X rows per panel: two 8-float vectors
constexpr int kNR = 6;               // W rows per micro-tile: 12 accumulators + 2 X vectors + 1 broadcast = 15 ymm
constexpr int64_t kMaxKC = 640;      // K block: a 6-row W strip (6 * KC floats) stays in L1; K = 576 needs one block
constexpr int64_t kMC = 128;         // M block per task: its packed X (MC * KC floats, <= 320 KB) stays in L2
constexpr int64_t kNC = 96;          // N block per task (16 strips): W rows a task owns
constexpr int64_t kMinPackedM = 10;  // below, the dot-product path is as fast (half panels use 6 of 16 registers)

// 64-byte aligned growable buffer; thread-local so steady-state calls allocate nothing.
struct AlignedBuffer {
  float* data = nullptr;
  size_t capacity = 0;  // floats
  ~AlignedBuffer() { std::free(data); }
  float* get(size_t floats) {
    if (floats > capacity) {
      std::free(data);
      const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data) throw std::bad_alloc();
      capacity = bytes / sizeof(float);
    }
    return data;
  }
};

// Panels [p0, p1) of X into xp; rows past m are zero so the micro-kernel never branches on them.
void pack_x(const float* x, float* xp, int64_t m, int64_t k, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    float* dst = xp + p * k * kMR;
    for (int r = 0; r < kMR; ++r) {
      const int64_t i = p * kMR + r;
      if (i < m) {
        const float* src = x + i * k;
        for (int64_t t = 0; t < k; ++t) dst[t * kMR + r] = src[t];
      } else {
        for (int64_t t = 0; t < k; ++t) dst[t * kMR + r] = 0.0f;
      }
    }
  }
}

// out[c * 16 + r] = sum_t xp[t * 16 + r] * w[c * ldw + t] for r < 8 * MV, c < NJ.
template <int MV, int NJ>
QOQ_TARGET_AVX2 [[gnu::always_inline]] inline void micro_kernel(const float* xp, const float* w, int64_t ldw,
                                                                int64_t kc, float* out) {
  __m256 acc[NJ][MV];
#pragma GCC unroll 6
  for (int c = 0; c < NJ; ++c)
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) acc[c][v] = _mm256_setzero_ps();
  const float* wr[NJ];
#pragma GCC unroll 6
  for (int c = 0; c < NJ; ++c) wr[c] = w + c * ldw;
#pragma GCC unroll 4
  for (int64_t t = 0; t < kc; ++t) {
    __m256 xv[MV];
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) xv[v] = _mm256_load_ps(xp + t * kMR + 8 * v);
#pragma GCC unroll 6
    for (int c = 0; c < NJ; ++c) {
      const __m256 b = _mm256_broadcast_ss(wr[c] + t);
#pragma GCC unroll 2
      for (int v = 0; v < MV; ++v) acc[c][v] = _mm256_fmadd_ps(xv[v], b, acc[c][v]);
    }
  }
#pragma GCC unroll 6
  for (int c = 0; c < NJ; ++c)
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) _mm256_store_ps(out + c * kMR + 8 * v, acc[c][v]);
}

// Y tile (rows x nj at y, row stride ldy) from the micro-kernel's transposed output: = out (+ bias), or += out.
QOQ_TARGET_AVX2 inline void store_tile(const float* out, float* y, int64_t ldy, int rows, int nj, const float* bias,
                                       bool accumulate) {
  if (rows == kMR && nj == kNR) {
    // The common full tile: 8x8 register transposes (columns 6 and 7 zero) and 4 + 2 float stores per row,
    // ~5x cheaper than the scalar loop below, which costed ~10% of a K = 576 tile.
    const __m256 zero = _mm256_setzero_ps();
    __m128 b_lo = _mm_setzero_ps(), b_hi = _mm_setzero_ps();
    if (bias && !accumulate) {
      b_lo = _mm_loadu_ps(bias);
      b_hi = _mm_castsi128_ps(_mm_loadu_si64(bias + 4));
    }
    for (int v = 0; v < 2; ++v) {
      const __m256 r0 = _mm256_load_ps(out + 0 * kMR + 8 * v), r1 = _mm256_load_ps(out + 1 * kMR + 8 * v);
      const __m256 r2 = _mm256_load_ps(out + 2 * kMR + 8 * v), r3 = _mm256_load_ps(out + 3 * kMR + 8 * v);
      const __m256 r4 = _mm256_load_ps(out + 4 * kMR + 8 * v), r5 = _mm256_load_ps(out + 5 * kMR + 8 * v);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, zero, 0x44), u5 = _mm256_shuffle_ps(t4, zero, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, zero, 0x44), u7 = _mm256_shuffle_ps(t5, zero, 0xEE);
      // Row r of this half: columns 0-3 in the low lane of (u_r or u_{r-4}), columns 4-5 from u_{r+4}.
      const __m256 rows8[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                               _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                               _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                               _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        float* yr = y + (8 * v + r) * ldy;
        __m128 lo = _mm256_castps256_ps128(rows8[r]), hi = _mm256_extractf128_ps(rows8[r], 1);
        if (accumulate) {
          lo = _mm_add_ps(lo, _mm_loadu_ps(yr));
          hi = _mm_add_ps(hi, _mm_castsi128_ps(_mm_loadu_si64(yr + 4)));
        } else {
          lo = _mm_add_ps(lo, b_lo);
          hi = _mm_add_ps(hi, b_hi);
        }
        _mm_storeu_ps(yr, lo);
        _mm_storeu_si64(yr + 4, _mm_castps_si128(hi));  // the unaligned 8-byte forms: rows are 4-byte aligned
      }
    }
    return;
  }
  for (int r = 0; r < rows; ++r) {
    float* yr = y + r * ldy;
    if (accumulate)
      for (int c = 0; c < nj; ++c) yr[c] += out[c * kMR + r];
    else if (bias)
      for (int c = 0; c < nj; ++c) yr[c] = out[c * kMR + r] + bias[c];
    else
      for (int c = 0; c < nj; ++c) yr[c] = out[c * kMR + r];
  }
}

template <int MV>
QOQ_TARGET_AVX2 void micro_dispatch(int nj, const float* xp, const float* w, int64_t ldw, int64_t kc, float* out) {
  switch (nj) {
    case 1:
      return micro_kernel<MV, 1>(xp, w, ldw, kc, out);
    case 2:
      return micro_kernel<MV, 2>(xp, w, ldw, kc, out);
    case 3:
      return micro_kernel<MV, 3>(xp, w, ldw, kc, out);
    case 4:
      return micro_kernel<MV, 4>(xp, w, ldw, kc, out);
    case 5:
      return micro_kernel<MV, 5>(xp, w, ldw, kc, out);
    default:
      return micro_kernel<MV, 6>(xp, w, ldw, kc, out);
  }
}

// Y[i0:i1, j0:j1] from packed X and W rows j0..j1. i0 is a multiple of kMR.
QOQ_TARGET_AVX2 void packed_block(const float* xp, const float* w, const float* bias, float* y, int64_t m, int64_t n,
                                  int64_t k, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  alignas(64) float out[kNR * kMR];
  const int64_t kblocks = (k + kMaxKC - 1) / kMaxKC, kc = (k + kblocks - 1) / kblocks;
  for (int64_t pc = 0; pc < k; pc += kc) {
    const int64_t kcur = std::min(kc, k - pc);
    // W strip outer (stays in L1 across the M panels), X panels inner (stream from L2).
    for (int64_t j = j0; j < j1; j += kNR) {
      const int nj = int(std::min<int64_t>(kNR, j1 - j));
      const float* wj = w + j * k + pc;
      for (int64_t i = i0; i < i1; i += kMR) {
        const int rows = int(std::min<int64_t>(kMR, m - i));
        const float* xpp = xp + (i / kMR) * k * kMR + pc * kMR;
        if (rows > 8)
          micro_dispatch<2>(nj, xpp, wj, k, kcur, out);
        else
          micro_dispatch<1>(nj, xpp, wj, k, kcur, out);
        store_tile(out, y + i * n + j, n, rows, nj, bias ? bias + j : nullptr, pc > 0);
      }
    }
  }
}

void matmul_packed(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  thread_local AlignedBuffer x_buffer;
  const int64_t panels = (m + kMR - 1) / kMR;
  float* xp = x_buffer.get(size_t(panels * kMR * k));
  if (m * k < (1 << 16))
    pack_x(x, xp, m, k, 0, panels);
  else
    parallel_for(panels, [&](int64_t b, int64_t e) { pack_x(x, xp, m, k, b, e); });

  const int64_t mblocks = (m + kMC - 1) / kMC, nblocks = (n + kNC - 1) / kNC, tasks = mblocks * nblocks;
  // Tiny products are not worth waking the pool. Consecutive tasks share a W block (N major).
  const int64_t grain = m * n * k < (1 << 18) ? tasks : 1;
  parallel_for(
      tasks,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t nb = t / mblocks, mb = t % mblocks;
          packed_block(xp, w, bias, y, m, n, k, mb * kMC, std::min(m, (mb + 1) * kMC), nb * kNC,
                       std::min(n, (nb + 1) * kNC));
        }
      },
      grain);
}

}  // namespace

void matmul(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0) return;
  if (m >= kMinPackedM && k > 0 && has_avx2_fma())
    matmul_packed(x, w, bias, y, m, n, k);
  else
    matmul_blocked_v1(x, w, bias, y, m, n, k);
}

}  // namespace qoq::cpu
