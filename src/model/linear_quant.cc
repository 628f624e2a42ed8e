// The quantized CPU Linear backends (see linear_quant.h): integer W4A8 / W8A8 on the fast qgemm kernels, and the
// fake-quant float equivalent used to check them and to measure quantization error without integer kernels.
#include "model/linear_quant.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/qgemm.h"
#include "qoq/error.h"

namespace qoq {
namespace {

using quant::WeightFormat;

// Rejects a QuantWeight whose sizes or codes are inconsistent, naming the layer.
void validate(const std::string& name, const quant::QuantWeight& w) {
  const auto& g = w.grid;
  const char* fmt_name = quant::weight_format_name(g.format);
  QOQ_CHECK_INPUT(g.N > 0 && g.K > 0, "{}: quantized weight has empty shape [{}, {}]", name, g.N, g.K);
  QOQ_CHECK_INPUT(g.K_pad >= g.K, "{}: K_pad {} < K {}", name, g.K_pad, g.K);
  QOQ_CHECK_INPUT(w.codes.size() == size_t(g.N * g.K_pad), "{}: {} codes, expected N*K_pad = {}*{}", name,
                  w.codes.size(), g.N, g.K_pad);
  QOQ_CHECK_INPUT(g.scales.size() == size_t(g.N), "{}: {} scales for N = {}", name, g.scales.size(), g.N);
  for (int64_t n = 0; n < g.N; ++n)
    QOQ_CHECK_INPUT(std::isfinite(g.scales[size_t(n)]), "{}: scale {} of row {} is not finite", name,
                    g.scales[size_t(n)], n);
  int lo = 0, hi = 15;
  switch (g.format) {
    case WeightFormat::W4PerChannel:
      QOQ_CHECK_INPUT(g.zeros.size() == size_t(g.N), "{}: {} zeros for N = {}", name, g.zeros.size(), g.N);
      for (int64_t n = 0; n < g.N; ++n)
        QOQ_CHECK_INPUT(g.zeros[size_t(n)] <= 15, "{}: zero {} of row {} is outside [0, 15]", name,
                        int(g.zeros[size_t(n)]), n);
      break;
    case WeightFormat::W4Group: {
      QOQ_CHECK_INPUT(g.group > 0 && g.group % 32 == 0 && g.group <= 256 && g.K_pad % g.group == 0,
                      "{}: group size {} must be a multiple of 32, at most 256, dividing K_pad {}", name, g.group,
                      g.K_pad);
      const size_t ng = size_t(g.N * (g.K_pad / g.group));
      QOQ_CHECK_INPUT(g.gscales.size() == ng && g.gzeros.size() == ng,
                      "{}: {} group scales and {} group zeros, expected {}", name, g.gscales.size(), g.gzeros.size(),
                      ng);
      for (size_t i = 0; i < ng; ++i)
        QOQ_CHECK_INPUT(g.gscales[i] >= 1 && g.gscales[i] <= 16 && g.gzeros[i] <= 15,
                        "{}: group {} has s2 {} (must be 1..16) and zero {} (must be 0..15)", name, i,
                        int(g.gscales[i]), int(g.gzeros[i]));
      break;
    }
    case WeightFormat::W8PerChannel:
      lo = -127;
      hi = 127;
      break;
    default:
      fail_input("{}: unknown weight format {}", name, int(g.format));
  }
  for (size_t i = 0; i < w.codes.size(); ++i)
    QOQ_CHECK_INPUT(w.codes[i] >= lo && w.codes[i] <= hi, "{}: {} code {} at [{}, {}] is outside [{}, {}]", name,
                    fmt_name, int(w.codes[i]), i / size_t(g.K_pad), i % size_t(g.K_pad), lo, hi);
}

class CpuIntLinear : public Linear {
 public:
  CpuIntLinear(const quant::QuantWeight& w, const float* bias) : w_(w) {
    if (bias) bias_.assign(bias, bias + w.grid.N);
  }
  int64_t in_features() const override { return w_.K(); }
  int64_t out_features() const override { return w_.N(); }

  void forward(const float* x, int64_t m, float* y) const override {
    if (m <= 0) return;
    // Per-thread scratch: forward is const and may run on several threads; the buffers only grow.
    thread_local std::vector<int8_t> codes;
    thread_local std::vector<float> scales;
    thread_local std::vector<int32_t> sums;
    const int64_t ld = w_.act_ld();
    codes.resize(size_t(m * ld));
    scales.resize(size_t(m));
    sums.resize(size_t(m));
    cpu::quantize_activations(x, m, w_.K(), ld, codes.data(), scales.data(), sums.data());
    cpu::qgemm_f32(codes.data(), scales.data(), sums.data(), m, w_, bias_.empty() ? nullptr : bias_.data(), y);
  }

 private:
  cpu::PackedQWeight w_;
  std::vector<float> bias_;
};

class CpuFakeQuantLinear : public Linear {
 public:
  CpuFakeQuantLinear(const quant::QuantWeight& w, const float* bias)
      : N_(w.grid.N), K_(w.grid.K), w_(w.dequantize()) {
    if (bias) bias_.assign(bias, bias + N_);
  }
  int64_t in_features() const override { return K_; }
  int64_t out_features() const override { return N_; }

  void forward(const float* x, int64_t m, float* y) const override {
    if (m <= 0) return;
    thread_local std::vector<int8_t> codes;
    thread_local std::vector<float> scales, xq;
    thread_local std::vector<int32_t> sums;
    codes.resize(size_t(m * K_));
    scales.resize(size_t(m));
    sums.resize(size_t(m));
    xq.resize(size_t(m * K_));
    // The same quantizer as the integer path (padding columns are zero and drop out), then x_hat = s_a * a.
    cpu::quantize_activations(x, m, K_, K_, codes.data(), scales.data(), sums.data());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < K_; ++k) xq[size_t(i * K_ + k)] = scales[size_t(i)] * float(codes[size_t(i * K_ + k)]);
    cpu::matmul(xq.data(), w_.data(), bias_.empty() ? nullptr : bias_.data(), y, m, N_, K_);
  }

 private:
  int64_t N_, K_;
  std::vector<float> w_;  // [N, K] dequantized
  std::vector<float> bias_;
};

}  // namespace

std::unique_ptr<Linear> make_cpu_int_linear(const std::string& name, const quant::QuantWeight& w, const float* bias) {
  validate(name, w);
  return std::make_unique<CpuIntLinear>(w, bias);
}

std::unique_ptr<Linear> make_cpu_fake_quant_linear(const std::string& name, const quant::QuantWeight& w,
                                                   const float* bias) {
  validate(name, w);
  return std::make_unique<CpuFakeQuantLinear>(w, bias);
}

}  // namespace qoq
