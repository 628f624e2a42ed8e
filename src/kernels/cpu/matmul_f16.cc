#include "kernels/cpu/matmul_f16.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vec.h"
#include "qoq/half.h"

namespace qoq::cpu {
namespace {

constexpr int64_t kMaxDirectRows = 8;  // decode sizes: one pass over W, every token's accumulator in registers
constexpr int64_t kRowBlock = 64;      // larger M: widen 64 weight rows at a time and use the FP32 matmul

[[gnu::target("avx2,fma,f16c")]] void direct_rows_f16c(const float* x, const uint16_t* w, const float* bias, float* y,
                                                       int64_t m, int64_t n, int64_t k, int64_t n0, int64_t n1) {
  for (int64_t j = n0; j < n1; ++j) {
    const uint16_t* wj = w + j * k;
    __m256 acc[kMaxDirectRows];
    for (int64_t i = 0; i < m; ++i) acc[i] = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= k; t += 8) {
      const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wj + t)));
      for (int64_t i = 0; i < m; ++i) acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * k + t), wv, acc[i]);
    }
    for (int64_t i = 0; i < m; ++i) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc[i]);
      float s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
      for (int64_t u = t; u < k; ++u) s += x[i * k + u] * half_to_float(wj[u]);
      y[i * n + j] = bias ? s + bias[j] : s;
    }
  }
}

void direct_rows_generic(const float* x, const uint16_t* w, const float* bias, float* y, int64_t m, int64_t n,
                         int64_t k, int64_t n0, int64_t n1) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t j = n0; j < n1; ++j) {
    for (int64_t t = 0; t < k; ++t) row[size_t(t)] = half_to_float(w[j * k + t]);
    for (int64_t i = 0; i < m; ++i) {
      const float s = dot(x + i * k, row.data(), k);
      y[i * n + j] = bias ? s + bias[j] : s;
    }
  }
}

bool has_f16c() {
  static const bool yes = has_avx2_fma() && __builtin_cpu_supports("f16c");
  return yes;
}

}  // namespace

void matmul_f16w(const float* x, const uint16_t* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0) return;
  if (m <= kMaxDirectRows) {
    const bool f16c = has_f16c();
    parallel_for(
        n,
        [&](int64_t n0, int64_t n1) {
          (f16c ? direct_rows_f16c : direct_rows_generic)(x, w, bias, y, m, n, k, n0, n1);
        },
        256);
    return;
  }
  // Blocks of weight rows widened to FP32, multiplied by the FP32 matmul (inline on this worker), then scattered.
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    std::vector<float> wf(size_t(kRowBlock * k)), yb(size_t(m * kRowBlock));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t j0 = b * kRowBlock, nb = std::min(kRowBlock, n - j0);
      for (int64_t i = 0; i < nb * k; ++i) wf[size_t(i)] = half_to_float(w[j0 * k + i]);
      matmul(x, wf.data(), bias ? bias + j0 : nullptr, yb.data(), m, nb, k);
      for (int64_t i = 0; i < m; ++i) std::copy_n(yb.data() + i * nb, nb, y + i * n + j0);
    }
  });
}

}  // namespace qoq::cpu
