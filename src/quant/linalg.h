// Dense helpers the quantizer passes share: in-place row/column scaling and permutation of F32 weight tensors, and
// the SPD factorizations GPTQ needs. Matrices are row-major; weights are [N out, K in] as everywhere in qoq.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "qoq/tensor.h"

namespace qoq::quant {

// W[n, :] *= s[n] (divide = false) or /= s[n]; the bias (may be null, shape [N]) follows its row.
void scale_rows(Tensor& w, Tensor* bias, std::span<const float> s, bool divide = false);
// W[:, k] *= s[k] (or /=).
void scale_cols(Tensor& w, std::span<const float> s, bool divide = false);
// Row i of the result is row perm[i] of the input (gather); the bias follows.
void permute_rows(Tensor& w, Tensor* bias, std::span<const int32_t> perm);
// Column j of the result is column perm[j] of the input.
void permute_cols(Tensor& w, std::span<const int32_t> perm);
// inv[perm[i]] = i. Checks that perm is a permutation.
std::vector<int32_t> invert_permutation(std::span<const int32_t> perm);
// The checked F32 2-D view every helper above uses; names the tensor shape in the error.
void check_matrix(const Tensor& w, const char* what);

// In place: the lower Cholesky factor L of the SPD matrix a [n, n] (a = L Lᵀ), upper triangle zeroed.
// Returns false (a partly overwritten) when a is not numerically positive definite.
bool cholesky_lower(std::vector<double>& a, int64_t n);

// In place: the inverse of a lower-triangular matrix with nonzero diagonal.
void invert_lower(std::vector<double>& l, int64_t n);

// The upper Cholesky factor U of A⁻¹ (A⁻¹ = Uᵀ U) for SPD A [n, n], the matrix GPTQ walks. Computed as
// U = J chol(J A J)⁻¹ J with J the reversal: one factorization and one triangular inverse instead of
// factor, invert, factor again. Returns false when A is not numerically positive definite.
bool inverse_upper_cholesky(std::span<const double> a, int64_t n, std::vector<double>& u);

}  // namespace qoq::quant
