// Fast CPU kernels of the QoQ integer path (DESIGN §3): per-token int8 activation quantization and the W4A8 /
// W8A8 GEMMs with the fp32 epilogue, bit-exact against kernels/cpu/qgemm_ref.h (integers exactly; floats bitwise,
// the epilogue rounds each operation once and never fuses into an FMA).
// AVX2 (maddubs of unsigned nibble codes x signed activations: exact for 0..15 x |a| <= 127) with a runtime
// dispatch and a portable scalar fallback over the same packed layout; multithreaded over blocks of output rows
// (and of tokens when there are too few row blocks for the threads).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/grid.h"

namespace qoq::cpu {

// Which implementation runs: kAuto picks AVX2 when the CPU has it (the environment variable QOQ_QGEMM_SCALAR=1
// forces the scalar path, for tests and comparisons).
enum class QIsa { kAuto, kScalar, kAvx2 };
// The implementation kAuto resolves to on this machine (never kAuto).
QIsa qgemm_resolve(QIsa isa);

// Per-token symmetric int8 activations of x [M, K], bit-exact with ref::quantize_activations: codes [M, ld]
// (ld >= K; columns K..ld-1 are written 0, which is the zero padding to K_pad), scales [M] (s_a), sums [M] (asum).
void quantize_activations(const float* x, int64_t M, int64_t K, int64_t ld, int8_t* codes, float* scales,
                          int32_t* sums, QIsa isa = QIsa::kAuto);

// A QuantWeight repacked once for these kernels. Codes are stored in chunks of 64 input channels, four output rows
// interleaved chunk by chunk (one sequential stream per block of 4 rows): W4 as 32 bytes per row and chunk, byte j
// holding the codes of k = 64c + j (low nibble) and 64c + 32 + j (high nibble); W8 as 64 int8 per row and chunk.
// Rows are padded to a multiple of 4 and K to a multiple of 64 with code 0 (the activations are 0 there as well).
class PackedQWeight {
 public:
  PackedQWeight() = default;
  // The weight must be well formed (make_cpu_int_linear validates it); the group size must be a multiple of 32.
  explicit PackedQWeight(const quant::QuantWeight& w);

  quant::WeightFormat format() const { return format_; }
  int64_t N() const { return N_; }
  int64_t K() const { return K_; }
  int64_t K_pad() const { return K_pad_; }
  int64_t group() const { return group_; }
  // The row stride the activation codes must have: K_pad rounded up to 64 (padding columns zero).
  int64_t act_ld() const { return Kp_; }
  size_t packed_bytes() const { return data_.size(); }

 private:
  friend struct QGemmAccess;
  quant::WeightFormat format_ = quant::WeightFormat::W4PerChannel;
  int64_t N_ = 0, K_ = 0, K_pad_ = 0, group_ = 0;
  int64_t N4_ = 0, Kp_ = 0, chunks_ = 0, groups_ = 0, groups16_ = 0;
  std::vector<uint8_t> data_;       // the interleaved codes described above
  std::vector<float> scales_;       // [N] s (s1 for groups)
  std::vector<int32_t> zeros_;      // [N] W4 per-channel z
  std::vector<uint32_t> s2pair_;    // [N4, groups] s2 | s2 << 16: one broadcast gives s2 in every int16 lane
  std::vector<int16_t> zs_;         // [N4, groups16] s2 * z, groups padded to 16 with 0
  std::vector<int32_t> chunk_group_;  // [2 * chunks] group of the low and high half of each chunk
};

// int32 accumulators acc [M, N] (row stride N) as ref::acc_quant_weight defines them: W4 per-channel sum a*q (the
// zero is left to the epilogue), W4 group sum a*s2*(q - z), W8 sum a*w. codes [M, w.act_ld()], sums [M].
void qgemm_acc(const int8_t* codes, const int32_t* sums, int64_t M, const PackedQWeight& w, int32_t* acc,
               QIsa isa = QIsa::kAuto);

// y [M, N] = (s_a * s_w) * float(acc - z * asum) + bias, bit-exact with ref::epilogue_f32. bias [N] or null.
void qgemm_f32(const int8_t* codes, const float* scales, const int32_t* sums, int64_t M, const PackedQWeight& w,
               const float* bias, float* y, QIsa isa = QIsa::kAuto);

}  // namespace qoq::cpu
