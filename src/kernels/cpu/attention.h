// Causal grouped-query attention over a KV cache.
#pragma once
#include <cstdint>

namespace qoq::cpu {

// q, out: [tokens, n_heads, head_dim]; the tokens sit at positions pos0 .. pos0 + tokens - 1.
// k, v: cache rows for positions 0 .. pos0 + tokens - 1, each row [n_kv_heads, head_dim], rows kv_stride
// floats apart. Token t attends to positions 0 .. pos0 + t; query head h reads KV head h / (n_heads/n_kv_heads).
// scores = q.k * scale, softmax in fp32 (max-subtracted), out = sum p * v.
void attention(const float* q, const float* k, const float* v, float* out, int64_t tokens, int64_t pos0,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int64_t kv_stride, float scale);

}  // namespace qoq::cpu
