#include <algorithm>
#include <chrono>

#include "qoq/engine.h"
#include "runtime/sampler.h"

namespace qoq {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

GenerateStats generate(const Model& model, KVCache& cache, std::span<const int32_t> prompt, const GenerateOptions& opts,
                       const std::function<void(int32_t)>& on_token) {
  Sampler sampler(opts.sampling);
  QOQ_CHECK_INPUT(!prompt.empty(), "generate: the prompt has no tokens");
  QOQ_CHECK_INPUT(opts.max_tokens >= 0, "invalid max_tokens {}: must be >= 0", opts.max_tokens);
  const int64_t room = cache.capacity() - cache.size();
  QOQ_CHECK_INPUT(int64_t(prompt.size()) <= room, "the prompt has {} tokens but the context holds {} (--ctx)",
                  prompt.size(), room);
  GenerateStats st;
  st.prompt_tokens = int(prompt.size());
  if (opts.max_tokens == 0) return st;
  auto t0 = std::chrono::steady_clock::now();
  Tensor logits = model.forward(prompt, cache);
  st.prefill_seconds = seconds_since(t0);
  for (;;) {
    const int32_t next = sampler.sample(logits.span<const float>());
    ++st.generated_tokens;
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), next) != opts.stop_ids.end()) {
      st.stopped = true;
      break;
    }
    on_token(next);
    if (st.generated_tokens >= opts.max_tokens || cache.size() >= cache.capacity()) break;
    t0 = std::chrono::steady_clock::now();
    logits = model.forward(std::span<const int32_t>(&next, 1), cache);
    st.decode_seconds += seconds_since(t0);
    ++st.decode_steps;
  }
  return st;
}

}  // namespace qoq
