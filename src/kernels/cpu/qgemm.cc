#include "kernels/cpu/qgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/thread_pool.h"
#include "kernels/cpu/vec.h"
#include "qoq/error.h"

namespace qoq::cpu {

namespace {

// An optimization barrier: the value is materialized (rounded) here, so no FMA can be formed across it even in
// functions compiled for FMA with -ffp-contract=fast (the GNU default). The epilogue's exactness rests on it.
[[gnu::always_inline]] inline float no_fma(float v) {
  asm("" : "+x"(v));
  return v;
}

[[gnu::always_inline]] inline float epilogue1(int32_t acc, float s_a, int32_t asum, float s_w, int z,
                                              const float* bias) {
  const float v = float(acc - z * asum);
  const float scale = no_fma(s_a * s_w);
  const float y = no_fma(scale * v);
  return bias ? y + *bias : y;
}

enum class Kind { kPerChannel, kGroup64, kGroup32, kW8 };

constexpr int64_t kChunk = 64;    // input channels per chunk
constexpr int64_t kNTile = 16;    // output rows per task: 4 interleaved blocks; their codes stay in L1 across tokens
constexpr int64_t kMBlock = 64;   // tokens per pass over a task's rows

bool env_forces_scalar() {
  static const bool yes = [] {
    const char* e = std::getenv("QOQ_QGEMM_SCALAR");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return yes;
}

// Everything one call needs, flattened for the kernels.
struct Ctx {
  Kind kind;
  const int8_t* a;       // codes [M, lda]
  int64_t lda, M;
  const int32_t* asum;   // [M]
  const int16_t* gsum;   // [M, groups16] per-group activation sums (groups only)
  const uint8_t* data;
  int64_t N, chunks, groups, groups16, row_bytes;  // row_bytes: bytes of one row in one chunk (32 or 64)
  const uint32_t* s2pair;
  const int16_t* zs;
  const int32_t* chunk_group;
  // Output: int32 accumulators, or fp32 after the epilogue (the accumulators pass through y's memory first).
  int32_t* acc;
  float* y;
  const float* s_a;
  const float* s_w;
  const int32_t* zeros;  // per-channel only
  const float* bias;
};

[[gnu::always_inline]] inline const uint8_t* row_ptr(const Ctx& c, int64_t n) {
  return c.data + (n >> 2) * c.chunks * 4 * c.row_bytes + (n & 3) * c.row_bytes;
}

// Stores tile results [MR][NR] for rows m0.., columns n0.. (columns >= N are padding rows, dropped).
template <int MR, int NR>
[[gnu::always_inline]] inline void store_tile(const Ctx& c, int64_t m0, int64_t n0, const int32_t (&r)[MR][NR]) {
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      if (n0 + j >= c.N) continue;
      const size_t o = size_t(m0 + i) * size_t(c.N) + size_t(n0 + j);
      if (c.y)
        std::memcpy(c.y + o, &r[i][j], 4);
      else
        c.acc[o] = r[i][j];
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Scalar kernels (portable; the same packed layout and the same integer sums).

template <Kind kind>
int32_t dot_scalar(const Ctx& c, int64_t m, int64_t n) {
  const int8_t* a = c.a + m * c.lda;
  const uint8_t* p = row_ptr(c, n);
  const int64_t stride = 4 * c.row_bytes;
  int32_t acc = 0;
  for (int64_t ch = 0; ch < c.chunks; ++ch, p += stride, a += kChunk) {
    if constexpr (kind == Kind::kW8) {
      for (int j = 0; j < 64; ++j) acc += int32_t(a[j]) * int32_t(int8_t(p[j]));
    } else {
      int32_t lo = 0, hi = 0;
      for (int j = 0; j < 32; ++j) {
        lo += int32_t(a[j]) * int32_t(p[j] & 15);
        hi += int32_t(a[32 + j]) * int32_t(p[j] >> 4);
      }
      if constexpr (kind == Kind::kPerChannel) {
        acc += lo + hi;
      } else {
        const uint32_t* s2 = c.s2pair + n * c.groups;
        acc += int32_t(s2[c.chunk_group[2 * ch]] & 0xFFFF) * lo + int32_t(s2[c.chunk_group[2 * ch + 1]] & 0xFFFF) * hi;
      }
    }
  }
  if constexpr (kind == Kind::kGroup64 || kind == Kind::kGroup32) {
    const int16_t* zs = c.zs + n * c.groups16;
    const int16_t* gs = c.gsum + m * c.groups16;
    for (int64_t g = 0; g < c.groups; ++g) acc -= int32_t(zs[g]) * int32_t(gs[g]);
  }
  return acc;
}

template <Kind kind>
void rows_scalar(const Ctx& c, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      const int32_t r = dot_scalar<kind>(c, m, n);
      const size_t o = size_t(m) * size_t(c.N) + size_t(n);
      if (!c.y) {
        c.acc[o] = r;
        continue;
      }
      c.y[o] = epilogue1(r, c.s_a[m], c.asum[m], c.s_w[n], c.zeros ? c.zeros[n] : 0, c.bias ? c.bias + n : nullptr);
    }
}

void block_scalar(const Ctx& c, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  n1 = std::min(n1, c.N);
  switch (c.kind) {
    case Kind::kPerChannel:
      return rows_scalar<Kind::kPerChannel>(c, m0, m1, n0, n1);
    case Kind::kGroup64:
      return rows_scalar<Kind::kGroup64>(c, m0, m1, n0, n1);
    case Kind::kGroup32:
      return rows_scalar<Kind::kGroup32>(c, m0, m1, n0, n1);
    case Kind::kW8:
      return rows_scalar<Kind::kW8>(c, m0, m1, n0, n1);
  }
}

void quantize_rows_scalar(const float* x, int64_t m0, int64_t m1, int64_t K, int64_t ld, int8_t* codes,
                          float* scales, int32_t* sums) {
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = x + m * K;
    int8_t* out = codes + m * ld;
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    int32_t sum = 0;
    if (amax == 0.f) {
      scales[m] = 1.f;
      std::memset(out, 0, size_t(K));
    } else {
      scales[m] = amax / 127.f;
      const float mul = 127.f / amax;
      for (int64_t k = 0; k < K; ++k) {
        const int q = std::clamp(int(std::nearbyint(row[k] * mul)), -127, 127);
        out[k] = int8_t(q);
        sum += q;
      }
    }
    std::memset(out + K, 0, size_t(ld - K));
    sums[m] = sum;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// AVX2 kernels.

QOQ_TARGET_AVX2 [[gnu::always_inline]] inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// An MR x NR tile: MR token rows against NR weight rows over all of K. Each weight chunk is loaded and unpacked
// once and used for MR tokens; maddubs sums code pairs into int16 (<= 2*15*127, or 2*127*127 for W8 with the
// sign moved onto the activation), madd widens to int32 and applies the group's s2 for free.
template <int MR, int NR, Kind kind>
QOQ_TARGET_AVX2 [[gnu::always_inline]] inline void tile_avx2(const Ctx& c, int64_t m0, int64_t n0) {
  const uint8_t* wp[NR];
  for (int j = 0; j < NR; ++j) wp[j] = row_ptr(c, n0 + j);
  const int8_t* ap[MR];
  for (int i = 0; i < MR; ++i) ap[i] = c.a + (m0 + i) * c.lda;
  const int64_t stride = 4 * c.row_bytes;
  __m256i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t ch = 0; ch < c.chunks; ++ch) {
    const int64_t wo = ch * stride, ao = ch * kChunk;
    if constexpr (kind == Kind::kW8) {
      __m256i w0[NR], w1[NR], u0[NR], u1[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        w0[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[j] + wo));
        w1[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[j] + wo + 32));
        u0[j] = _mm256_abs_epi8(w0[j]);
        u1[j] = _mm256_abs_epi8(w1[j]);
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap[i] + ao));
        const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap[i] + ao + 32));
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          const __m256i t0 = _mm256_maddubs_epi16(u0[j], _mm256_sign_epi8(a0, w0[j]));
          const __m256i t1 = _mm256_maddubs_epi16(u1[j], _mm256_sign_epi8(a1, w1[j]));
          acc[i][j] = _mm256_add_epi32(acc[i][j],
                                       _mm256_add_epi32(_mm256_madd_epi16(t0, ones), _mm256_madd_epi16(t1, ones)));
        }
      }
    } else {
      __m256i lo[NR], hi[NR], s2lo[NR], s2hi[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[j] + wo));
        lo[j] = _mm256_and_si256(v, m4);
        hi[j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if constexpr (kind == Kind::kGroup64 || kind == Kind::kGroup32) {
          const uint32_t* s2 = c.s2pair + (n0 + j) * c.groups;
          s2lo[j] = _mm256_set1_epi32(int(s2[c.chunk_group[2 * ch]]));
          if constexpr (kind == Kind::kGroup32) s2hi[j] = _mm256_set1_epi32(int(s2[c.chunk_group[2 * ch + 1]]));
        }
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256i alo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap[i] + ao));
        const __m256i ahi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ap[i] + ao + 32));
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          const __m256i tl = _mm256_maddubs_epi16(lo[j], alo);
          const __m256i th = _mm256_maddubs_epi16(hi[j], ahi);
          if constexpr (kind == Kind::kPerChannel) {
            acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(_mm256_add_epi16(tl, th), ones));
          } else if constexpr (kind == Kind::kGroup64) {
            acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(_mm256_add_epi16(tl, th), s2lo[j]));
          } else {
            acc[i][j] = _mm256_add_epi32(
                acc[i][j], _mm256_add_epi32(_mm256_madd_epi16(tl, s2lo[j]), _mm256_madd_epi16(th, s2hi[j])));
          }
        }
      }
    }
  }
  if constexpr (kind == Kind::kGroup64 || kind == Kind::kGroup32) {
    // The zeros: subtract sum_g (s2*z)[n,g] * asum_g[m,g], 16 groups per madd.
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const int16_t* zs = c.zs + (n0 + j) * c.groups16;
        const int16_t* gs = c.gsum + (m0 + i) * c.groups16;
        for (int64_t g = 0; g < c.groups16; g += 16)
          acc[i][j] = _mm256_sub_epi32(
              acc[i][j], _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(zs + g)),
                                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(gs + g))));
      }
  }
  int32_t r[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) r[i][j] = hsum_epi32(acc[i][j]);
  store_tile<MR, NR>(c, m0, n0, r);
}

