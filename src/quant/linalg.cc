#include "quant/linalg.h"

#include <cmath>
#include <cstring>

#include "core/thread_pool.h"

// LAPACK (Fortran ABI, OpenBLAS): Cholesky factorization and triangular inverse.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info);
}

namespace qoq::quant {

void check_matrix(const Tensor& w, const char* what) {
  QOQ_CHECK(w.defined() && w.dtype() == DType::F32 && w.ndim() == 2, "{} must be an F32 matrix, got {}", what,
            w.defined() ? w.str() : "undefined");
}

namespace {
// A non-finite scale would silently poison the channel it touches. (Signs and zeros are legal: a folded RMSNorm γ
// may be negative or 0; smoothing scales are positive by construction.)
void check_scales(std::span<const float> s, bool divide) {
  for (size_t i = 0; i < s.size(); ++i)
    QOQ_CHECK(std::isfinite(s[i]) && !(divide && s[i] == 0.f), "scale {} of channel {} is not a finite {}", s[i], i,
              divide ? "divisor" : "factor");
}

void check_vector(const Tensor* b, int64_t n, const char* what) {
  if (!b) return;
  QOQ_CHECK(b->defined() && b->dtype() == DType::F32 && b->numel() == n, "{} must be F32 [{}], got {}", what, n,
            b->defined() ? b->str() : "undefined");
}
}  // namespace

void scale_rows(Tensor& w, Tensor* bias, std::span<const float> s, bool divide) {
  check_matrix(w, "scale_rows weight");
  const int64_t n = w.dim(0), k = w.dim(1);
  QOQ_CHECK(int64_t(s.size()) == n, "scale_rows: {} scales for {}", s.size(), w.str());
  check_vector(bias, n, "scale_rows bias");
  check_scales(s, divide);
  // Divide exactly when asked (x / s, not x * (1 / s)) so that scaling and unscaling by the same s round-trip as
  // closely as float allows.
  auto apply = [&](float x, float si) { return divide ? x / si : x * si; };
  float* p = w.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) p[i * k + j] = apply(p[i * k + j], s[i]);
    if (bias) bias->data<float>()[i] = apply(bias->data<float>()[i], s[i]);
  }
}

void scale_cols(Tensor& w, std::span<const float> s, bool divide) {
  check_matrix(w, "scale_cols weight");
  const int64_t n = w.dim(0), k = w.dim(1);
  QOQ_CHECK(int64_t(s.size()) == k, "scale_cols: {} scales for {}", s.size(), w.str());
  check_scales(s, divide);
  float* p = w.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) p[i * k + j] = divide ? p[i * k + j] / s[j] : p[i * k + j] * s[j];
}

std::vector<int32_t> invert_permutation(std::span<const int32_t> perm) {
  std::vector<int32_t> inv(perm.size(), -1);
  for (size_t i = 0; i < perm.size(); ++i) {
    QOQ_CHECK(perm[i] >= 0 && size_t(perm[i]) < perm.size() && inv[perm[i]] < 0, "not a permutation at index {}", i);
    inv[perm[i]] = int32_t(i);
  }
  return inv;
}

void permute_rows(Tensor& w, Tensor* bias, std::span<const int32_t> perm) {
  check_matrix(w, "permute_rows weight");
  const int64_t n = w.dim(0), k = w.dim(1);
  QOQ_CHECK(int64_t(perm.size()) == n, "permute_rows: permutation of {} for {}", perm.size(), w.str());
  check_vector(bias, n, "permute_rows bias");
  invert_permutation(perm);  // validates
  const Tensor src = w.clone();
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(w.data<float>() + i * k, src.data<float>() + int64_t(perm[i]) * k, size_t(k) * sizeof(float));
  if (bias) {
    const Tensor b = bias->clone();
    for (int64_t i = 0; i < n; ++i) bias->data<float>()[i] = b.data<float>()[perm[i]];
  }
}

