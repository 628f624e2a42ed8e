#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "qoq/error.h"

namespace qoq {

void SamplingParams::validate() const {
  QOQ_CHECK_INPUT(std::isfinite(temperature) && temperature >= 0.0f,
                  "invalid temperature {}: must be a finite number >= 0 (0 = greedy)", temperature);
  QOQ_CHECK_INPUT(top_k >= 0, "invalid top_k {}: must be >= 0 (0 = no limit)", top_k);
  QOQ_CHECK_INPUT(!std::isnan(top_p) && top_p > 0.0f && top_p <= 1.0f, "invalid top_p {}: must be in (0, 1]", top_p);
}

int32_t argmax(std::span<const float> logits) {
  QOQ_CHECK(!logits.empty(), "argmax of no logits");
  size_t best = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    QOQ_CHECK(!std::isnan(logits[i]), "logit {} is NaN", i);
    if (logits[i] > logits[best]) best = i;
  }
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) { p_.validate(); }

int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature == 0.0f) return argmax(logits);
  const int32_t n = int32_t(logits.size());
  cand_.resize(size_t(n));
  for (int32_t i = 0; i < n; ++i) {
    QOQ_CHECK(!std::isnan(logits[i]), "logit {} is NaN", i);
    cand_[size_t(i)] = {logits[i], i};
  }
  // Highest logits first; ties by id so the order never depends on the sort algorithm.
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < keep) {
    keep = size_t(p_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax of logit / temperature over the kept candidates, in double.
  std::vector<double> prob(keep);
  const double mx = cand_[0].first;
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp((double(cand_[i].first) - mx) / p_.temperature);
  // Nucleus: the smallest prefix whose mass reaches top_p (at least one token).
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    size_t cut = 0;
    while (cut < keep) {
      cum += prob[cut++] / sum;
      if (cum >= p_.top_p) break;
    }
    keep = cut;
    sum = 0.0;
    for (size_t i = 0; i < keep; ++i) sum += prob[i];
  }
  // A uniform double in [0, 1) from the top 53 bits: the same on every standard library.
  const double u = double(rng_() >> 11) * 0x1.0p-53 * sum;
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (u < cum) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace qoq
