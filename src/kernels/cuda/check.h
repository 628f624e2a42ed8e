// CUDA error checks for host code. The thrower lives in check.cc so .cu files need not parse fmt.
#pragma once
#include <cuda_runtime.h>

namespace qoq::cuda {
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_usage_error(const char* what, const char* file, int line);
}  // namespace qoq::cuda

#define QOQ_CUDA_CHECK(expr)                                                                         \
  do {                                                                                               \
    const cudaError_t qoq_err_ = (expr);                                                             \
    if (qoq_err_ != cudaSuccess) ::qoq::cuda::throw_cuda_error(qoq_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// Checks the launch just made (configuration errors; faults surface at the next synchronization).
#define QOQ_CUDA_CHECK_LAUNCH() QOQ_CUDA_CHECK(cudaGetLastError())

#define QOQ_CUDA_REQUIRE(cond, what)                                       \
  do {                                                                     \
    if (!(cond)) ::qoq::cuda::throw_usage_error(what, __FILE__, __LINE__); \
  } while (0)
