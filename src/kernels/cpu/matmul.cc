#include "kernels/cpu/matmul.h"

#include <algorithm>

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

void matmul(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
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

}  // namespace qoq::cpu
