// The FP32 CPU backend of the Linear interface: the weight as HF stores it, [out, in], multiplied by the
// cache-blocked, multithreaded matmul.
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_f16.h"
#include "qoq/model.h"

namespace qoq {

namespace {

class CpuF32Linear : public Linear {
 public:
  CpuF32Linear(Tensor weight, Tensor bias) : w_(std::move(weight)), b_(std::move(bias)) {}
  int64_t in_features() const override { return w_.dim(1); }
  int64_t out_features() const override { return w_.dim(0); }
  void forward(const float* x, int64_t m, float* y) const override {
    cpu::matmul(x, w_.data<float>(), b_.defined() ? b_.data<float>() : nullptr, y, m, w_.dim(0), w_.dim(1));
  }

 private:
  Tensor w_, b_;
};

// Weights kept in fp16 (half the bytes), widened in the kernel: for tensors that are fp16 values already.
class CpuF16Linear : public Linear {
 public:
  CpuF16Linear(Tensor weight, Tensor bias) : w_(std::move(weight)), b_(std::move(bias)) {}
  int64_t in_features() const override { return w_.dim(1); }
  int64_t out_features() const override { return w_.dim(0); }
  void forward(const float* x, int64_t m, float* y) const override {
    cpu::matmul_f16w(x, w_.data<uint16_t>(), b_.defined() ? b_.data<float>() : nullptr, y, m, w_.dim(0), w_.dim(1));
  }

 private:
  Tensor w_, b_;
};

Tensor as_f32(const Tensor& t) { return t.dtype() == DType::F32 ? t : t.to(DType::F32); }

}  // namespace

std::unique_ptr<Linear> make_cpu_f16_linear(const std::string& name, const Tensor& weight, const Tensor& bias) {
  QOQ_CHECK(weight.ndim() == 2, "{}: linear weight must be 2-D, got {}", name, weight.str());
  QOQ_CHECK(weight.device() == Device::CPU, "{}: the CPU backend needs a CPU tensor", name);
  if (bias.defined())
    QOQ_CHECK(bias.numel() == weight.dim(0), "{}: bias {} does not match weight {}", name, bias.str(), weight.str());
  return std::make_unique<CpuF16Linear>(weight.dtype() == DType::F16 ? weight : weight.to(DType::F16),
                                        bias.defined() ? as_f32(bias) : Tensor());
}

std::unique_ptr<Linear> make_cpu_f32_linear(const std::string& name, const Tensor& weight, const Tensor& bias) {
  QOQ_CHECK(weight.ndim() == 2, "{}: linear weight must be 2-D, got {}", name, weight.str());
  QOQ_CHECK(weight.device() == Device::CPU, "{}: the CPU backend needs a CPU tensor", name);
  if (bias.defined())
    QOQ_CHECK(bias.numel() == weight.dim(0), "{}: bias {} does not match weight {}", name, bias.str(), weight.str());
  return std::make_unique<CpuF32Linear>(as_f32(weight), bias.defined() ? as_f32(bias) : Tensor());
}

}  // namespace qoq
