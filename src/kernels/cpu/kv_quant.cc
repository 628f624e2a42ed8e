#include "kernels/cpu/kv_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "qoq/error.h"
#include "qoq/half.h"

namespace qoq::ref {
namespace {

constexpr float kHalfMax = 65504.f;

// fp16 rounding that saturates at the largest finite fp16 instead of overflowing to inf.
uint16_t half_sat(float x) { return float_to_half(std::clamp(x, -kHalfMax, kHalfMax)); }

void check_args(int64_t D, int bits) {
  QOQ_CHECK(bits == 4 || bits == 8, "KV quantization supports 4 or 8 bits, not {}", bits);
  QOQ_CHECK(D > 0 && (bits == 8 || D % 2 == 0), "KV head dim {} (must be positive, and even for 4 bits)", D);
}

}  // namespace

int64_t kv_code_bytes(int64_t D, int bits) {
  check_args(D, bits);
  return bits == 4 ? D / 2 : D;
}

void kv_quantize_head(const float* x, int64_t D, int bits, uint8_t* codes, uint16_t* scale_bits, uint16_t* zero_bits) {
  check_args(D, bits);
  const int levels = (1 << bits) - 1;
  float mn = x[0], mx = x[0];
  for (int64_t i = 1; i < D; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
  uint16_t sb = half_sat((mx - mn) / float(levels));
  uint16_t zb;
  if (mx == mn || half_to_float(sb) == 0.f) {
    sb = float_to_half(1.f);
    zb = half_sat(-mn);
  } else {
    zb = half_sat(-mn / half_to_float(sb));
  }
  const float scale = half_to_float(sb), zero = half_to_float(zb);
  auto code = [&](float v) {
    const float c = std::nearbyint(v / scale + zero);  // round half to even
    return uint8_t(std::clamp(c, 0.f, float(levels)));
  };
  if (bits == 8) {
    for (int64_t i = 0; i < D; ++i) codes[i] = code(x[i]);
  } else {
    for (int64_t i = 0; i < D / 2; ++i) codes[i] = uint8_t(code(x[2 * i]) | code(x[2 * i + 1]) << 4);
  }
  *scale_bits = sb;
  *zero_bits = zb;
}

void kv_dequantize_head(const uint8_t* codes, int64_t D, int bits, uint16_t scale_bits, uint16_t zero_bits,
                        float* out) {
  check_args(D, bits);
  const float scale = half_to_float(scale_bits), zero = half_to_float(zero_bits);
  for (int64_t i = 0; i < D; ++i) {
    const int c = bits == 8 ? codes[i] : (codes[i / 2] >> (4 * (i & 1))) & 15;
    out[i] = scale * (float(c) - zero);
  }
}

void kv_quantize(const float* x, int64_t rows, int64_t D, int bits, uint8_t* codes, uint16_t* scales, uint16_t* zeros) {
  const int64_t nb = kv_code_bytes(D, bits);
  for (int64_t r = 0; r < rows; ++r) kv_quantize_head(x + r * D, D, bits, codes + r * nb, scales + r, zeros + r);
}

void kv_dequantize(const uint8_t* codes, const uint16_t* scales, const uint16_t* zeros, int64_t rows, int64_t D,
                   int bits, float* out) {
  const int64_t nb = kv_code_bytes(D, bits);
  for (int64_t r = 0; r < rows; ++r) kv_dequantize_head(codes + r * nb, D, bits, scales[r], zeros[r], out + r * D);
}

void kv_fake_quant(float* x, int64_t rows, int64_t D, int bits) {
  std::vector<uint8_t> codes(size_t(kv_code_bytes(D, bits)));
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t s, z;
    kv_quantize_head(x + r * D, D, bits, codes.data(), &s, &z);
    kv_dequantize_head(codes.data(), D, bits, s, z, x + r * D);
  }
}

}  // namespace qoq::ref
