// CPU reference of the KV-cache quantization of DESIGN §3 (KV4 and KV8): the numbers every KV kernel reproduces.
// Per token and per KV head, over its D channels x (after RoPE for keys), with L = 2^bits - 1 levels:
//   mn, mx = min x, max x
//   scale = fp16((mx - mn) / L),  zero = fp16(-mn / scale)   (zero is real valued, stored as fp16)
//   c = clamp(rne(x / scale + zero), 0, L),  x̂ = scale * (c - zero)
//   mx == mn: scale = 1, zero = fp16(-mn).
// Every operation is one fp32 operation rounded once, in the order written (x / scale is a division, then + zero),
// so a GPU kernel doing the same fp32 operations gets the same codes. Attention uses x̂ for every key and value.
// Storage: KV4 packs channels 2i and 2i+1 into byte i (low nibble = 2i); KV8 one code per byte.
// Outside the contract's domain, two guards keep the cache finite: a range whose fp16 scale underflows to 0 is
// treated like mx == mn (its spread is below fp16 resolution), and scale/zero saturate at ±65504 instead of
// overflowing to inf (ranges beyond fp16 cannot come from an fp16 model; the fp32 CPU path stays finite).
#pragma once
#include <cstdint>

namespace qoq::ref {

// Bytes of codes per head vector of D channels: D / 2 for 4 bits, D for 8.
int64_t kv_code_bytes(int64_t D, int bits);

// One head vector: x [D] -> codes [kv_code_bytes(D, bits)], fp16 bits of scale and zero. bits is 4 or 8;
// D is even for 4.
void kv_quantize_head(const float* x, int64_t D, int bits, uint8_t* codes, uint16_t* scale, uint16_t* zero);
void kv_dequantize_head(const uint8_t* codes, int64_t D, int bits, uint16_t scale, uint16_t zero, float* out);

// `rows` head vectors (e.g. tokens x kv_heads) at once: x [rows, D], codes [rows, kv_code_bytes], scales and
// zeros [rows].
void kv_quantize(const float* x, int64_t rows, int64_t D, int bits, uint8_t* codes, uint16_t* scales, uint16_t* zeros);
void kv_dequantize(const uint8_t* codes, const uint16_t* scales, const uint16_t* zeros, int64_t rows, int64_t D,
                   int bits, float* out);

// x := x̂ in place (quantize then dequantize): the fake-quant path's KV cache, identical values to the integer path.
void kv_fake_quant(float* x, int64_t rows, int64_t D, int bits);

}  // namespace qoq::ref
