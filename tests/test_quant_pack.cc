// The canonical checkpoint tensors (DESIGN §5): the exact nibble layout, round trips for every format including
// padding, dequantization, and clear errors for tensors that contradict what the checkpoint says.
#include <gtest/gtest.h>

#include "qoq/half.h"
#include "quant/pack.h"
#include "quant_test_util.h"

using namespace qoq;
using namespace qoq::quant;

namespace {
void expect_same(const QuantWeight& a, const QuantWeight& b) {
  EXPECT_EQ(a.grid.format, b.grid.format);
  EXPECT_EQ(a.grid.N, b.grid.N);
  EXPECT_EQ(a.grid.K, b.grid.K);
  EXPECT_EQ(a.grid.K_pad, b.grid.K_pad);
  EXPECT_EQ(a.grid.group, b.grid.group);
  EXPECT_EQ(a.grid.scales, b.grid.scales);
  EXPECT_EQ(a.grid.zeros, b.grid.zeros);
  EXPECT_EQ(a.grid.gscales, b.grid.gscales);
  EXPECT_EQ(a.grid.gzeros, b.grid.gzeros);
  EXPECT_EQ(a.codes, b.codes);
}

QuantWeight round_trip(const QuantWeight& q, const LinearSpec& spec) {
  std::map<std::string, Tensor> tensors;
  store_linear(pack_linear(q), "model.layers.0.mlp.down_proj", tensors);
  return unpack_linear(load_linear(tensors, "model.layers.0.mlp.down_proj", spec.format), spec, "down_proj");
}
}  // namespace

TEST(Pack, NibbleLayoutIsLowNibbleFirst) {
  // Codes 1, 2, 3, 4 / 15, 0, 7, 8 must pack to bytes 0x21 0x43 / 0x0f 0x87.
  QuantWeight q;
  q.grid = w4_per_channel_grid(std::vector<float>{-1.f, -1.f}, std::vector<float>{1.f, 1.f}, 4);
  q.codes = {1, 2, 3, 4, 15, 0, 7, 8};
  const PackedLinear p = pack_linear(q);
  ASSERT_EQ(p.qweight.shape(), (Shape{2, 2}));
  const uint8_t* b = p.qweight.data<uint8_t>();
  EXPECT_EQ(b[0], 0x21);
  EXPECT_EQ(b[1], 0x43);
  EXPECT_EQ(b[2], 0x0f);
  EXPECT_EQ(b[3], 0x87);
  EXPECT_EQ(p.scales.dtype(), DType::F16);
  EXPECT_EQ(p.zeros.shape(), (Shape{2}));
  EXPECT_FALSE(p.group_scales.defined());
}

TEST(Pack, RoundTripsEveryFormat) {
  const int64_t N = 10, K = 200;
  const auto w = quant_test::randn(size_t(N * K), 1, 0.05f);
  {
    const QuantWeight q = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
    expect_same(q, round_trip(q, {WeightFormat::W4PerChannel, N, K, 0}));
  }
  for (int64_t g : {128, 64, 32}) {  // 200 is padded for 128 and 64 (and 32: 224)
    const QuantWeight q = round_to_grid(w4_group_grid(w.data(), N, K, g), w.data());
    const PackedLinear p = pack_linear(q);
    const int64_t kp = (K + g - 1) / g * g;
    EXPECT_EQ(p.qweight.shape(), (Shape{N, kp / 2}));
    EXPECT_EQ(p.group_scales.shape(), (Shape{N, kp / g}));
    EXPECT_EQ(p.group_zeros.dtype(), DType::U8);
    EXPECT_FALSE(p.zeros.defined());
    expect_same(q, round_trip(q, {WeightFormat::W4Group, N, K, g}));
  }
  {
    const QuantWeight q = round_to_grid(w8_grid(w.data(), N, K), w.data());
    const PackedLinear p = pack_linear(q);
    EXPECT_EQ(p.weight.dtype(), DType::I8);
    EXPECT_EQ(p.weight.shape(), (Shape{N, K}));
    expect_same(q, round_trip(q, {WeightFormat::W8PerChannel, N, K, 0}));
  }
}

TEST(Pack, DequantizeIsTheGridValue) {
  const int64_t N = 4, K = 130;
  const auto w = quant_test::randn(size_t(N * K), 2, 0.05f);
  const QuantWeight q = round_to_grid(w4_group_grid(w.data(), N, K, 64), w.data());
  const auto d = q.dequantize();
  ASSERT_EQ(d.size(), size_t(N * K));  // padding dropped
  const int64_t ng = q.grid.groups_per_row();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int c = q.codes[size_t(n * q.grid.K_pad + k)];
      const int s2 = q.grid.gscales[size_t(n * ng + k / 64)], z = q.grid.gzeros[size_t(n * ng + k / 64)];
      ASSERT_EQ(d[size_t(n * K + k)], q.grid.scales[n] * float(s2 * (c - z)));  // s1 * (s2 * (q - z))
    }
  const QuantWeight pc = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
  const auto dp = pc.dequantize();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      ASSERT_EQ(dp[size_t(n * K + k)], pc.grid.scales[n] * float(pc.codes[size_t(n * K + k)] - pc.grid.zeros[n]));
}

TEST(Pack, ContradictingTensorsAreClearErrors) {
  const int64_t N = 6, K = 256;
  const auto w = quant_test::randn(size_t(N * K), 3, 0.05f);
  const QuantWeight q = round_to_grid(w4_group_grid(w.data(), N, K, 128), w.data());
  const LinearSpec spec{WeightFormat::W4Group, N, K, 128};
  auto expect_error = [&](const PackedLinear& p, const LinearSpec& s, const std::string& needle) {
    try {
      unpack_linear(p, s, "layers.0.q_proj");
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Wrong group size recorded (64 instead of 128): the group tensors have the wrong shape.
  expect_error(pack_linear(q), {WeightFormat::W4Group, N, K, 64}, "group_scales");
  // Wrong in-features.
  const QuantWeight pc = round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data());
  expect_error(pack_linear(pc), {WeightFormat::W4PerChannel, N, 300, 0},
               "qweight: expected U8[6, 150], found U8[6, 128]");
  // Wrong dtype of the scales.
  PackedLinear p = pack_linear(q);
  p.scales = p.scales.to(DType::F32);
  expect_error(p, spec, "scales");
  // A group scale of 0 or 17 breaks the int8 range guarantee.
  p = pack_linear(q);
  p.group_scales = p.group_scales.clone();
  p.group_scales.data<uint8_t>()[3] = 17;
  expect_error(p, spec, "group_scales[3] = 17");
  // A zero scale.
  p = pack_linear(q);
  p.scales = p.scales.clone();
  p.scales.data<uint16_t>()[1] = float_to_half(0.f);
  expect_error(p, spec, "scales[1]");
  // Missing tensor.
  std::map<std::string, Tensor> tensors;
  store_linear(pack_linear(q), "p", tensors);
  tensors.erase("p.group_zeros");
  EXPECT_THROW(load_linear(tensors, "p", WeightFormat::W4Group), InputError);
  // Per-channel tensors read as grouped.
  tensors.clear();
  store_linear(pack_linear(round_to_grid(w4_per_channel_minmax_grid(w.data(), N, K), w.data())), "p", tensors);
  EXPECT_THROW(load_linear(tensors, "p", WeightFormat::W4Group), InputError);
}
