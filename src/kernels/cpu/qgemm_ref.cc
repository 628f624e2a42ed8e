#include "kernels/cpu/qgemm_ref.h"

#include <algorithm>
#include <cmath>

#include "qoq/error.h"
#include "qoq/half.h"

namespace qoq::ref {
namespace {

// Round half to even (the default FP environment rounds to nearest-even).
float rne(float x) { return std::nearbyint(x); }
int clampi(int v, int lo, int hi) { return std::min(std::max(v, lo), hi); }

}  // namespace

ActQuant quantize_activations(const float* x, int M, int K) {
  ActQuant a;
  a.M = M;
  a.K = K;
  a.codes.resize(size_t(M) * K);
  a.scales.resize(M);
  a.sums.resize(M);
  for (int m = 0; m < M; ++m) {
    const float* row = x + size_t(m) * K;
    float amax = 0.f;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    int32_t sum = 0;
    if (amax == 0.f) {
      a.scales[m] = 1.f;
      for (int k = 0; k < K; ++k) a.codes[size_t(m) * K + k] = 0;
    } else {
      a.scales[m] = amax / 127.f;
      const float mul = 127.f / amax;
      for (int k = 0; k < K; ++k) {
        const int c = clampi(int(rne(row[k] * mul)), -127, 127);
        a.codes[size_t(m) * K + k] = int8_t(c);
        sum += c;
      }
    }
    a.sums[m] = sum;
  }
  return a;
}

W4PerChannel quantize_w4_per_channel(const float* w, int N, int K) {
  W4PerChannel r;
  r.N = N;
  r.K = K;
  r.q.resize(size_t(N) * K);
  r.scales.resize(N);
  r.zeros.resize(N);
  for (int n = 0; n < N; ++n) {
    const float* row = w + size_t(n) * K;
    // The range always contains 0 (the rule of quant/grid.h): one-sided rows keep a grid that reaches their far end.
    const float lo = std::min(0.f, *std::min_element(row, row + K)), hi = std::max(0.f, *std::max_element(row, row + K));
    float s = round_to_half((hi - lo) / 15.f);
    if (s == 0.f) s = 1.f;
    const int z = clampi(int(rne(-lo / s)), 0, 15);
    r.scales[n] = float_to_half(s);
    r.zeros[n] = uint8_t(z);
    for (int k = 0; k < K; ++k) r.q[size_t(n) * K + k] = uint8_t(clampi(int(rne(row[k] / s)) + z, 0, 15));
  }
  return r;
}

int W4Group::w8(int n, int k) const {
  const size_t g = size_t(n) * (K / G) + k / G;
  return int(gscales[g]) * (int(q[size_t(n) * K + k]) - int(gzeros[g]));
}

W4Group quantize_w4_group(const float* w, int N, int K, int G) {
  QOQ_CHECK(G > 0 && K % G == 0, "K={} is not a multiple of the group size {}", K, G);
  W4Group r;
  r.N = N;
  r.K = K;
  r.G = G;
  r.q.resize(size_t(N) * K);
  r.scales.resize(N);
  r.gscales.resize(size_t(N) * (K / G));
  r.gzeros.resize(size_t(N) * (K / G));
  std::vector<float> w1(K);
  for (int n = 0; n < N; ++n) {
    const float* row = w + size_t(n) * K;
    float amax = 0.f;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    float s1 = round_to_half(amax / 119.f);
    if (s1 == 0.f) s1 = 1.f;
    r.scales[n] = float_to_half(s1);
    for (int k = 0; k < K; ++k) w1[k] = std::clamp(row[k] / s1, -119.f, 119.f);
    for (int g = 0; g < K / G; ++g) {
      const float* wg = w1.data() + size_t(g) * G;
      const float lo = std::min(0.f, *std::min_element(wg, wg + G)), hi = std::max(0.f, *std::max_element(wg, wg + G));
      const int s2 = clampi(int(rne((hi - lo) / 15.f)), 1, 16);
      const int z = clampi(int(rne(-lo / float(s2))), 0, 15);
      r.gscales[size_t(n) * (K / G) + g] = uint8_t(s2);
      r.gzeros[size_t(n) * (K / G) + g] = uint8_t(z);
      for (int k = 0; k < G; ++k)
        r.q[size_t(n) * K + size_t(g) * G + k] = uint8_t(clampi(int(rne(wg[k] / float(s2))) + z, 0, 15));
    }
  }
  return r;
}

W8 quantize_w8(const float* w, int N, int K) {
  W8 r;
  r.N = N;
  r.K = K;
  r.w.resize(size_t(N) * K);
  r.scales.resize(N);
  for (int n = 0; n < N; ++n) {
    const float* row = w + size_t(n) * K;
    float amax = 0.f;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    float s = round_to_half(amax / 127.f);
    if (s == 0.f) s = 1.f;
    r.scales[n] = float_to_half(s);
    for (int k = 0; k < K; ++k) r.w[size_t(n) * K + k] = int8_t(clampi(int(rne(row[k] / s)), -127, 127));
  }
  return r;
}

std::vector<uint8_t> pack_nibbles(const std::vector<uint8_t>& q, int N, int K) {
  QOQ_CHECK(K % 2 == 0, "K={} must be even to pack nibbles", K);
  std::vector<uint8_t> p(size_t(N) * K / 2);
  for (size_t n = 0; n < size_t(N); ++n)
    for (size_t j = 0; j < size_t(K) / 2; ++j)
      p[n * K / 2 + j] = uint8_t((q[n * K + 2 * j] & 15) | (q[n * K + 2 * j + 1] & 15) << 4);
  return p;
}

std::vector<uint8_t> unpack_nibbles(const std::vector<uint8_t>& packed, int N, int K) {
  std::vector<uint8_t> q(size_t(N) * K);
  for (size_t n = 0; n < size_t(N); ++n)
    for (size_t k = 0; k < size_t(K); ++k) q[n * K + k] = uint8_t(packed[(n * K + k) / 2] >> (4 * (k & 1)) & 15);
  return q;
}

namespace {
template <typename WeightAt>
std::vector<int32_t> int_gemm(const ActQuant& a, int N, int K, int n_begin, int n_end, WeightAt w) {
  QOQ_CHECK(a.K == K, "activation K={} != weight K={}", a.K, K);
  if (n_end < 0) n_end = N;
  QOQ_CHECK(0 <= n_begin && n_begin <= n_end && n_end <= N, "bad row range [{}, {}) of N={}", n_begin, n_end, N);
  const int cols = n_end - n_begin;
  std::vector<int32_t> acc(size_t(a.M) * cols);
  for (int m = 0; m < a.M; ++m)
    for (int n = n_begin; n < n_end; ++n) {
      int32_t s = 0;
      for (int k = 0; k < K; ++k) s += int32_t(a.codes[size_t(m) * K + k]) * w(n, k);
      acc[size_t(m) * cols + (n - n_begin)] = s;
    }
  return acc;
}
}  // namespace

std::vector<int32_t> acc_w4_per_channel(const ActQuant& a, const W4PerChannel& w, int n_begin, int n_end) {
  return int_gemm(a, w.N, w.K, n_begin, n_end, [&](int n, int k) { return int32_t(w.q[size_t(n) * w.K + k]); });
}
std::vector<int32_t> acc_w4_group(const ActQuant& a, const W4Group& w, int n_begin, int n_end) {
  return int_gemm(a, w.N, w.K, n_begin, n_end, [&](int n, int k) { return int32_t(w.w8(n, k)); });
}
std::vector<int32_t> acc_w8(const ActQuant& a, const W8& w, int n_begin, int n_end) {
  return int_gemm(a, w.N, w.K, n_begin, n_end, [&](int n, int k) { return int32_t(w.w[size_t(n) * w.K + k]); });
}

uint16_t epilogue(int32_t acc, float s_a, int32_t asum, float s_w, int z, float bias, float residual, bool bf16) {
  const float v = float(acc - z * asum);
  const float scale = s_a * s_w;
  float y = scale * v;
  y = y + bias;
  y = y + residual;
  return bf16 ? float_to_bf16(y) : float_to_half(y);
}

std::vector<uint16_t> apply_epilogue(const std::vector<int32_t>& acc, const ActQuant& a, const uint16_t* w_scales,
                                     const uint8_t* zeros, int N, const uint16_t* bias, const uint16_t* residual,
                                     bool bf16) {
  std::vector<uint16_t> y(size_t(a.M) * N);
  for (int m = 0; m < a.M; ++m)
    for (int n = 0; n < N; ++n) {
      const size_t i = size_t(m) * N + n;
      const float b = bias ? half_to_float(bias[n]) : 0.f;
      const float r = residual ? (bf16 ? bf16_to_float(residual[i]) : half_to_float(residual[i])) : 0.f;
      y[i] = epilogue(acc[i], a.scales[m], a.sums[m], half_to_float(w_scales[n]), zeros ? zeros[n] : 0, b, r, bf16);
    }
  return y;
}

namespace {
// An optimization barrier: the value must exist rounded in a register here, so no FMA can span it.
inline float no_fma(float v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+x"(v));
#elif defined(__aarch64__)
  asm("" : "+w"(v));
#else
  volatile float t = v;
  v = t;
#endif
  return v;
}
}  // namespace

float epilogue_f32(int32_t acc, float s_a, int32_t asum, float s_w, int z, bool has_bias, float bias) {
  const float v = float(acc - z * asum);
  const float scale = no_fma(s_a * s_w);
  const float y = no_fma(scale * v);
  return has_bias ? y + bias : y;
}

std::vector<int32_t> acc_quant_weight(const ActQuant& a, const quant::QuantWeight& w) {
  const auto& g = w.grid;
  const int N = int(g.N), K = int(g.K_pad);
  QOQ_CHECK(a.K == K, "activation K={} != weight K_pad={}", a.K, K);
  QOQ_CHECK(w.codes.size() == size_t(N) * K, "{} codes for [{}, {}]", w.codes.size(), N, K);
  switch (g.format) {
    case quant::WeightFormat::W4PerChannel:
    case quant::WeightFormat::W8PerChannel:
      return int_gemm(a, N, K, 0, N, [&](int n, int k) { return int32_t(w.codes[size_t(n) * K + k]); });
    case quant::WeightFormat::W4Group:
      return int_gemm(a, N, K, 0, N, [&](int n, int k) { return int32_t(g.w8(n, k, w.codes[size_t(n) * K + k])); });
  }
  return {};
}

std::vector<float> int_linear(const float* x, int M, const quant::QuantWeight& w, const float* bias) {
  const auto& g = w.grid;
  const int N = int(g.N), K = int(g.K), K_pad = int(g.K_pad);
  std::vector<float> xp(size_t(M) * K_pad, 0.f);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) xp[size_t(m) * K_pad + k] = x[size_t(m) * K + k];
  const ActQuant a = quantize_activations(xp.data(), M, K_pad);
  const std::vector<int32_t> acc = acc_quant_weight(a, w);
  std::vector<float> y(size_t(M) * N);
  const bool per_channel = g.format == quant::WeightFormat::W4PerChannel;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      const size_t i = size_t(m) * N + n;
      y[i] = epilogue_f32(acc[i], a.scales[m], a.sums[m], g.scales[n], per_channel ? int(g.zeros[n]) : 0,
                          bias != nullptr, bias ? bias[n] : 0.f);
    }
  return y;
}

}  // namespace qoq::ref
