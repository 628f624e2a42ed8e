// GPTQ with a fixed grid (DESIGN §4 pass 6): scales and zeros are chosen beforehand (clipping search or the
// progressive scheme) and GPTQ only picks the codes, column by column, pushing each column's rounding error onto
// the columns not yet quantized along H⁻¹ so the layer output X Wᵀ moves as little as possible.
// Because the grid of a weight is fixed by its ORIGINAL (row, column), processing columns in act-order
// (descending diag H) is compatible with groups: column k always uses the group k / G.
#pragma once
#include <cstdint>

#include "quant/grid.h"
#include "quant/hessian.h"

namespace qoq::quant {

struct GptqOptions {
  bool act_order = true;  // process columns by descending diag(H)
  double damp = 0.01;     // H += damp * mean(diag H) * I
  int64_t block = 128;    // lazy-batch block size
};

struct GptqStats {
  int64_t dead_columns = 0;  // inputs never active in calibration (H_jj = 0): rounded to nearest
  double damp_used = 0;      // the relative damping that made H positive definite (raised when needed)
};

// Codes for w [N, K] on `grid` (grid.N = N, grid.K = K). The weights are not modified.
QuantWeight gptq_quantize(const float* w, const WeightGrid& grid, const Hessian& h, const GptqOptions& opts = {},
                          GptqStats* stats = nullptr);

}  // namespace qoq::quant
