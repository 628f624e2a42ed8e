// The residual-stream rotation: Hadamard constructions for every hidden size we support, the random fallback, and
// that rotating a tiny norm -> linear -> residual block leaves its output unchanged up to the rotation.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/matmul.h"
#include "quant/hadamard.h"
#include "quant/rotation.h"
#include "quant_test_util.h"

using namespace qoq;
using namespace qoq::quant;

namespace {

// max |(R Rᵀ)[i][j] - δij| over the rows `rows` of R against all rows.
double orthogonality_error(const Rotation& r, const std::vector<int64_t>& rows) {
  const int64_t n = r.size;
  std::vector<float> sub(rows.size() * size_t(n)), prod(rows.size() * size_t(n));
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy(r.r.begin() + rows[i] * n, r.r.begin() + (rows[i] + 1) * n, sub.begin() + i * n);
  cpu::matmul(sub.data(), r.r.data(), nullptr, prod.data(), int64_t(rows.size()), n, n);
  double worst = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t j = 0; j < n; ++j) worst = std::max(worst, std::fabs(prod[i * n + j] - (j == rows[i] ? 1.0 : 0.0)));
  return worst;
}

std::vector<int64_t> rows_to_check(int64_t n) {
  std::vector<int64_t> rows;
  if (n <= 1024) {
    for (int64_t i = 0; i < n; ++i) rows.push_back(i);
  } else {
    // All rows against a spread of rows (first, last, both sides of Kronecker block boundaries, and a stride).
    for (int64_t i = 0; i < n; i += n / 24) rows.push_back(i);
    for (int64_t i : {int64_t(1), n / 2 - 1, n / 2, n - 2, n - 1}) rows.push_back(i);
  }
  return rows;
}

}  // namespace

TEST(Hadamard, PaleyOrdersAreExactHadamardMatrices) {
  // 12, 20, 44, 60, 108: Paley I (11, 19, 43, 59, 107 prime ≡ 3 mod 4); 28, 36, 76: Paley II (13, 17, 37 ≡ 1 mod 4);
  // 52: Paley II over GF(5^2) and 244: Paley I over GF(3^5), the prime-power fields.
  for (int64_t k : {12, 20, 28, 36, 44, 52, 60, 76, 108, 244}) {
    int64_t order = 0;
    const auto h = hadamard_pm1(k, &order);
    ASSERT_EQ(order, k) << k;
    ASSERT_EQ(int64_t(h.size()), k * k);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) {
        int64_t s = 0;
        for (int64_t t = 0; t < k; ++t) s += h[size_t(i * k + t)] * h[size_t(j * k + t)];
        ASSERT_EQ(s, i == j ? k : 0) << "order " << k << " at " << i << "," << j;
      }
  }
}

TEST(Hadamard, ChoosesTheSmallestPaleyFactor) {
  EXPECT_EQ(hadamard_paley_order(64), 1);
  EXPECT_EQ(hadamard_paley_order(576), 36);   // SmolLM2-135M: 36 x 16
  EXPECT_EQ(hadamard_paley_order(896), 28);   // Qwen2-0.5B: 28 x 32
  EXPECT_EQ(hadamard_paley_order(960), 60);   // SmolLM2-360M: 60 x 16
  EXPECT_EQ(hadamard_paley_order(1536), 12);  // 12 x 128
  EXPECT_EQ(hadamard_paley_order(3072), 12);  // 12 x 256
  EXPECT_EQ(hadamard_paley_order(3584), 28);  // Qwen2-7B: 28 x 128
  EXPECT_EQ(hadamard_paley_order(5120), 20);  // 20 x 256
  EXPECT_EQ(hadamard_paley_order(172), 0);    // 4 x 43: no construction
  EXPECT_EQ(hadamard_paley_order(6), 0);
}

TEST(Hadamard, RotationsForModelWidthsAreOrthogonalHadamard) {
  for (int64_t n : {12, 20, 28, 36, 44, 52, 60, 64, 576, 896, 960, 1536, 2048, 3072, 3584, 4096, 5120, 8192}) {
    const Rotation r = make_rotation(n);
    ASSERT_NE(r.kind, RotationKind::Random) << n;
    ASSERT_EQ(int64_t(r.r.size()), n * n);
    const float mag = float(1.0 / std::sqrt(double(n)));
    for (float v : r.r) ASSERT_EQ(std::fabs(v), mag) << n;
    EXPECT_LT(orthogonality_error(r, rows_to_check(n)), 1e-5) << n;
  }
  EXPECT_EQ(make_rotation(2048).kind, RotationKind::Sylvester);
  EXPECT_EQ(make_rotation(576).describe(), "paley 36 x 16");
}

TEST(Hadamard, RandomFallbackIsOrthogonalAndSeeded) {
  const Rotation a = make_rotation(172, 7), b = make_rotation(172, 7), c = make_rotation(172, 8);
  EXPECT_EQ(a.kind, RotationKind::Random);
  EXPECT_EQ(a.r, b.r);
  EXPECT_NE(a.r, c.r);
  EXPECT_LT(orthogonality_error(a, rows_to_check(172)), 1e-5);
}

// x -> x + W2 (rmsnorm(x) * γ W1ᵀ) + b2, with x' = x R: after fusing γ into W1 and rotating, the block maps x R to
// (its old output) R.
TEST(Rotation, NormFusionAndRotationPreserveTheResidualStream) {
  const int64_t H = 36, F = 20, M = 5;
  const auto x = quant_test::randn(size_t(M * H), 1);
  const auto gamma = quant_test::randn(size_t(H), 2);
  Tensor w1 = Tensor::from_vector(quant_test::randn(size_t(F * H), 3), {F, H});
  Tensor w2 = Tensor::from_vector(quant_test::randn(size_t(H * F), 4), {H, F});
  Tensor b2 = Tensor::from_vector(quant_test::randn(size_t(H), 5), {H});
  auto block = [&](const std::vector<float>& in, const Tensor& a, const Tensor& b, const Tensor& bias, const float* g) {
    std::vector<float> out(in);
    for (int64_t m = 0; m < M; ++m) {
      double ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += double(in[m * H + i]) * in[m * H + i];
      const double inv = 1.0 / std::sqrt(ss / H + 1e-6);
      std::vector<double> h(F, 0.0);
      for (int64_t f = 0; f < F; ++f)
        for (int64_t i = 0; i < H; ++i) h[f] += in[m * H + i] * inv * (g ? g[i] : 1.0) * a.data<float>()[f * H + i];
      for (int64_t i = 0; i < H; ++i) {
        double y = bias.data<float>()[i];
        for (int64_t f = 0; f < F; ++f) y += h[f] * b.data<float>()[i * F + f];
        out[m * H + i] += float(y);
      }
    }
    return out;
  };
  const auto ref = block(x, w1, w2, b2, gamma.data());
  const Rotation r = make_rotation(H);
  fuse_norm(w1, gamma);
  rotate_reader(w1, r);
  rotate_writer(w2, &b2, r);
  std::vector<float> xr(size_t(M * H), 0.f), ref_r(size_t(M * H), 0.f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < H; ++j)
      for (int64_t i = 0; i < H; ++i) {
        xr[m * H + j] += x[m * H + i] * r.r[i * H + j];
        ref_r[m * H + j] += ref[m * H + i] * r.r[i * H + j];
      }
  const auto got = block(xr, w1, w2, b2, nullptr);
  double scale = 0;
  for (float v : ref_r) scale = std::max(scale, double(std::fabs(v)));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref_r[i], 1e-4 * scale) << i;
}
