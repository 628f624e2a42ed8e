#include "quant/hadamard.h"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <random>

#include "core/log.h"
#include "qoq/error.h"

namespace qoq::quant {
namespace {

// q = p^m with p prime; returns p (and m) or 0 when q is not a prime power.
int64_t prime_power_base(int64_t q, int* m) {
  if (q < 2) return 0;
  int64_t p = 0;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) {
      p = d;
      break;
    }
  if (p == 0) p = q;  // q is prime
  int e = 0;
  while (q % p == 0) q /= p, ++e;
  if (q != 1) return 0;
  *m = e;
  return p;
}

// GF(p^m): an element is the integer whose base-p digits are its polynomial coefficients (low digit = constant).
// Only what Paley needs: subtraction and which elements are nonzero squares.
class FiniteField {
 public:
  FiniteField(int64_t p, int m) : p_(p), m_(m) {
    q_ = 1;
    for (int i = 0; i < m; ++i) q_ *= p;
    if (m > 1) modulus_ = find_irreducible();
    is_square_.assign(size_t(q_), false);
    for (int64_t b = 1; b < q_; ++b) is_square_[size_t(mul(b, b))] = true;
  }
  int64_t order() const { return q_; }
  int64_t sub(int64_t a, int64_t b) const {
    int64_t r = 0, place = 1;
    for (int i = 0; i < m_; ++i, place *= p_) {
      const int64_t d = ((a % p_) - (b % p_) + p_) % p_;
      r += d * place;
      a /= p_, b /= p_;
    }
    return r;
  }
  // Quadratic character: 0 for 0, +1 for nonzero squares, -1 otherwise.
  int chi(int64_t a) const { return a == 0 ? 0 : (is_square_[size_t(a)] ? 1 : -1); }

 private:
  using Poly = std::vector<int64_t>;  // coefficients, low degree first
  Poly digits(int64_t a) const {
    Poly c(m_);
    for (int i = 0; i < m_; ++i) c[i] = a % p_, a /= p_;
    return c;
  }
  // r mod f for a monic f, coefficients reduced mod p.
  Poly reduce(Poly r, const Poly& f) const {
    const size_t df = f.size() - 1;
    for (size_t i = r.size(); i-- > df;) {
      const int64_t c = r[i] % p_;
      if (c == 0) continue;
      for (size_t j = 0; j <= df; ++j) r[i - df + j] = ((r[i - df + j] - c * f[j]) % p_ + p_) % p_;
    }
    r.resize(std::min(r.size(), df));
    for (auto& c : r) c = (c % p_ + p_) % p_;
    return r;
  }
  // The first monic degree-m polynomial (in counting order of its lower coefficients) with no monic factor of
  // degree 1..m/2: deterministic, and irreducible, so Z_p[x]/f is the field.
  Poly find_irreducible() const {
    for (int64_t low = 0; low < q_; ++low) {
      Poly f = digits(low);
      f.push_back(1);
      bool irreducible = true;
      for (int d = 1; d <= m_ / 2 && irreducible; ++d) {
        int64_t count = 1;
        for (int i = 0; i < d; ++i) count *= p_;
        for (int64_t g = 0; g < count && irreducible; ++g) {
          Poly h(d);
          int64_t t = g;
          for (int i = 0; i < d; ++i) h[i] = t % p_, t /= p_;
          h.push_back(1);
          const Poly r = reduce(f, h);
          bool zero = true;
          for (auto c : r) zero = zero && c == 0;
          if (zero) irreducible = false;
        }
      }
      if (irreducible) return f;
    }
    fail("no irreducible polynomial of degree {} over GF({})", m_, p_);
  }
  int64_t mul(int64_t a, int64_t b) const {
    if (m_ == 1) return a * b % p_;
    const Poly x = digits(a), y = digits(b);
    Poly r(2 * m_ - 1, 0);
    for (int i = 0; i < m_; ++i)
      for (int j = 0; j < m_; ++j) r[i + j] = (r[i + j] + x[i] * y[j]) % p_;
    r = reduce(r, modulus_);
    int64_t v = 0;
    for (int i = m_; i-- > 0;) v = v * p_ + (i < int(r.size()) ? r[i] : 0);
    return v;
  }

