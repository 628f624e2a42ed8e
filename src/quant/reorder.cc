#include "quant/reorder.h"

#include <algorithm>
#include <numeric>

#include "quant/linalg.h"

namespace qoq::quant {

std::vector<int32_t> ascending_order(std::span<const float> stat) {
  std::vector<int32_t> p(stat.size());
  std::iota(p.begin(), p.end(), 0);
  std::stable_sort(p.begin(), p.end(), [&](int32_t a, int32_t b) { return stat[a] < stat[b]; });
  return p;
}

void apply_mlp_reorder(Tensor& gate_w, Tensor& up_w, Tensor& down_w, std::span<const int32_t> perm) {
  permute_rows(gate_w, nullptr, perm);
  permute_rows(up_w, nullptr, perm);
  permute_cols(down_w, perm);
}

std::vector<int32_t> head_channel_order(std::span<const float> x_absmax, const HeadLayout& l) {
  const std::vector<float> per_kv = reduce_heads_max(x_absmax, l);
  const int64_t D = l.head_dim;
  std::vector<int32_t> perm(size_t(l.kv_heads * D));
  for (int64_t g = 0; g < l.kv_heads; ++g) {
    const std::vector<int32_t> local = ascending_order(std::span<const float>(per_kv).subspan(size_t(g * D), D));
    for (int64_t d = 0; d < D; ++d) perm[size_t(g * D + d)] = int32_t(g * D + local[d]);
  }
  return perm;
}

std::vector<int32_t> expand_kv_perm_to_q(std::span<const int32_t> kv_perm, const HeadLayout& l) {
  l.check();
  const int64_t D = l.head_dim;
  QOQ_CHECK(int64_t(kv_perm.size()) == l.kv_heads * D, "KV permutation of {} for {} kv heads x {}", kv_perm.size(),
            l.kv_heads, D);
  std::vector<int32_t> out(size_t(l.heads * D));
  for (int64_t h = 0; h < l.heads; ++h) {
    const int64_t g = h / l.group();
    for (int64_t d = 0; d < D; ++d) {
      const int32_t src = kv_perm[g * D + d];
      QOQ_CHECK(src / D == g, "KV permutation moves channel {} across heads", src);
      out[size_t(h * D + d)] = int32_t(h * D + src % D);
    }
  }
  return out;
}

void apply_attention_reorder(Tensor& v_w, Tensor* v_b, Tensor& o_w, std::span<const int32_t> kv_perm,
                             const HeadLayout& l) {
  permute_rows(v_w, v_b, kv_perm);
  permute_cols(o_w, expand_kv_perm_to_q(kv_perm, l));
}

}  // namespace qoq::quant
