// GPTQ with fixed grids: the factorization it walks, and that on correlated calibration inputs it beats
// round-to-nearest on the same grid by a clear margin, with every code inside the grid's range.
#include <gtest/gtest.h>

#include <cmath>

#include "quant/gptq.h"
#include "quant/linalg.h"
#include "quant/rtn.h"
#include "quant_test_util.h"

using namespace qoq;
using namespace qoq::quant;

TEST(Linalg, InverseUpperCholeskyFactorsTheInverse) {
  const int64_t n = 40;
  const auto b = quant_test::randn(size_t(n * n), 1);
  std::vector<double> a(size_t(n * n), 0.0);  // A = B Bᵀ + I, SPD
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t t = 0; t < n; ++t) a[size_t(i * n + j)] += double(b[i * n + t]) * b[j * n + t];
      if (i == j) a[size_t(i * n + j)] += 1.0;
    }
  std::vector<double> u;
  ASSERT_TRUE(inverse_upper_cholesky(a, n, u));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) ASSERT_EQ(u[size_t(i * n + j)], 0.0);  // upper triangular
  // (Uᵀ U) A = I
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) {
        double inv_ik = 0;
        for (int64_t t = 0; t <= std::min(i, k); ++t) inv_ik += u[size_t(t * n + i)] * u[size_t(t * n + k)];
        s += inv_ik * a[size_t(k * n + j)];
      }
      ASSERT_NEAR(s, i == j ? 1.0 : 0.0, 1e-9) << i << "," << j;
    }
  std::vector<double> indefinite = {1, 2, 2, 1};
  EXPECT_FALSE(inverse_upper_cholesky(indefinite, 2, u));
}

TEST(Linalg, HessianIsXtXInDouble) {
  // K = 200 spans two row blocks, M = 600 three token chunks, added in two calls.
  const int64_t K = 200, M = 600;
  const auto x = quant_test::randn(size_t(M * K), 2);
  Hessian h(K);
  h.add(x.data(), 250);
  h.add(x.data() + 250 * K, M - 250);
  EXPECT_EQ(h.tokens(), M);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t t = 0; t < M; ++t) s += double(x[size_t(t * K + i)]) * x[size_t(t * K + j)];
      ASSERT_NEAR(h.at(i, j), s, 1e-4 * (1 + std::fabs(s))) << i << "," << j;
      ASSERT_EQ(h.at(i, j), h.at(j, i));
    }
}

namespace {

struct Layer {
  int64_t N = 48, K = 256, M = 1024;
  std::vector<float> w, x;
  Hessian h{256};
  explicit Layer(uint32_t seed, bool dead_channel = false) {
    w = quant_test::randn(size_t(N * K), seed, 0.02f);
    x = quant_test::correlated_x(M, K, seed + 1);
    if (dead_channel)
      for (int64_t m = 0; m < M; ++m) x[size_t(m * K + 17)] = 0.f;
    h.add(x.data(), M);
  }
  double error(const QuantWeight& q) const {
    const auto d = q.dequantize();
    return quant_test::output_error(x, M, w.data(), d.data(), N, K);
  }
};

void expect_codes_in_range(const QuantWeight& q) {
  const WeightGrid& g = q.grid;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t k = 0; k < g.K_pad; ++k) {
      const int c = q.codes[size_t(n * g.K_pad + k)];
      ASSERT_GE(c, 0);
      ASSERT_LE(c, 15);
      if (g.format == WeightFormat::W4Group) {
        // GPTQ's updated weights may leave [-119, 119] * s1; the grid's clamp keeps the int8 weight in range.
        ASSERT_LE(std::abs(g.w8(n, k, c)), 127);
      }
    }
}

}  // namespace

TEST(Gptq, BeatsRtnOnThePerChannelGrid) {
  const Layer l(3);
  const ClipResult clip = search_clip_w4_per_channel(l.w.data(), l.N, l.K, &l.h, default_clip_ratios());
  const QuantWeight rtn = round_to_grid(clip.grid, l.w.data());
  GptqStats st;
  const QuantWeight g = gptq_quantize(l.w.data(), clip.grid, l.h, {}, &st);
  expect_codes_in_range(g);
  EXPECT_EQ(st.dead_columns, 0);
  EXPECT_EQ(g.grid.scales, clip.grid.scales);  // the grid is fixed
  const double e_rtn = l.error(rtn), e_gptq = l.error(g);
  EXPECT_LT(e_gptq, 0.8 * e_rtn) << "rtn " << e_rtn << " gptq " << e_gptq;
}

