#include "kernels/cuda/check.h"

#include <string>

#include "qoq/error.h"

namespace qoq::cuda {

// Plain string building: libqoq_cuda then needs no fmt symbols, whatever the link order of its users.
void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw Error(std::string(file) + ":" + std::to_string(line) + ": CUDA error " + cudaGetErrorName(err) + " (" +
              cudaGetErrorString(err) + ") in " + expr);
}

void throw_usage_error(const char* what, const char* file, int line) {
  throw Error(std::string(file) + ":" + std::to_string(line) + ": " + what);
}

}  // namespace qoq::cuda
