// The fast CPU integer kernels (kernels/cpu/qgemm.h) and the quantized Linear backends against the reference
// (kernels/cpu/qgemm_ref.h): accumulators and fp32 outputs bit for bit, on the AVX2 path and the scalar fallback.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/qgemm.h"
#include "kernels/cpu/qgemm_ref.h"
#include "model/linear_quant.h"
#include "qoq/error.h"
#include "quant/grid.h"

using namespace qoq;
using quant::WeightFormat;

namespace {

std::vector<cpu::QIsa> isas() {
  std::vector<cpu::QIsa> v = {cpu::QIsa::kScalar};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v.push_back(cpu::QIsa::kAvx2);
  return v;
}
const char* isa_name(cpu::QIsa i) { return i == cpu::QIsa::kAvx2 ? "avx2" : "scalar"; }

// Activations with the rows that stress the quantizer: zero rows, huge and tiny magnitudes, a lone outlier, and
// exact rounding ties (amax = 127 makes the multiplier 1, so x.5 values are ties).
std::vector<float> activations(int64_t M, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> x(size_t(M * K));
  for (int64_t m = 0; m < M; ++m) {
    float* r = x.data() + m * K;
    const int kind = int(m % 7);
    for (int64_t k = 0; k < K; ++k) {
      float v = d(rng) * (1.f + float(k % 5));
      if (kind == 3) v = 0.f;
      if (kind == 5) v *= 3e4f;
      if (kind == 2) v *= 1e-6f;
      if (kind == 4) v = 0.5f * float(int(k % 255) - 127);
      r[k] = v;
    }
    if (kind == 4) r[0] = 127.f;
    if (kind == 6) r[K / 2] = 500.f;
  }
  return x;
}

std::vector<float> weights(int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> d(3.f);
  std::vector<float> w(size_t(N * K));
  for (auto& v : w) v = 0.02f * d(rng);
  if (N > 2) {
    for (int64_t k = 0; k < K; ++k) w[size_t(1 * K + k)] = 0.f;   // all-zero row: scale 1
    for (int64_t k = 0; k < K; ++k) w[size_t(2 * K + k)] = 0.3f;  // constant positive row
  }
  return w;
}

struct Fmt {
  WeightFormat format;
  int64_t group;
  std::string name() const {
    return std::string(quant::weight_format_name(format)) + (group ? "/g" + std::to_string(group) : "");
  }
};
const std::vector<Fmt> kFormats = {{WeightFormat::W4PerChannel, 0},
                                   {WeightFormat::W4Group, 32},
                                   {WeightFormat::W4Group, 64},
                                   {WeightFormat::W4Group, 128},
                                   {WeightFormat::W8PerChannel, 0}};

quant::QuantWeight make_weight(const Fmt& f, int64_t N, int64_t K, uint32_t seed) {
  const std::vector<float> w = weights(N, K, seed);
  quant::WeightGrid g;
  switch (f.format) {
    case WeightFormat::W4PerChannel:
      g = quant::w4_per_channel_minmax_grid(w.data(), N, K);
      break;
    case WeightFormat::W4Group:
      g = quant::w4_group_grid(w.data(), N, K, f.group);
      break;
    case WeightFormat::W8PerChannel:
      g = quant::w8_grid(w.data(), N, K);
      break;
  }
  return quant::round_to_grid(g, w.data());
}

// x [M, K] zero-padded to [M, K_pad] for the reference.
std::vector<float> pad(const std::vector<float>& x, int64_t M, int64_t K, int64_t K_pad) {
  std::vector<float> p(size_t(M * K_pad), 0.f);
  for (int64_t m = 0; m < M; ++m) std::memcpy(p.data() + m * K_pad, x.data() + m * K, size_t(K) * 4);
  return p;
}

void expect_bits_eq(const void* a, const void* b, size_t bytes, const std::string& what) {
  if (std::memcmp(a, b, bytes) == 0) return;
  const auto* x = static_cast<const uint32_t*>(a);
  const auto* y = static_cast<const uint32_t*>(b);
  for (size_t i = 0; i < bytes / 4; ++i)
    if (x[i] != y[i]) {
      float fx, fy;
      std::memcpy(&fx, x + i, 4);
      std::memcpy(&fy, y + i, 4);
      ADD_FAILURE() << what << ": first difference at element " << i << ": bits " << x[i] << " vs " << y[i] << " ("
                    << fx << " vs " << fy << ")";
      return;
    }
  ADD_FAILURE() << what << ": byte difference";
}

const float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

TEST(QGemmCpu, ActivationQuantBitExact) {
  for (int64_t M : {1, 2, 3, 7, 16, 33, 100})
    for (int64_t K : {1, 5, 31, 64, 172, 576, 1536}) {
      const auto x = activations(M, K, uint32_t(M * 1000 + K));
      const auto ref = ref::quantize_activations(x.data(), int(M), int(K));
      const int64_t ld = (K + 63) / 64 * 64 + 64;
      for (auto isa : isas()) {
        std::vector<int8_t> codes(size_t(M * ld), int8_t(0x55));
        std::vector<float> scales(size_t(M), kNaN);
        std::vector<int32_t> sums(size_t(M), -7);
        cpu::quantize_activations(x.data(), M, K, ld, codes.data(), scales.data(), sums.data(), isa);
        const std::string what = std::string(isa_name(isa)) + " M=" + std::to_string(M) + " K=" + std::to_string(K);
        for (int64_t m = 0; m < M; ++m) {
          ASSERT_EQ(std::memcmp(codes.data() + m * ld, ref.codes.data() + m * K, size_t(K)), 0) << what << " m=" << m;
          for (int64_t k = K; k < ld; ++k) ASSERT_EQ(codes[size_t(m * ld + k)], 0) << what << " padding";
        }
        expect_bits_eq(scales.data(), ref.scales.data(), size_t(M) * 4, what + " scales");
        ASSERT_EQ(sums, ref.sums) << what;
      }
    }
}

// Fast accumulators and fused fp32 outputs against the reference, every format, shapes with tails in M, N and K.
TEST(QGemmCpu, GemmBitExactAllFormats) {
  struct Shape {
    int64_t N, K;
  };
  const std::vector<Shape> shapes = {{7, 64}, {19, 172}, {45, 576}, {24, 1536}, {6, 5}};
  int64_t fused_differs = 0;
  for (const auto& f : kFormats)
    for (const auto& s : shapes) {
      const auto qw = make_weight(f, s.N, s.K, uint32_t(s.N * 7 + s.K));
      const cpu::PackedQWeight pw(qw);
      const int64_t Kp = qw.grid.K_pad, ld = pw.act_ld(), N = s.N;
      const auto bias = activations(1, N, 99);
      for (int64_t M : {1, 2, 3, 7, 16, 33, 100}) {
        const std::string what = f.name() + " N=" + std::to_string(N) + " K=" + std::to_string(s.K) +
                                 " M=" + std::to_string(M);
        const auto x = activations(M, s.K, uint32_t(M + 31 * s.K));
        const auto ra = ref::quantize_activations(pad(x, M, s.K, Kp).data(), int(M), int(Kp));
        const auto racc = ref::acc_quant_weight(ra, qw);
        const bool pc = f.format == WeightFormat::W4PerChannel;
        for (auto isa : isas()) {
          std::vector<int8_t> codes(size_t(M * ld));
          std::vector<float> scales(static_cast<size_t>(M));
          std::vector<int32_t> sums(static_cast<size_t>(M));
          cpu::quantize_activations(x.data(), M, s.K, ld, codes.data(), scales.data(), sums.data(), isa);
          std::vector<int32_t> acc(size_t(M * N), int32_t(0x7F7F7F7F));
          cpu::qgemm_acc(codes.data(), sums.data(), M, pw, acc.data(), isa);
          ASSERT_EQ(acc, racc) << what << " " << isa_name(isa);
          for (bool with_bias : {false, true}) {
            std::vector<float> y(size_t(M * N), kNaN);
            cpu::qgemm_f32(codes.data(), scales.data(), sums.data(), M, pw, with_bias ? bias.data() : nullptr,
                           y.data(), isa);
            std::vector<float> ry(size_t(M * N));
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                const int32_t a = racc[size_t(m * N + n)];
                const int z = pc ? qw.grid.zeros[size_t(n)] : 0;
                ry[size_t(m * N + n)] = ref::epilogue_f32(a, ra.scales[size_t(m)], ra.sums[size_t(m)],
                                                          qw.grid.scales[size_t(n)], z, with_bias, bias[size_t(n)]);
                if (with_bias) {
                  const float scale = ra.scales[size_t(m)] * qw.grid.scales[size_t(n)];
                  const float v = float(a - z * ra.sums[size_t(m)]);
                  if (std::fma(scale, v, bias[size_t(n)]) != ry[size_t(m * N + n)]) ++fused_differs;
                }
              }
            expect_bits_eq(y.data(), ry.data(), y.size() * 4,
                           what + " " + isa_name(isa) + (with_bias ? " bias" : " no bias"));
          }
        }
      }
    }
  // The data must be able to tell a fused multiply-add from the two roundings, or the check above proves nothing.
  EXPECT_GT(fused_differs, 100);
}

