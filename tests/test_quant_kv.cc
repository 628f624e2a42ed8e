// The KV4/KV8 cache reference (DESIGN §3): codes and parameters exactly as defined, the error bound of an
// asymmetric quantizer, the nibble order, round-half-even, and the degenerate heads.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/kv_quant.h"
#include "qoq/error.h"
#include "qoq/half.h"
#include "quant_test_util.h"

using namespace qoq;

namespace {
int code_at(const std::vector<uint8_t>& codes, int64_t i, int bits) {
  return bits == 8 ? codes[size_t(i)] : (codes[size_t(i / 2)] >> (4 * (i & 1))) & 15;
}
// fp16 spacing at x (the unit in the last place of an fp16 number of that magnitude).
float half_ulp(float x) {
  const float a = std::max(std::fabs(x), 6.1035156e-05f);
  return std::ldexp(1.f, std::ilogb(a) - 10);
}
}  // namespace

TEST(KvQuant, MatchesTheDefinitionAndItsErrorBound) {
  for (int bits : {4, 8})
    for (int64_t D : {64, 128}) {
      const int levels = (1 << bits) - 1;
      const int64_t rows = 50;
      auto x = quant_test::randn(size_t(rows * D), uint32_t(bits * 1000 + D), 2.f);
      for (int64_t r = 0; r < rows; r += 7) x[size_t(r * D + r % D)] = 40.f;  // outlier channels
      for (int64_t i = 0; i < D; ++i) x[size_t(3 * D + i)] = std::fabs(x[size_t(3 * D + i)]) + 100.f;  // one-sided
      std::vector<uint8_t> codes(size_t(rows * ref::kv_code_bytes(D, bits)));
      std::vector<uint16_t> scales(rows), zeros(rows);
      ref::kv_quantize(x.data(), rows, D, bits, codes.data(), scales.data(), zeros.data());
      std::vector<float> xh(x.size());
      ref::kv_dequantize(codes.data(), scales.data(), zeros.data(), rows, D, bits, xh.data());
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x.data() + r * D;
        float mn = xr[0], mx = xr[0];
        for (int64_t i = 0; i < D; ++i) mn = std::min(mn, xr[i]), mx = std::max(mx, xr[i]);
        const float scale = round_to_half((mx - mn) / float(levels));
        const float zero = round_to_half(-mn / scale);
        ASSERT_EQ(scales[r], float_to_half(scale));
        ASSERT_EQ(zeros[r], float_to_half(zero));
        const std::vector<uint8_t> rc(codes.begin() + r * ref::kv_code_bytes(D, bits),
                                      codes.begin() + (r + 1) * ref::kv_code_bytes(D, bits));
        // Beyond half a step, only the clamp at the ends can add error: zero is off -mn/scale by half an fp16
        // ulp, and fp16(range / L) * L is off the range by up to L * 2^-11 steps.
        const float bound = scale * (0.5f + half_ulp(zero) / 2 + float(levels) / 2048.f) + 1e-6f * std::fabs(mx);
        for (int64_t i = 0; i < D; ++i) {
          const int c = code_at(rc, i, bits);
          const float expect_c = std::clamp(std::nearbyint(xr[i] / scale + zero), 0.f, float(levels));
          ASSERT_EQ(c, int(expect_c)) << r << "," << i;
          ASSERT_EQ(xh[size_t(r * D + i)], scale * (float(c) - zero));
          ASSERT_LE(std::fabs(xh[size_t(r * D + i)] - xr[i]), bound) << "bits " << bits << " row " << r << " ch " << i;
        }
      }
      // The fake-quant path stores exactly what the integer path dequantizes.
      std::vector<float> fq(x);
      ref::kv_fake_quant(fq.data(), rows, D, bits);
      ASSERT_EQ(fq, xh);
    }
}

TEST(KvQuant, Kv4PacksEvenChannelInTheLowNibble) {
  // mn = 0, mx = 15: scale 1, zero 0, so each code is the value itself.
  const float x[8] = {0.f, 15.f, 3.f, 4.f, 9.f, 1.f, 15.f, 15.f};
  uint8_t codes[4];
  uint16_t s, z;
  ref::kv_quantize_head(x, 8, 4, codes, &s, &z);
  EXPECT_EQ(half_to_float(s), 1.f);
  EXPECT_EQ(half_to_float(z), 0.f);
  EXPECT_EQ(codes[0], 0xf0);
  EXPECT_EQ(codes[1], 0x43);
  EXPECT_EQ(codes[2], 0x19);
  EXPECT_EQ(codes[3], 0xff);
}

TEST(KvQuant, RoundsHalfToEven) {
  // scale 1, zero 0: 2.5 -> 2, 3.5 -> 4, 12.5 -> 12.
  const float x[6] = {0.f, 15.f, 2.5f, 3.5f, 12.5f, 0.5f};
  uint8_t codes[3];
  uint16_t s, z;
  ref::kv_quantize_head(x, 6, 4, codes, &s, &z);
  EXPECT_EQ(codes[1], 2 | 4 << 4);
  EXPECT_EQ(codes[2], 12 | 0 << 4);
}

TEST(KvQuant, DegenerateHeads) {
  for (int bits : {4, 8}) {
    const int64_t D = 16;
    std::vector<uint8_t> codes(size_t(ref::kv_code_bytes(D, bits)));
    std::vector<float> out(D);
    uint16_t s, z;
    // Constant head (fp16-representable value): scale 1, zero -c, reconstructed exactly.
    std::vector<float> c(D, -3.25f);
    ref::kv_quantize_head(c.data(), D, bits, codes.data(), &s, &z);
    EXPECT_EQ(half_to_float(s), 1.f);
    EXPECT_EQ(half_to_float(z), 3.25f);
    ref::kv_dequantize_head(codes.data(), D, bits, s, z, out.data());
    for (float v : out) EXPECT_EQ(v, -3.25f);
    // All zeros.
    std::vector<float> zero(D, 0.f);
    ref::kv_quantize_head(zero.data(), D, bits, codes.data(), &s, &z);
    ref::kv_dequantize_head(codes.data(), D, bits, s, z, out.data());
    for (float v : out) EXPECT_EQ(v, 0.f);
    // A spread below fp16 resolution (the fp16 scale would be 0): treated as constant, error below the spread.
    std::vector<float> tiny(D, 1.f);
    tiny[3] = 1.f + 1e-7f;
    ref::kv_quantize_head(tiny.data(), D, bits, codes.data(), &s, &z);
    ref::kv_dequantize_head(codes.data(), D, bits, s, z, out.data());
    for (int64_t i = 0; i < D; ++i) EXPECT_NEAR(out[i], tiny[i], 2e-7f);
    // Ranges beyond fp16 saturate instead of producing inf/nan.
    std::vector<float> huge(D, 0.f);
    huge[0] = -2e6f, huge[1] = 2e6f;
    ref::kv_quantize_head(huge.data(), D, bits, codes.data(), &s, &z);
    ref::kv_dequantize_head(codes.data(), D, bits, s, z, out.data());
    for (float v : out) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(KvQuant, RejectsUnsupportedShapes) {
  EXPECT_THROW(ref::kv_code_bytes(15, 4), Error);
  EXPECT_THROW(ref::kv_code_bytes(16, 3), Error);
  EXPECT_EQ(ref::kv_code_bytes(15, 8), 15);
}
