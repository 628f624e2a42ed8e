#include "kernels/cuda/launch.h"

namespace qoq::cuda {

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    QOQ_CUDA_CHECK(cudaGetDevice(&dev));
    QOQ_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

}  // namespace qoq::cuda