// The epilogue over y rows [m0, m1), columns [n0, n1), whose memory holds the int32 accumulators.
QOQ_TARGET_AVX2 void epilogue_avx2(const Ctx& c, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t m = m0; m < m1; ++m) {
    float* yr = c.y + m * c.N;
    const __m256 sa = _mm256_set1_ps(c.s_a[m]);
    const __m256i as = _mm256_set1_epi32(c.asum[m]);
    int64_t n = n0;
    for (; n + 8 <= n1; n += 8) {
      __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yr + n));
      if (c.zeros)
        acc = _mm256_sub_epi32(
            acc, _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.zeros + n)), as));
      const __m256 v = _mm256_cvtepi32_ps(acc);
      __m256 scale = _mm256_mul_ps(sa, _mm256_loadu_ps(c.s_w + n));
      asm("" : "+x"(scale));
      __m256 y = _mm256_mul_ps(scale, v);
      asm("" : "+x"(y));
      if (c.bias) y = _mm256_add_ps(y, _mm256_loadu_ps(c.bias + n));
      _mm256_storeu_ps(yr + n, y);
    }
    for (; n < n1; ++n) {
      int32_t acc;
      std::memcpy(&acc, yr + n, 4);
      yr[n] = epilogue1(acc, c.s_a[m], c.asum[m], c.s_w[n], c.zeros ? c.zeros[n] : 0, c.bias ? c.bias + n : nullptr);
    }
  }
}

