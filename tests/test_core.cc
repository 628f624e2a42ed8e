#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>

#include "core/thread_pool.h"
#include "qoq/half.h"
#include "qoq/tensor.h"

using namespace qoq;

TEST(Half, RoundTripsEveryHalf) {
  // Every finite fp16 value converts to float and back to itself.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t x = uint16_t(h);
    if ((x & 0x7c00) == 0x7c00 && (x & 0x3ff)) continue;  // nan
    EXPECT_EQ(float_to_half(half_to_float(x)), x) << std::hex << h;
  }
}

TEST(Half, RoundsHalfToEven) {
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to even (1).
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even).
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);               // overflow to inf
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(Half, NearestAgainstBruteForce) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-70000.f, 70000.f);
  for (int i = 0; i < 20000; ++i) {
    const float f = d(rng) * std::pow(10.f, float(int(rng() % 8)) - 6.f);
    const uint16_t h = float_to_half(f);
    const float g = half_to_float(h);
    if (std::isinf(g)) {
      EXPECT_GE(std::fabs(f), 65504.f);
      continue;
    }
    // No other half is strictly closer.
    const uint16_t up = uint16_t(h + 1), dn = uint16_t(h - 1);
    for (uint16_t n : {up, dn}) {
      const float gn = half_to_float(n);
      if (std::isfinite(gn) && ((n ^ h) & 0x8000) == 0) EXPECT_LE(std::fabs(g - f), std::fabs(gn - f)) << f;
    }
  }
}

TEST(Half, Bf16) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(float_to_bf16(bits_to_float(0x3f808000u)), 0x3f80);  // tie to even
  EXPECT_EQ(float_to_bf16(bits_to_float(0x3f818000u)), 0x3f82);
}

TEST(Tensor, ShapesViewsAndConversion) {
  Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dim(-1), 3);
  EXPECT_EQ(t.str(), "F32[2, 3]");
  Tensor r = t.slice_rows(1, 2);
  EXPECT_EQ(r.data<float>()[0], 4.0f);
  Tensor h = t.to(DType::F16);
  EXPECT_EQ(h.at_f32(5), 6.0f);
  EXPECT_THROW(h.data<float>(), Error);
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(dtype_from_name("F64", "x.safetensors: tensor a"), InputError);
}

TEST(ThreadPool, CoversRangeOnceAndPropagatesErrors) {
  for (int64_t n : {1, 2, 7, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(n);
    parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1);
  }
  EXPECT_THROW(parallel_for(100,
                            [](int64_t b, int64_t) {
                              if (b > 10) throw Error("boom");
                            }),
               Error);
  // Still usable afterwards.
  std::atomic<int64_t> sum{0};
  parallel_for(100, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}
