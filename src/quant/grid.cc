#include "quant/grid.h"

#include <algorithm>
#include <cmath>

#include "qoq/error.h"
#include "qoq/half.h"

namespace qoq::quant {
namespace {
// Round half to even: the default floating-point environment rounds to nearest-even.
inline int rne(float x) { return int(std::nearbyint(x)); }
inline int clampi(int v, int lo, int hi) { return std::min(std::max(v, lo), hi); }

// An fp16 scale that is usable as a divisor: fp16(x), or 1 when that is 0 (an all-zero range).
float fp16_scale(float x) {
  const float s = round_to_half(x);
  QOQ_CHECK(std::isfinite(s), "weight range {} overflows an fp16 scale", x);
  return s == 0.f ? 1.f : s;
}
}  // namespace

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::W4PerChannel:
      return "w4-per-channel";
    case WeightFormat::W4Group:
      return "w4-group";
    case WeightFormat::W8PerChannel:
      return "w8-per-channel";
  }
  return "?";
}

int WeightGrid::code(int64_t n, int64_t k, float w) const {
  switch (format) {
    case WeightFormat::W4PerChannel:
      return clampi(rne(w / scales[n]) + zeros[n], 0, 15);
    case WeightFormat::W4Group: {
      const size_t g = size_t(n * groups_per_row() + k / group);
      const float w1 = std::clamp(w / scales[n], -119.f, 119.f);
      return clampi(rne(w1 / float(gscales[g])) + gzeros[g], 0, 15);
    }
    case WeightFormat::W8PerChannel:
      return clampi(rne(w / scales[n]), -127, 127);
  }
  return 0;
}

int WeightGrid::w8(int64_t n, int64_t k, int q) const {
  const size_t g = size_t(n * groups_per_row() + k / group);
  return int(gscales[g]) * (q - int(gzeros[g]));
}

float WeightGrid::value(int64_t n, int64_t k, int q) const {
  switch (format) {
    case WeightFormat::W4PerChannel:
      return scales[n] * float(q - int(zeros[n]));
    case WeightFormat::W4Group:
      return scales[n] * float(w8(n, k, q));
    case WeightFormat::W8PerChannel:
      return scales[n] * float(q);
  }
  return 0.f;
}

std::vector<float> QuantWeight::dequantize() const {
  const auto& g = grid;
  std::vector<float> w(size_t(g.N * g.K));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t k = 0; k < g.K; ++k) w[size_t(n * g.K + k)] = g.value(n, k, codes[size_t(n * g.K_pad + k)]);
  return w;
}

WeightGrid w4_per_channel_grid(std::span<const float> lo, std::span<const float> hi, int64_t K) {
  QOQ_CHECK(lo.size() == hi.size(), "w4_per_channel_grid: {} lows, {} highs", lo.size(), hi.size());
  WeightGrid g;
  g.format = WeightFormat::W4PerChannel;
  g.N = int64_t(lo.size());
  g.K = K;
  g.K_pad = K + (K & 1);
  g.scales.resize(size_t(g.N));
  g.zeros.resize(size_t(g.N));
  for (int64_t n = 0; n < g.N; ++n) {
    const float l = std::min(lo[n], 0.f), h = std::max(hi[n], 0.f);
    const float s = fp16_scale((h - l) / 15.f);
    g.scales[n] = s;
    g.zeros[n] = uint8_t(clampi(rne(-l / s), 0, 15));
  }
  return g;
}

WeightGrid w4_per_channel_minmax_grid(const float* w, int64_t N, int64_t K) {
  std::vector<float> lo(static_cast<size_t>(N)), hi(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    lo[n] = *std::min_element(w + n * K, w + (n + 1) * K);
    hi[n] = *std::max_element(w + n * K, w + (n + 1) * K);
  }
  return w4_per_channel_grid(lo, hi, K);
}

WeightGrid w4_group_grid(const float* w, int64_t N, int64_t K, int64_t group) {
  QOQ_CHECK(group >= 2 && group % 2 == 0, "group size {} must be even and >= 2", group);
  WeightGrid g;
  g.format = WeightFormat::W4Group;
  g.N = N;
  g.K = K;
  g.group = group;
  g.K_pad = (K + group - 1) / group * group;
  const int64_t ng = g.groups_per_row();
  g.scales.resize(size_t(N));
  g.gscales.resize(size_t(N * ng));
  g.gzeros.resize(size_t(N * ng));
  std::vector<float> w1(size_t(g.K_pad));
  for (int64_t n = 0; n < N; ++n) {
    const float* row = w + n * K;
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    const float s1 = fp16_scale(amax / 119.f);
    g.scales[n] = s1;
    // Padding weights are 0: they widen no range (every range includes 0 anyway).
    for (int64_t k = 0; k < g.K_pad; ++k) w1[k] = k < K ? std::clamp(row[k] / s1, -119.f, 119.f) : 0.f;
    for (int64_t b = 0; b < ng; ++b) {
      const float* wg = w1.data() + b * group;
      // The grid s2 * (q - z) always contains 0 (z is an integer in [0, 15]), so the range it must cover is
      // [min(lo, 0), max(hi, 0)]; for groups that straddle 0 (nearly all) this is DESIGN's max - min exactly.
      const float lo = std::min(0.f, *std::min_element(wg, wg + group));
      const float hi = std::max(0.f, *std::max_element(wg, wg + group));
      const int s2 = clampi(rne((hi - lo) / 15.f), 1, 16);
      g.gscales[size_t(n * ng + b)] = uint8_t(s2);
      g.gzeros[size_t(n * ng + b)] = uint8_t(clampi(rne(-lo / float(s2)), 0, 15));
    }
  }
  return g;
}

WeightGrid w8_grid(const float* w, int64_t N, int64_t K) {
  WeightGrid g;
  g.format = WeightFormat::W8PerChannel;
  g.N = N;
  g.K = K;
  g.K_pad = K;
  g.scales.resize(size_t(N));
  for (int64_t n = 0; n < N; ++n) {
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(w[n * K + k]));
    g.scales[n] = fp16_scale(amax / 127.f);
  }
  return g;
}

QuantWeight round_to_grid(const WeightGrid& grid, const float* w) {
  QuantWeight q;
  q.grid = grid;
  q.codes.resize(size_t(grid.N * grid.K_pad));
  for (int64_t n = 0; n < grid.N; ++n)
    for (int64_t k = 0; k < grid.K_pad; ++k)
      q.codes[size_t(n * grid.K_pad + k)] = int8_t(grid.code(n, k, k < grid.K ? w[n * grid.K + k] : 0.f));
  return q;
}

}  // namespace qoq::quant