template <Kind kind>
QOQ_TARGET_AVX2 void rows_avx2(const Ctx& c, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  // n0 is a multiple of 4 and n1 a multiple of 4 or N4, so the tiles never leave the padded rows.
  for (int64_t mb = m0; mb < m1; mb += kMBlock) {
    const int64_t me = std::min(m1, mb + kMBlock);
    int64_t m = mb;
    for (; m + 4 <= me; m += 4)
      for (int64_t n = n0; n < n1; n += 2) tile_avx2<4, 2, kind>(c, m, n);
    for (; m < me; ++m)
      for (int64_t n = n0; n < n1; n += 4) tile_avx2<1, 4, kind>(c, m, n);
    if (c.y) epilogue_avx2(c, mb, me, n0, std::min(n1, c.N));
  }
}

QOQ_TARGET_AVX2 void block_avx2(const Ctx& c, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  switch (c.kind) {
    case Kind::kPerChannel:
      return rows_avx2<Kind::kPerChannel>(c, m0, m1, n0, n1);
    case Kind::kGroup64:
      return rows_avx2<Kind::kGroup64>(c, m0, m1, n0, n1);
    case Kind::kGroup32:
      return rows_avx2<Kind::kGroup32>(c, m0, m1, n0, n1);
    case Kind::kW8:
      return rows_avx2<Kind::kW8>(c, m0, m1, n0, n1);
  }
}