// Many tokens against few row blocks: the kernels also split over tokens.
TEST(QGemmCpu, TokenSplitLargeM) {
  const int64_t M = 300, N = 10, K = 200;
  for (const auto& f : kFormats) {
    if (f.group == 128) continue;
    const auto qw = make_weight(f, N, K, 5);
    const cpu::PackedQWeight pw(qw);
    const auto x = activations(M, K, 6);
    const auto ra = ref::quantize_activations(pad(x, M, K, qw.grid.K_pad).data(), int(M), int(qw.grid.K_pad));
    const auto racc = ref::acc_quant_weight(ra, qw);
    for (auto isa : isas()) {
      std::vector<int8_t> codes(size_t(M * pw.act_ld()));
      std::vector<float> scales(static_cast<size_t>(M));
      std::vector<int32_t> sums(static_cast<size_t>(M));
      cpu::quantize_activations(x.data(), M, K, pw.act_ld(), codes.data(), scales.data(), sums.data(), isa);
      std::vector<int32_t> acc(size_t(M * N), -1);
      cpu::qgemm_acc(codes.data(), sums.data(), M, pw, acc.data(), isa);
      EXPECT_EQ(acc, racc) << f.name() << " " << isa_name(isa);
    }
  }
}

TEST(QGemmCpu, IsaResolution) {
  EXPECT_EQ(cpu::qgemm_resolve(cpu::QIsa::kScalar), cpu::QIsa::kScalar);
  EXPECT_NE(cpu::qgemm_resolve(cpu::QIsa::kAuto), cpu::QIsa::kAuto);
}

