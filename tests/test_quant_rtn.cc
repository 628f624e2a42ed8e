// Weight grids and RTN: the progressive g128 invariants the GPU's byte trick relies on, bit-exact agreement with
// the integer-GEMM reference's own quantizers, adversarial rows, padding, and the clipping search.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/qgemm_ref.h"
#include "qoq/half.h"
#include "quant/grid.h"
#include "quant/rtn.h"
#include "quant_test_util.h"

using namespace qoq;
using namespace qoq::quant;

namespace {

// Rows that try to break the progressive scheme: random, constant (both signs), zero, one huge outlier, all
// negative, all positive, tiny, and alternating extremes.
std::vector<float> adversarial_rows(int64_t N, int64_t K, uint32_t seed) {
  std::vector<float> w = quant_test::randn(size_t(N * K), seed, 0.05f);
  auto row = [&](int64_t n) { return w.data() + n * K; };
  for (int64_t k = 0; k < K; ++k) {
    row(0)[k] = 0.37f;                          // constant positive
    row(1)[k] = -1.5f;                          // constant negative
    row(2)[k] = 0.f;                            // zero
    row(4)[k] = -std::fabs(row(4)[k]) - 0.01f;  // all negative
    row(5)[k] = std::fabs(row(5)[k]) + 3.f;     // all positive, far from 0
    row(6)[k] *= 1e-6f;                         // tiny
    row(7)[k] = (k % 2 ? 1.f : -1.f) * 100.f;   // alternating extremes
  }
  row(3)[K / 3] = 500.f;  // one huge outlier in an otherwise small row
  return w;
}

void expect_progressive_invariants(const QuantWeight& q) {
  const WeightGrid& g = q.grid;
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t b = 0; b < g.groups_per_row(); ++b) {
      const int s2 = g.gscales[size_t(n * g.groups_per_row() + b)], z = g.gzeros[size_t(n * g.groups_per_row() + b)];
      ASSERT_GE(s2, 1);
      ASSERT_LE(s2, 16);
      ASSERT_LE(z, 15);
    }
    for (int64_t k = 0; k < g.K_pad; ++k) {
      const int c = q.codes[size_t(n * g.K_pad + k)];
      ASSERT_GE(c, 0);
      ASSERT_LE(c, 15);
      const int s2 = g.gscales[size_t(n * g.groups_per_row() + k / g.group)];
      ASSERT_LE(c * s2, 240) << n << "," << k;  // four codes x s2 in one 32-bit multiply never carry across bytes
      const int w8 = g.w8(n, k, c);
      ASSERT_GE(w8, -127) << n << "," << k;
      ASSERT_LE(w8, 127) << n << "," << k;
      if (k >= g.K) {
        ASSERT_EQ(w8, 0) << "padding must dequantize to exactly 0";
      }
    }
  }
}

}  // namespace

TEST(Progressive, InvariantsHoldOnRandomAndAdversarialRows) {
  for (int64_t group : {128, 64, 32})
    for (int64_t K : {int64_t(256), int64_t(200), int64_t(576)}) {  // 200: padded to the group
      const int64_t N = 12;
      const auto w = adversarial_rows(N, K, uint32_t(K + group));
      const QuantWeight q = round_to_grid(w4_group_grid(w.data(), N, K, group), w.data());
      ASSERT_EQ(q.grid.K_pad % group, 0);
      ASSERT_GE(q.grid.K_pad, K);
      ASSERT_LT(q.grid.K_pad - K, group);
      expect_progressive_invariants(q);
    }
}

TEST(Progressive, AdversarialRowsReconstruct) {
  const int64_t N = 12, K = 256;
  const auto w = adversarial_rows(N, K, 3);
  const QuantWeight q = round_to_grid(w4_group_grid(w.data(), N, K, 128), w.data());
  const auto d = q.dequantize();
  // Constant rows (the whole range on one side of 0) reconstruct within one level-2 step of s1 * s2.
  for (int64_t n : {0, 1, 4, 5}) {
    float amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(w[size_t(n * K + k)]));
    for (int64_t k = 0; k < K; ++k)
      ASSERT_NEAR(d[size_t(n * K + k)], w[size_t(n * K + k)], amax * 16.f / 119.f * 0.51f) << n << "," << k;
  }
  for (int64_t k = 0; k < K; ++k) ASSERT_EQ(d[size_t(2 * K + k)], 0.f);  // zero row stays zero
  EXPECT_NEAR(d[size_t(3 * K + K / 3)], 500.f, 500.f * 8.f / 119.f);     // the outlier survives
  EXPECT_NEAR(d[size_t(7 * K)], -100.f, 100.f * 8.f / 119.f);
}

TEST(Progressive, MatchesTheIntegerGemmReferenceBitExactly) {
  // On rows whose groups straddle 0 (all real weight rows) our grid is DESIGN §3's formula, which
  // ref::quantize_w4_group implements: the checkpoint and the reference GEMM see the same codes.
  const int64_t N = 24, K = 512;
  auto w = quant_test::randn(size_t(N * K), 9, 0.02f);
  for (int64_t n = 0; n < N; n += 5) w[size_t(n * K + (n * 13) % K)] = 0.4f;
  const QuantWeight q = round_to_grid(w4_group_grid(w.data(), N, K, 128), w.data());
  const auto r = ref::quantize_w4_group(w.data(), int(N), int(K), 128);
  for (int64_t n = 0; n < N; ++n) {
    ASSERT_EQ(float_to_half(q.grid.scales[n]), r.scales[n]);
    for (int64_t b = 0; b < K / 128; ++b) {
      ASSERT_EQ(q.grid.gscales[size_t(n * 4 + b)], r.gscales[size_t(n * 4 + b)]);
      ASSERT_EQ(q.grid.gzeros[size_t(n * 4 + b)], r.gzeros[size_t(n * 4 + b)]);
    }
  }
  for (size_t i = 0; i < q.codes.size(); ++i) ASSERT_EQ(q.codes[i], r.q[i]) << i;
}

TEST(PerChannel, MinMaxGridMatchesReferenceAndBoundsError) {
  const int64_t N = 16, K = 300;
  const auto w = quant_test::randn(size_t(N * K), 4, 0.03f);
  const QuantWeight q = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
  const auto r = ref::quantize_w4_per_channel(w.data(), int(N), int(K));
  const auto d = q.dequantize();
  for (int64_t n = 0; n < N; ++n) {
    ASSERT_EQ(float_to_half(q.grid.scales[n]), r.scales[n]);
    ASSERT_EQ(q.grid.zeros[n], r.zeros[n]);
    const float s = q.grid.scales[n];
    for (int64_t k = 0; k < K; ++k) {
      ASSERT_EQ(q.codes[size_t(n * K + k)], r.q[size_t(n * K + k)]);
      // Half a step, plus the slack of an fp16-rounded scale at the ends of the 15-step range.
      ASSERT_LE(std::fabs(d[size_t(n * K + k)] - w[size_t(n * K + k)]), s * (0.5f + 16.f / 2048.f)) << n << "," << k;
    }
  }
}

TEST(PerChannel, OneSidedRowsKeepTheirRange) {
  // An all-negative / all-positive row: the grid spans [min(lo, 0), max(hi, 0)] so the far end is representable
  // (with lo..hi alone and z clamped to [0, 15], the row would collapse onto a 15-step range near 0).
  const int64_t K = 64;
  std::vector<float> w(size_t(2 * K));
  for (int64_t k = 0; k < K; ++k) w[k] = -2.f - 0.01f * float(k), w[K + k] = 5.f + 0.02f * float(k);
  const QuantWeight q = round_to_grid(w4_per_channel_minmax_grid(w.data(), 2, K), w.data());
  const auto d = q.dequantize();
  for (int64_t i = 0; i < 2 * K; ++i) ASSERT_NEAR(d[i], w[i], 0.51f * q.grid.scales[i / K] * 1.01f) << i;
}

TEST(PerChannel, OneSidedRowsMatchTheGemmReferenceToo) {
  // One quantizer rule everywhere: the GEMM tests' reference quantizer and the checkpoint grids agree on rows that
  // do not straddle 0 as well (both widen the range to include 0).
  const int64_t N = 4, K = 256;
  std::vector<float> w(size_t(N * K));
  for (int64_t k = 0; k < K; ++k) {
    w[size_t(k)] = -2.f - 0.01f * float(k);
    w[size_t(K + k)] = 5.f + 0.02f * float(k);
    w[size_t(2 * K + k)] = 0.1f + 0.001f * float(k % 128);
    w[size_t(3 * K + k)] = k < 128 ? -0.3f - 0.001f * float(k) : 0.2f;
  }
  const QuantWeight pc = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
  const auto rpc = ref::quantize_w4_per_channel(w.data(), int(N), int(K));
  for (int64_t n = 0; n < N; ++n) {
    ASSERT_EQ(float_to_half(pc.grid.scales[n]), rpc.scales[n]);
    ASSERT_EQ(pc.grid.zeros[n], rpc.zeros[n]);
  }
  for (size_t i = 0; i < pc.codes.size(); ++i) ASSERT_EQ(pc.codes[i], rpc.q[i]) << i;
  const QuantWeight g = round_to_grid(w4_group_grid(w.data(), N, K, 128), w.data());
  const auto rg = ref::quantize_w4_group(w.data(), int(N), int(K), 128);
  for (size_t i = 0; i < g.grid.gscales.size(); ++i) {
    ASSERT_EQ(g.grid.gscales[i], rg.gscales[i]) << i;
    ASSERT_EQ(g.grid.gzeros[i], rg.gzeros[i]) << i;
  }
  for (size_t i = 0; i < g.codes.size(); ++i) ASSERT_EQ(g.codes[i], rg.q[i]) << i;
}

