#include "quant/gptq.h"

#include <algorithm>
#include <numeric>

#include "core/log.h"
#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "quant/linalg.h"

namespace qoq::quant {

QuantWeight gptq_quantize(const float* w, const WeightGrid& grid, const Hessian& hess, const GptqOptions& opts,
                          GptqStats* stats) {
  const int64_t N = grid.N, K = grid.K;
  QOQ_CHECK(hess.dim() == K, "GPTQ: Hessian of dim {} for K={}", hess.dim(), K);
  QOQ_CHECK(opts.block > 0 && opts.damp >= 0, "GPTQ: block {} damp {}", opts.block, opts.damp);
  GptqStats st;

  // A dead input (H_jj = 0) has a zero row and column in H; setting H_jj = 1 makes H invertible without
  // coupling it to any other column, so its rounding error is not propagated and it is simply rounded to nearest.
  // (Reference GPTQ also zeroes such weights; we keep them, since a later input may well use that channel.)
  std::vector<double> h = hess.matrix();
  for (int64_t j = 0; j < K; ++j)
    if (h[size_t(j * K + j)] == 0.0) {
      h[size_t(j * K + j)] = 1.0;
      ++st.dead_columns;
    }

  std::vector<int32_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (opts.act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return h[size_t(a) * K + a] > h[size_t(b) * K + b]; });

  std::vector<double> hp(size_t(K * K));
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) hp[size_t(i * K + j)] = h[size_t(perm[i]) * K + perm[j]];
    mean_diag += hp[size_t(i * K + i)];
  }
  mean_diag /= double(K);

  // U: upper Cholesky factor of (H + damp I)⁻¹. Raise the damping tenfold if rounding made H indefinite.
  std::vector<double> u;
  double damp = opts.damp;
  for (int attempt = 0;; ++attempt) {
    std::vector<double> hd = hp;
    for (int64_t i = 0; i < K; ++i) hd[size_t(i * K + i)] += damp * mean_diag;
    if (inverse_upper_cholesky(hd, K, u)) break;
    QOQ_CHECK(attempt < 6, "GPTQ: H is not positive definite even with damping {}", damp);
    damp = damp > 0 ? damp * 10 : 1e-6;
    spdlog::warn("GPTQ: H not positive definite, raising the damping to {}", damp);
  }
  st.damp_used = damp;

  // Work transposed: row i of wt is permuted column i of W (contiguous over the N outputs).
  std::vector<float> wt(size_t(K * N));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t n = 0; n < N; ++n) wt[size_t(i * N + n)] = w[n * K + perm[i]];

  QuantWeight out;
  out.grid = grid;
  out.codes.assign(size_t(N * grid.K_pad), 0);
  for (int64_t n = 0; n < N; ++n)  // padding columns: the code of 0
    for (int64_t k = K; k < grid.K_pad; ++k) out.codes[size_t(n * grid.K_pad + k)] = int8_t(grid.code(n, k, 0.f));

  const int64_t B = opts.block;
  std::vector<float> err(size_t(B * N)), err_t, a, upd;
  for (int64_t i1 = 0; i1 < K; i1 += B) {
    const int64_t i2 = std::min(i1 + B, K), nb = i2 - i1;
    for (int64_t i = i1; i < i2; ++i) {
      const int64_t col = perm[i];
      const double d = u[size_t(i * K + i)];
      float* wi = wt.data() + i * N;
      float* ei = err.data() + (i - i1) * N;
      for (int64_t n = 0; n < N; ++n) {
        const int q = grid.code(n, col, wi[n]);
        out.codes[size_t(n * grid.K_pad + col)] = int8_t(q);
        ei[n] = float((double(wi[n]) - grid.value(n, col, q)) / d);
      }
      // Within the block: W[:, j] -= err_i * U[i, j] for the block's later columns.
      for (int64_t j = i + 1; j < i2; ++j) {
        const float c = float(u[size_t(i * K + j)]);
        if (c == 0.f) continue;
        float* wj = wt.data() + j * N;
        for (int64_t n = 0; n < N; ++n) wj[n] -= c * ei[n];
      }
    }
    const int64_t rest = K - i2;
    if (rest == 0) continue;
    // Lazy batch: W[:, i2:] -= Err U[i1:i2, i2:], i.e. wt[i2:] -= U[i1:i2, i2:]ᵀ Err as one matmul X Yᵀ with
    // X = U[i1:i2, i2:]ᵀ [rest, nb] and Y = Errᵀ [N, nb].
    a.resize(size_t(rest * nb));
    for (int64_t j = 0; j < rest; ++j)
      for (int64_t t = 0; t < nb; ++t) a[size_t(j * nb + t)] = float(u[size_t((i1 + t) * K + i2 + j)]);
    err_t.resize(size_t(N * nb));
    for (int64_t t = 0; t < nb; ++t)
      for (int64_t n = 0; n < N; ++n) err_t[size_t(n * nb + t)] = err[size_t(t * N + n)];
    upd.resize(size_t(rest * N));
    cpu::matmul(a.data(), err_t.data(), nullptr, upd.data(), rest, N, nb);
    float* tail = wt.data() + i2 * N;
    for (size_t t = 0; t < upd.size(); ++t) tail[t] -= upd[t];
  }
  if (stats) *stats = st;
  return out;
}

}  // namespace qoq::quant
