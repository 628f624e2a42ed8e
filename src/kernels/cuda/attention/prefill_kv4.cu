// Prefill attention instantiations for the 4-bit cache (one file per format keeps nvcc's memory and time small).
#include "kernels/cuda/attention/prefill_kernel.cuh"

namespace qoq::cuda::attn {
QOQ_INSTANTIATE_PREFILL(4)
}  // namespace qoq::cuda::attn
