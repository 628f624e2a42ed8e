#include "kernels/cpu/rope.h"

#include <cmath>
#include <numbers>

#include "qoq/error.h"

namespace qoq::cpu {

std::vector<float> rope_inv_freq(const ModelConfig& config) {
  const int dim = config.head_dim;
  QOQ_CHECK(dim > 0 && dim % 2 == 0, "head_dim {} must be positive and even", dim);
  std::vector<double> inv(dim / 2);
  for (int i = 0; i < dim / 2; ++i) inv[i] = 1.0 / std::pow(double(config.rope_theta), double(2 * i) / dim);
  const RopeScaling& s = config.rope_scaling;
  if (s.type == RopeScaling::Type::Linear) {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == RopeScaling::Type::Llama3) {
    // Low frequencies (long wavelengths) are divided by factor, high ones kept, the band between blended.
    const double old_len = s.original_max_position_embeddings;
    const double low_freq_wavelen = old_len / s.low_freq_factor;
    const double high_freq_wavelen = old_len / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return std::vector<float>(inv.begin(), inv.end());
}

void rope_apply(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t pos0, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  std::vector<float> cs(half), sn(half);
  for (int64_t t = 0; t < tokens; ++t) {
    const float pos = float(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];
      cs[i] = float(std::cos(double(angle)));
      sn[i] = float(std::sin(double(angle)));
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

}  // namespace qoq::cpu
