// Y[M, N] = X[M, K] * W[N, K]^T (+ bias) with W stored as fp16 (half the bytes of FP32) and X, Y in FP32. Each
// weight is widened to fp32 exactly, so the result is the FP32 matmul of the same values up to summation order.
// Used for a QoQ checkpoint's lm_head, which is stored in F16 and is the largest read of a decode step.
#pragma once
#include <cstdint>

namespace qoq::cpu {

// w: fp16 bits [N, K]; bias may be null.
void matmul_f16w(const float* x, const uint16_t* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

}  // namespace qoq::cpu
