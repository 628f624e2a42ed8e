// Round-to-nearest weight quantization (DESIGN §4 pass 6) and the per-row clipping search of the per-channel W4
// grid. The search error of row n for a candidate grid is the calibration output error
//   sum_tokens (W_n x - Q(W_n) x)^2 = e_n H e_nᵀ   with e_n = W_n - Q(W_n), H = Xᵀ X,
// so it costs one [N, K] x [K, K] product per candidate ratio, whatever the number of calibration tokens.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "quant/grid.h"
#include "quant/hessian.h"

namespace qoq::quant {

// 1.00, 0.99, ..., 0.20 (81 ratios, each computed as i / 100 so none drifts).
std::vector<float> default_clip_ratios();

struct ClipResult {
  WeightGrid grid;                      // per-channel W4 grid built from the chosen ranges
  std::vector<float> ratio;             // [N] chosen r per row
  std::vector<double> error;            // [N] its error e H eᵀ (or |e|^2 without H)
  std::vector<double> error_unclipped;  // [N] the error at r = 1, for reporting what the search bought
};

// Per output row, the ratio r (from `ratios`, tried in order; ties keep the earlier) whose grid over
// [r * min(W_n), r * max(W_n)] minimizes e H eᵀ. h == nullptr: the plain squared weight error (H = I).
ClipResult search_clip_w4_per_channel(const float* w, int64_t N, int64_t K, const Hessian* h,
                                      std::span<const float> ratios);

// Row errors e_n H e_nᵀ (or |e_n|^2 when h is null) of a quantized weight against the float one (w [N, K]).
std::vector<double> row_errors(const float* w, const QuantWeight& q, const Hessian* h);

}  // namespace qoq::quant
