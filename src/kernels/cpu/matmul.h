// Y[M, N] = X[M, K] * W[N, K]^T (+ bias[N]): the linear layer of the FP32 CPU backend.
// W rows are contiguous (HF [out, in] layout), so each output is a dot product of two contiguous rows.
#pragma once
#include <cstdint>

namespace qoq::cpu {

// The numerics reference: one float accumulator per output, k in order. bias may be null.
void matmul_ref(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

// Fast path. Agrees with matmul_ref up to float reassociation. bias may be null.
// - Small M (decode): dot products over W rows, one pass over the weights (bandwidth-bound).
// - Larger M on AVX2+FMA CPUs: X packed into 16-row panels, a 16x6 register-blocked FMA micro-kernel that
//   broadcasts W straight from its rows (so W is never repacked), blocked over K, M and N for L1/L2 and split
//   over the thread pool by (N block, M block). Packed X lives in a reused thread-local buffer.
void matmul(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

// The previous fast path (dot-product tiles for every M), kept as the benchmark baseline and the fallback for
// CPUs without AVX2+FMA.
void matmul_blocked_v1(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k);

}  // namespace qoq::cpu
