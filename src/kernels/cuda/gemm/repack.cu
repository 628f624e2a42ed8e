// Load-time repack of canonical checkpoint weights (DESIGN §5) into the kernel layout (layout.h). Each thread
// fills one 32-bit word of the output by walking the inverse map back to the canonical element.
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm/layout.h"
#include "qoq/cuda_gemm.h"

namespace qoq::cuda {
namespace {

constexpr int kThreads = 256;

__device__ uint32_t canonical_code(const uint8_t* qweight, int N, int K, int n, int k) {
  if (k >= K) return 0;  // k padding: zero codes (their activations are zero too)
  return (qweight[size_t(n) * (K / 2) + k / 2] >> (4 * (k & 1))) & 15u;
}

template <int kTileBytes>
__global__ void repack_w4_kernel(const uint8_t* qweight, const uint8_t* gscales, const uint8_t* gzeros, int N, int K,
                                 uint32_t* out, size_t words) {
  const size_t wi = size_t(blockIdx.x) * kThreads + threadIdx.x;
  if (wi >= words) return;
  const int KT = layout::k_tiles(K);
  const size_t tile = wi / (kTileBytes / 4);
  const int in_tile = int(wi % (kTileBytes / 4)) * 4;
  const int nt = int(tile / KT), kt = int(tile % KT);
  uint32_t word = 0;
  if (in_tile < layout::kW4CodeBytes) {
    for (int b = 0; b < 4; ++b)
      for (int high = 0; high < 2; ++high) {
        const layout::Elem e = layout::w4_elem(in_tile + b, high);
        const uint32_t q = canonical_code(qweight, N, K, nt * 64 + e.r, kt * 128 + e.kk);
        word |= q << (8 * b + 4 * high);
      }
  } else {
    // g128 group parameters: two rows per word, each (s2, z*s2 mod 256).
    const int r0 = (in_tile - layout::kW4CodeBytes) / 2;
    for (int j = 0; j < 2; ++j) {
      const size_t g = size_t(nt * 64 + r0 + j) * (K / 128) + kt;
      const uint32_t s2 = gscales[g], zs2 = (gzeros[g] * s2) & 0xFFu;
      word |= (s2 | zs2 << 8) << (16 * j);
    }
  }
  out[wi] = word;
}

__global__ void repack_w8_kernel(const int8_t* w, int N, int K, uint32_t* out, size_t words) {
  const size_t wi = size_t(blockIdx.x) * kThreads + threadIdx.x;
  if (wi >= words) return;
  const int KT = layout::k_tiles(K);
  const size_t tile = wi / (layout::kW8Bytes / 4);
  const int in_tile = int(wi % (layout::kW8Bytes / 4)) * 4;
  const int nt = int(tile / KT), kt = int(tile % KT);
  uint32_t word = 0;
  for (int b = 0; b < 4; ++b) {
    const layout::Elem e = layout::w8_elem(in_tile + b);
    const int k = kt * 128 + e.kk;
    const uint32_t v = k < K ? uint8_t(w[size_t(nt * 64 + e.r) * K + k]) : 0u;
    word |= v << (8 * b);
  }
  out[wi] = word;
}

unsigned blocks_for(size_t words) { return unsigned((words + kThreads - 1) / kThreads); }

void check_shape(WeightFormat f, int N, int K) {
  QOQ_CUDA_REQUIRE(N > 0 && N % 64 == 0, "quantized GEMM: N must be a positive multiple of 64");
  QOQ_CUDA_REQUIRE(K > 0 && K % (f == WeightFormat::kW4G128 ? 128 : 64) == 0,
                   "quantized GEMM: K must be a multiple of 64 (128 for g128)");
}

}  // namespace

size_t packed_weight_bytes(WeightFormat f, int N, int K) {
  const size_t tile = f == WeightFormat::kW8       ? layout::kW8Bytes
                      : f == WeightFormat::kW4G128 ? layout::kW4GBytes
                                                   : layout::kW4Bytes;
  return size_t(N / 64) * layout::k_tiles(K) * tile;
}

void repack_w4(const uint8_t* qweight, int N, int K, uint8_t* packed, Stream stream) {
  check_shape(WeightFormat::kW4PerChannel, N, K);
  const size_t words = packed_weight_bytes(WeightFormat::kW4PerChannel, N, K) / 4;
  repack_w4_kernel<layout::kW4Bytes><<<blocks_for(words), kThreads, 0, stream>>>(
      qweight, nullptr, nullptr, N, K, reinterpret_cast<uint32_t*>(packed), words);
  QOQ_CUDA_CHECK_LAUNCH();
}

void repack_w4_g128(const uint8_t* qweight, const uint8_t* group_scales, const uint8_t* group_zeros, int N, int K,
                    uint8_t* packed, Stream stream) {
  check_shape(WeightFormat::kW4G128, N, K);
  const size_t words = packed_weight_bytes(WeightFormat::kW4G128, N, K) / 4;
  repack_w4_kernel<layout::kW4GBytes><<<blocks_for(words), kThreads, 0, stream>>>(
      qweight, group_scales, group_zeros, N, K, reinterpret_cast<uint32_t*>(packed), words);
  QOQ_CUDA_CHECK_LAUNCH();
}

void repack_w8(const int8_t* weight, int N, int K, uint8_t* packed, Stream stream) {
  check_shape(WeightFormat::kW8, N, K);
  const size_t words = packed_weight_bytes(WeightFormat::kW8, N, K) / 4;
  repack_w8_kernel<<<blocks_for(words), kThreads, 0, stream>>>(weight, N, K, reinterpret_cast<uint32_t*>(packed),
                                                               words);
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda
