// The CPU kernels against naive loops written here (double accumulation), with outputs poisoned beforehand.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softmax.h"
#include "qoq/error.h"

using namespace qoq;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Checks |a - b| <= tol for every element, reporting the first mismatch.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(double(got[i]) - want[i]), tol[i])
        << what << " element " << i << " got " << got[i] << " want " << want[i];
}

}  // namespace

namespace {

// cpu::matmul and cpu::matmul_ref (and the v1 path) against a double-precision loop, bias null and non-null,
// outputs poisoned with NaN beforehand so every element must be written.
void check_matmul_shapes(const std::vector<std::array<int, 3>>& shapes, std::mt19937& rng) {
  for (const auto& [m, n, k] : shapes) {
    for (bool with_bias : {false, true}) {
      const auto x = randn(size_t(m) * k, rng), w = randn(size_t(n) * k, rng), b = randn(size_t(n), rng);
      const float* bias = with_bias ? b.data() : nullptr;
      std::vector<float> y(size_t(m) * n, kNaN), y_ref(y.size(), kNaN), y_v1(y.size(), kNaN);
      cpu::matmul(x.data(), w.data(), bias, y.data(), m, n, k);
      cpu::matmul_ref(x.data(), w.data(), bias, y_ref.data(), m, n, k);
      cpu::matmul_blocked_v1(x.data(), w.data(), bias, y_v1.data(), m, n, k);
      std::vector<double> want(y.size()), tol(y.size());
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double acc = with_bias ? b[j] : 0.0, mag = with_bias ? std::fabs(b[j]) : 0.0;
          for (int t = 0; t < k; ++t) {
            acc += double(x[size_t(i) * k + t]) * w[size_t(j) * k + t];
            mag += std::fabs(double(x[size_t(i) * k + t]) * w[size_t(j) * k + t]);
          }
          want[size_t(i) * n + j] = acc;
          tol[size_t(i) * n + j] = 2e-6 * mag * std::sqrt(double(k)) + 1e-6;
        }
      const std::string what =
          "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + (with_bias ? " bias" : "");
      expect_close(y, want, tol, "fast " + what);
      expect_close(y_ref, want, tol, "ref " + what);
      expect_close(y_v1, want, tol, "v1 " + what);
    }
  }
}

}  // namespace

TEST(Matmul, FastMatchesNaiveOnShapesWithTails) {
  std::mt19937 rng(7);
  std::vector<std::array<int, 3>> shapes;
  for (int m = 1; m <= 33; ++m) shapes.push_back({m, 1 + 2 * (m % 7) + (m > 20 ? 40 : 0), 1 + 2 * ((m * 5) % 13)});
  // Larger ones spread over threads and blocks; K not a multiple of 8, N not a multiple of the tiles.
  shapes.insert(shapes.end(), {{1, 1001, 577}, {3, 259, 131}, {33, 129, 65}, {70, 67, 9}, {1, 8, 8}, {2, 4, 8}});
  check_matmul_shapes(shapes, rng);
}

// The packed path (M >= 10) and its blocks: 16-row X panels (8-row half panels), 6-row W strips, M blocks of 128,
// N blocks of 96, K blocks of <= 640 (K = 641 and 1537 split unevenly). Each shape sits on or just past an edge.
TEST(Matmul, PackedPathBlockEdges) {
  std::mt19937 rng(11);
  // clang-format off
  const std::vector<std::array<int, 3>> shapes = {
      {9, 6, 1}, {10, 7, 1}, {11, 6, 2}, {16, 6, 8}, {17, 13, 3}, {15, 5, 2}, {24, 12, 33}, {31, 1, 17},
      {16, 96, 640}, {16, 97, 641}, {128, 96, 64}, {129, 95, 65}, {130, 193, 1537}, {144, 192, 576},
      {257, 7, 1281}, {40, 600, 5}, {1, 577, 641}, {4, 97, 1537}};
  // clang-format on
  check_matmul_shapes(shapes, rng);
}

TEST(Matmul, EmptyKWritesBias) {
  for (int m : {1, 20}) {
    const std::vector<float> b = {1.5f, -2.0f, 3.0f};
    std::vector<float> y(size_t(m) * 3, kNaN), y0(y.size(), kNaN);
    cpu::matmul(nullptr, nullptr, b.data(), y.data(), m, 3, 0);
    cpu::matmul(nullptr, nullptr, nullptr, y0.data(), m, 3, 0);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < 3; ++j) {
        EXPECT_EQ(y[size_t(i) * 3 + j], b[j]);
        EXPECT_EQ(y0[size_t(i) * 3 + j], 0.0f);
      }
  }
}

