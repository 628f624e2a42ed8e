// Applying the residual-stream rotation R (DESIGN §4 pass 2) and the norm fusion that must precede it (pass 1).
// With x' = x R for every residual vector x: a linear reading the stream needs W' = W R (x' W'ᵀ = x Wᵀ); one
// writing it needs W' = Rᵀ W and b' = Rᵀ b (y' = y R). RMSNorm commutes with R only once its γ is folded into the
// readers, because ||x R|| = ||x|| but diag(γ) does not commute with R.
#pragma once
#include <span>

#include "qoq/tensor.h"
#include "quant/hadamard.h"

namespace qoq::quant {

// W := W R for W [N, H] (q/k/v, gate/up, lm_head; also the embedding table [V, H]).
void rotate_reader(Tensor& w, const Rotation& r);
// W := Rᵀ W for W [H, K] (o_proj, down_proj) and bias := Rᵀ bias (bias may be null).
void rotate_writer(Tensor& w, Tensor* bias, const Rotation& r);
// Folds an RMSNorm weight into the linear it feeds: W[:, k] *= gamma[k].
void fuse_norm(Tensor& w, std::span<const float> gamma);

}  // namespace qoq::quant
