// The kernel layout of quantized weights: what repack.cu writes and qgemm_kernel.cuh reads. Plain C++ as well as
// CUDA, so the tests check the same mapping the kernels use.
//
// Weights are cut into tiles of 64 rows x 128 k (k padded with zero codes to a multiple of 128); tile (nt, kt)
// lies at byte (nt * KT + kt) * tile_bytes, KT = ceil(K / 128), so a CTA fetches each tile with one bulk copy.
// Inside a tile, bytes are ordered so that consumer thread `tid` of a warpgroup reads its wgmma A fragments with
// one conflict-free 16-byte shared-memory load per k32 step (W8) or per two k32 steps (W4):
//   A fragment of m64k32 (s8), warp w, lane = 4g + t:  a0 = row 16w+g, k 4t..4t+3;  a1 = row 16w+g+8, same k;
//                                                      a2 = row 16w+g, k 16+4t..;   a3 = row 16w+g+8, k 16+4t..
//   W4: 16 bytes at ((kp * 128 + tid) * 16) = words x0..x3 for k32 steps 2kp (x0, x1) and 2kp+1 (x2, x3); word
//       x[2s+h], byte b: low nibble = row g, high nibble = row g+8, both at k = 32*(2kp+s) + 16h + 4t + b. So
//       a0 = x & 0x0f0f0f0f, a1 = (x >> 4) & 0x0f0f0f0f for h = 0, a2/a3 likewise for h = 1.
//   W8: 16 bytes at ((step * 128 + tid) * 16) = a0..a3 of that k32 step.
//   g128 appends 64 x 2 bytes: row r's (s2, z*s2 mod 256) of the tile's group (the group is the tile's k range).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/gemm/dequant.h"  // QOQ_HD

namespace qoq::cuda::layout {

constexpr int kTileRows = 64;
constexpr int kTileK = 128;
constexpr int kW4CodeBytes = kTileRows * kTileK / 2;  // 4096
constexpr int kW4Bytes = kW4CodeBytes;
constexpr int kW4GBytes = kW4CodeBytes + 2 * kTileRows;  // 4224
constexpr int kW8Bytes = kTileRows * kTileK;             // 8192

QOQ_HD int k_tiles(int K) { return (K + kTileK - 1) / kTileK; }

// Position of element (r, kk) of a tile (r < 64, kk < 128): byte offset in the tile and, for W4, the nibble.
struct Pos {
  int byte;
  int high;  // W4 only: 1 = high nibble
};
// Element of a tile at a byte (and nibble) offset: the inverse map.
struct Elem {
  int r, kk;
};

QOQ_HD Pos w4_pos(int r, int kk) {
  const int warp = r / 16, g = r % 8, high = (r % 16) / 8;
  const int step = kk / 32, kin = kk % 32, h = kin / 16, t = (kin % 16) / 4, b = kin % 4;
  const int tid = warp * 32 + g * 4 + t, kp = step / 2, s = step % 2;
  return {((kp * 128 + tid) * 4 + 2 * s + h) * 4 + b, high};
}
QOQ_HD Elem w4_elem(int byte, int high) {
  const int b = byte % 4, w = (byte / 4) % 4, tid = (byte / 16) % 128, kp = byte / 2048;
  const int s = w / 2, h = w % 2, warp = tid / 32, g = (tid % 32) / 4, t = tid % 4;
  return {warp * 16 + high * 8 + g, (2 * kp + s) * 32 + h * 16 + t * 4 + b};
}

QOQ_HD int w8_pos(int r, int kk) {
  const int warp = r / 16, g = r % 8, high = (r % 16) / 8;
  const int step = kk / 32, kin = kk % 32, h = kin / 16, t = (kin % 16) / 4, b = kin % 4;
  const int tid = warp * 32 + g * 4 + t;
  return ((step * 128 + tid) * 4 + 2 * h + high) * 4 + b;
}
QOQ_HD Elem w8_elem(int byte) {
  const int b = byte % 4, reg = (byte / 4) % 4, tid = (byte / 16) % 128, step = byte / 2048;
  const int h = reg / 2, high = reg % 2, warp = tid / 32, g = (tid % 32) / 4, t = tid % 4;
  return {warp * 16 + high * 8 + g, step * 32 + h * 16 + t * 4 + b};
}

}  // namespace qoq::cuda::layout
