#include "kernels/cpu/embedding.h"

#include <cstring>

#include "qoq/error.h"

namespace qoq::cpu {

void embedding(const float* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n, float* out) {
  for (int64_t t = 0; t < n; ++t) {
    QOQ_CHECK_INPUT(ids[t] >= 0 && ids[t] < vocab, "token id {} at position {} is outside the vocabulary [0, {})",
                    ids[t], t, vocab);
    std::memcpy(out + t * dim, table + int64_t(ids[t]) * dim, size_t(dim) * sizeof(float));
  }
}

}  // namespace qoq::cpu
