// 8-wide float vectors via GCC vector extensions: plain C++ that compiles to AVX2+FMA in functions marked
// QOQ_TARGET_AVX2 and to SSE pairs elsewhere. Internal to the CPU kernels. Vectors are passed by reference
// only, so no function has a vector-ABI signature (which would differ between the two builds of a kernel).
#pragma once
#include <cstdint>

// Kernels are compiled twice, generic and with this attribute, and dispatched at run time by has_avx2_fma().
// (GCC's target_clones("arch=haswell") dispatches on the CPU model and so skips AMD CPUs with AVX2.)
#define QOQ_TARGET_AVX2 [[gnu::target("avx2,fma")]]

namespace qoq::cpu {

inline bool has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

typedef float v8f __attribute__((vector_size(32)));
// The same, for unaligned memory that may alias plain floats.
typedef float v8f_mem __attribute__((vector_size(32), aligned(4), may_alias));

[[gnu::always_inline]] inline const v8f_mem& at8(const float* p) { return *reinterpret_cast<const v8f_mem*>(p); }
[[gnu::always_inline]] inline v8f_mem& at8(float* p) { return *reinterpret_cast<v8f_mem*>(p); }

[[gnu::always_inline]] inline float hsum(const v8f& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// Dot product of two contiguous float arrays, 8 lanes then the tail in order.
[[gnu::always_inline]] inline float dot(const float* a, const float* b, int64_t n) {
  v8f acc{};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc += at8(a + i) * at8(b + i);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += a * x over n floats.
[[gnu::always_inline]] inline void axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) at8(y + i) += a * at8(x + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace qoq::cpu
