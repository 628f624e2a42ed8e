// Quantized CPU backends of the Linear interface (DESIGN §3), built from a quant::QuantWeight:
//  - integer: per-token int8 activations (scale, integer row sum), int32 accumulation against the W4 codes
//    (per-channel or progressive group) or W8 weights, then the fp32 epilogue
//      y[m,n] = (s_a[m] * s_w[n]) * float(acc[m,n] - z[n] * asum[m]) + bias[n]
//    (each operation rounded once, left to right, no FMA; z = 0 and s_w = s1 for groups, z = 0 for W8);
//  - fake-quant: the same function in float: activations quantize-dequantized (s_a * a), weights dequantized, an
//    FP32 matmul. Agrees with the integer path up to float summation order.
// Activations whose K is below the weight's K_pad are zero-padded (padded weights dequantize to exactly 0).
#pragma once
#include <memory>
#include <string>

#include "qoq/model.h"
#include "quant/grid.h"

namespace qoq {

// bias: [N] floats or null. Throws InputError naming `name` when the weight is malformed.
std::unique_ptr<Linear> make_cpu_int_linear(const std::string& name, const quant::QuantWeight& w, const float* bias);
std::unique_ptr<Linear> make_cpu_fake_quant_linear(const std::string& name, const quant::QuantWeight& w,
                                                   const float* bias);

}  // namespace qoq
