#include "quant/rtn.h"

#include <algorithm>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "qoq/error.h"

namespace qoq::quant {
namespace {

// Quantization errors E = W - Q(W) [N, K] for a grid (rows independent, so split over the pool).
std::vector<float> error_matrix(const float* w, const WeightGrid& grid) {
  const int64_t N = grid.N, K = grid.K;
  std::vector<float> e(size_t(N * K));
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t k = 0; k < K; ++k) {
            const float x = w[n * K + k];
            e[size_t(n * K + k)] = x - grid.value(n, k, grid.code(n, k, x));
          }
      },
      8);
  return e;
}

// Per-row e H eᵀ given E [N, K] and H as float; or |e|^2 when hf is empty. By symmetry,
//   e H eᵀ = sum over column blocks I of  e_I H_II e_Iᵀ + 2 e_I H_{I,>I} e_{>I}ᵀ,
// so only H's upper block triangle is used: half the multiply-adds of forming E H (this product dominates the
// quantizer's run time: one per candidate ratio).
std::vector<double> weighted_rows(const std::vector<float>& e, int64_t N, int64_t K, const std::vector<float>& hf,
                                  std::vector<float>& scratch) {
  std::vector<double> out(size_t(N), 0.0);
  if (hf.empty()) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) out[n] += double(e[size_t(n * K + k)]) * e[size_t(n * K + k)];
    return out;
  }
  constexpr int64_t kBlock = 128;
  std::vector<float> hblk, f;
  for (int64_t i0 = 0; i0 < K; i0 += kBlock) {
    const int64_t b = std::min(kBlock, K - i0), s = K - i0;
    scratch.resize(size_t(N * s));  // E[:, i0:], contiguous for the matmul
    for (int64_t n = 0; n < N; ++n) std::copy(e.begin() + n * K + i0, e.begin() + (n + 1) * K, scratch.begin() + n * s);
    hblk.resize(size_t(b * s));  // H[I, i0:], the columns past the block doubled
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < s; ++j) hblk[size_t(i * s + j)] = hf[size_t((i0 + i) * K + i0 + j)] * (j < b ? 1.f : 2.f);
    f.resize(size_t(N * b));
    cpu::matmul(scratch.data(), hblk.data(), nullptr, f.data(), N, b, s);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < b; ++i) out[n] += double(f[size_t(n * b + i)]) * e[size_t(n * K + i0 + i)];
  }
  return out;
}

std::vector<float> hessian_f32(const Hessian* h, int64_t K) {
  if (!h) return {};
  QOQ_CHECK(h->dim() == K, "Hessian of dim {} for a layer with K={}", h->dim(), K);
  return std::vector<float>(h->matrix().begin(), h->matrix().end());
}

void row_ranges(const float* w, int64_t N, int64_t K, std::vector<float>& lo, std::vector<float>& hi) {
  lo.assign(size_t(N), 0.f);
  hi.assign(size_t(N), 0.f);
  for (int64_t n = 0; n < N; ++n) {
    lo[n] = *std::min_element(w + n * K, w + (n + 1) * K);
    hi[n] = *std::max_element(w + n * K, w + (n + 1) * K);
  }
}

}  // namespace

std::vector<float> default_clip_ratios() {
  std::vector<float> r;
  for (int i = 100; i >= 20; --i) r.push_back(float(i) / 100.f);
  return r;
}

std::vector<double> row_errors(const float* w, const QuantWeight& q, const Hessian* h) {
  const int64_t N = q.grid.N, K = q.grid.K;
  const std::vector<float> deq = q.dequantize();
  std::vector<float> e(size_t(N * K));
  for (size_t i = 0; i < e.size(); ++i) e[i] = w[i] - deq[i];
  std::vector<float> scratch;
  return weighted_rows(e, N, K, hessian_f32(h, K), scratch);
}

ClipResult search_clip_w4_per_channel(const float* w, int64_t N, int64_t K, const Hessian* h,
                                      std::span<const float> ratios) {
  QOQ_CHECK(!ratios.empty(), "clipping search needs at least one ratio");
  const std::vector<float> hf = hessian_f32(h, K);
  std::vector<float> lo, hi;
  row_ranges(w, N, K, lo, hi);
  ClipResult best;
  best.ratio.assign(size_t(N), 1.f);
  best.error.assign(size_t(N), 0.0);
  std::vector<float> best_lo(static_cast<size_t>(N)), best_hi(static_cast<size_t>(N)), clo(static_cast<size_t>(N)),
      chi(static_cast<size_t>(N)), scratch;
  for (size_t i = 0; i < ratios.size(); ++i) {
    const float r = ratios[i];
    QOQ_CHECK(r > 0.f && r <= 1.f, "clipping ratio {} outside (0, 1]", r);
    for (int64_t n = 0; n < N; ++n) clo[n] = r * lo[n], chi[n] = r * hi[n];
    const WeightGrid grid = w4_per_channel_grid(clo, chi, K);
    const std::vector<double> err = weighted_rows(error_matrix(w, grid), N, K, hf, scratch);
    for (int64_t n = 0; n < N; ++n)
      if (i == 0 || err[n] < best.error[n]) {
        best.error[n] = err[n];
        best.ratio[n] = r;
        best_lo[n] = clo[n];
        best_hi[n] = chi[n];
      }
    if (r == 1.f) best.error_unclipped = err;
  }
  if (best.error_unclipped.empty()) {
    const WeightGrid grid = w4_per_channel_grid(lo, hi, K);
    best.error_unclipped = weighted_rows(error_matrix(w, grid), N, K, hf, scratch);
  }
  best.grid = w4_per_channel_grid(best_lo, best_hi, K);
  return best;
}

}  // namespace qoq::quant
