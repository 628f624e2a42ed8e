// IEEE fp16 and bfloat16 conversions in software, round-to-nearest-even, matching the GPU's cvt.rn.
#pragma once
#include <cstdint>
#include <cstring>

namespace qoq {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // Subnormal: value = mant * 2^-24.
    float v = float(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t float_to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t au = u & 0x7fffffffu;
  if (au >= 0x7f800000u) return uint16_t(sign | 0x7c00 | (au > 0x7f800000u ? 0x200 : 0));  // inf / nan
  if (au >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: overflow to inf
  if (au < 0x38800000u) {
    // Result is subnormal or zero: round |f| / 2^-24 to an integer, half to even.
    if (au < 0x33000000u) return sign;  // < 2^-25: rounds to zero
    const uint32_t e = au >> 23;
    const uint32_t m = (au & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 2^(e-127) * m/2^23 / 2^-24 = m >> (126 - e)
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits, half to even (carry may bump the exponent).
  uint32_t v = au - 0x38000000u;
  const uint32_t rem = v & 0x1fff;
  v >>= 13;
  if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) ++v;
  return uint16_t(sign | v);
}

inline float bf16_to_float(uint16_t b) { return bits_to_float(uint32_t(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet nan
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

// Round a float to the nearest fp16 value and back (used by the numerics contract, e.g. fp16 scales).
inline float round_to_half(float f) { return half_to_float(float_to_half(f)); }

}  // namespace qoq
