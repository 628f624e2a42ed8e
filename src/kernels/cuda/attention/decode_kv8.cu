// Decode attention instantiations for the 8-bit cache (one file per format keeps nvcc's memory and time small).
#include "kernels/cuda/attention/decode_tma.cuh"

namespace qoq::cuda::attn {
QOQ_INSTANTIATE_DECODE(8)
QOQ_INSTANTIATE_DECODE_TMA(8)
}  // namespace qoq::cuda::attn