QOQ_TARGET_AVX2 void quantize_rows_avx2(const float* x, int64_t m0, int64_t m1, int64_t K, int64_t ld,
                                        int8_t* codes, float* scales, int32_t* sums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t m = m0; m < m1; ++m) {
    const float* row = x + m * K;
    int8_t* out = codes + m * ld;
    __m256 vmax = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(row + k), abs_mask));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    float amax = 0.f;
    for (float l : lanes) amax = std::max(amax, l);
    for (; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    int32_t sum = 0;
    if (amax == 0.f) {
      scales[m] = 1.f;
      std::memset(out, 0, size_t(K));
    } else {
      scales[m] = amax / 127.f;
      const float mul = 127.f / amax;
      const __m256 vm = _mm256_set1_ps(mul);
      __m256i vsum = _mm256_setzero_si256();
      k = 0;
      for (; k + 32 <= K; k += 32) {
        __m256i q[4];
        for (int t = 0; t < 4; ++t) {
          __m256 r = _mm256_mul_ps(_mm256_loadu_ps(row + k + 8 * t), vm);
          r = _mm256_round_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
          q[t] = _mm256_cvtps_epi32(r);
          vsum = _mm256_add_epi32(vsum, q[t]);
        }
        const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), _mm256_permutevar8x32_epi32(b, perm));
      }
      sum = hsum_epi32(vsum);
      for (; k < K; ++k) {
        const int q = std::clamp(int(std::nearbyint(row[k] * mul)), -127, 127);
        out[k] = int8_t(q);
        sum += q;
      }
    }
    std::memset(out + K, 0, size_t(ld - K));
    sums[m] = sum;
  }
}

bool use_avx2(QIsa isa) { return qgemm_resolve(isa) == QIsa::kAvx2; }

void run(const Ctx& c, int64_t N4, QIsa isa) {
  const bool avx2 = use_avx2(isa);
  const int64_t threads = ThreadPool::global().num_threads();
  const int64_t ntiles = (N4 + kNTile - 1) / kNTile;
  // Split the tokens too when the row tiles alone cannot keep every thread busy (then weights are re-read per
  // token block, which large M amortizes).
  const int64_t mtiles = (c.M >= 2 * kMBlock && ntiles < 4 * threads) ? (c.M + kMBlock - 1) / kMBlock : 1;
  const int64_t mstep = mtiles > 1 ? kMBlock : c.M;
  const int64_t tasks = ntiles * mtiles;
  // Waking the pool costs ~10 us (2 threads were slower than 1 for decode GEMVs on the Xeon VM); give each chunk at
  // least ~2M multiply-adds (~15 us on one core), so decode-size products run on the calling thread.
  const int64_t task_macs = std::max<int64_t>(1, std::min(c.M, mstep) * kNTile * c.chunks * kChunk);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 21) / task_macs);
  parallel_for(
      tasks,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t mi = t / ntiles, ni = t % ntiles;
          const int64_t m0 = mi * mstep, m1 = std::min(c.M, m0 + mstep);
          const int64_t n0 = ni * kNTile, n1 = std::min(N4, n0 + kNTile);
          (avx2 ? block_avx2 : block_scalar)(c, m0, m1, n0, n1);
        }
      },
      grain);
}

