// Text generation on top of Model + Tokenizer: sampling parameters, the prefill/decode loop with stop ids,
// and the timings a user wants to see. The CLI's `generate` is a thin shell around generate().
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "qoq/model.h"

namespace qoq {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // nucleus mass in (0, 1]
  uint64_t seed = 0;
  // Throws InputError naming the parameter (temperature < 0 or NaN, top_k < 0, top_p outside (0, 1] or NaN).
  void validate() const;
};

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 256;           // new tokens at most
  std::vector<int32_t> stop_ids;  // generation ends after sampling one of these (it is not streamed)
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;    // sampled tokens, a stop token included
  int decode_steps = 0;        // single-token forwards after the prefill
  double prefill_seconds = 0;  // the prompt's forward
  double decode_seconds = 0;   // all single-token forwards
  bool stopped = false;        // hit a stop id (else max_tokens or the context ran out)
};

// Runs `prompt` through `model` in one batch, then samples up to max_tokens tokens, calling on_token for each
// sampled token that is not a stop id. Stops early when the cache is full. The prompt must fit the cache
// (InputError naming both numbers otherwise).
GenerateStats generate(const Model& model, KVCache& cache, std::span<const int32_t> prompt, const GenerateOptions& opts,
                       const std::function<void(int32_t)>& on_token);

}  // namespace qoq
