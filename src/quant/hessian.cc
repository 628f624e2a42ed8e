#include "quant/hessian.h"

#include <algorithm>

#include "kernels/cpu/matmul.h"

namespace qoq::quant {

void Hessian::add(const float* x, int64_t m) {
  constexpr int64_t kChunk = 256, kBlock = 128;
  std::vector<float> xt(size_t(k_ * std::min(m, kChunk))), prod;
  for (int64_t t0 = 0; t0 < m; t0 += kChunk) {
    const int64_t c = std::min(kChunk, m - t0);
    // Xcᵀ [k, c]: row i holds channel i over the chunk's tokens, so any run of rows is a contiguous matrix.
    for (int64_t t = 0; t < c; ++t)
      for (int64_t i = 0; i < k_; ++i) xt[size_t(i * c + t)] = x[(t0 + t) * k_ + i];
    // H is symmetric: per block of rows I, only H[I, i0:] = Xc[:, I]ᵀ Xc[:, i0:] (half the work), mirrored below.
    for (int64_t i0 = 0; i0 < k_; i0 += kBlock) {
      const int64_t b = std::min(kBlock, k_ - i0), s = k_ - i0, i1 = i0 + b;
      prod.resize(size_t(b * s));
      cpu::matmul(xt.data() + i0 * c, xt.data() + i0 * c, nullptr, prod.data(), b, s, c);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = i0; j < k_; ++j) {
          const double v = prod[size_t((i - i0) * s + j - i0)];
          h_[size_t(i * k_ + j)] += v;
          if (j >= i1) h_[size_t(j * k_ + i)] += v;
        }
    }
  }
  tokens_ += m;
}

}  // namespace qoq::quant
