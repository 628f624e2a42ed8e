// Decode attention instantiations for the 4-bit cache (one file per format keeps nvcc's memory and time small).
#include "kernels/cuda/attention/decode_tma.cuh"

namespace qoq::cuda::attn {
QOQ_INSTANTIATE_DECODE(4)
QOQ_INSTANTIATE_DECODE_TMA(4)
}  // namespace qoq::cuda::attn