TEST(QGemmCpu, IntLinearMatchesReference) {
  for (const auto& f : kFormats)
    for (int64_t K : {172, 576})
      for (bool with_bias : {false, true}) {
        const int64_t N = 37;
        const auto qw = make_weight(f, N, K, uint32_t(K + 3));
        const auto bias = activations(1, N, 4);
        const auto lin = make_cpu_int_linear("blk.0.q", qw, with_bias ? bias.data() : nullptr);
        EXPECT_EQ(lin->in_features(), K);
        EXPECT_EQ(lin->out_features(), N);
        for (int64_t M : {1, 7, 33}) {
          const auto x = activations(M, K, uint32_t(M * 5 + K));
          std::vector<float> y(size_t(M * N), kNaN);
          lin->forward(x.data(), M, y.data());
          const auto ry = ref::int_linear(x.data(), int(M), qw, with_bias ? bias.data() : nullptr);
          expect_bits_eq(y.data(), ry.data(), y.size() * 4,
                         f.name() + " K=" + std::to_string(K) + " M=" + std::to_string(M));
        }
      }
}

TEST(QGemmCpu, FakeQuantLinearAgreesWithIntLinear) {
  for (const auto& f : kFormats)
    for (int64_t K : {172, 576})
      for (bool with_bias : {false, true}) {
        const int64_t N = 29, M = 9;
        const auto qw = make_weight(f, N, K, uint32_t(K + 11));
        const auto bias = activations(1, N, 8);
        const auto il = make_cpu_int_linear("l", qw, with_bias ? bias.data() : nullptr);
        const auto fl = make_cpu_fake_quant_linear("l", qw, with_bias ? bias.data() : nullptr);
        EXPECT_EQ(fl->in_features(), K);
        EXPECT_EQ(fl->out_features(), N);
        const auto x = activations(M, K, 12);
        std::vector<float> yi(size_t(M * N), kNaN), yf(size_t(M * N), kNaN);
        il->forward(x.data(), M, yi.data());
        fl->forward(x.data(), M, yf.data());
        const auto w = qw.dequantize();
        for (int64_t m = 0; m < M; ++m) {
          // Tolerance from the magnitude of the terms summed: a few float ulps of sum |x_hat| |w| per output.
          float amax = 0.f;
          for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[size_t(m * K + k)]));
          for (int64_t n = 0; n < N; ++n) {
            double mag = with_bias ? std::fabs(bias[size_t(n)]) : 0.0;
            for (int64_t k = 0; k < K; ++k) mag += double(amax) * std::fabs(w[size_t(n * K + k)]);
            const float a = yi[size_t(m * N + n)], b = yf[size_t(m * N + n)];
            ASSERT_FALSE(std::isnan(a) || std::isnan(b));
            EXPECT_NEAR(a, b, 1e-5 * mag + 1e-30) << f.name() << " K=" << K << " m=" << m << " n=" << n;
          }
        }
      }
}