// Per-token, per-group activation sums [M, groups16] (each within +-127 * group, int16 for groups <= 256).
void group_sums(const int8_t* codes, int64_t lda, int64_t M, int64_t group, int64_t groups, int64_t groups16,
                int16_t* out) {
  parallel_for(
      M,
      [&](int64_t b, int64_t e) {
        for (int64_t m = b; m < e; ++m) {
          const int8_t* a = codes + m * lda;
          int16_t* o = out + m * groups16;
          for (int64_t g = 0; g < groups16; ++g) {
            int32_t s = 0;
            if (g < groups)
              for (int64_t k = 0; k < group; ++k) s += a[g * group + k];
            o[g] = int16_t(s);
          }
        }
      },
      std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(1, lda)));
}

}  // namespace

// The one place that reads the packed weight's fields for a call.
struct QGemmAccess {
  static void call(const int8_t* codes, const float* scales, const int32_t* sums, int64_t M, const PackedQWeight& w,
                   const float* bias, float* y, int32_t* acc, QIsa isa) {
    if (M <= 0 || w.N_ <= 0) return;
    Ctx c{};
    switch (w.format_) {
      case quant::WeightFormat::W4PerChannel:
        c.kind = Kind::kPerChannel;
        break;
      case quant::WeightFormat::W4Group:
        c.kind = w.group_ % 64 == 0 ? Kind::kGroup64 : Kind::kGroup32;
        break;
      case quant::WeightFormat::W8PerChannel:
        c.kind = Kind::kW8;
        break;
    }
    c.a = codes;
    c.lda = w.Kp_;
    c.M = M;
    c.asum = sums;
    c.data = w.data_.data();
    c.N = w.N_;
    c.chunks = w.chunks_;
    c.groups = w.groups_;
    c.groups16 = w.groups16_;
    c.row_bytes = c.kind == Kind::kW8 ? 64 : 32;
    c.s2pair = w.s2pair_.data();
    c.zs = w.zs_.data();
    c.chunk_group = w.chunk_group_.data();
    c.acc = acc;
    c.y = y;
    c.s_a = scales;
    c.s_w = w.scales_.data();
    c.zeros = c.kind == Kind::kPerChannel ? w.zeros_.data() : nullptr;
    c.bias = bias;
    thread_local std::vector<int16_t> gsum;
    if (w.groups_ > 0) {
      gsum.resize(size_t(M * w.groups16_));
      group_sums(codes, w.Kp_, M, w.group_, w.groups_, w.groups16_, gsum.data());
      c.gsum = gsum.data();
    }
    run(c, w.N4_, isa);
  }
};

