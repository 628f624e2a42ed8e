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

// Per (row, group) constants of the progressive g128 dequantization: s2 and an additive word C such that
// codes * s2 + C holds, in each byte, w8 + 128 = s2 * (q - z) + 128, which lies in [1, 255].
//
// Why it is carry-free: with y = z * s2, each byte adds c = (128 - y) mod 256. If y <= 128, x + c = w8 + 128 < 256:
// no carry. If y > 128, c = 384 - y and x + c = w8 + 384 >= 257: every byte carries exactly one into the next,
// which C cancels in advance by holding c - 1 in bytes 1..3. Both cases need |w8| <= 127, which the progressive
// quantizer guarantees (|W1| <= 119, s2 <= 16; tests check it).
struct G128Consts {
  uint32_t s2;  // 1..16
  uint32_t c;   // additive constant
};
QOQ_HD G128Consts g128_consts_zs2(uint32_t s2, uint32_t zs2) {
  const uint32_t c = (128u - zs2) & 0xFFu;
  return {s2, c * 0x01010101u - (zs2 > 128u ? 0x01010100u : 0u)};
}
QOQ_HD G128Consts g128_consts(uint32_t s2, uint32_t z) { return g128_consts_zs2(s2, z * s2); }

// Four codes (one per byte, 0..15) -> four int8 weights s2*(q - z): one multiply-add gives w8 + 128 in each byte
// (q*s2 <= 240 never carries), and flipping each byte's top bit maps w8 + 128 to the int8 bits of w8.
QOQ_HD uint32_t g128_dequant(uint32_t codes, const G128Consts& k) { return (codes * k.s2 + k.c) ^ 0x80808080u; }
// The same weights biased by 128 (each byte w8 + 128 in [1, 255]): what the kernels feed to the unsigned-A wgmma
// (u8 x s8). The accumulator then holds acc + 128 * sum(a), which the epilogue removes with the activation row sum
// like a per-channel zero of 128: one instruction per four weights fewer than g128_dequant.
QOQ_HD uint32_t g128_dequant_biased(uint32_t codes, const G128Consts& k) { return codes * k.s2 + k.c; }

}  // namespace qoq::cuda
