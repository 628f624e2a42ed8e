#include "qoq/model.h"

namespace qoq {

KVCache::KVCache(const ModelConfig& config, int capacity) : capacity_(capacity), kv_dim_(config.kv_dim()) {
  QOQ_CHECK_INPUT(capacity > 0, "KV cache: context must be positive, got {}", capacity);
  QOQ_CHECK_INPUT(capacity <= config.max_position_embeddings,
                  "KV cache: context {} exceeds the model's max_position_embeddings {}", capacity,
                  config.max_position_embeddings);
  const size_t n = size_t(int64_t(capacity) * kv_dim_);
  for (int l = 0; l < config.num_layers; ++l) {
    k_.emplace_back(new float[n]);
    v_.emplace_back(new float[n]);
  }
}

void KVCache::truncate(int n) {
  QOQ_CHECK(n >= 0 && n <= size_, "truncate to {} of a cache holding {}", n, size_);
  size_ = n;
}

}  // namespace qoq
