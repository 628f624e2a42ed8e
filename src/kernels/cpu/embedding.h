// Embedding lookup: out[t] = table[ids[t]].
#pragma once
#include <cstdint>

namespace qoq::cpu {

// table: [vocab, dim]; out: [n, dim]. An id outside [0, vocab) is an InputError naming it and the vocab size.
void embedding(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n, float* out);

}  // namespace qoq::cpu
