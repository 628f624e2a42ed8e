// The orthogonal matrix R that rotates the residual stream (DESIGN §4 pass 2). Deterministic: a Hadamard matrix
// whenever one can be built (Sylvester for powers of two, kron(H_{2^m}, H_k) with H_k from a Paley construction),
// so every entry is ±1/sqrt(H) and the rotation spreads an outlier channel evenly over all channels; a seeded
// random orthogonal matrix only when no construction applies (with a warning).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qoq::quant {

enum class RotationKind { Sylvester, Paley, Random };
const char* rotation_kind_name(RotationKind k);

struct Rotation {
  int64_t size = 0;
  RotationKind kind = RotationKind::Sylvester;
  int64_t paley_order = 1;  // k of kron(H_{2^m}, H_k); 1 for Sylvester and Random
  std::vector<float> r;     // [size, size] row-major, R Rᵀ = I

  // "sylvester", "paley 36 x 16", "random (seed 0)": what qoq.json records.
  std::string describe() const;
};

// The ±1 Hadamard matrix of order n (row-major, H Hᵀ = n I) if Sylvester/Paley can build it, else empty.
// Orders: n = k * 2^m where k = 1, or k = q + 1 with q a prime power ≡ 3 (mod 4) (Paley I), or k = 2(q + 1) with
// q a prime power ≡ 1 (mod 4) (Paley II). The smallest such k is used, so the result is unique per n.
std::vector<int8_t> hadamard_pm1(int64_t n, int64_t* paley_order = nullptr);

// The smallest k that hadamard_pm1 would use for n, or 0 when none.
int64_t hadamard_paley_order(int64_t n);

// R for a residual stream of width `size`: hadamard_pm1(size) / sqrt(size), or (warning) a random orthogonal
// matrix from `seed` (Gaussian matrix, Gram-Schmidt in double).
Rotation make_rotation(int64_t size, uint64_t seed = 0);

}  // namespace qoq::quant
