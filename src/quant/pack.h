// The canonical checkpoint tensors of one quantized linear P (DESIGN §5), kernel-agnostic:
//   W4:  P.qweight U8 [N, K_pad/2] (byte j of row n = q[n,2j] | q[n,2j+1] << 4), P.scales F16 [N] (s or s1),
//        per-channel P.zeros U8 [N]; grouped P.group_scales U8 [N, K_pad/G] (s2) and P.group_zeros U8 [N, K_pad/G].
//   W8:  P.weight I8 [N, K], P.scales F16 [N].
// K_pad is the in-features rounded up to the group (or to even): the padded columns are zero weights whose codes
// dequantize to exactly 0, so a kernel may read them against zero-padded activations.
#pragma once
#include <map>
#include <string>

#include "qoq/tensor.h"
#include "quant/grid.h"

namespace qoq::quant {

struct PackedLinear {
  Tensor qweight, scales, zeros, group_scales, group_zeros;  // W4 (zeros or group_* undefined as they apply)
  Tensor weight;                                             // W8
};

PackedLinear pack_linear(const QuantWeight& q);

// What a checkpoint says a linear must be; unpack checks the tensors against it.
struct LinearSpec {
  WeightFormat format = WeightFormat::W4PerChannel;
  int64_t N = 0, K = 0;  // out, in features (K unpadded)
  int64_t group = 0;     // W4Group only
};
// Inverse of pack_linear. Throws InputError naming `name` and the offending tensor when a dtype or shape
// contradicts the spec, or a code, zero or group scale is out of its range.
QuantWeight unpack_linear(const PackedLinear& p, const LinearSpec& spec, const std::string& name);

// Tensors under `prefix` + ".qweight" etc. (prefix e.g. "model.layers.0.self_attn.q_proj").
void store_linear(const PackedLinear& p, const std::string& prefix, std::map<std::string, Tensor>& out);
// Reads them back (InputError naming the missing tensor).
PackedLinear load_linear(const std::map<std::string, Tensor>& tensors, const std::string& prefix, WeightFormat format);

}  // namespace qoq::quant
