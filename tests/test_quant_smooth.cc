// Smoothing and reordering are exact re-parameterizations: on a tiny GQA attention block with rotate-half RoPE and
// on a SwiGLU MLP (written out here), the transformed weights compute the same outputs; SmoothAttention commutes
// with RoPE only thanks to the pairing, which a control without it shows.
#include <gtest/gtest.h>

#include <cmath>

#include "quant/linalg.h"
#include "quant/reorder.h"
#include "quant/smooth.h"
#include "quant_test_util.h"

using namespace qoq;
using namespace qoq::quant;

namespace {

Tensor rand_tensor(Shape shape, uint32_t seed, float sigma = 0.3f) {
  return Tensor::from_vector(quant_test::randn(size_t(shape_numel(shape)), seed, sigma), shape);
}

// y [T, N] = x [T, K] Wᵀ + b.
std::vector<float> linear(const std::vector<float>& x, int64_t T, const Tensor& w, const Tensor* b) {
  const int64_t N = w.dim(0), K = w.dim(1);
  std::vector<float> y(size_t(T * N));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = b ? b->data<float>()[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(x[size_t(t * K + k)]) * w.data<float>()[n * K + k];
      y[size_t(t * N + n)] = float(s);
    }
  return y;
}

// HF rotate-half RoPE on [T, heads, D] at positions 0..T-1.
void rope(std::vector<float>& x, int64_t T, int64_t heads, int64_t D) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double ang = double(t) * std::pow(10000.0, -2.0 * double(i) / double(D));
        float* p = x.data() + (t * heads + h) * D;
        const double a = p[i], b = p[i + D / 2];
        p[i] = float(a * std::cos(ang) - b * std::sin(ang));
        p[i + D / 2] = float(b * std::cos(ang) + a * std::sin(ang));
      }
}

struct Attention {
  HeadLayout l{4, 2, 8};
  int64_t hidden = 24;
  Tensor wq, bq, wk, bk, wv, bv, wo;
  Attention() {
    wq = rand_tensor({l.heads * l.head_dim, hidden}, 1);
    bq = rand_tensor({l.heads * l.head_dim}, 2);
    wk = rand_tensor({l.kv_heads * l.head_dim, hidden}, 3);
    bk = rand_tensor({l.kv_heads * l.head_dim}, 4);
    wv = rand_tensor({l.kv_heads * l.head_dim, hidden}, 5);
    bv = rand_tensor({l.kv_heads * l.head_dim}, 6);
    wo = rand_tensor({hidden, l.heads * l.head_dim}, 7);
    // Outlier key channels (what SmoothAttention is for), on one side of a RoPE pair only.
    for (int64_t k = 0; k < hidden; ++k) wk.data<float>()[2 * hidden + k] *= 12.f;
  }
  // Returns the block output [T, hidden]; fills post-RoPE max|K| [kv_heads*D], pre-o_proj max|a| [heads*D] and
  // the post-RoPE scores [heads, T, T].
  std::vector<float> forward(const std::vector<float>& x, int64_t T, std::vector<float>* k_absmax = nullptr,
                             std::vector<float>* a_absmax = nullptr, std::vector<float>* scores = nullptr) const {
    const int64_t D = l.head_dim;
    auto q = linear(x, T, wq, &bq), k = linear(x, T, wk, &bk), v = linear(x, T, wv, &bv);
    rope(q, T, l.heads, D);
    rope(k, T, l.kv_heads, D);
    if (k_absmax) {
      k_absmax->assign(size_t(l.kv_heads * D), 0.f);
      for (size_t i = 0; i < k.size(); ++i)
        (*k_absmax)[i % k_absmax->size()] = std::max((*k_absmax)[i % k_absmax->size()], std::fabs(k[i]));
    }
    std::vector<float> a(size_t(T * l.heads * D), 0.f);
    if (scores) scores->assign(size_t(l.heads * T * T), 0.f);
    for (int64_t h = 0; h < l.heads; ++h) {
      const int64_t g = h / l.group();
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> p(size_t(t + 1));
        double mx = -1e300, sum = 0;
        for (int64_t u = 0; u <= t; ++u) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d)
            s += double(q[size_t((t * l.heads + h) * D + d)]) * k[size_t((u * l.kv_heads + g) * D + d)];
          if (scores) (*scores)[size_t((h * T + t) * T + u)] = float(s);
          p[u] = s / std::sqrt(double(D));
          mx = std::max(mx, p[u]);
        }
        for (auto& e : p) sum += (e = std::exp(e - mx));
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t u = 0; u <= t; ++u) o += p[u] / sum * v[size_t((u * l.kv_heads + g) * D + d)];
          a[size_t((t * l.heads + h) * D + d)] = float(o);
        }
      }
    }
    if (a_absmax) {
      a_absmax->assign(size_t(l.heads * D), 0.f);
      for (size_t i = 0; i < a.size(); ++i)
        (*a_absmax)[i % a_absmax->size()] = std::max((*a_absmax)[i % a_absmax->size()], std::fabs(a[i]));
    }
    return linear(a, T, wo, nullptr);
  }
};

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

}  // namespace