TEST(QGemmCpu, FactoriesRejectMalformedWeights) {
  const auto good = make_weight({WeightFormat::W4PerChannel, 0}, 8, 64, 1);
  auto expect_input_error = [](const quant::QuantWeight& w, const std::string& needle) {
    for (int backend = 0; backend < 2; ++backend) {
      try {
        if (backend == 0)
          make_cpu_int_linear("model.layers.3.mlp.down_proj", w, nullptr);
        else
          make_cpu_fake_quant_linear("model.layers.3.mlp.down_proj", w, nullptr);
        ADD_FAILURE() << "no error for " << needle;
      } catch (const InputError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("model.layers.3.mlp.down_proj"), std::string::npos) << msg;
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      }
    }
  };
  auto bad = good;
  bad.codes[17] = 16;
  expect_input_error(bad, "outside [0, 15]");
  bad = good;
  bad.codes.pop_back();
  expect_input_error(bad, "codes");
  bad = good;
  bad.grid.zeros.resize(3);
  expect_input_error(bad, "zeros");
  bad = good;
  bad.grid.scales[2] = kNaN;
  expect_input_error(bad, "not finite");
  auto g = make_weight({WeightFormat::W4Group, 32}, 4, 64, 2);
  g.grid.gscales[1] = 17;
  expect_input_error(g, "s2");
  auto g16 = make_weight({WeightFormat::W4Group, 16}, 4, 64, 3);
  expect_input_error(g16, "multiple of 32");
  auto w8 = make_weight({WeightFormat::W8PerChannel, 0}, 4, 64, 4);
  w8.codes[3] = -128;
  expect_input_error(w8, "outside [-127, 127]");
}
