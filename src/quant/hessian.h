// H = Xᵀ X over the calibration tokens that reach one linear's input: the only statistic the clipping search and
// GPTQ need, so their cost does not depend on how many tokens were seen. Accumulated in double; chunks of tokens
// are multiplied in float with the fast CPU matmul first (a chunk's float sum has at most kChunk terms).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qoq::quant {

class Hessian {
 public:
  explicit Hessian(int64_t k) : k_(k), h_(size_t(k * k), 0.0) {}

  // Adds xᵀ x for x [m, k] row-major.
  void add(const float* x, int64_t m);

  int64_t dim() const { return k_; }
  int64_t tokens() const { return tokens_; }
  const std::vector<double>& matrix() const { return h_; }  // [k, k], symmetric
  double at(int64_t i, int64_t j) const { return h_[size_t(i * k_ + j)]; }

 private:
  int64_t k_;
  int64_t tokens_ = 0;
  std::vector<double> h_;
};

}  // namespace qoq::quant
