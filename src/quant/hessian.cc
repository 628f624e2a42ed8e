#include "quant/hessian.h"

#include <algorithm>

#include "kernels/cpu/matmul.h"

namespace qoq::quant {

void Hessian::add(const float* x, int64_t m) {
  constexpr int64_t kChunk = 256;
  std::vector<float> xt(size_t(k_ * std::min(m, kChunk))), prod(size_t(k_ * k_));
  for (int64_t t0 = 0; t0 < m; t0 += kChunk) {
    const int64_t c = std::min(kChunk, m - t0);
    // Xcᵀ [k, c]; matmul(Xcᵀ, Xcᵀ) = Xcᵀ Xc.
    for (int64_t t = 0; t < c; ++t)
      for (int64_t i = 0; i < k_; ++i) xt[size_t(i * c + t)] = x[(t0 + t) * k_ + i];
    cpu::matmul(xt.data(), xt.data(), nullptr, prod.data(), k_, k_, c);
    for (size_t i = 0; i < h_.size(); ++i) h_[i] += double(prod[i]);
  }
  tokens_ += m;
}

}  // namespace qoq::quant
