// Internal entry points of the fused elementwise kernels, for the benchmark and the tests: explicit launch
// configurations of the pipelined kernels (v4, norm_act_quant.cu) and of the direct-load kernels
// (norm_act_quant_direct.cu), the rule by which the public functions pick one of the two, the previous version v2
// (norm_act_quant_v2.cu) as the benchmark's baseline, and a plain kernel with the same traffic shape as the
// copy-bandwidth reference.
#pragma once
#include <cstddef>
#include <cstdint>

#include "qoq/cuda_attention.h"

namespace qoq::cuda::fused {

// Launch configuration of the pipelined kernels; 0 everywhere = the default chosen from the row length.
struct Config {
  int warps = 0;        // warps per CTA; a CTA works on one row at a time (1, 2, 4, 8 or 16)
  int vecs = 0;         // 16-byte input vectors per thread and row (2, 4 or 8): warps * 32 * vecs * 8 >= row length
  int ctas_per_sm = 0;  // resident CTAs per SM asked for (capped by the occupancy the kernel reaches)
  int stages = 0;       // rows in flight per CTA in its shared-memory ring (1..8)
};

// The production kernels under an explicit configuration. Return the configuration launched (ctas_per_sm = the
// number actually resident), or warps = 0 when cfg is not an instantiated (warps, vecs) pair or does not fit.
Config rmsnorm_quantize_cfg(const Config& cfg, const void* x, bool x_bf16, int M, int K, const uint16_t* weight,
                            float eps, int8_t* codes, float* scales, int32_t* sums, float* inv_out,
                            AttnStream stream = nullptr);
Config silu_mul_quantize_cfg(const Config& cfg, const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales,
                             int32_t* sums, AttnStream stream = nullptr);

// Direct-load variants (norm_act_quant_direct.cu): one CTA per row, no ring; cfg.warps / cfg.vecs as above (0 = the
// default for the row length; ctas_per_sm and stages unused). Return the shape launched, warps = 0 if none fits.
Config rmsnorm_quantize_direct(const Config& cfg, const void* x, bool x_bf16, int M, int K, const uint16_t* weight,
                               float eps, int8_t* codes, float* scales, int32_t* sums, float* inv_out,
                               AttnStream stream = nullptr);
Config silu_mul_quantize_direct(const Config& cfg, const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales,
                                int32_t* sums, AttnStream stream = nullptr);

// The path the public functions take for M rows of length K (I): true = the direct kernels, false = the pipelined
// ones, each with its default configuration.
bool rmsnorm_uses_direct(int M, int K);
bool silu_mul_uses_direct(int M, int I);

// v2 (one CTA per row, row in registers; the benchmark's baseline), same contract as the public functions.
void rmsnorm_quantize_v2(const void* x, bool x_bf16, int M, int K, const uint16_t* weight, float eps, int8_t* codes,
                         float* scales, int32_t* sums, float* inv_out = nullptr, AttnStream stream = nullptr);
void silu_mul_quantize_v2(const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales, int32_t* sums,
                          AttnStream stream = nullptr);

// Reads in_bytes (16-byte aligned, a multiple of 64) and writes in_bytes / ratio (2: RMSNorm's fp16 in, codes out;
// 4: SwiGLU's gate and up in): the fused kernels' traffic with no arithmetic, the practical ceiling for them.
void copy_shaped(const void* in, size_t in_bytes, void* out, int ratio, AttnStream stream = nullptr);

}  // namespace qoq::cuda::fused
