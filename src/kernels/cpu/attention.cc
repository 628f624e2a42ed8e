#include "kernels/cpu/attention.h"

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/softmax.h"
#include "kernels/cpu/vec.h"
#include "qoq/error.h"

namespace qoq::cpu {

namespace {

// (token, head) pairs [b, e) of the flattened tokens x heads range.
[[gnu::always_inline]] inline void attend_range(const float* q, const float* k, const float* v, float* out,
                                                int64_t pos0, int64_t n_heads, int64_t group, int64_t head_dim,
                                                int64_t kv_stride, float scale, int64_t b, int64_t e) {
  std::vector<float> scores;
  for (int64_t th = b; th < e; ++th) {
    const int64_t t = th / n_heads, h = th % n_heads;
    const int64_t len = pos0 + t + 1;  // causal: positions 0 .. pos0 + t
    const float* qh = q + th * head_dim;
    const float* kh = k + (h / group) * head_dim;
    const float* vh = v + (h / group) * head_dim;
    scores.resize(size_t(len));
    for (int64_t j = 0; j < len; ++j) scores[j] = dot(qh, kh + j * kv_stride, head_dim) * scale;
    softmax(scores.data(), len);
    float* o = out + th * head_dim;
    std::fill(o, o + head_dim, 0.0f);
    for (int64_t j = 0; j < len; ++j) axpy(scores[j], vh + j * kv_stride, o, head_dim);
  }
}

QOQ_TARGET_AVX2 void attend_range_avx2(const float* q, const float* k, const float* v, float* out, int64_t pos0,
                                       int64_t n_heads, int64_t group, int64_t head_dim, int64_t kv_stride, float scale,
                                       int64_t b, int64_t e) {
  attend_range(q, k, v, out, pos0, n_heads, group, head_dim, kv_stride, scale, b, e);
}

void attend_range_generic(const float* q, const float* k, const float* v, float* out, int64_t pos0, int64_t n_heads,
                          int64_t group, int64_t head_dim, int64_t kv_stride, float scale, int64_t b, int64_t e) {
  attend_range(q, k, v, out, pos0, n_heads, group, head_dim, kv_stride, scale, b, e);
}

}  // namespace

void attention(const float* q, const float* k, const float* v, float* out, int64_t tokens, int64_t pos0,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t kv_stride, float scale) {
  QOQ_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "{} query heads not a multiple of {} KV heads", n_heads,
            n_kv_heads);
  const int64_t group = n_heads / n_kv_heads;
  const int64_t work = (pos0 + tokens) * head_dim * n_heads;
  parallel_for(
      tokens * n_heads,
      [&, avx2 = has_avx2_fma()](int64_t b, int64_t e) {
        (avx2 ? attend_range_avx2 : attend_range_generic)(q, k, v, out, pos0, n_heads, group, head_dim, kv_stride,
                                                          scale, b, e);
      },
      work < (1 << 14) ? tokens * n_heads : 1);
}

}  // namespace qoq::cpu
