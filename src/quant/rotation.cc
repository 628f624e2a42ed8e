#include "quant/rotation.h"

#include "kernels/cpu/matmul.h"
#include "quant/linalg.h"

namespace qoq::quant {
namespace {
std::vector<float> transpose(const float* a, int64_t rows, int64_t cols) {
  std::vector<float> t(size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t[size_t(j * rows + i)] = a[i * cols + j];
  return t;
}
}  // namespace

void rotate_reader(Tensor& w, const Rotation& r) {
  check_matrix(w, "rotate_reader weight");
  const int64_t n = w.dim(0), h = w.dim(1);
  QOQ_CHECK(h == r.size, "rotate_reader: {} against a rotation of size {}", w.str(), r.size);
  // matmul computes X Yᵀ; W R = W (Rᵀ)ᵀ.
  const std::vector<float> rt = transpose(r.r.data(), h, h);
  const Tensor src = w.clone();
  cpu::matmul(src.data<float>(), rt.data(), nullptr, w.data<float>(), n, h, h);
}

void rotate_writer(Tensor& w, Tensor* bias, const Rotation& r) {
  check_matrix(w, "rotate_writer weight");
  const int64_t h = w.dim(0), k = w.dim(1);
  QOQ_CHECK(h == r.size, "rotate_writer: {} against a rotation of size {}", w.str(), r.size);
  // Rᵀ W = Rᵀ (Wᵀ)ᵀ: matmul(Rᵀ, Wᵀ).
  const std::vector<float> rt = transpose(r.r.data(), h, h);
  const std::vector<float> wt = transpose(w.data<float>(), h, k);
  cpu::matmul(rt.data(), wt.data(), nullptr, w.data<float>(), h, k, h);
  if (bias) {
    QOQ_CHECK(bias->dtype() == DType::F32 && bias->numel() == h, "rotate_writer: bias {} for {}", bias->str(), w.str());
    const Tensor b = bias->clone();
    cpu::matmul(rt.data(), b.data<float>(), nullptr, bias->data<float>(), h, 1, h);
  }
}

void fuse_norm(Tensor& w, std::span<const float> gamma) { scale_cols(w, gamma); }

}  // namespace qoq::quant