void permute_cols(Tensor& w, std::span<const int32_t> perm) {
  check_matrix(w, "permute_cols weight");
  const int64_t n = w.dim(0), k = w.dim(1);
  QOQ_CHECK(int64_t(perm.size()) == k, "permute_cols: permutation of {} for {}", perm.size(), w.str());
  invert_permutation(perm);
  std::vector<float> row(k);
  float* p = w.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) row[j] = p[i * k + perm[j]];
    std::memcpy(p + i * k, row.data(), size_t(k) * sizeof(float));
  }
}

namespace {
// Four partial sums so the compiler can keep several FMAs in flight (a single double accumulator is latency-bound
// and GCC will not reassociate it without -ffast-math).
inline double dot4(const double* a, const double* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    s0 += a[t] * b[t];
    s1 += a[t + 1] * b[t + 1];
    s2 += a[t + 2] * b[t + 2];
    s3 += a[t + 3] * b[t + 3];
  }
  for (; t < n; ++t) s0 += a[t] * b[t];
  return (s0 + s1) + (s2 + s3);
}
}  // namespace

bool cholesky_lower(std::vector<double>& a, int64_t n) {
  QOQ_CHECK(int64_t(a.size()) == n * n, "cholesky: {} values for n={}", a.size(), n);
  // Row-oriented (L[i][j] = (A[i][j] - <L_i, L_j>) / L[j][j]): every inner product runs over two contiguous row
  // prefixes, which the compiler vectorizes.
  for (int64_t i = 0; i < n; ++i) {
    double* li = a.data() + i * n;
    for (int64_t j = 0; j <= i; ++j) {
      const double* lj = a.data() + j * n;
      const double s = li[j] - dot4(li, lj, j);
      if (j < i) {
        li[j] = s / lj[j];
      } else {
        if (!(s > 0) || !std::isfinite(s)) return false;
        li[i] = std::sqrt(s);
      }
    }
    for (int64_t j = i + 1; j < n; ++j) li[j] = 0;
  }
  return true;
}

void invert_lower(std::vector<double>& l, int64_t n) {
  QOQ_CHECK(int64_t(l.size()) == n * n, "invert_lower: {} values for n={}", l.size(), n);
  // Column by column of X = L⁻¹ via forward substitution; rows of X are independent, so work in parallel on
  // disjoint output columns j: X[i][j] = -(sum_{t=j..i-1} L[i][t] X[t][j]) / L[i][i].
  std::vector<double> x(size_t(n * n), 0.0);
  parallel_for(
      n,
      [&](int64_t j0, int64_t j1) {
        std::vector<double> col(n);
        for (int64_t j = j0; j < j1; ++j) {
          for (int64_t i = 0; i < j; ++i) col[i] = 0;
          col[j] = 1.0 / l[j * n + j];
          for (int64_t i = j + 1; i < n; ++i) {
            const double* li = l.data() + i * n;
            col[i] = -dot4(li + j, col.data() + j, i - j) / li[i];
          }
          for (int64_t i = j; i < n; ++i) x[i * n + j] = col[i];
        }
      },
      16);
  l.swap(x);
}

bool inverse_upper_cholesky(std::span<const double> a, int64_t n, std::vector<double>& u) {
  QOQ_CHECK(int64_t(a.size()) == n * n, "inverse_upper_cholesky: {} values for n={}", a.size(), n);
  QOQ_CHECK(n < (int64_t(1) << 31), "inverse_upper_cholesky: n={} too large for LAPACK", n);
  std::vector<double> r(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) r[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
  // LAPACK is column-major: the row-major lower factor L (r = L Lᵀ) is its upper factor, and L⁻¹ likewise.
  const char up = 'U', diag = 'N';
  int ni = int(n), info = 0;
  dpotrf_(&up, &ni, r.data(), &ni, &info);
  if (info != 0) return false;
  dtrtri_(&up, &diag, &ni, r.data(), &ni, &info);
  if (info != 0) return false;
  u.assign(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      // Row-major element (n-1-i, n-1-j) of L⁻¹, which is lower: row >= column.
      const double v = r[(n - 1 - i) * n + (n - 1 - j)];
      if (!std::isfinite(v)) return false;
      u[i * n + j] = v;
    }
  return true;
}

}  // namespace qoq::quant