TEST(SmoothAttention, ScalesPairRotateHalfChannels) {
  const HeadLayout l{4, 2, 8};
  std::vector<float> kmax(16);
  for (int i = 0; i < 16; ++i) kmax[i] = float(i + 1);
  kmax[9] = 0.f, kmax[13] = 0.f;  // channel 1 of head 1 and its partner 5: a dead pair
  const auto lambda = smooth_attention_scales(kmax, l);
  for (int g = 0; g < 2; ++g)
    for (int c = 0; c < 4; ++c) {
      const float expect = g == 1 && c == 1 ? 1.f : std::sqrt(std::max(kmax[g * 8 + c], kmax[g * 8 + c + 4]));
      EXPECT_FLOAT_EQ(lambda[g * 8 + c], expect);
      EXPECT_EQ(lambda[g * 8 + c], lambda[g * 8 + c + 4]);
    }
}

TEST(SmoothAttention, CommutesWithRopeOnlyWithThePairing) {
  Attention m;
  const int64_t T = 6;
  const auto x = quant_test::randn(size_t(T * m.hidden), 10);
  std::vector<float> kmax, scores0, scores1;
  m.forward(x, T, &kmax, nullptr, &scores0);
  Attention paired = m;
  paired.wq = m.wq.clone(), paired.bq = m.bq.clone(), paired.wk = m.wk.clone(), paired.bk = m.bk.clone();
  apply_smooth_attention(paired.wq, &paired.bq, paired.wk, &paired.bk, smooth_attention_scales(kmax, m.l), m.l);
  std::vector<float> kmax1;
  paired.forward(x, T, &kmax1, nullptr, &scores1);
  EXPECT_LT(max_diff(scores0, scores1), 1e-5 * max_abs(scores0));  // Q·Kᵀ after RoPE unchanged
  EXPECT_LT(max_abs(kmax1), 0.5 * max_abs(kmax));                  // and the key outliers shrank

  // Control: per-channel λ without the pairing does not commute with RoPE.
  Attention unpaired = m;
  unpaired.wq = m.wq.clone(), unpaired.bq = m.bq.clone(), unpaired.wk = m.wk.clone(), unpaired.bk = m.bk.clone();
  std::vector<float> raw(kmax.size());
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = std::sqrt(kmax[i]);
  apply_smooth_attention(unpaired.wq, &unpaired.bq, unpaired.wk, &unpaired.bk, raw, m.l);
  std::vector<float> scores2;
  unpaired.forward(x, T, nullptr, nullptr, &scores2);
  EXPECT_GT(max_diff(scores0, scores2), 1e-2 * max_abs(scores0));
}

TEST(Smooth, AttentionBlockIsUnchangedBySmoothingAndReordering) {
  Attention m;
  const int64_t T = 7;
  const auto x = quant_test::randn(size_t(T * m.hidden), 20);
  std::vector<float> kmax, amax;
  const auto y0 = m.forward(x, T, &kmax, &amax);

  Attention t = m;
  for (Tensor* p : {&t.wq, &t.bq, &t.wk, &t.bk, &t.wv, &t.bv, &t.wo}) *p = p->clone();
  apply_smooth_attention(t.wq, &t.bq, t.wk, &t.bk, smooth_attention_scales(kmax, m.l), m.l);
  const auto s = smooth_o_proj_scales(amax, t.wo, m.l, 0.3f, 0.7f);
  for (float v : s) ASSERT_TRUE(std::isfinite(v) && v > 0);
  apply_smooth_v_o(t.wv, &t.bv, t.wo, s, m.l);
  std::vector<float> amax1;
  t.forward(x, T, nullptr, &amax1);
  const auto perm = head_channel_order(amax1, m.l);
  apply_attention_reorder(t.wv, &t.bv, t.wo, perm, m.l);
  const auto y1 = t.forward(x, T);
  EXPECT_LT(max_diff(y0, y1), 1e-5 * max_abs(y0));

  // Control: permuting v_proj's rows without o_proj's columns changes the output.
  Attention bad = t;
  bad.wv = t.wv.clone(), bad.bv = t.bv.clone();
  std::vector<int32_t> swap(size_t(m.l.kv_heads * m.l.head_dim));
  for (size_t i = 0; i < swap.size(); ++i) swap[i] = int32_t(i ^ 1);
  permute_rows(bad.wv, &bad.bv, swap);
  EXPECT_GT(max_diff(y0, bad.forward(x, T)), 1e-3 * max_abs(y0));
}

