// Y[M, N] = X[M, K] * W[N, K]^T (+ bias[N]): the linear layer of the FP32 CPU backend.
// W rows are contiguous (HF [out, in] layout), so each output is a dot product of two contiguous rows.
#pragma once
#include <cstdint>

namespace qoq::cpu {

// The numerics reference: one float accumulator per output, k in order. bias may be null.
void matmul_ref(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

// Fast path: blocked for cache, 8-wide accumulators GCC vectorizes (AVX2+FMA clone where the CPU has it),
// split over the thread pool by blocks of W rows so each weight byte is read by one thread once per call.
// Agrees with matmul_ref up to float reassociation.
void matmul(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

}  // namespace qoq::cpu
