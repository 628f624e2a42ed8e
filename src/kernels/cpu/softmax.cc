#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "qoq/error.h"

namespace qoq::cpu {

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const float mx = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

double logsumexp(const float* x, int64_t n) {
  QOQ_CHECK(n > 0, "logsumexp of an empty vector");
  const double mx = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) - mx);
  return mx + std::log(sum);
}

double nll(const float* logits, int64_t n, int64_t target) {
  QOQ_CHECK(target >= 0 && target < n, "target {} outside the {} logits", target, n);
  return logsumexp(logits, n) - double(logits[target]);
}

}  // namespace qoq::cpu
