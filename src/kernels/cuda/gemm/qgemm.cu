// Host side of the quantized GEMMs: the dispatch table, the activation tensor map, launches and split-K.
#include <cuda.h>

#include <mutex>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm/qgemm_persistent.cuh"
#include "kernels/cuda/launch.h"

namespace qoq::cuda {
namespace {

// cuTensorMapEncodeTiled through the runtime's driver entry point, so nothing links libcuda directly.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiledFn encode_fn() {
  static EncodeTiledFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    QOQ_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    QOQ_CUDA_REQUIRE(f != nullptr && q == cudaDriverEntryPointSuccess, "cuTensorMapEncodeTiled not available");
    return reinterpret_cast<EncodeTiledFn>(f);
  }();
  return fn;
}

// Activations [M, K] int8, boxes of 128 k x `tokens` rows, 128-byte swizzle (the wgmma B layout); rows past M and
// columns past K read as zeros.
CUtensorMap act_tensor_map(const int8_t* a, int M, int K, int tokens) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(M)};
  const cuuint64_t strides[1] = {cuuint64_t(K)};
  const cuuint32_t box[2] = {128, cuuint32_t(tokens)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode_fn()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<int8_t*>(a), dims, strides, box,
                                 elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  QOQ_CUDA_REQUIRE(r == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed for the activation tensor");
  return map;
}

template <typename T>
void launch(const QuantLinear& w, const GemmArgs& args, QGemmParams p, int splits, Stream stream) {
  static std::once_flag once;
  std::call_once(once, [] {
    QOQ_CUDA_CHECK(cudaFuncSetAttribute(qgemm_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes));
  });
  const CUtensorMap map = act_tensor_map(args.a, args.M, w.K, T::kTokens);
  const dim3 grid((w.N / T::kRows) * ((args.M + T::kTokens - 1) / T::kTokens), 1, splits);
  launch_ex(qgemm_kernel<T>, grid, dim3(T::kThreads), T::kSmemBytes, stream, args.pdl, map, p);
  QOQ_CUDA_CHECK_LAUNCH();
}

// One CTA per SM (or c.max_ctas), each looping over output tiles.
template <typename T>
void launch_persistent(const GemmConfig& c, const QuantLinear& w, const GemmArgs& args, QGemmParams p, Stream stream) {
  static std::once_flag once;
  std::call_once(once, [] {
    QOQ_CUDA_CHECK(
        cudaFuncSetAttribute(qgemm_persistent_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes));
  });
  const CUtensorMap map = act_tensor_map(args.a, args.M, w.K, T::kTokens);
  const int tiles = (w.N / T::kRows) * ((args.M + T::kTokens - 1) / T::kTokens);
  const int cap = c.max_ctas > 0 ? c.max_ctas : sm_count();
  launch_ex(qgemm_persistent_kernel<T>, dim3(tiles < cap ? tiles : cap), dim3(T::kThreads), T::kSmemBytes, stream,
            args.pdl, map, p);
  QOQ_CUDA_CHECK_LAUNCH();
}

template <WeightFormat F>
void launch_format(const GemmConfig& c, const QuantLinear& w, const GemmArgs& args, const QGemmParams& p, int splits,
                   Stream stream) {
  const int key = c.tokens * 100 + c.row_tiles * 10 + c.consumers;
  if (c.persistent) {
    if (key == 12812) return launch_persistent<PersistentTraits<F, 1, 2>>(c, w, args, p, stream);
    if (key == 12822) return launch_persistent<PersistentTraits<F, 2, 2>>(c, w, args, p, stream);
    QOQ_CUDA_REQUIRE(false, "quantized GEMM: no persistent kernel for this tile configuration");
  }
  switch (key) {
    case 1611:
      return launch<QGemmTraits<F, 16, 1, 1>>(w, args, p, splits, stream);
    case 1621:
      return launch<QGemmTraits<F, 16, 2, 1>>(w, args, p, splits, stream);
    case 12811:
      return launch<QGemmTraits<F, 128, 1, 1>>(w, args, p, splits, stream);
    case 12812:
      return launch<QGemmTraits<F, 128, 1, 2>>(w, args, p, splits, stream);
    case 12822:
      return launch<QGemmTraits<F, 128, 2, 2>>(w, args, p, splits, stream);
    default:
      QOQ_CUDA_REQUIRE(false, "quantized GEMM: no kernel for this tile configuration");
  }
}

int splits_of(const GemmConfig& c, int K) {
  const int kt = layout::k_tiles(K);
  const int per = (kt + c.split_k - 1) / c.split_k;
  return (kt + per - 1) / per;  // no empty split
}

}  // namespace

bool config_supported(WeightFormat format, const GemmConfig& c, int N, int K) {
  const int key = c.tokens * 100 + c.row_tiles * 10 + c.consumers;
  const bool known = key == 1611 || key == 1621 || key == 12811 || key == 12812 || key == 12822;
  const int rows = 64 * c.row_tiles * c.consumers;
  const int kmult = format == WeightFormat::kW4G128 ? 128 : 64;
  const bool persistent_ok = !c.persistent || ((key == 12812 || key == 12822) && c.split_k == 1);
  return known && persistent_ok && N > 0 && N % rows == 0 && K > 0 && K % kmult == 0 && c.split_k >= 1 &&
         c.split_k <= layout::k_tiles(K);
}

