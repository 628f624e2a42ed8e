// Host API of the Hopper (sm_90a) quantized GEMMs: W4A8 per-channel, W4A8 progressive g128, W8A8, and the
// per-token activation quantizer that feeds them (numerics: DESIGN §3, reference: src/kernels/cpu/qgemm_ref.h).
// All pointers are device pointers; every call is asynchronous on `stream` (nullptr = the default stream).
//
// Shapes: activations [M, K] (any M >= 1), weights [N, K], outputs [M, N] row-major.
// Limits: N % 64 == 0; K % 64 == 0 (per-channel, W8) or K % 128 == 0 (g128, the group size).
#pragma once
#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace qoq::cuda {

using Stream = CUstream_st*;

enum class WeightFormat : uint8_t { kW4PerChannel, kW4G128, kW8 };

// x fp16 [M, K] -> codes int8 [M, K], scales fp32 [M], sums int32 [M]. K % 8 == 0.
void quantize_activations(const uint16_t* x, int M, int K, int8_t* codes, float* scales, int32_t* sums,
                          Stream stream = nullptr);

// Bytes of the kernel layout of an N x K weight (K padded up to a multiple of 128 with zero codes).
size_t packed_weight_bytes(WeightFormat format, int N, int K);

// Load-time repacks from the canonical checkpoint layout (DESIGN §5) into the kernel layout (docs/gemm.md).
// qweight U8 [N, K/2] (low nibble = even k); g128 adds group_scales / group_zeros U8 [N, K/128]; W8: I8 [N, K].
void repack_w4(const uint8_t* qweight, int N, int K, uint8_t* packed, Stream stream = nullptr);
void repack_w4_g128(const uint8_t* qweight, const uint8_t* group_scales, const uint8_t* group_zeros, int N, int K,
                    uint8_t* packed, Stream stream = nullptr);
void repack_w8(const int8_t* weight, int N, int K, uint8_t* packed, Stream stream = nullptr);

// A quantized linear layer on the device, weights already in the kernel layout.
struct QuantLinear {
  WeightFormat format = WeightFormat::kW4PerChannel;
  int N = 0, K = 0;
  const uint8_t* packed = nullptr;   // packed_weight_bytes(format, N, K)
  const uint16_t* scales = nullptr;  // fp16 [N]: s (per-channel, W8) or s1 (g128)
  const uint8_t* zeros = nullptr;    // U8 [N], per-channel only
  const uint16_t* bias = nullptr;    // fp16 [N] or null
};

// Tile configuration of one launch (a row of the dispatch table).
struct GemmConfig {
  int tokens = 0;           // tokens per CTA, the wgmma N: 16 or 128
  int row_tiles = 0;        // 64-row weight tiles per consumer warpgroup (1 or 2)
  int consumers = 0;        // consumer warpgroups (1 or 2)
  int split_k = 1;          // > 1: int32 partials added in the workspace; the tile's last CTA applies the epilogue
  bool persistent = false;  // 128 tokens, 2 consumers, no split: one CTA per SM loops over the output tiles
  int max_ctas = 0;         // persistent only: grid size cap (0: one CTA per SM); tests use small caps
};
GemmConfig choose_config(WeightFormat format, int M, int N, int K);
bool config_supported(WeightFormat format, const GemmConfig& c, int N, int K);

struct GemmArgs {
  const int8_t* a = nullptr;        // [M, K] codes
  const float* a_scales = nullptr;  // [M]
  const int32_t* a_sums = nullptr;  // [M], read by the per-channel and g128 formats
  int M = 0;
  const uint16_t* residual = nullptr;  // [M, N] in the output dtype, or null
  void* out = nullptr;                 // [M, N] fp16 (or bf16 with out_bf16)
  bool out_bf16 = false;
  // gemm_workspace_bytes(), needed when the config splits K. Must be all-zero before its first use; every call
  // leaves it all-zero again (the last CTA of each tile cleans up), so zero it once at allocation.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  const GemmConfig* config = nullptr;  // null: choose_config()
  // Programmatic dependent launch: the GEMM may start while the previous kernel on the stream finishes, streaming
  // its first weight tiles before waiting for that kernel's results. Only when the kernel just before on the stream
  // does not write this layer's weights (e.g. not right after the repack).
  bool pdl = false;
};
size_t gemm_workspace_bytes(const QuantLinear& w, int M, const GemmConfig* config = nullptr);

// y = (s_a * s_w) * float(acc - z * asum) + bias + residual, rounded once to the output dtype.
void gemm(const QuantLinear& w, const GemmArgs& args, Stream stream = nullptr);

}  // namespace qoq::cuda