TEST(PerChannel, OddKIsPaddedToEvenWithZeroCodes) {
  const int64_t N = 3, K = 7;
  const auto w = quant_test::randn(size_t(N * K), 5);
  const QuantWeight q = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
  ASSERT_EQ(q.grid.K_pad, 8);
  for (int64_t n = 0; n < N; ++n) EXPECT_EQ(q.grid.value(n, 7, q.codes[size_t(n * 8 + 7)]), 0.f);
}

TEST(W8, MatchesReference) {
  const int64_t N = 8, K = 100;
  auto w = quant_test::randn(size_t(N * K), 6);
  for (int64_t k = 0; k < K; ++k) w[size_t(2 * K + k)] = 0.f;
  const QuantWeight q = round_to_grid(w8_grid(w.data(), N, K), w.data());
  const auto r = ref::quantize_w8(w.data(), int(N), int(K));
  for (int64_t n = 0; n < N; ++n) ASSERT_EQ(float_to_half(q.grid.scales[n]), r.scales[n]);
  for (size_t i = 0; i < q.codes.size(); ++i) ASSERT_EQ(q.codes[i], r.w[i]);
  EXPECT_EQ(q.grid.scales[2], 1.f);
}

TEST(Clip, RatiosAreTheDesignGrid) {
  const auto r = default_clip_ratios();
  ASSERT_EQ(r.size(), 81u);
  EXPECT_EQ(r.front(), 1.f);
  EXPECT_EQ(r[1], 0.99f);
  EXPECT_EQ(r.back(), 0.2f);
}

TEST(Clip, SearchNeverHurtsAndHelpsOutlierRows) {
  const int64_t N = 32, K = 200, M = 512;  // K spans a full and a partial block of the symmetric e H eᵀ
  const auto w = quant_test::heavy_tailed(size_t(N * K), 11);
  const auto x = quant_test::correlated_x(M, K, 12);
  Hessian h(K);
  h.add(x.data(), M);
  const ClipResult c = search_clip_w4_per_channel(w.data(), N, K, &h, default_clip_ratios());
  const QuantWeight clipped = round_to_grid(c.grid, w.data());
  const QuantWeight plain = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
  // The reported errors are e H eᵀ of the grids they describe (recomputed here from the tokens, in double).
  const auto dc = clipped.dequantize(), dp = plain.dequantize();
  double sum_c = 0, sum_p = 0;
  int clipped_rows = 0;
  for (int64_t n = 0; n < N; ++n) {
    const double ec = quant_test::output_error(x, M, w.data() + n * K, dc.data() + n * K, 1, K);
    const double ep = quant_test::output_error(x, M, w.data() + n * K, dp.data() + n * K, 1, K);
    EXPECT_NEAR(c.error[n], ec, 1e-3 * ep) << n;
    EXPECT_NEAR(c.error_unclipped[n], ep, 1e-3 * ep) << n;
    EXPECT_LE(ec, ep * (1 + 1e-6)) << n;  // r = 1 is a candidate: clipping can only help
    sum_c += ec, sum_p += ep;
    clipped_rows += c.ratio[n] < 1.f;
  }
  EXPECT_GT(clipped_rows, N / 2);  // heavy tails: most rows prefer clipping
  EXPECT_LT(sum_c, 0.8 * sum_p);
}

TEST(Clip, WithoutCalibrationMinimizesWeightError) {
  const int64_t N = 8, K = 256;
  const auto w = quant_test::heavy_tailed(size_t(N * K), 13);
  const ClipResult c = search_clip_w4_per_channel(w.data(), N, K, nullptr, default_clip_ratios());
  const auto e = row_errors(w.data(), round_to_grid(c.grid, w.data()), nullptr);
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_NEAR(e[n], c.error[n], 1e-6 * c.error[n]);
    EXPECT_LE(c.error[n], c.error_unclipped[n]);
  }
}