// The dispatch table (bench/NOTES.md explains each choice).
GemmConfig choose_config(WeightFormat format, int M, int N, int K) {
  (void)format;
  constexpr int kSMs = 132;
  const int kt = layout::k_tiles(K);
  GemmConfig c;
  if (M <= 16) {
    // Decode: weight streaming. 64-row CTAs unless 128-row ones alone give every SM one (bench/NOTES.md sweep);
    // split K when the grid leaves SMs idle, up to ~2 CTAs per SM, keeping >= 4 k-tiles per split.
    c.tokens = 16;
    c.consumers = 1;
    c.row_tiles = N % 128 == 0 && N / 128 >= kSMs ? 2 : 1;
    const int ctas = N / (64 * c.row_tiles);
    if (ctas < kSMs)
      while (c.split_k < 16 && ctas * c.split_k < 2 * kSMs && kt / (c.split_k * 2) >= 4) c.split_k *= 2;
    return c;
  }
  // 128-token tiles (past 16 tokens the weights still dominate the bytes, and a tile zero-filled past M costs no
  // extra bytes). The largest weight tile that still gives every SM a CTA; split-K costs ~6 us per million int32
  // atomics on the H200, so it is used only when even 64-row tiles leave half the SMs idle.
  c.tokens = 128;
  const int m_blocks = (M + 127) / 128;
  struct Tile {
    int row_tiles, consumers;
  };
  const Tile tiles[] = {{2, 2}, {1, 2}, {1, 1}};
  for (const Tile& t : tiles) {
    const int rows = 64 * t.row_tiles * t.consumers;
    if (N % rows != 0 || (rows == 256 && M <= 128)) continue;
    c.row_tiles = t.row_tiles, c.consumers = t.consumers;
    if ((N / rows) * m_blocks >= kSMs) break;
    // 256-row tiles that nearly fill the SMs beat 128-row ones that spill into a ragged second round of the
    // persistent grid (qkv M=512: 96 tiles of 256 rows 27.1 us, 192 of 128 rows 30.5 us; round 4).
    if (rows == 256 && N % 128 == 0 && 10 * (N / 256) * m_blocks >= 7 * kSMs && (N / 128) * m_blocks < 2 * kSMs) break;
  }
  const int ctas = (N / (64 * c.row_tiles * c.consumers)) * m_blocks;
  while (ctas * c.split_k < kSMs / 2 && kt / (c.split_k * 2) >= 4) c.split_k *= 2;
  // Two consumers, no split: the persistent kernel (overlaps each tile's fill and epilogue with other work).
  c.persistent = c.split_k == 1 && c.consumers == 2;
  return c;
}

size_t gemm_workspace_bytes(const QuantLinear& w, int M, const GemmConfig* config) {
  const GemmConfig c = config ? *config : choose_config(w.format, M, w.N, w.K);
  if (splits_of(c, w.K) == 1) return 0;
  const size_t tiles = size_t(w.N / (64 * c.row_tiles * c.consumers)) * ((M + c.tokens - 1) / c.tokens);
  return (size_t(M) * w.N + tiles) * sizeof(int32_t);
}

void gemm(const QuantLinear& w, const GemmArgs& args, Stream stream) {
  QOQ_CUDA_REQUIRE(args.M >= 0, "quantized GEMM: M must be >= 0");
  if (args.M == 0) return;
  const GemmConfig c = args.config ? *args.config : choose_config(w.format, args.M, w.N, w.K);
  QOQ_CUDA_REQUIRE(config_supported(w.format, c, w.N, w.K),
                   "quantized GEMM: unsupported shape (N % 64, K % 64, g128 K % 128) or tile configuration");
  QOQ_CUDA_REQUIRE(w.format != WeightFormat::kW4PerChannel || (w.zeros && args.a_sums),
                   "quantized GEMM: per-channel W4 needs zeros and activation sums");
  QOQ_CUDA_REQUIRE(w.format != WeightFormat::kW4G128 || args.a_sums, "quantized GEMM: g128 needs activation sums");
  const int splits = splits_of(c, w.K);
  QGemmParams p{};
  p.w = w.packed;
  p.M = args.M;
  p.N = w.N;
  p.k_tiles = layout::k_tiles(w.K);
  p.k_tiles_split = (p.k_tiles + splits - 1) / splits;
  p.pdl = args.pdl ? 1 : 0;
  p.epi = {args.a_scales,
           args.a_sums,
           w.scales,
           w.format == WeightFormat::kW4PerChannel ? w.zeros : nullptr,
           w.format == WeightFormat::kW4G128 ? 128 : 0,
           w.bias,
           args.residual,
           static_cast<uint16_t*>(args.out),
           args.M,
           w.N,
           args.out_bf16};
  if (splits > 1) {
    QOQ_CUDA_REQUIRE(args.workspace && args.workspace_bytes >= gemm_workspace_bytes(w, args.M, &c),
                     "quantized GEMM: split-K needs a zero-initialized workspace of gemm_workspace_bytes()");
    p.workspace = static_cast<int32_t*>(args.workspace);
  }
  switch (w.format) {
    case WeightFormat::kW4PerChannel:
      launch_format<WeightFormat::kW4PerChannel>(c, w, args, p, splits, stream);
      break;
    case WeightFormat::kW4G128:
      launch_format<WeightFormat::kW4G128>(c, w, args, p, splits, stream);
      break;
    case WeightFormat::kW8:
      launch_format<WeightFormat::kW8>(c, w, args, p, splits, stream);
      break;
  }
}

}  // namespace qoq::cuda
