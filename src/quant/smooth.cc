#include "quant/smooth.h"

#include <cmath>

#include "quant/linalg.h"

namespace qoq::quant {

void HeadLayout::check() const {
  QOQ_CHECK(heads > 0 && kv_heads > 0 && head_dim > 0 && heads % kv_heads == 0 && head_dim % 2 == 0,
            "head layout: {} heads, {} kv heads, head dim {}", heads, kv_heads, head_dim);
}

std::vector<float> smooth_attention_scales(std::span<const float> k_absmax, const HeadLayout& l, float alpha) {
  l.check();
  const int64_t D = l.head_dim, half = D / 2;
  QOQ_CHECK(int64_t(k_absmax.size()) == l.kv_heads * D, "k_absmax has {} values, want {}", k_absmax.size(),
            l.kv_heads * D);
  std::vector<float> lambda(k_absmax.size());
  for (int64_t g = 0; g < l.kv_heads; ++g)
    for (int64_t c = 0; c < half; ++c) {
      const int64_t a = g * D + c, b = a + half;
      const float m = std::max(std::fabs(k_absmax[a]), std::fabs(k_absmax[b]));
      const float v = m > 0.f && std::isfinite(m) ? std::pow(m, alpha) : 1.f;
      lambda[a] = lambda[b] = v;
    }
  return lambda;
}

void apply_smooth_attention(Tensor& q_w, Tensor* q_b, Tensor& k_w, Tensor* k_b, std::span<const float> lambda,
                            const HeadLayout& l) {
  l.check();
  check_matrix(q_w, "q_proj");
  check_matrix(k_w, "k_proj");
  QOQ_CHECK(q_w.dim(0) == l.heads * l.head_dim && k_w.dim(0) == l.kv_heads * l.head_dim,
            "SmoothAttention: q {} / k {} against {} heads, {} kv heads, D {}", q_w.str(), k_w.str(), l.heads,
            l.kv_heads, l.head_dim);
  scale_rows(k_w, k_b, lambda, /*divide=*/true);
  scale_rows(q_w, q_b, expand_kv_to_q(lambda, l));
}

std::vector<float> column_absmax(const Tensor& w) {
  check_matrix(w, "column_absmax");
  const int64_t n = w.dim(0), k = w.dim(1);
  std::vector<float> m(size_t(k), 0.f);
  const float* p = w.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) m[j] = std::max(m[j], std::fabs(p[i * k + j]));
  return m;
}

std::vector<float> smooth_linear_scales(std::span<const float> x_absmax, std::span<const float> w_absmax, float alpha,
                                        float beta) {
  QOQ_CHECK(x_absmax.size() == w_absmax.size(), "smooth scales: {} activation and {} weight ranges", x_absmax.size(),
            w_absmax.size());
  std::vector<float> s(x_absmax.size());
  for (size_t j = 0; j < s.size(); ++j) {
    const float x = std::fabs(x_absmax[j]), w = std::fabs(w_absmax[j]);
    const float v = x > 0.f && w > 0.f ? float(std::pow(double(x), alpha) / std::pow(double(w), beta)) : 1.f;
    s[j] = std::isfinite(v) && v > 0.f ? v : 1.f;
  }
  return s;
}

std::vector<float> reduce_heads_max(std::span<const float> per_q, const HeadLayout& l) {
  l.check();
  const int64_t D = l.head_dim;
  QOQ_CHECK(int64_t(per_q.size()) == l.heads * D, "per-query-head statistic has {} values, want {}", per_q.size(),
            l.heads * D);
  std::vector<float> out(size_t(l.kv_heads * D), 0.f);
  for (int64_t h = 0; h < l.heads; ++h)
    for (int64_t d = 0; d < D; ++d) {
      float& o = out[size_t(h / l.group() * D + d)];
      o = std::max(o, per_q[h * D + d]);
    }
  return out;
}

std::vector<float> expand_kv_to_q(std::span<const float> per_kv, const HeadLayout& l) {
  l.check();
  const int64_t D = l.head_dim;
  QOQ_CHECK(int64_t(per_kv.size()) == l.kv_heads * D, "per-KV-head vector has {} values, want {}", per_kv.size(),
            l.kv_heads * D);
  std::vector<float> out(size_t(l.heads * D));
  for (int64_t h = 0; h < l.heads; ++h)
    for (int64_t d = 0; d < D; ++d) out[size_t(h * D + d)] = per_kv[h / l.group() * D + d];
  return out;
}

std::vector<float> smooth_o_proj_scales(std::span<const float> x_absmax, const Tensor& o_w, const HeadLayout& l,
                                        float alpha, float beta) {
  const std::vector<float> x = reduce_heads_max(x_absmax, l);
  const std::vector<float> w = reduce_heads_max(column_absmax(o_w), l);
  return smooth_linear_scales(x, w, alpha, beta);
}

void apply_smooth_linear(Tensor& producer_w, Tensor* producer_b, Tensor& consumer_w, std::span<const float> s) {
  scale_rows(producer_w, producer_b, s, /*divide=*/true);
  scale_cols(consumer_w, s);
}

void apply_smooth_v_o(Tensor& v_w, Tensor* v_b, Tensor& o_w, std::span<const float> s, const HeadLayout& l) {
  scale_rows(v_w, v_b, s, /*divide=*/true);
  scale_cols(o_w, expand_kv_to_q(s, l));
}

size_t search_smooth_alpha(std::span<const float> x_absmax, std::span<const float> w_absmax,
                           std::span<const float> alphas,
                           const std::function<double(const std::vector<float>& scales)>& error) {
  QOQ_CHECK(!alphas.empty(), "alpha search needs at least one alpha");
  size_t best = 0;
  double best_err = 0;
  for (size_t i = 0; i < alphas.size(); ++i) {
    const double e = error(smooth_linear_scales(x_absmax, w_absmax, alphas[i], 1.f - alphas[i]));
    if (i == 0 || e < best_err) best = i, best_err = e;
  }
  return best;
}

}  // namespace qoq::quant
