// Small shared helpers for the quantizer tests: seeded random data and plain-loop reference math.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace qoq::quant_test {

inline std::vector<float> randn(size_t n, uint32_t seed, float sigma = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Heavy-tailed weights (Student-t with 3 degrees of freedom): the outlier-heavy rows clipping is for.
inline std::vector<float> heavy_tailed(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> d(3.f);
  std::vector<float> v(n);
  for (auto& x : v) x = 0.02f * d(rng);
  return v;
}

// Correlated activations X [M, K]: a random mix of K latent Gaussians plus per-channel scales that vary 30x, like
// real hidden states (correlated channels are what makes GPTQ beat RTN).
inline std::vector<float> correlated_x(int64_t M, int64_t K, uint32_t seed) {
  const std::vector<float> z = randn(size_t(M * K), seed);
  const std::vector<float> mix = randn(size_t(K * K), seed + 1, 1.f / std::sqrt(float(K)));
  std::vector<float> x(size_t(M * K), 0.f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < K; ++j) {
      float s = 0.5f * z[size_t(m * K + j)];
      for (int64_t t = 0; t < K; t += 4) s += z[size_t(m * K + t)] * mix[size_t(j * K + t)] * 3.f;
      x[size_t(m * K + j)] = s * (0.2f + 5.8f * float(j % 7) / 6.f);
    }
  return x;
}

// ||X Aᵀ - X Bᵀ||^2 for A, B [N, K] and X [M, K], in double.
inline double output_error(const std::vector<float>& x, int64_t M, const float* a, const float* b, int64_t N,
                           int64_t K) {
  double e = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double d = 0;
      for (int64_t k = 0; k < K; ++k) d += double(x[size_t(m * K + k)]) * (double(a[n * K + k]) - b[n * K + k]);
      e += d * d;
    }
  return e;
}

}  // namespace qoq::quant_test
