// Weight quantization grids (DESIGN §3, §4 pass 6): where each weight may land, fixed before rounding, so that
// RTN and GPTQ share one definition of "the nearest code" and of its value.
//   W4 per-channel:  q = clamp(rne(w / s) + z, 0, 15),          value s * (q - z)
//   W4 progressive:  w1 = clamp(w / s1, -119, 119),
//                    q = clamp(rne(w1 / s2) + z, 0, 15),        value s1 * (s2 * (q - z)), s2 * (q - z) in [-127, 127]
//   W8 per-channel:  q = clamp(rne(w / s), -127, 127),          value s * q
// Scales s, s1 are fp16 values (held as float); s2 in [1, 16] and z in [0, 15] are integers. The divisions are
// real divisions (not multiplications by a reciprocal) so the codes match ref::quantize_w4_* bit for bit.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace qoq::quant {

enum class WeightFormat { W4PerChannel, W4Group, W8PerChannel };
const char* weight_format_name(WeightFormat f);

struct WeightGrid {
  WeightFormat format = WeightFormat::W4PerChannel;
  int64_t N = 0;
  int64_t K = 0;               // in-features of the layer
  int64_t K_pad = 0;           // K rounded up to the group size (W4Group) or to even (W4PerChannel: two codes per byte)
  int64_t group = 0;           // W4Group: group size G; 0 otherwise
  std::vector<float> scales;   // [N]: s (W4PerChannel, W8) or s1 (W4Group), each exactly an fp16 value
  std::vector<uint8_t> zeros;  // [N]: z (W4PerChannel)
  std::vector<uint8_t> gscales;  // [N, K_pad / G]: s2 (W4Group)
  std::vector<uint8_t> gzeros;   // [N, K_pad / G]: z (W4Group)

  int64_t groups_per_row() const { return group > 0 ? K_pad / group : 0; }
  // The code of w at (n, k): the nearest grid point (with the clamps above). k < K_pad.
  int code(int64_t n, int64_t k, float w) const;
  // The value of code q at (n, k).
  float value(int64_t n, int64_t k, int q) const;
  // The int8 weight of a W4Group code: s2 * (q - z).
  int w8(int64_t n, int64_t k, int q) const;
};

// A quantized linear: its grid and one code per weight, [N, K_pad] (W8 codes are int8, W4 codes are 0..15).
// Padding columns hold the code of 0, whose value is exactly 0.
struct QuantWeight {
  WeightGrid grid;
  std::vector<int8_t> codes;

  // The float weights the codes stand for, [N, K] (padding dropped): the fake-quant path's weights.
  std::vector<float> dequantize() const;
};

// Per-channel W4 grid for ranges [lo[n], hi[n]] (each widened to include 0, see rtn.h).
WeightGrid w4_per_channel_grid(std::span<const float> lo, std::span<const float> hi, int64_t K);

// The per-channel grid over each row's [min, max] (r = 1: no clipping).
WeightGrid w4_per_channel_minmax_grid(const float* w, int64_t N, int64_t K);

// Progressive grid of DESIGN §3 from the weights themselves (w [N, K]); group in {32, 64, 128, ...}; K not a
// multiple of the group is padded with zero weights.
WeightGrid w4_group_grid(const float* w, int64_t N, int64_t K, int64_t group);

// W8 per-channel symmetric: s = fp16(max|w| / 127) (1 when 0).
WeightGrid w8_grid(const float* w, int64_t N, int64_t K);

// Rounds every weight to its nearest code (w [N, K]; padding columns get the code of 0).
QuantWeight round_to_grid(const WeightGrid& grid, const float* w);

}  // namespace qoq::quant
