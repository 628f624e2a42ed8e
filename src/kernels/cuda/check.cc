#include "kernels/cuda/check.h"

#include "qoq/error.h"

namespace qoq::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  fail("{}:{}: CUDA error {} ({}) in {}", file, line, cudaGetErrorName(err), cudaGetErrorString(err), expr);
}

void throw_usage_error(const char* what, const char* file, int line) { fail("{}:{}: {}", file, line, what); }

}  // namespace qoq::cuda