PackedQWeight::PackedQWeight(const quant::QuantWeight& w) {
  const auto& g = w.grid;
  format_ = g.format;
  N_ = g.N;
  K_ = g.K;
  K_pad_ = g.K_pad;
  group_ = g.format == quant::WeightFormat::W4Group ? g.group : 0;
  QOQ_CHECK(N_ >= 0 && K_pad_ >= K_ && w.codes.size() == size_t(N_ * K_pad_), "malformed QuantWeight [{}, {}]", N_,
            K_pad_);
  QOQ_CHECK(format_ != quant::WeightFormat::W4Group || (group_ > 0 && group_ % 32 == 0 && K_pad_ % group_ == 0),
            "group size {} must be a multiple of 32 dividing K_pad {}", group_, K_pad_);
  QOQ_CHECK(group_ <= 256, "group size {} > 256 overflows the int16 group sums", group_);
  N4_ = (N_ + 3) / 4 * 4;
  Kp_ = std::max<int64_t>(kChunk, (K_pad_ + kChunk - 1) / kChunk * kChunk);
  chunks_ = Kp_ / kChunk;
  scales_ = g.scales;
  const bool w8 = format_ == quant::WeightFormat::W8PerChannel;
  const int64_t row_bytes = w8 ? 64 : 32;
  data_.assign(size_t(N4_ * chunks_ * row_bytes), 0);
  auto code = [&](int64_t n, int64_t k) -> int { return n < N_ && k < K_pad_ ? w.codes[size_t(n * K_pad_ + k)] : 0; };
  for (int64_t n = 0; n < N4_; ++n)
    for (int64_t ch = 0; ch < chunks_; ++ch) {
      uint8_t* p = data_.data() + ((n >> 2) * chunks_ * 4 + ch * 4 + (n & 3)) * row_bytes;
      for (int64_t j = 0; j < row_bytes; ++j) {
        const int64_t k = ch * kChunk + j;
        p[j] = w8 ? uint8_t(int8_t(code(n, k))) : uint8_t((code(n, k) & 15) | (code(n, k + 32) & 15) << 4);
      }
    }
  if (format_ == quant::WeightFormat::W4PerChannel) zeros_.assign(g.zeros.begin(), g.zeros.end());
  if (group_ > 0) {
    groups_ = K_pad_ / group_;
    groups16_ = (groups_ + 15) / 16 * 16;
    s2pair_.assign(size_t(N4_ * groups_), 0);
    zs_.assign(size_t(N4_ * groups16_), 0);
    for (int64_t n = 0; n < N_; ++n)
      for (int64_t b = 0; b < groups_; ++b) {
        const uint32_t s2 = g.gscales[size_t(n * groups_ + b)];
        s2pair_[size_t(n * groups_ + b)] = s2 | s2 << 16;
        zs_[size_t(n * groups16_ + b)] = int16_t(s2 * g.gzeros[size_t(n * groups_ + b)]);
      }
    // Halves past K_pad hold code 0 against activation 0: any group's s2 will do.
    chunk_group_.resize(size_t(2 * chunks_));
    for (int64_t h = 0; h < 2 * chunks_; ++h) chunk_group_[size_t(h)] = int32_t(std::min(h * 32 / group_, groups_ - 1));
  }
}

void qgemm_acc(const int8_t* codes, const int32_t* sums, int64_t M, const PackedQWeight& w, int32_t* acc, QIsa isa) {
  QGemmAccess::call(codes, nullptr, sums, M, w, nullptr, nullptr, acc, isa);
}

void qgemm_f32(const int8_t* codes, const float* scales, const int32_t* sums, int64_t M, const PackedQWeight& w,
               const float* bias, float* y, QIsa isa) {
  QGemmAccess::call(codes, scales, sums, M, w, bias, y, nullptr, isa);
}

QIsa qgemm_resolve(QIsa isa) {
  if (isa == QIsa::kAuto) return (!env_forces_scalar() && has_avx2_fma()) ? QIsa::kAvx2 : QIsa::kScalar;
  if (isa == QIsa::kAvx2) QOQ_CHECK(has_avx2_fma(), "the AVX2 qgemm path was requested on a CPU without AVX2");
  return isa;
}

void quantize_activations(const float* x, int64_t M, int64_t K, int64_t ld, int8_t* codes, float* scales,
                          int32_t* sums, QIsa isa) {
  QOQ_CHECK(ld >= K, "activation row stride {} < K {}", ld, K);
  if (M <= 0) return;
  const bool avx2 = use_avx2(isa);
  parallel_for(
      M,
      [&](int64_t b, int64_t e) {
        (avx2 ? quantize_rows_avx2 : quantize_rows_scalar)(x, b, e, K, ld, codes, scales, sums);
      },
      std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, K)));
}

}  // namespace qoq::cpu
