// Picks the next token from logits: greedy, or temperature with top-k / top-p (nucleus) filtering, drawn from
// a seeded std::mt19937_64 so a seed always gives the same tokens.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "qoq/engine.h"

namespace qoq {

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // validates params
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // reused between calls
};

// Index of the largest logit (the first on ties); NaN logits are an Error.
int32_t argmax(std::span<const float> logits);

}  // namespace qoq
