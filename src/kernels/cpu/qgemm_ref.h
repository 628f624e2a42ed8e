// CPU reference of the QoQ integer GEMMs and activation quantization (DESIGN §3). These loops define the numbers:
// every GPU kernel reproduces the int32 accumulators bit-exactly and the epilogue's fp16/bf16 bits exactly.
// Layouts: activations [M, K] row-major; weights [N, K] row-major (one output channel per row); outputs [M, N].
#pragma once
#include <cstdint>
#include <vector>

#include "quant/grid.h"

namespace qoq::ref {

// Per-token symmetric int8 activations with the fp32 scale and the exact integer row sum.
struct ActQuant {
  int M = 0, K = 0;
  std::vector<int8_t> codes;  // [M, K], in [-127, 127]
  std::vector<float> scales;  // [M], s_a = amax / 127 (1 when amax == 0)
  std::vector<int32_t> sums;  // [M], sum_k codes
};
// x is [M, K]. a = clamp(rne(x * (127 / amax)), -127, 127): the multiplier 127/amax is rounded to fp32 once,
// then each product is rounded once; the GPU kernel does exactly the same two fp32 operations.
ActQuant quantize_activations(const float* x, int M, int K);

// Per-channel W4 (group_size -1): w ~ s[n] * (q[n,k] - z[n]).
struct W4PerChannel {
  int N = 0, K = 0;
  std::vector<uint8_t> q;        // [N, K] codes in [0, 15], one per byte (unpacked)
  std::vector<uint16_t> scales;  // [N] fp16 bits
  std::vector<uint8_t> zeros;    // [N] in [0, 15]
};
// Round-to-nearest min/max quantizer of DESIGN §4 step 6 without the clipping search (r = 1). The range is
// [min(lo, 0), max(hi, 0)], as for every grid of quant/grid.h (the checkpoint quantizer): the same codes bit for bit.
W4PerChannel quantize_w4_per_channel(const float* w, int N, int K);

// Progressive group W4 (group_size G, 128 by default): level-1 fp16 s1 per row, level-2 integer s2/z per group.
struct W4Group {
  int N = 0, K = 0, G = 128;
  std::vector<uint8_t> q;        // [N, K] codes in [0, 15]
  std::vector<uint16_t> scales;  // [N] fp16 bits of s1
  std::vector<uint8_t> gscales;  // [N, K/G] s2 in [1, 16]
  std::vector<uint8_t> gzeros;   // [N, K/G] z in [0, 15]
  // The int8 weight s2*(q - z), always in [-127, 127].
  int w8(int n, int k) const;
};
W4Group quantize_w4_group(const float* w, int N, int K, int G = 128);

// Plain int8 weights with an fp16 per-channel scale (W8A8).
struct W8 {
  int N = 0, K = 0;
  std::vector<int8_t> w;         // [N, K] in [-127, 127]
  std::vector<uint16_t> scales;  // [N] fp16 bits
};
W8 quantize_w8(const float* w, int N, int K);

// The canonical checkpoint packing of DESIGN §5: byte j of row n = q[n,2j] | q[n,2j+1] << 4. K must be even.
std::vector<uint8_t> pack_nibbles(const std::vector<uint8_t>& q, int N, int K);
std::vector<uint8_t> unpack_nibbles(const std::vector<uint8_t>& packed, int N, int K);

// int32 accumulators [M, n_end - n_begin] for output channels [n_begin, n_end) (n_end < 0: all N).
std::vector<int32_t> acc_w4_per_channel(const ActQuant& a, const W4PerChannel& w, int n_begin = 0,
                                        int n_end = -1);                                                  // sum_k a*q
std::vector<int32_t> acc_w4_group(const ActQuant& a, const W4Group& w, int n_begin = 0, int n_end = -1);  // a*w8
std::vector<int32_t> acc_w8(const ActQuant& a, const W8& w, int n_begin = 0, int n_end = -1);             // a*w

// The epilogue of one output: y = (s_a * s_w) * float(acc - z * asum) + bias + residual in fp32 (each operation
// rounded once, left to right, no fused multiply-add), then one rounding to fp16 (or bf16) bits.
uint16_t epilogue(int32_t acc, float s_a, int32_t asum, float s_w, int z, float bias, float residual, bool bf16);

// Full outputs [M, N] as fp16/bf16 bits. zeros may be null (z = 0), bias ([N]) and residual ([M, N], fp16 or bf16
// bits like the output) may be null.
std::vector<uint16_t> apply_epilogue(const std::vector<int32_t>& acc, const ActQuant& a, const uint16_t* w_scales,
                                     const uint8_t* zeros, int N, const uint16_t* bias, const uint16_t* residual,
                                     bool bf16);

// ---- FP32 epilogue and the integer linear of the CPU int backend (src/model/linear_quant.h) ----

// y = (s_a * s_w) * float(acc - z * asum) + bias in fp32: each operation rounded once, in this order, never fused
// into an FMA whatever the compiler flags (-ffp-contract=fast, -mfma). has_bias false: no addition (so -0 stays -0).
float epilogue_f32(int32_t acc, float s_a, int32_t asum, float s_w, int z, bool has_bias, float bias);

// int32 accumulators [M, N] of a quant::QuantWeight against activations quantized over K_pad columns:
// W4 per-channel sum_k a*q (the zero is applied by the epilogue), W4 group sum_k a*s2*(q - z), W8 sum_k a*w.
std::vector<int32_t> acc_quant_weight(const ActQuant& a, const quant::QuantWeight& w);

// The integer linear: x [M, K] zero-padded to K_pad, quantize_activations, acc_quant_weight, then epilogue_f32 with
// s_w = grid.scales[n] (s1 for groups) and z = grid.zeros[n] for W4 per-channel, 0 otherwise. bias [N] or null.
std::vector<float> int_linear(const float* x, int M, const quant::QuantWeight& w, const float* bias);

}  // namespace qoq::ref