TEST(Smooth, MlpBlockIsUnchangedBySmoothingAndReordering) {
  const int64_t H = 16, F = 40, T = 9;
  Tensor gate = rand_tensor({F, H}, 30), up = rand_tensor({F, H}, 31), down = rand_tensor({H, F}, 32);
  const auto x = quant_test::randn(size_t(T * H), 33);
  auto forward = [&](std::vector<float>* h_absmax) {
    const auto g = linear(x, T, gate, nullptr), u = linear(x, T, up, nullptr);
    std::vector<float> h(g.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
    if (h_absmax) {
      h_absmax->assign(size_t(F), 0.f);
      for (size_t i = 0; i < h.size(); ++i) (*h_absmax)[i % F] = std::max((*h_absmax)[i % F], std::fabs(h[i]));
    }
    return linear(h, T, down, nullptr);
  };
  std::vector<float> hmax;
  const auto y0 = forward(&hmax);
  const auto perm = ascending_order(hmax);
  apply_mlp_reorder(gate, up, down, perm);
  std::vector<float> hmax1;
  forward(&hmax1);
  for (int64_t j = 1; j < F; ++j) ASSERT_LE(hmax1[j - 1], hmax1[j]);  // channels now ascend
  apply_smooth_linear(up, nullptr, down, smooth_linear_scales(hmax1, column_absmax(down), 0.3f, 0.7f));
  const auto y1 = forward(nullptr);
  EXPECT_LT(max_diff(y0, y1), 1e-5 * max_abs(y0));
}

TEST(Smooth, ScaleFormulaAndZeros) {
  const std::vector<float> x = {4.f, 0.f, 9.f, 2.f}, w = {0.25f, 1.f, 0.f, 2.f};
  const auto s = smooth_linear_scales(x, w, 0.5f, 0.5f);
  EXPECT_FLOAT_EQ(s[0], 2.f / 0.5f);
  EXPECT_EQ(s[1], 1.f);  // dead activation channel
  EXPECT_EQ(s[2], 1.f);  // weightless channel
  EXPECT_FLOAT_EQ(s[3], std::sqrt(2.f) / std::sqrt(2.f));
}

TEST(Smooth, GqaReductionAndPermutationStayWithinHeads) {
  const HeadLayout l{6, 2, 4};  // 3 query heads per KV head
  std::vector<float> per_q(24);
  for (int i = 0; i < 24; ++i) per_q[i] = float((i * 7) % 24);
  const auto r = reduce_heads_max(per_q, l);
  for (int g = 0; g < 2; ++g)
    for (int d = 0; d < 4; ++d)
      EXPECT_EQ(r[g * 4 + d],
                std::max({per_q[(3 * g) * 4 + d], per_q[(3 * g + 1) * 4 + d], per_q[(3 * g + 2) * 4 + d]}));
  const auto e = expand_kv_to_q(r, l);
  for (int h = 0; h < 6; ++h)
    for (int d = 0; d < 4; ++d) EXPECT_EQ(e[h * 4 + d], r[(h / 3) * 4 + d]);
  const auto perm = head_channel_order(per_q, l);
  const auto qperm = expand_kv_perm_to_q(perm, l);
  for (int h = 0; h < 6; ++h)
    for (int d = 0; d < 4; ++d) {
      EXPECT_EQ(qperm[h * 4 + d] / 4, h);
      EXPECT_EQ(qperm[h * 4 + d] % 4, perm[(h / 3) * 4 + d] % 4);
    }
  for (int g = 0; g < 2; ++g)
    for (int d = 1; d < 4; ++d) EXPECT_LE(r[perm[g * 4 + d - 1]], r[perm[g * 4 + d]]);
}
