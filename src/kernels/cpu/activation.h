// The SwiGLU gate of the Llama MLP: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
#pragma once
#include <cstdint>

namespace qoq::cpu {

// gate, up, out: n floats; out may alias gate or up.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

}  // namespace qoq::cpu
