// The fp16-weight matmul against the FP32 reference on the widened weights: decode-size and blocked paths, tails,
// bias on and off, outputs poisoned first.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_f16.h"
#include "qoq/half.h"

using namespace qoq;

TEST(MatmulF16, MatchesFp32OnWidenedWeights) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.f, 1.f);
  for (int64_t m : {1, 2, 7, 8, 9, 33}) {
    for (int64_t n : {1, 63, 64, 130}) {
      for (int64_t k : {1, 7, 8, 61, 576}) {
        for (bool with_bias : {false, true}) {
          std::vector<float> x(size_t(m * k)), wf(size_t(n * k)), bias(static_cast<size_t>(n));
          std::vector<uint16_t> wh(size_t(n * k));
          for (auto& v : x) v = d(rng);
          for (size_t i = 0; i < wh.size(); ++i) {
            wh[i] = float_to_half(d(rng) * 0.1f);
            wf[i] = half_to_float(wh[i]);
          }
          for (auto& v : bias) v = d(rng);
          const float* b = with_bias ? bias.data() : nullptr;
          std::vector<float> ref(size_t(m * n)), got(size_t(m * n), std::numeric_limits<float>::quiet_NaN());
          cpu::matmul_ref(x.data(), wf.data(), b, ref.data(), m, n, k);
          cpu::matmul_f16w(x.data(), wh.data(), b, got.data(), m, n, k);
          for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_NEAR(got[i], ref[i], 1e-5f * (1.f + std::sqrt(float(k)))) << m << "x" << n << "x" << k << " @" << i;
        }
      }
    }
  }
}
