// The CPU reference of the integer GEMMs (DESIGN §3) and the byte tricks the GPU kernels use.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/qgemm_ref.h"
#include "kernels/cuda/gemm/dequant.h"
#include "kernels/cuda/gemm/layout.h"
#include "qoq/half.h"

using namespace qoq;

namespace {
std::vector<float> randn(size_t n, uint32_t seed, float sigma = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to_half(d(rng));  // the GPU sees fp16 activations
  return v;
}
}  // namespace

TEST(QGemmRef, ActivationQuantMatchesDefinition) {
  const int M = 5, K = 300;
  auto x = randn(size_t(M) * K, 1, 3.f);
  for (int k = 0; k < K; ++k) x[2 * K + k] = 0.f;  // an all-zero row: scale 1, codes 0
  x[3 * K + 7] = -50.f;                            // |max| at a negative value maps to -127
  const auto a = ref::quantize_activations(x.data(), M, K);
  EXPECT_EQ(a.scales[2], 1.f);
  EXPECT_EQ(a.sums[2], 0);
  EXPECT_EQ(a.codes[size_t(3) * K + 7], -127);
  for (int m = 0; m < M; ++m) {
    int32_t sum = 0;
    float amax = 0;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[size_t(m) * K + k]));
    for (int k = 0; k < K; ++k) {
      const int c = a.codes[size_t(m) * K + k];
      EXPECT_LE(std::abs(c), 127);
      if (amax > 0) EXPECT_LE(std::fabs(c * a.scales[m] - x[size_t(m) * K + k]), 0.5f * a.scales[m] * 1.0001f);
      sum += c;
    }
    EXPECT_EQ(sum, a.sums[m]) << m;
  }
}

TEST(QGemmRef, ActivationRoundsHalfToEven) {
  // amax = 127 makes the multiplier exactly 1, so x = 2.5 and 3.5 are exact ties.
  const float x[4] = {127.f, 2.5f, 3.5f, -2.5f};
  const auto a = ref::quantize_activations(x, 1, 4);
  EXPECT_EQ(a.codes[1], 2);
  EXPECT_EQ(a.codes[2], 4);
  EXPECT_EQ(a.codes[3], -2);
  EXPECT_EQ(a.sums[0], 127 + 2 + 4 - 2);
}

TEST(QGemmRef, ProgressiveQuantStaysInInt8AndByteRange) {
  const int N = 64, K = 512;
  auto w = randn(size_t(N) * K, 2);
  for (int n = 0; n < N; n += 3) w[size_t(n) * K + (n * 7) % K] *= 40.f;  // outliers stretch some groups
  for (int k = 0; k < 128; ++k) w[size_t(5) * K + k] = 0.25f;             // a flat group
  const auto q = ref::quantize_w4_group(w.data(), N, K);
  double err = 0, ref = 0;
  for (int n = 0; n < N; ++n) {
    const float s1 = half_to_float(q.scales[n]);
    for (int k = 0; k < K; ++k) {
      const size_t g = size_t(n) * (K / 128) + k / 128;
      ASSERT_GE(q.gscales[g], 1);
      ASSERT_LE(q.gscales[g], 16);
      ASSERT_LE(int(q.q[size_t(n) * K + k]) * q.gscales[g], 240);
      ASSERT_LE(std::abs(q.w8(n, k)), 127);
      const double d = s1 * q.w8(n, k) - w[size_t(n) * K + k];
      err += d * d;
      ref += double(w[size_t(n) * K + k]) * w[size_t(n) * K + k];
    }
  }
  EXPECT_LT(std::sqrt(err / ref), 0.2);  // 4-bit groups: a sanity bound that a wrong scale or zero breaks
}

TEST(QGemmRef, PerChannelQuantReconstructs) {
  const int N = 16, K = 256;
  const auto w = randn(size_t(N) * K, 3);
  const auto q = ref::quantize_w4_per_channel(w.data(), N, K);
  for (int n = 0; n < N; ++n) {
    const float s = half_to_float(q.scales[n]);
    for (int k = 0; k < K; ++k) {
      ASSERT_LE(q.q[size_t(n) * K + k], 15);
      EXPECT_LE(std::fabs(s * (q.q[size_t(n) * K + k] - q.zeros[n]) - w[size_t(n) * K + k]), 0.51f * s);
    }
  }
}

TEST(QGemmRef, PackNibblesIsCanonical) {
  const std::vector<uint8_t> q = {1, 2, 3, 4, 15, 0, 7, 9};
  const auto p = ref::pack_nibbles(q, 2, 4);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0], 0x21);  // low nibble = even k
  EXPECT_EQ(p[1], 0x43);
  EXPECT_EQ(p[2], 0x0F);
  EXPECT_EQ(p[3], 0x97);
  EXPECT_EQ(ref::unpack_nibbles(p, 2, 4), q);
}

