// RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * weight.
#pragma once
#include <cstdint>

namespace qoq::cpu {

// x, y: [rows, dim] (may alias); weight: [dim]. The mean of squares is accumulated in double.
void rmsnorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);

}  // namespace qoq::cpu
