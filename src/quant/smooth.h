// Scale migration between a producer and a consumer of the same channels (DESIGN §4 passes 4-5), pure math on
// weight tensors: dividing producer row j by s_j and multiplying consumer column j by s_j leaves the block's output
// unchanged whenever everything between them is linear per channel (attention probabilities times V; the SwiGLU
// product silu(gate) * up is linear in up), while moving range from the hard-to-quantize side to the easy one.
// Head layouts: q_proj rows are [heads, D], k/v_proj rows [kv_heads, D], o_proj columns [heads, D]; query head h
// belongs to KV head h / (heads / kv_heads).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "qoq/tensor.h"

namespace qoq::quant {

struct HeadLayout {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t group() const { return heads / kv_heads; }  // query heads per KV head
  void check() const;
};

// SmoothAttention λ [kv_heads * D] from post-RoPE max|K| per (KV head, channel): λ_c = max|K_c|^alpha (alpha 0.5 by
// default), then λ_c = λ_{c+D/2} = the larger of the rotate-half pair, so the scaling commutes with RoPE (RoPE
// mixes exactly c and c+D/2 with one rotation, which commutes with a scalar multiple of the identity on the pair).
// λ = 1 where max|K| is 0.
std::vector<float> smooth_attention_scales(std::span<const float> k_absmax, const HeadLayout& layout,
                                           float alpha = 0.5f);
// k_proj rows (and bias) ÷ λ; q_proj rows (and bias) × λ for every query head of the KV group. Biases may be null.
void apply_smooth_attention(Tensor& q_w, Tensor* q_b, Tensor& k_w, Tensor* k_b, std::span<const float> lambda,
                            const HeadLayout& layout);

// max_n |W[n, j]| per input channel j of W [N, K].
std::vector<float> column_absmax(const Tensor& w);
// s_j = x_absmax_j^alpha / w_absmax_j^beta; 1 where either is 0 (a dead or weightless channel has nothing to move).
std::vector<float> smooth_linear_scales(std::span<const float> x_absmax, std::span<const float> w_absmax, float alpha,
                                        float beta);

// GQA: a per-(query head, channel) statistic [heads * D] max-reduced over the query heads of each KV group
// -> [kv_heads * D]; and the broadcast back.
std::vector<float> reduce_heads_max(std::span<const float> per_q, const HeadLayout& layout);
std::vector<float> expand_kv_to_q(std::span<const float> per_kv, const HeadLayout& layout);

// o_proj smoothing scales [kv_heads * D], shared by the query heads of a group: both the input ranges x_absmax
// [heads * D] and o_proj's column maxima are max-reduced over the group before s_j is formed.
std::vector<float> smooth_o_proj_scales(std::span<const float> x_absmax, const Tensor& o_w, const HeadLayout& layout,
                                        float alpha, float beta);

// Producer rows (and bias) ÷ s, consumer columns × s, channel for channel (e.g. up_proj / down_proj).
void apply_smooth_linear(Tensor& producer_w, Tensor* producer_b, Tensor& consumer_w, std::span<const float> s);
// v_proj rows (and bias) ÷ s [kv_heads * D]; o_proj columns × s broadcast to every query head of the group.
void apply_smooth_v_o(Tensor& v_w, Tensor* v_b, Tensor& o_w, std::span<const float> s, const HeadLayout& layout);

// The α grid search of pass 5 without the model: scales for each α (β = 1 - α), scored by `error` (e.g. the layer
// output error with quantized weights); returns the index of the best α (ties keep the earlier).
size_t search_smooth_alpha(std::span<const float> x_absmax, std::span<const float> w_absmax,
                           std::span<const float> alphas,
                           const std::function<double(const std::vector<float>& scales)>& error);

}  // namespace qoq::quant