TEST(QGemmRef, ByteTrickEqualsPlainFormulaExhaustively) {
  // Every (s2, z), every valid code in each byte lane (|s2 (q - z)| <= 127, as the quantizer guarantees), with the
  // other lanes holding other valid codes, so carries between lanes would show.
  for (uint32_t s2 = 1; s2 <= 16; ++s2)
    for (uint32_t z = 0; z <= 15; ++z) {
      const auto c = cuda::g128_consts(s2, z);
      std::vector<uint32_t> valid;
      for (uint32_t q = 0; q < 16; ++q)
        if (std::abs(int(s2) * (int(q) - int(z))) <= 127) valid.push_back(q);
      ASSERT_FALSE(valid.empty());
      const size_t n = valid.size();
      for (size_t i0 = 0; i0 < n; ++i0)
        for (size_t i1 = 0; i1 < n; ++i1) {
          const uint32_t qs[4] = {valid[i0], valid[i1], valid[(i0 + i1) % n], valid[(n - 1 - i0)]};
          const uint32_t word = qs[0] | qs[1] << 8 | qs[2] << 16 | qs[3] << 24;
          const uint32_t r = cuda::g128_dequant(word, c);
          const uint32_t rb = cuda::g128_dequant_biased(word, c);  // the kernels' form: unsigned w8 + 128
          for (int b = 0; b < 4; ++b) {
            ASSERT_EQ(int(int8_t(r >> (8 * b))), int(s2) * (int(qs[b]) - int(z)))
                << "s2=" << s2 << " z=" << z << " q=" << qs[b] << " lane " << b;
            ASSERT_EQ(int((rb >> (8 * b)) & 0xFF), int(s2) * (int(qs[b]) - int(z)) + 128) << "biased, lane " << b;
          }
        }
    }
}

TEST(QGemmRef, NibbleSplitMatchesUnpack) {
  const uint32_t x = 0x9A3F0C71u;
  EXPECT_EQ(cuda::low_nibbles(x), 0x0A0F0C01u);
  EXPECT_EQ(cuda::high_nibbles(x), 0x09030007u);
}

TEST(QGemmRef, PerChannelZeroFoldEqualsDequantizedProduct) {
  // sum_k a*(q - z) == acc - z*asum: the integer zero fold of the per-channel epilogue is exact.
  const int M = 3, N = 8, K = 192;
  const auto x = randn(size_t(M) * K, 4);
  const auto wf = randn(size_t(N) * K, 5);
  const auto a = ref::quantize_activations(x.data(), M, K);
  const auto w = ref::quantize_w4_per_channel(wf.data(), N, K);
  const auto acc = ref::acc_w4_per_channel(a, w);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      int64_t d = 0;
      for (int k = 0; k < K; ++k) d += int64_t(a.codes[size_t(m) * K + k]) * (w.q[size_t(n) * K + k] - w.zeros[n]);
      EXPECT_EQ(d, int64_t(acc[size_t(m) * N + n]) - int64_t(w.zeros[n]) * a.sums[m]);
    }
}

TEST(QGemmRef, EpilogueRoundsOnceToHalf) {
  // 1 * 1 * 2049 = 2049 is a tie between fp16 2048 and 2050: ties to even gives 2048.
  EXPECT_EQ(ref::epilogue(2049, 1.f, 0, 1.f, 0, 0.f, 0.f, false), float_to_half(2048.f));
  EXPECT_EQ(ref::epilogue(10, 0.5f, 2, 1.f, 3, 1.f, 0.f, false), float_to_half(0.5f * (10 - 6) + 1.f));
  EXPECT_EQ(ref::epilogue(10, 0.5f, 0, 2.f, 0, 0.f, 0.25f, true), float_to_bf16(10.25f));
}

// The kernel weight layout (plain C++, shared with the GPU repack): the map and its inverse are bijections of a
// 64 x 128 tile onto its nibbles (W4) or bytes (W8). tests/cuda checks the GPU repack follows it.
TEST(QGemmLayout, TileMapsAreInverseBijections) {
  namespace L = cuda::layout;
  std::vector<int> hits4(L::kW4CodeBytes * 2, 0), hits8(L::kW8Bytes, 0);
  for (int r = 0; r < L::kTileRows; ++r)
    for (int kk = 0; kk < L::kTileK; ++kk) {
      const auto p = L::w4_pos(r, kk);
      ASSERT_TRUE(p.byte >= 0 && p.byte < L::kW4CodeBytes && (p.high == 0 || p.high == 1));
      ++hits4[p.byte * 2 + p.high];
      EXPECT_EQ(L::w4_elem(p.byte, p.high).r, r);
      EXPECT_EQ(L::w4_elem(p.byte, p.high).kk, kk);
      const int b = L::w8_pos(r, kk);
      ASSERT_TRUE(b >= 0 && b < L::kW8Bytes);
      ++hits8[b];
      EXPECT_EQ(L::w8_elem(b).r, r);
      EXPECT_EQ(L::w8_elem(b).kk, kk);
    }
  for (int h : hits4) ASSERT_EQ(h, 1);
  for (int h : hits8) ASSERT_EQ(h, 1);
}

TEST(QGemmLayout, FragmentWordsHoldWgmmaRegisters) {
  // Thread 37 (warp 1, g = 1, t = 1), k32 step 3: its W4 word x[2s+h] (kp = 1, s = 1) holds row 16+1 (low nibbles)
  // and row 16+9 (high nibbles) at k = 96 + 16h + 4 .. 96 + 16h + 7, which is wgmma's a0/a1 (h = 0), a2/a3 (h = 1).
  namespace L = cuda::layout;
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < 4; ++b) {
      const int byte = ((1 * 128 + 37) * 4 + 2 * 1 + h) * 4 + b;
      EXPECT_EQ(L::w4_elem(byte, 0).r, 17);
      EXPECT_EQ(L::w4_elem(byte, 1).r, 25);
      EXPECT_EQ(L::w4_elem(byte, 0).kk, 96 + 16 * h + 4 + b);
    }
}