TEST(Gptq, BeatsRtnOnTheProgressiveGroupGrid) {
  for (int64_t group : {128, 64}) {
    const Layer l(5);
    const WeightGrid grid = w4_group_grid(l.w.data(), l.N, l.K, group);
    const QuantWeight rtn = round_to_grid(grid, l.w.data());
    const QuantWeight g = gptq_quantize(l.w.data(), grid, l.h);
    expect_codes_in_range(g);
    const double e_rtn = l.error(rtn), e_gptq = l.error(g);
    EXPECT_LT(e_gptq, 0.8 * e_rtn) << "group " << group << ": rtn " << e_rtn << " gptq " << e_gptq;
  }
}

TEST(Gptq, ActOrderOffAndSmallBlocksStillBeatRtn) {
  const Layer l(7);
  const WeightGrid grid = w4_per_channel_minmax_grid(l.w.data(), l.N, l.K);
  const double e_rtn = l.error(round_to_grid(grid, l.w.data()));
  GptqOptions opts;
  opts.act_order = false;
  opts.block = 32;  // several lazy-batch blocks, exercising the cross-block update
  const double e_gptq = l.error(gptq_quantize(l.w.data(), grid, l.h, opts));
  EXPECT_LT(e_gptq, 0.8 * e_rtn);
  // Block size changes only the order of float operations, not the algorithm.
  opts.block = 256;
  EXPECT_NEAR(l.error(gptq_quantize(l.w.data(), grid, l.h, opts)), e_gptq, 0.05 * e_gptq);
}

TEST(Gptq, DeadInputChannelIsRoundedToNearest) {
  const Layer l(9, /*dead_channel=*/true);
  const WeightGrid grid = w4_group_grid(l.w.data(), l.N, l.K, 128);
  const QuantWeight rtn = round_to_grid(grid, l.w.data());
  GptqStats st;
  const QuantWeight g = gptq_quantize(l.w.data(), grid, l.h, {}, &st);
  EXPECT_EQ(st.dead_columns, 1);
  expect_codes_in_range(g);
  for (int64_t n = 0; n < l.N; ++n) EXPECT_EQ(g.codes[size_t(n * l.K + 17)], rtn.codes[size_t(n * l.K + 17)]) << n;
  EXPECT_LT(l.error(g), 0.8 * l.error(rtn));
}

TEST(Gptq, PaddedGroupsAndW8) {
  // K = 200 with groups of 128: GPTQ quantizes the 200 real columns; padding holds the code of 0.
  const int64_t N = 16, K = 200, M = 600;
  const auto w = quant_test::randn(size_t(N * K), 21, 0.02f);
  const auto x = quant_test::correlated_x(M, K, 22);
  Hessian h(K);
  h.add(x.data(), M);
  const WeightGrid grid = w4_group_grid(w.data(), N, K, 128);
  const QuantWeight g = gptq_quantize(w.data(), grid, h);
  ASSERT_EQ(g.grid.K_pad, 256);
  expect_codes_in_range(g);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = K; k < 256; ++k) ASSERT_EQ(g.grid.w8(n, k, g.codes[size_t(n * 256 + k)]), 0);
  const auto dg = g.dequantize(), dr = round_to_grid(grid, w.data()).dequantize();
  EXPECT_LT(quant_test::output_error(x, M, w.data(), dg.data(), N, K),
            0.8 * quant_test::output_error(x, M, w.data(), dr.data(), N, K));

  const WeightGrid g8 = w8_grid(w.data(), N, K);
  const QuantWeight q8 = gptq_quantize(w.data(), g8, h);
  for (int8_t c : q8.codes) ASSERT_GE(c, -127);
  const auto d8 = q8.dequantize(), r8 = round_to_grid(g8, w.data()).dequantize();
  EXPECT_LT(quant_test::output_error(x, M, w.data(), d8.data(), N, K),
            0.8 * quant_test::output_error(x, M, w.data(), r8.data(), N, K));
}
