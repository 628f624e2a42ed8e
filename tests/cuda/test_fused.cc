// Fused RMSNorm + int8 quantization and SwiGLU + int8 quantization against the CPU references.
// RMSNorm: y = w * (x * inv) rebuilt on the CPU from the kernel's inv (fp32, the kernel's summation order; checked
// against the double-precision value within 4 ulp), then ref::quantize_activations(y): codes, scale bits and sums
// bit-exact. SwiGLU: y = g / (1 + exp(-g)) * u on the CPU with std::exp: the GPU's expf is within 2 ulp, so codes may
// differ by one at rounding boundaries: at most 1e-4 of them, none by more than one; scales within 1e-6.
// Every shape runs through the public entry point, which picks v2 or the pipelined kernels by shape (both sides of the
// crossover are covered and checked to be), and each path is also forced: v2 directly, the pipelined kernels with
// their default and with the explicit configurations the benchmark sweeps (fused::*_cfg), including odd vector
// counts, K % 16 != 0 (8-byte code stores) and rows per CTA beyond the shared-memory ring (refills and phase flips).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/qgemm_ref.h"
#include "kernels/cuda/fused/fused_internal.h"
#include "qoq/cuda_attention.h"
#include "qoq/half.h"

using namespace qoq;

namespace {

#define CKV(x)                                                                                        \
  do {                                                                                                \
    const cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#x) + ": " + cudaGetErrorString(e_)); \
  } while (0)

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) { CKV(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T))); }
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size()) {
    CKV(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
  std::vector<T> download() const {
    std::vector<T> v(n);
    CKV(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void poison() { CKV(cudaMemset(p, 0xFF, n * sizeof(T))); }
};

std::vector<float> random_row_values(int M, int K, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(size_t(M) * K);
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * ((i % K) % 97 == 5 ? 30.f : 1.f);
  return x;
}

// Which kernel a case runs: the public entry point (its own choice), v2, the direct-load kernels, or the pipelined
// kernels under cfg.
struct Path {
  const cuda::fused::Config* cfg = nullptr;
  bool v2 = false;
  bool direct = false;
};
const cuda::fused::Config kDefaultCfg{};  // default configuration
const Path kPublic{}, kV2{nullptr, true}, kPipelined{&kDefaultCfg}, kDirect{&kDefaultCfg, false, true};

std::string path_name(const Path& p) {
  if (p.v2) return " v2";
  if (p.direct) return " direct";
  if (!p.cfg) return " public";
  const cuda::fused::Config& c = *p.cfg;
  return " cfg " + std::to_string(c.warps) + "w" + std::to_string(c.vecs) + "v" + std::to_string(c.ctas_per_sm) + "c" +
         std::to_string(c.stages) + "s";
}

void run_rmsnorm(int M, int K, bool bf16, bool weight, uint64_t seed, const Path& path = kPublic) {
  SCOPED_TRACE("rmsnorm M" + std::to_string(M) + " K" + std::to_string(K) + (bf16 ? " bf16" : " fp16") +
               path_name(path));
  std::mt19937 rng{uint32_t(seed)};
  std::vector<float> xf = random_row_values(M, K, rng);
  std::vector<uint16_t> x(xf.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = bf16 ? float_to_bf16(xf[i]) : float_to_half(xf[i]);
  if (M > 2)
    for (int k = 0; k < K; ++k) x[size_t(1) * K + k] = 0;  // a zero row: inv = 1/sqrt(eps), codes 0, scale 1
  std::vector<uint16_t> w(K);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (auto& e : w) e = float_to_half(weight ? u(rng) : 1.f);
  const float eps = 1e-5f;
  DevBuf<uint16_t> dx(x), dw(w);
  DevBuf<int8_t> codes(size_t(M) * K);
  DevBuf<float> scales(M), inv(M);
  DevBuf<int32_t> sums(M);
  codes.poison(), scales.poison(), sums.poison(), inv.poison();
  if (path.v2) {
    cuda::fused::rmsnorm_quantize_v2(dx.p, bf16, M, K, weight ? dw.p : nullptr, eps, codes.p, scales.p, sums.p, inv.p);
  } else if (path.direct) {
    const cuda::fused::Config used = cuda::fused::rmsnorm_quantize_direct(
        *path.cfg, dx.p, bf16, M, K, weight ? dw.p : nullptr, eps, codes.p, scales.p, sums.p, inv.p);
    ASSERT_GT(used.warps, 0) << "configuration not launched";
  } else if (path.cfg) {
    const cuda::fused::Config used = cuda::fused::rmsnorm_quantize_cfg(
        *path.cfg, dx.p, bf16, M, K, weight ? dw.p : nullptr, eps, codes.p, scales.p, sums.p, inv.p);
    ASSERT_GT(used.warps, 0) << "configuration not launched";
  } else {
    cuda::rmsnorm_quantize(dx.p, bf16, M, K, weight ? dw.p : nullptr, eps, codes.p, scales.p, sums.p, inv.p);
  }
  CKV(cudaDeviceSynchronize());
  const auto gc = codes.download();
  const auto gs = scales.download();
  const auto gsum = sums.download();
  const auto ginv = inv.download();
  std::vector<float> y(size_t(M) * K);
  int bad = 0;
  for (int m = 0; m < M; ++m) {
    double ss = 0;
    for (int k = 0; k < K; ++k) {
      const float v = bf16 ? bf16_to_float(x[size_t(m) * K + k]) : half_to_float(x[size_t(m) * K + k]);
      ss += double(v) * v;
      y[size_t(m) * K + k] = half_to_float(w[k]) * (v * ginv[m]);
    }
    const double want = 1.0 / std::sqrt(ss / K + eps);
    if (!(std::fabs(ginv[m] - want) <= 4 * 1.2e-7 * want) && ++bad <= 5)
      ADD_FAILURE() << "row " << m << " inv " << ginv[m] << " vs " << want;
  }
  const ref::ActQuant r = ref::quantize_activations(y.data(), M, K);
  for (int m = 0; m < M; ++m) {
    if ((float_to_bits(gs[m]) != float_to_bits(r.scales[m]) || gsum[m] != r.sums[m]) && ++bad <= 5)
      ADD_FAILURE() << "row " << m << " scale " << gs[m] << " vs " << r.scales[m] << " sum " << gsum[m] << " vs "
                    << r.sums[m];
  }
  for (size_t i = 0; i < gc.size(); ++i)
    if (gc[i] != r.codes[i] && ++bad <= 5)
      ADD_FAILURE() << "code " << i << ": " << int(gc[i]) << " vs " << int(r.codes[i]);
  EXPECT_EQ(bad, 0);
}

TEST(Fused, RmsNormQuantize) {
  for (bool bf16 : {false, true}) {
    run_rmsnorm(1, 4096, bf16, true, 1);
    run_rmsnorm(7, 576, bf16, true, 2);
    run_rmsnorm(300, 4096, bf16, false, 3);
    run_rmsnorm(33, 8192, bf16, true, 4);
    run_rmsnorm(5, 16384, bf16, true, 5);
    run_rmsnorm(3, 8, bf16, true, 6);
    run_rmsnorm(3000, 4096, bf16, true, 7);  // several rows per CTA: ring refills and phase flips
    run_rmsnorm(2500, 576, bf16, false, 8);
    run_rmsnorm(9, 24, bf16, true, 9);        // 3 vectors: an odd count, 8-byte code stores
    run_rmsnorm(700, 1000, bf16, true, 10);   // K % 16 != 0 with many rows
    for (int M : {1, 16, 256, 1024, 8192}) {  // Llama-3-8B and SmolLM2 hidden sizes at the benchmark's row counts
      run_rmsnorm(M, 4096, bf16, true, 100 + M);
      run_rmsnorm(M, 576, bf16, true, 200 + M);
    }
  }
  // The public shapes above reach both kernels.
  EXPECT_TRUE(cuda::fused::rmsnorm_uses_direct(1, 576));
  EXPECT_FALSE(cuda::fused::rmsnorm_uses_direct(8192, 4096));
}

// Each path forced at the shapes where the public entry point would pick the other one, and at edge shapes.
TEST(Fused, RmsNormQuantizeEachPath) {
  for (bool bf16 : {false, true}) {
    for (const Path& p : {kV2, kPipelined, kDirect}) {
      for (int M : {1, 16, 256, 1024, 8192}) run_rmsnorm(M, 576, bf16, true, 500 + M, p);
      for (int M : {1, 64, 1024}) run_rmsnorm(M, 4096, bf16, true, 600 + M, p);
      run_rmsnorm(300, 4096, bf16, false, 3, p);
      run_rmsnorm(5, 16384, bf16, true, 5, p);
      run_rmsnorm(3, 8, bf16, true, 6, p);
      run_rmsnorm(9, 24, bf16, true, 9, p);
      run_rmsnorm(700, 1000, bf16, true, 10, p);
      run_rmsnorm(3000, 2048, bf16, true, 11, p);
    }
  }
}

TEST(Fused, RmsNormQuantizeConfigs) {
  using cuda::fused::Config;
  // The benchmark's sweep at K = 4096 and a few more: (warps, vecs, CTAs per SM, stages).
  const Config cfgs[] = {{2, 8, 4, 2}, {4, 4, 4, 6},  {4, 4, 2, 1},  {8, 2, 2, 3},
                         {4, 2, 8, 8}, {16, 4, 1, 2}, {1, 4, 16, 4}, {8, 4, 1, 8}};
  for (const Config& c : cfgs) {
    const Path p{&c, false};
    if (4096 / 8 <= 32 * c.warps * c.vecs) run_rmsnorm(1000, 4096, false, true, 300 + c.stages, p);
    run_rmsnorm(1000, 1024, true, false, 400 + c.stages, p);
  }
}

void run_silu(int M, int I, uint64_t seed, const Path& path = kPublic) {
  SCOPED_TRACE("silu M" + std::to_string(M) + " I" + std::to_string(I) + path_name(path));
  std::mt19937 rng{uint32_t(seed)};
  std::vector<float> gf = random_row_values(M, 2 * I, rng);
  std::vector<uint16_t> gu(gf.size());
  for (size_t i = 0; i < gu.size(); ++i) gu[i] = float_to_half(gf[i] * 3.f);
  DevBuf<uint16_t> dgu(gu);
  DevBuf<int8_t> codes(size_t(M) * I);
  DevBuf<float> scales(M);
  DevBuf<int32_t> sums(M);
  codes.poison(), scales.poison(), sums.poison();
  if (path.v2) {
    cuda::fused::silu_mul_quantize_v2(dgu.p, M, I, codes.p, scales.p, sums.p);
  } else if (path.direct) {
    const cuda::fused::Config used =
        cuda::fused::silu_mul_quantize_direct(*path.cfg, dgu.p, M, I, codes.p, scales.p, sums.p);
    ASSERT_GT(used.warps, 0) << "configuration not launched";
  } else if (path.cfg) {
    const cuda::fused::Config used =
        cuda::fused::silu_mul_quantize_cfg(*path.cfg, dgu.p, M, I, codes.p, scales.p, sums.p);
    ASSERT_GT(used.warps, 0) << "configuration not launched";
  } else {
    cuda::silu_mul_quantize(dgu.p, M, I, codes.p, scales.p, sums.p);
  }
  CKV(cudaDeviceSynchronize());
  const auto gc = codes.download();
  const auto gs = scales.download();
  const auto gsum = sums.download();
  std::vector<float> y(size_t(M) * I);
  for (int m = 0; m < M; ++m)
    for (int i = 0; i < I; ++i) {
      const float g = half_to_float(gu[size_t(m) * 2 * I + i]), u = half_to_float(gu[size_t(m) * 2 * I + I + i]);
      y[size_t(m) * I + i] = g / (1.0f + std::exp(-g)) * u;
    }
  const ref::ActQuant r = ref::quantize_activations(y.data(), M, I);
  size_t off_by_one = 0;
  int bad = 0;
  for (size_t i = 0; i < gc.size(); ++i) {
    const int d = std::abs(int(gc[i]) - int(r.codes[i]));
    if (d == 1) ++off_by_one;
    if (d > 1 && ++bad <= 5) ADD_FAILURE() << "code " << i << ": " << int(gc[i]) << " vs " << int(r.codes[i]);
  }
  for (int m = 0; m < M; ++m) {
    int64_t s = 0;
    for (int i = 0; i < I; ++i) s += gc[size_t(m) * I + i];
    if ((s != gsum[m] || !(std::fabs(gs[m] - r.scales[m]) <= 1e-6f * r.scales[m])) && ++bad <= 5)
      ADD_FAILURE() << "row " << m << " sum " << gsum[m] << " vs own codes " << s << ", scale " << gs[m] << " vs "
                    << r.scales[m];
  }
  EXPECT_EQ(bad, 0);
  EXPECT_LE(double(off_by_one), 1e-4 * double(gc.size()) + 1) << off_by_one << " codes off by one";
  std::printf("  silu M%d I%d: %zu of %zu codes off by one\n", M, I, off_by_one, gc.size());
}

TEST(Fused, SiluMulQuantize) {
  run_silu(1, 14336, 11);
  run_silu(33, 1536, 12);
  run_silu(200, 14336, 13);
  run_silu(4, 8, 14);
  run_silu(700, 14336, 15);  // several rows per CTA
  run_silu(1500, 1536, 16);
  run_silu(5, 24, 17);      // odd vector count
  run_silu(900, 1544, 18);  // I % 16 != 0: 8-byte code stores
  for (int M : {16, 256, 1024, 1500}) run_silu(M, 14336, 100 + M);
  for (int M : {1, 16, 256, 1024, 8192}) run_silu(M, 1536, 200 + M);
  // The public shapes above reach both kernels.
  EXPECT_TRUE(cuda::fused::silu_mul_uses_direct(1, 1536));
  EXPECT_FALSE(cuda::fused::silu_mul_uses_direct(1500, 14336));
}

// The direct kernels at every instantiated (warps, vecs) shape that covers the row.
TEST(Fused, DirectShapes) {
  using cuda::fused::Config;
  for (int w : {1, 2, 4, 8, 16})
    for (int v : {2, 4}) {
      const Config c{w, v, 0, 0};
      const Path p{&c, false, true};
      for (int K : {24, 576, 1000, 4096})
        if (K / 8 <= 32 * w * v) run_rmsnorm(37, K, w % 2 == 0, true, 800 + w * 10 + v, p);
      for (int I : {1544, 14336})
        if (I / 8 <= 32 * w * v) run_silu(37, I, 900 + w * 10 + v, p);
    }
}

TEST(Fused, SiluMulQuantizeEachPath) {
  for (const Path& p : {kV2, kPipelined, kDirect}) {
    for (int M : {1, 16, 256, 1024, 4096}) run_silu(M, 1536, 600 + M, p);
    for (int M : {16, 512}) run_silu(M, 14336, 700 + M, p);
    run_silu(1, 14336, 11, p);
    run_silu(200, 14336, 13, p);
    run_silu(700, 14336, 15, p);
    run_silu(5, 24, 17, p);
    run_silu(900, 1544, 18, p);
    run_silu(300, 8192, 19, p);
  }
}

TEST(Fused, SiluMulQuantizeConfigs) {
  using cuda::fused::Config;
  const Config cfgs[] = {{16, 4, 1, 2}, {16, 4, 1, 3}, {8, 8, 1, 3}, {8, 8, 2, 1}, {8, 4, 1, 1}};
  for (const Config& c : cfgs) {
    const Path p{&c, false};
    if (14336 / 8 <= 32 * c.warps * c.vecs) run_silu(500, 14336, 300 + c.stages, p);
    run_silu(1200, 1536, 400 + c.stages, p);
  }
}

}  // namespace