TEST(Matmul, ZeroRowsWritesNothing) {
  std::vector<float> y(4, kNaN), x(8, 1.0f), w(8, 1.0f);
  cpu::matmul(x.data(), w.data(), nullptr, y.data(), 0, 1, 8);
  EXPECT_TRUE(std::isnan(y[0]));
}

TEST(RmsNorm, MatchesNaive) {
  std::mt19937 rng(3);
  const int rows = 5, dim = 37;
  const auto x = randn(rows * dim, rng, 3.0f), g = randn(dim, rng);
  std::vector<float> y(rows * dim, kNaN);
  cpu::rmsnorm(x.data(), g.data(), y.data(), rows, dim, 1e-5f);
  std::vector<double> want(y.size()), tol(y.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int i = 0; i < dim; ++i) {
      want[r * dim + i] = x[r * dim + i] * inv * g[i];
      tol[r * dim + i] = 1e-6 * (1 + std::fabs(want[r * dim + i]));
    }
  }
  expect_close(y, want, tol, "rmsnorm");
  // In place gives the same.
  std::vector<float> z = x;
  cpu::rmsnorm(z.data(), g.data(), z.data(), rows, dim, 1e-5f);
  EXPECT_EQ(z, y);
}

TEST(Rope, DefaultAndLinearInvFreq) {
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 10000.0f;
  auto f = cpu::rope_inv_freq(c);
  ASSERT_EQ(f.size(), 32u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.74989420933f);   // 10000^(-2/64)
  EXPECT_FLOAT_EQ(f[31], 1.33352143e-4f);  // 10000^(-62/64)
  c.rope_scaling.type = RopeScaling::Type::Linear;
  c.rope_scaling.factor = 4.0f;
  auto g = cpu::rope_inv_freq(c);
  for (size_t i = 0; i < f.size(); ++i) EXPECT_FLOAT_EQ(g[i], f[i] / 4.0f) << i;
}

TEST(Rope, Llama3InvFreqMatchesHandComputedValues) {
  // Llama 3.1: theta 500000, head_dim 128, factor 8, low 1, high 4, original context 8192.
  // Wavelengths 2*pi/f below 8192/4 = 2048 keep f; above 8192/1 are divided by 8; between, blended with
  // smooth = (8192/wavelen - 1)/3: i = 30 has wavelen 2948.30, smooth 0.59284, f 0.00213112 -> 0.00137189.
  ModelConfig c;
  c.head_dim = 128;
  c.rope_theta = 500000.0f;
  c.rope_scaling = {RopeScaling::Type::Llama3, 8.0f, 1.0f, 4.0f, 8192};
  const auto f = cpu::rope_inv_freq(c);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.8146172338565447f);
  EXPECT_FLOAT_EQ(f[20], 0.016560440080994446f);   // high frequency: unchanged
  EXPECT_FLOAT_EQ(f[30], 0.0013718935677611381f);  // medium: blended
  EXPECT_FLOAT_EQ(f[40], 3.428102195952591e-05f);  // low: / 8
  EXPECT_FLOAT_EQ(f[45], 1.2297638677963614e-05f);
  EXPECT_FLOAT_EQ(f[63], 3.068925988914511e-07f);
}

TEST(Rope, RotateHalfMatchesNaiveAndIsRelative) {
  std::mt19937 rng(5);
  ModelConfig c;
  c.head_dim = 16;
  c.rope_theta = 10000.0f;
  const auto inv = cpu::rope_inv_freq(c);
  const int tokens = 3, heads = 2, D = 16, pos0 = 5;
  const auto x = randn(tokens * heads * D, rng);
  auto y = x;
  cpu::rope_apply(y.data(), tokens, heads, D, pos0, inv.data());
  std::vector<double> want(y.size()), tol(y.size(), 1e-5);
  for (int t = 0; t < tokens; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < D / 2; ++i) {
        const double a = double(pos0 + t) * inv[i];
        const float* v = x.data() + (t * heads + h) * D;
        want[(t * heads + h) * D + i] = v[i] * std::cos(a) - v[i + D / 2] * std::sin(a);
        want[(t * heads + h) * D + i + D / 2] = v[i + D / 2] * std::cos(a) + v[i] * std::sin(a);
      }
  expect_close(y, want, tol, "rope");
  // q.k depends only on the distance between positions.
  auto q = randn(D, rng), k = randn(D, rng);
  auto dot_at = [&](int pq, int pk) {
    auto a = q, b = k;
    cpu::rope_apply(a.data(), 1, 1, D, pq, inv.data());
    cpu::rope_apply(b.data(), 1, 1, D, pk, inv.data());
    double s = 0;
    for (int i = 0; i < D; ++i) s += double(a[i]) * b[i];
    return s;
  };
  EXPECT_NEAR(dot_at(7, 3), dot_at(107, 103), 1e-4);
  EXPECT_GT(std::fabs(dot_at(7, 3) - dot_at(7, 6)), 1e-3);
}

