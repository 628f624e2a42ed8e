// Channel reordering for g128 (DESIGN §4 pass 3): sort a linear's input channels by calibration max|x| (ascending)
// so each group of 128 holds channels of like range, and permute the producer's rows to match, so no permutation
// remains at inference. A permutation `perm` is a gather: new channel i is old channel perm[i].
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "qoq/tensor.h"
#include "quant/smooth.h"

namespace qoq::quant {

// Stable argsort ascending (ties keep index order, so the permutation is deterministic).
std::vector<int32_t> ascending_order(std::span<const float> stat);

// down_proj: its columns, and gate/up rows, by ascending x_absmax [intermediate].
void apply_mlp_reorder(Tensor& gate_w, Tensor& up_w, Tensor& down_w, std::span<const int32_t> perm);

// o_proj inputs: within each KV head, channels sorted by x_absmax [heads * D] max-reduced over the group's query
// heads, so one permutation serves v_proj's row (which all those heads read) and every head's o_proj columns.
// Returns the permutation over the kv_heads * D rows of v_proj (it never crosses heads).
std::vector<int32_t> head_channel_order(std::span<const float> x_absmax, const HeadLayout& layout);
// The same permutation over o_proj's heads * D columns.
std::vector<int32_t> expand_kv_perm_to_q(std::span<const int32_t> kv_perm, const HeadLayout& layout);
// v_proj rows (and bias) by kv_perm, o_proj columns by its expansion.
void apply_attention_reorder(Tensor& v_w, Tensor* v_b, Tensor& o_w, std::span<const int32_t> kv_perm,
                             const HeadLayout& layout);

}  // namespace qoq::quant
