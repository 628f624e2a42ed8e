// Register dequantization of packed 4-bit codes into the int8 bytes the wgmma A operand takes. Plain C++ as well
// as CUDA, so the CPU tests check the exact code the kernels run.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define QOQ_HD __host__ __device__ __forceinline__
#else
#define QOQ_HD inline
#endif

namespace qoq::cuda {

// Eight codes in a word: low nibbles -> four bytes, high nibbles -> four bytes (each byte = one code, 0..15).
QOQ_HD uint32_t low_nibbles(uint32_t x) { return x & 0x0F0F0F0Fu; }
QOQ_HD uint32_t high_nibbles(uint32_t x) { return (x >> 4) & 0x0F0F0F0Fu; }

// Per (row, group) constants of the progressive g128 dequantization: s2 and the byte-replicated zero term z*s2
// prepared for a carry-free byte-wise subtraction.
struct G128Consts {
  uint32_t s2;     // multiplier, 1..16
  uint32_t y_low;  // rep(z*s2) & 0x7f7f7f7f
  uint32_t y_hi;   // ~rep(z*s2) & 0x80808080
};
QOQ_HD G128Consts g128_consts_zs2(uint32_t s2, uint32_t zs2) {
  const uint32_t y = (zs2 & 0xFFu) * 0x01010101u;
  return {s2, y & 0x7F7F7F7Fu, ~y & 0x80808080u};
}
QOQ_HD G128Consts g128_consts(uint32_t s2, uint32_t z) { return g128_consts_zs2(s2, z * s2); }

// Four codes (one per byte, 0..15) -> four int8 weights s2*(q - z). q*s2 <= 240 fits a byte, so one 32-bit
// multiply scales all four without carries; the byte-wise difference x - y (mod 256) uses the SWAR identity
// ((x | H) - (y & ~H)) ^ ((x ^ ~y) & H), H = 0x80808080, which never borrows across bytes.
QOQ_HD uint32_t g128_dequant(uint32_t codes, const G128Consts& c) {
  const uint32_t x = codes * c.s2;
  return ((x | 0x80808080u) - c.y_low) ^ ((x & 0x80808080u) ^ c.y_hi);
}

}  // namespace qoq::cuda