TEST(SiluMul, MatchesFormula) {
  const std::vector<float> g = {-20.f, -1.f, 0.f, 0.5f, 3.f, 30.f}, u = {1.f, 2.f, 3.f, -4.f, 5.f, 0.5f};
  std::vector<float> out(g.size(), kNaN);
  cpu::silu_mul(g.data(), u.data(), out.data(), int64_t(g.size()));
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(out[i], g[i] / (1.0 + std::exp(-double(g[i]))) * u[i], 1e-6 * (1 + std::fabs(out[i]))) << i;
}

TEST(Softmax, SumsToOneAndNllMatchesNaive) {
  std::vector<float> x = {1000.f, 999.f, -5.f, 3.f};  // large values must not overflow
  auto p = x;
  cpu::softmax(p.data(), 4);
  double s = 0;
  for (float v : p) s += v;
  EXPECT_NEAR(s, 1.0, 1e-6);
  EXPECT_NEAR(p[0] / p[1], std::exp(1.0), 1e-4);
  const std::vector<float> l = {0.5f, -1.0f, 2.0f};
  const double lse = std::log(std::exp(0.5) + std::exp(-1.0) + std::exp(2.0));
  EXPECT_NEAR(cpu::nll(l.data(), 3, 1), lse + 1.0, 1e-12);
  EXPECT_NEAR(cpu::nll(x.data(), 4, 0), std::log1p(std::exp(-1.0) + std::exp(-1005.0) + std::exp(-997.0)), 1e-9);
  EXPECT_THROW(cpu::nll(l.data(), 3, 3), Error);
}

TEST(Attention, CausalGqaMatchesNaive) {
  std::mt19937 rng(11);
  for (int pos0 : {0, 4}) {
    const int tokens = 3, n_heads = 6, n_kv = 2, D = 12, len = pos0 + tokens, kv_stride = n_kv * D;
    const auto q = randn(tokens * n_heads * D, rng), k = randn(len * kv_stride, rng), v = randn(len * kv_stride, rng);
    std::vector<float> out(q.size(), kNaN);
    const float scale = 1.0f / std::sqrt(float(D));
    cpu::attention(q.data(), k.data(), v.data(), out.data(), tokens, pos0, n_heads, n_kv, D, kv_stride, scale);
    std::vector<double> want(out.size()), tol(out.size(), 1e-5);
    for (int t = 0; t < tokens; ++t)
      for (int h = 0; h < n_heads; ++h) {
        const int g = h / (n_heads / n_kv);
        std::vector<double> s(pos0 + t + 1);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= pos0 + t; ++j) {
          double d = 0;
          for (int c = 0; c < D; ++c) d += double(q[(t * n_heads + h) * D + c]) * k[j * kv_stride + g * D + c];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (double& e : s) sum += e = std::exp(e - mx);
        for (int c = 0; c < D; ++c) {
          double o = 0;
          for (int j = 0; j <= pos0 + t; ++j) o += s[j] / sum * v[j * kv_stride + g * D + c];
          want[(t * n_heads + h) * D + c] = o;
        }
      }
    expect_close(out, want, tol, "attention pos0=" + std::to_string(pos0));
  }
}

TEST(Embedding, LooksUpRowsAndRejectsBadIds) {
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};
  const std::vector<int32_t> ids = {2, 0};
  std::vector<float> out(4, kNaN);
  cpu::embedding(table.data(), 3, 2, ids.data(), 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1}));
  const std::vector<int32_t> bad = {1, 3};
  try {
    cpu::embedding(table.data(), 3, 2, bad.data(), 2, out.data());
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("token id 3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[0, 3)"), std::string::npos) << e.what();
  }
}
