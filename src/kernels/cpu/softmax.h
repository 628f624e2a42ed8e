// Softmax and the log-likelihood of a target under logits (perplexity).
#pragma once
#include <cstdint>

namespace qoq::cpu {

// In place over n values, max-subtracted so large logits do not overflow.
void softmax(float* x, int64_t n);

// log(sum exp(x)), computed stably in double.
double logsumexp(const float* x, int64_t n);

// -log softmax(x)[target] = logsumexp(x) - x[target], in double.
double nll(const float* logits, int64_t n, int64_t target);

}  // namespace qoq::cpu