  int64_t p_, q_ = 1;
  int m_;
  Poly modulus_;
  std::vector<bool> is_square_;
};

// Prime powers with m > 1 build their field by brute force; beyond this q only primes are considered.
constexpr int64_t kMaxPrimePowerOrder = 1 << 16;

enum class Paley { None, One, Two };

Paley paley_kind(int64_t k) {
  if (k < 4 || k % 4 != 0) return Paley::None;
  int m = 0;
  const int64_t q1 = k - 1;
  if (q1 % 4 == 3 && prime_power_base(q1, &m) && (m == 1 || q1 <= kMaxPrimePowerOrder)) return Paley::One;
  const int64_t q2 = k / 2 - 1;
  if (q2 % 4 == 1 && prime_power_base(q2, &m) && (m == 1 || q2 <= kMaxPrimePowerOrder)) return Paley::Two;
  return Paley::None;
}

// ±1 Hadamard matrix of order k from Paley I or II.
std::vector<int8_t> paley(int64_t k) {
  const Paley kind = paley_kind(k);
  QOQ_CHECK(kind != Paley::None, "no Paley construction of order {}", k);
  const int64_t q = kind == Paley::One ? k - 1 : k / 2 - 1;
  int m = 0;
  const int64_t p = prime_power_base(q, &m);
  const FiniteField field(p, m);
  // C (order q+1): C[0][0] = 0, first row +1, first column -1 (Paley I, skew) or +1 (Paley II, symmetric),
  // and the Jacobsthal matrix chi(a_i - a_j) below.
  const int64_t c = q + 1;
  std::vector<int> cm(size_t(c * c));
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j) {
      int v;
      if (i == 0 && j == 0)
        v = 0;
      else if (i == 0)
        v = 1;
      else if (j == 0)
        v = kind == Paley::One ? -1 : 1;
      else
        v = field.chi(field.sub(i - 1, j - 1));
      cm[size_t(i * c + j)] = v;
    }
  std::vector<int8_t> h(size_t(k * k));
  if (kind == Paley::One) {
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < c; ++j) h[size_t(i * k + j)] = int8_t(cm[size_t(i * c + j)] + (i == j ? 1 : 0));
  } else {
    // 0 -> [[1,-1],[-1,-1]], ±1 -> ±[[1,1],[1,-1]].
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < c; ++j) {
        const int v = cm[size_t(i * c + j)];
        const int b[2][2] = {{v == 0 ? 1 : v, v == 0 ? -1 : v}, {v == 0 ? -1 : v, v == 0 ? -1 : -v}};
        for (int a = 0; a < 2; ++a)
          for (int e = 0; e < 2; ++e) h[size_t((2 * i + a) * k + 2 * j + e)] = int8_t(b[a][e]);
      }
  }
  // Verify H Hᵀ = k I exactly: a wrong field or sign would silently break orthogonality otherwise. Cheap next to
  // the kron for the orders that occur (k is a few dozen).
  if (k <= 512) {
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) {
        int64_t s = 0;
        for (int64_t t = 0; t < k; ++t) s += h[size_t(i * k + t)] * h[size_t(j * k + t)];
        QOQ_CHECK(s == (i == j ? k : 0), "Paley matrix of order {} is not Hadamard at ({}, {})", k, i, j);
      }
  }
  return h;
}

}  // namespace

const char* rotation_kind_name(RotationKind k) {
  switch (k) {
    case RotationKind::Sylvester:
      return "sylvester";
    case RotationKind::Paley:
      return "paley";
    case RotationKind::Random:
      return "random";
  }
  return "?";
}

std::string Rotation::describe() const {
  switch (kind) {
    case RotationKind::Sylvester:
      return fmt::format("sylvester {}", size);
    case RotationKind::Paley:
      return fmt::format("paley {} x {}", paley_order, size / paley_order);
    case RotationKind::Random:
      return fmt::format("random {}", size);
  }
  return "?";
}

int64_t hadamard_paley_order(int64_t n) {
  if (n < 1) return 0;
  // Smallest k first = largest power of two first: k = n / 2^m for m = ctz(n) down to 0.
  const int tz = std::countr_zero(uint64_t(n));
  for (int m = tz; m >= 0; --m) {
    const int64_t k = n >> m;
    if (k == 1 || k == 2 || paley_kind(k) != Paley::None) return k;
  }
  return 0;
}

std::vector<int8_t> hadamard_pm1(int64_t n, int64_t* paley_order) {
  const int64_t k = hadamard_paley_order(n);
  if (paley_order) *paley_order = k;
  if (k == 0) return {};
  const std::vector<int8_t> hk =
      k <= 2 ? std::vector<int8_t>(k == 1 ? std::vector<int8_t>{1} : std::vector<int8_t>{1, 1, 1, -1}) : paley(k);
  const int64_t s = n / k;  // Sylvester factor 2^m: entry (a, b) = (-1)^popcount(a & b)
  std::vector<int8_t> h(size_t(n * n));
  for (int64_t a = 0; a < s; ++a)
    for (int64_t i = 0; i < k; ++i) {
      int8_t* row = h.data() + (a * k + i) * n;
      for (int64_t b = 0; b < s; ++b) {
        const int8_t sign = (std::popcount(uint64_t(a & b)) & 1) ? -1 : 1;
        for (int64_t j = 0; j < k; ++j) row[b * k + j] = int8_t(sign * hk[size_t(i * k + j)]);
      }
    }
  return h;
}

Rotation make_rotation(int64_t size, uint64_t seed) {
  QOQ_CHECK(size > 0, "rotation size {}", size);
  Rotation rot;
  rot.size = size;
  int64_t k = 0;
  const std::vector<int8_t> h = hadamard_pm1(size, &k);
  rot.r.resize(size_t(size * size));
  if (!h.empty()) {
    rot.kind = k <= 2 ? RotationKind::Sylvester : RotationKind::Paley;
    rot.paley_order = k <= 2 ? 1 : k;
    const float inv = float(1.0 / std::sqrt(double(size)));
    for (size_t i = 0; i < h.size(); ++i) rot.r[i] = float(h[i]) * inv;
    return rot;
  }
  spdlog::warn("no Hadamard construction for size {}; rotating with a random orthogonal matrix (seed {})", size, seed);
  rot.kind = RotationKind::Random;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> q(size_t(size * size));
  for (auto& v : q) v = normal(rng);
  // Modified Gram-Schmidt over the rows, two passes so orthogonality holds to double precision.
  for (int64_t i = 0; i < size; ++i) {
    double* qi = q.data() + i * size;
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t j = 0; j < i; ++j) {
        const double* qj = q.data() + j * size;
        double d = 0;
        for (int64_t t = 0; t < size; ++t) d += qi[t] * qj[t];
        for (int64_t t = 0; t < size; ++t) qi[t] -= d * qj[t];
      }
    double nrm = 0;
    for (int64_t t = 0; t < size; ++t) nrm += qi[t] * qi[t];
    nrm = std::sqrt(nrm);
    QOQ_CHECK(nrm > 1e-12, "random rotation: degenerate row {}", i);
    for (int64_t t = 0; t < size; ++t) qi[t] /= nrm;
  }
  for (size_t i = 0; i < q.size(); ++i) rot.r[i] = float(q[i]);
  return rot;
}

}  // namespace qoq::quant
