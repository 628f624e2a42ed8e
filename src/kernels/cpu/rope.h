// Rotary position embeddings in the HF rotate-half convention: channel i pairs with channel i + head_dim/2.
#pragma once
#include <cstdint>
#include <vector>

#include "qoq/model_config.h"

namespace qoq::cpu {

// The head_dim/2 inverse frequencies for `config` (rope_theta, head_dim, rope_scaling), exactly as HF's
// _compute_default_rope_parameters / _compute_linear_scaling_rope_parameters /
// _compute_llama3_parameters, evaluated in double and rounded to float.
std::vector<float> rope_inv_freq(const ModelConfig& config);

// Rotates x: [tokens, heads, head_dim] in place; token t sits at position pos0 + t.
// angle = float(pos) * inv_freq[i] in fp32 as HF does, cos/sin of that angle.
void rope_apply(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t pos0, const float* inv_freq);

}  // namespace qoq::cpu
