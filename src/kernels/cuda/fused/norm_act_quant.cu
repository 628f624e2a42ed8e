// Fused RMSNorm + int8 quantization and SwiGLU + int8 quantization (v4: pipelined persistent CTAs).
// v2 (one CTA per row, loads from registers) kept its loads in flight only until a row arrived; the rest of a row's
// life (reductions, barriers, SFU math, stores) left the memory system idle unless other CTAs happened to be loading:
// 0.64 / 0.70 of copy bandwidth. Here each resident CTA owns rows blockIdx.x, +gridDim.x, ... and keeps the next
// `stages` of them streaming into a shared-memory ring by bulk copies (cp.async.bulk, one thread issues a whole row,
// completion on an mbarrier), so bytes stay in flight while the CTA computes. A CTA works on one row at a time, held in
// registers; a stage is refilled right after the row's first block barrier (every thread has read it by then).
// Numerics are v2's: fp32, each operation rounded once as the CPU references (DESIGN §3); rne(v) for |v| <= 127 is
// taken from the bits of v + 1.5 * 2^23 (exact, round half to even; no F2I on the conversion pipe), and the row sum
// from the packed codes by dp4a.
// The public entry points (end of file) run the direct-load kernels (norm_act_quant_direct.cu) instead where they are
// faster: up to a number of rows that falls with the row length (rmsnorm_uses_direct, bench/NOTES_fused.md).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/fused/fused_internal.h"
#include "kernels/cuda/fused/row_quant.cuh"
#include "kernels/cuda/launch.h"
#include "qoq/cuda_attention.h"

namespace qoq::cuda {
namespace fused {
namespace {

constexpr int kMaxStages = 8;
constexpr uint32_t kMaxCopy = 16384;  // bytes per bulk copy instruction (a row takes several)
constexpr int kWarpsPerSm = 16;       // default resident warps per SM (the best of the sweeps, runs 2-4)

// Where the public entry points run the direct kernels: rows of length <= max_len, at most max_rows of them. The
// crossovers measured against the ring (bench_fused, session 4, rounds 1-2; the last entries, unmeasured, halve the
// one before); a row length between two entries takes the longer one's (longer rows reach the ring's advantage at
// fewer rows, so this errs toward the ring).
struct DirectLimit {
  int max_len, max_rows;
};
constexpr DirectLimit kRmsDirect[] = {{1024, 8192}, {2048, 8192}, {4096, 2048}, {8192, 512}, {16384, 256}};
constexpr DirectLimit kSiluDirect[] = {{1536, 8192}, {8192, 4096}, {14336, 1024}, {16384, 512}};

template <size_t N>
bool within(const DirectLimit (&t)[N], int M, int len) {
  for (const DirectLimit& d : t)
    if (len <= d.max_len) return M <= d.max_rows;
  return false;
}

// Thread 0 only: arms bar for `bytes` and streams them from global src into shared dst (both 16-byte aligned).
__device__ __forceinline__ void load_row(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  mbar_arrive_expect_tx(bar, bytes);
  for (uint32_t off = 0; off < bytes; off += kMaxCopy)
    bulk_g2s(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, min(kMaxCopy, bytes - off), bar);
}

// Ring setup, by thread 0 before the CTA's first barrier.
__device__ __forceinline__ void init_ring(uint64_t* full, int stages) {
  for (int s = 0; s < stages; ++s) mbar_init(&full[s], 1);
  mbar_fence_init();
}

// Vector slots past the row end hold y = 0 (code 0, not stored).
template <typename T, int G, int NV>
__global__ void __launch_bounds__(32 * G)
    rmsnorm_quant_kernel(const T* __restrict__ x, int M, int K, const __half* __restrict__ w, float eps,
                         int8_t* __restrict__ codes, float* __restrict__ scales, int32_t* __restrict__ sums,
                         float* __restrict__ inv_out, int stages, bool store16) {
  constexpr int TC = 32 * G;
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  extern __shared__ __align__(128) uint8_t ring[];
  __shared__ uint64_t full[kMaxStages];
  __shared__ float red_ss[G], red_max[G];
  __shared__ uint32_t red_sum[G];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int nvec = K / 8;
  const uint32_t row_bytes = uint32_t(K) * 2;
  const int rows = (M - int(blockIdx.x) + int(gridDim.x) - 1) / int(gridDim.x);
  if (tid == 0) init_ring(full, stages);
  __syncthreads();
  if (tid == 0)
    for (int s = 0; s < stages && s < rows; ++s)
      load_row(ring + s * row_bytes, x + size_t(blockIdx.x + s * gridDim.x) * K, row_bytes, &full[s]);

  uint4 wr[NV];  // this thread's slice of the weight, the same for every row
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    const int i = vec_index<TC>(v, tid);
    wr[v] = make_uint4(0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u);  // 1.0
    if (w && i < nvec) wr[v] = __ldg(reinterpret_cast<const uint4*>(w) + i);
  }

  uint32_t psum = 0;  // lane 0: the warp's code sum of the previous row, published at the next row's first barrier
  int prev_row = 0, s = 0;
  uint32_t phase = 0;
  for (int r = 0; r < rows; ++r) {
    const int row = blockIdx.x + r * gridDim.x;
    mbar_wait(&full[s], phase);
    const uint4* st = reinterpret_cast<const uint4*>(ring + s * row_bytes);
    float y[NV][8];
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int i = vec_index<TC>(v, tid);
      if (i < nvec) {
        unpack8(st[i], kBf16, y[v]);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e % 4] = fmaf(y[v][e], y[v][e], acc[e % 4]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) y[v][e] = 0.f;
      }
    }
    const float ss_part = warp_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
    if (lane == 0) red_ss[warp] = ss_part, red_sum[warp] = psum;
    __syncthreads();  // (A) every thread has read stage s
    if (tid == 0) {
      if (r + stages < rows) {
        fence_proxy_async();  // every thread's reads of the stage (before the barrier) precede the copy into it
        load_row(ring + s * row_bytes, x + size_t(row + stages * gridDim.x) * K, row_bytes, &full[s]);
      }
      if (r > 0) {
        uint32_t t = 0;
#pragma unroll
        for (int g = 0; g < G; ++g) t += red_sum[g];
        sums[prev_row] = int32_t(t);
      }
    }
    const float inv = rms_inv<G>(red_ss, K, eps);
    if (tid == 0 && inv_out) inv_out[row] = inv;
    float amax = warp_max(rms_apply<NV>(y, wr, inv));
    if (lane == 0) red_max[warp] = amax;
    __syncthreads();  // (B)
    amax = red_max[0];
#pragma unroll
    for (int g = 1; g < G; ++g) amax = fmaxf(amax, red_max[g]);
    const float mul = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    if (tid == 0) scales[row] = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
    psum = warp_sum(uint32_t(quantize_store<TC, NV>(y, mul, nvec, codes + size_t(row) * K, store16)));
    prev_row = row;
    if (++s == stages) s = 0, phase ^= 1;
  }
  if (lane == 0) red_sum[warp] = psum;
  __syncthreads();
  if (tid == 0) {
    uint32_t t = 0;
    for (int g = 0; g < G; ++g) t += red_sum[g];
    sums[prev_row] = int32_t(t);
  }
}

// SwiGLU: a stage holds one gate_up row verbatim (gate vectors [0, nvec), up vectors [nvec, 2 nvec)). One block barrier
// per row (amax); the reduction slots alternate by row parity because nothing else separates consecutive rows.
template <int G, int NV>
__global__ void __launch_bounds__(32 * G)
    silu_mul_quant_kernel(const __half* __restrict__ gu, int M, int I, int8_t* __restrict__ codes,
                          float* __restrict__ scales, int32_t* __restrict__ sums, int stages, bool store16) {
  constexpr int TC = 32 * G;
  extern __shared__ __align__(128) uint8_t ring[];
  __shared__ uint64_t full[kMaxStages];
  __shared__ float red_max[2][G];
  __shared__ uint32_t red_sum[2][G];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int nvec = I / 8;
  const uint32_t row_bytes = uint32_t(I) * 4;
  const int rows = (M - int(blockIdx.x) + int(gridDim.x) - 1) / int(gridDim.x);
  if (tid == 0) init_ring(full, stages);
  __syncthreads();
  if (tid == 0)
    for (int s = 0; s < stages && s < rows; ++s)
      load_row(ring + s * row_bytes, gu + size_t(blockIdx.x + s * gridDim.x) * 2 * I, row_bytes, &full[s]);

  uint32_t psum = 0;
  int prev_row = 0, s = 0;
  uint32_t phase = 0;
  for (int r = 0; r < rows; ++r) {
    const int row = blockIdx.x + r * gridDim.x;
    mbar_wait(&full[s], phase);
    const uint4* st = reinterpret_cast<const uint4*>(ring + s * row_bytes);
    float y[NV][8];
    float amax = 0.f;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int i = vec_index<TC>(v, tid);
      if (i < nvec) {
        float g[8], u[8];
        unpack8(st[i], false, g);
        unpack8(st[nvec + i], false, u);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          // Fast division (2 ulp) as v2: the codes are not bit-exact here anyway (expf vs std::exp).
          y[v][e] = __fmul_rn(__fdividef(g[e], __fadd_rn(1.f, expf(-g[e]))), u[e]);
          amax = fmaxf(amax, fabsf(y[v][e]));
        }
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) y[v][e] = 0.f;
      }
    }
    amax = warp_max(amax);
    const int b = r & 1;
    if (lane == 0) red_max[b][warp] = amax, red_sum[b][warp] = psum;
    __syncthreads();  // every thread has read stage s
    if (tid == 0) {
      if (r + stages < rows) {
        fence_proxy_async();  // every thread's reads of the stage (before the barrier) precede the copy into it
        load_row(ring + s * row_bytes, gu + size_t(row + stages * gridDim.x) * 2 * I, row_bytes, &full[s]);
      }
      if (r > 0) {
        uint32_t t = 0;
#pragma unroll
        for (int g = 0; g < G; ++g) t += red_sum[b][g];
        sums[prev_row] = int32_t(t);
      }
    }
    amax = red_max[b][0];
#pragma unroll
    for (int g = 1; g < G; ++g) amax = fmaxf(amax, red_max[b][g]);
    const float mul = amax == 0.f ? 0.f : __fdiv_rn(127.f, amax);
    if (tid == 0) scales[row] = amax == 0.f ? 1.f : __fdiv_rn(amax, 127.f);
    psum = warp_sum(uint32_t(quantize_store<TC, NV>(y, mul, nvec, codes + size_t(row) * I, store16)));
    prev_row = row;
    if (++s == stages) s = 0, phase ^= 1;
  }
  const int b = rows & 1;
  if (lane == 0) red_sum[b][warp] = psum;
  __syncthreads();
  if (tid == 0) {
    uint32_t t = 0;
    for (int g = 0; g < G; ++g) t += red_sum[b][g];
    sums[prev_row] = int32_t(t);
  }
}

int smem_optin() {
  static const int n = [] {
    int dev = 0, c = 0;
    QOQ_CUDA_CHECK(cudaGetDevice(&dev));
    QOQ_CUDA_CHECK(cudaDeviceGetAttribute(&c, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return c;
  }();
  return n;
}

// Host-side facts per kernel, computed once (cached under a mutex: callers may launch from several threads).
std::mutex g_cache_mu;
std::map<const void*, int> g_max_dyn;                            // kernel -> dynamic shared memory allowed
std::map<std::tuple<const void*, int, size_t>, int> g_resident;  // (kernel, threads, smem) -> CTAs per SM

// The dynamic shared memory kernel k may use: the device's opt-in limit less k's static shared memory, set once as
// k's maximum so that graphs captured with any ring size stay launchable whatever is called later.
template <typename Kern>
int allow_max_smem(Kern k) {
  const void* key = reinterpret_cast<const void*>(k);
  std::lock_guard<std::mutex> lock(g_cache_mu);
  if (auto it = g_max_dyn.find(key); it != g_max_dyn.end()) return it->second;
  cudaFuncAttributes a{};
  QOQ_CUDA_CHECK(cudaFuncGetAttributes(&a, k));
  const int dyn = smem_optin() - int(a.sharedSizeBytes);
  QOQ_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, dyn));
  return g_max_dyn[key] = dyn;
}

// CTAs of kernel k that fit on one SM with this ring (0: the ring does not fit at all; max_dyn from allow_max_smem).
template <typename Kern>
int resident_ctas(Kern k, int threads, size_t smem, int stages, int max_dyn) {
  if (stages < 1 || stages > kMaxStages || smem > size_t(max_dyn)) return 0;
  const auto key = std::make_tuple(reinterpret_cast<const void*>(k), threads, smem);
  std::lock_guard<std::mutex> lock(g_cache_mu);
  if (auto it = g_resident.find(key); it != g_resident.end()) return it->second;
  int n = 0;
  QOQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k, threads, smem));
  return g_resident[key] = n;
}

// Warps and vectors per thread for rows of nvec vectors: the fewest warps that cover the row with <= 4 vectors per
// thread, or <= 2 when there are at most two rows per SM (then nothing overlaps a row's latency, and shorter
// per-thread chains are what shortens it).
Config choose_shape(int M, int nvec, Config cfg) {
  if (cfg.warps == 0) {
    const int per_thread = M <= 2 * sm_count() ? 2 : 4;
    cfg.warps = 1;
    while (cfg.warps < 16 && nvec > per_thread * 32 * cfg.warps) cfg.warps *= 2;
  }
  if (cfg.vecs == 0) cfg.vecs = nvec <= 2 * 32 * cfg.warps ? 2 : 4;
  return cfg;
}

// Resolves CTAs per SM and stages of a kernel with rows of row_bytes, and the grid for M rows; warps = 0 if the
// configuration cannot run. Defaults (the sweeps of runs 2-4): 16 warps per SM where they fit and a 2-row ring per
// CTA (1 where 2 rows do not fit); deeper rings and more CTAs were slower (a larger start-up burst, a longer tail).
template <typename Kern>
Config resolve(Kern k, Config cfg, uint32_t row_bytes, int* grid, int M) {
  static_assert(std::is_pointer_v<Kern>);
  const int threads = 32 * cfg.warps, max_dyn = allow_max_smem(k);
  int ctas = cfg.ctas_per_sm ? cfg.ctas_per_sm : std::max(1, kWarpsPerSm / cfg.warps);
  if (cfg.stages == 0) cfg.stages = resident_ctas(k, threads, 2 * size_t(row_bytes), 2, max_dyn) >= 1 ? 2 : 1;
  ctas = std::min(ctas, resident_ctas(k, threads, size_t(cfg.stages) * row_bytes, cfg.stages, max_dyn));
  if (ctas < 1) return Config{};
  cfg.ctas_per_sm = ctas;
  *grid = std::min(M, ctas * sm_count());
  return cfg;
}

// Calls f(integral_constant<G>, integral_constant<NV>) for the instantiated (warps, vecs) pairs; false otherwise.
template <bool kWide, typename F>
bool dispatch(int g, int nv, F f) {
  using std::integral_constant;
  auto by_nv = [&](auto gc) {
    if (nv == 2) return f(gc, integral_constant<int, 2>()), true;
    if (nv == 4) return f(gc, integral_constant<int, 4>()), true;
    return false;
  };
  if (kWide && g == 2 && nv == 8) return f(integral_constant<int, 2>(), integral_constant<int, 8>()), true;
  if (kWide && g == 8 && nv == 8) return f(integral_constant<int, 8>(), integral_constant<int, 8>()), true;
  switch (g) {
    case 1:
      return by_nv(integral_constant<int, 1>());
    case 2:
      return by_nv(integral_constant<int, 2>());
    case 4:
      return by_nv(integral_constant<int, 4>());
    case 8:
      return by_nv(integral_constant<int, 8>());
    case 16:
      return by_nv(integral_constant<int, 16>());
    default:
      return false;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The public contract, checked whichever kernel runs.
void check_rmsnorm_args(const void* x, int M, int K, const uint16_t* weight, const int8_t* codes) {
  QOQ_CUDA_REQUIRE(M >= 0 && K > 0 && K % 8 == 0 && K <= 16384,
                   "rmsnorm_quantize: K must be a multiple of 8, at most 16384");
  QOQ_CUDA_REQUIRE(aligned16(x) && aligned16(weight) && (reinterpret_cast<uintptr_t>(codes) & 7) == 0,
                   "rmsnorm_quantize: x and weight must be 16-byte aligned, codes 8-byte aligned");
}
void check_silu_args(const uint16_t* gate_up, int M, int I, const int8_t* codes) {
  QOQ_CUDA_REQUIRE(M >= 0 && I > 0 && I % 8 == 0 && I <= 16384,
                   "silu_mul_quantize: I must be a multiple of 8, at most 16384");
  QOQ_CUDA_REQUIRE(aligned16(gate_up) && (reinterpret_cast<uintptr_t>(codes) & 7) == 0,
                   "silu_mul_quantize: gate_up must be 16-byte aligned, codes 8-byte aligned");
}

}  // namespace

// The direct kernels have the shorter latency per row (no bulk copy + mbarrier round trip); the ring keeps loads in
// flight while a CTA computes, which wins once there are enough rows: few rows per SM for long rows (the direct
// kernels then fit only 2-5 CTAs per SM), many for short ones.
bool rmsnorm_uses_direct(int M, int K) { return within(kRmsDirect, M, K); }
bool silu_mul_uses_direct(int M, int I) { return within(kSiluDirect, M, I); }

Config rmsnorm_quantize_cfg(const Config& want, const void* x, bool x_bf16, int M, int K, const uint16_t* weight,
                            float eps, int8_t* codes, float* scales, int32_t* sums, float* inv_out, AttnStream stream) {
  check_rmsnorm_args(x, M, K, weight, codes);
  const Config shape = choose_shape(M, K / 8, want);
  if (K / 8 > 32 * shape.warps * shape.vecs) return Config{};
  if (M == 0) return shape;
  const bool store16 = K % 16 == 0 && aligned16(codes);
  Config done{};
  auto go = [&](auto g, auto nv) {
    auto launch = [&](auto* k, const auto* xt) {
      int grid = 0;
      done = resolve(k, shape, uint32_t(K) * 2, &grid, M);
      if (done.warps == 0) return;
      k<<<grid, 32 * g.value, size_t(done.stages) * K * 2, stream>>>(
          xt, M, K, reinterpret_cast<const __half*>(weight), eps, codes, scales, sums, inv_out, done.stages, store16);
      QOQ_CUDA_CHECK_LAUNCH();
    };
    if (x_bf16)
      launch(rmsnorm_quant_kernel<__nv_bfloat16, g.value, nv.value>, static_cast<const __nv_bfloat16*>(x));
    else
      launch(rmsnorm_quant_kernel<__half, g.value, nv.value>, static_cast<const __half*>(x));
  };
  dispatch<true>(shape.warps, shape.vecs, go);
  return done;
}

Config silu_mul_quantize_cfg(const Config& want, const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales,
                             int32_t* sums, AttnStream stream) {
  check_silu_args(gate_up, M, I, codes);
  const Config shape = choose_shape(M, I / 8, want);
  if (I / 8 > 32 * shape.warps * shape.vecs) return Config{};
  if (M == 0) return shape;
  const bool store16 = I % 16 == 0 && aligned16(codes);
  Config done{};
  auto go = [&](auto g, auto nv) {
    auto* k = silu_mul_quant_kernel<g.value, nv.value>;
    int grid = 0;
    done = resolve(k, shape, uint32_t(I) * 4, &grid, M);
    if (done.warps == 0) return;
    k<<<grid, 32 * g.value, size_t(done.stages) * I * 4, stream>>>(reinterpret_cast<const __half*>(gate_up), M, I,
                                                                   codes, scales, sums, done.stages, store16);
    QOQ_CUDA_CHECK_LAUNCH();
  };
  dispatch<true>(shape.warps, shape.vecs, go);
  return done;
}

}  // namespace fused

void rmsnorm_quantize(const void* x, bool x_bf16, int M, int K, const uint16_t* weight, float eps, int8_t* codes,
                      float* scales, int32_t* sums, float* inv_out, AttnStream stream) {
  fused::check_rmsnorm_args(x, M, K, weight, codes);
  const fused::Config c = fused::rmsnorm_uses_direct(M, K)
                              ? fused::rmsnorm_quantize_direct(fused::Config{}, x, x_bf16, M, K, weight, eps, codes,
                                                               scales, sums, inv_out, stream)
                              : fused::rmsnorm_quantize_cfg(fused::Config{}, x, x_bf16, M, K, weight, eps, codes,
                                                            scales, sums, inv_out, stream);
  QOQ_CUDA_REQUIRE(c.warps > 0, "rmsnorm_quantize: no launch configuration fits");
}

void silu_mul_quantize(const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales, int32_t* sums,
                       AttnStream stream) {
  fused::check_silu_args(gate_up, M, I, codes);
  const fused::Config c =
      fused::silu_mul_uses_direct(M, I)
          ? fused::silu_mul_quantize_direct(fused::Config{}, gate_up, M, I, codes, scales, sums, stream)
          : fused::silu_mul_quantize_cfg(fused::Config{}, gate_up, M, I, codes, scales, sums, stream);
  QOQ_CUDA_REQUIRE(c.warps > 0, "silu_mul_quantize: no launch configuration fits");
}

}  // namespace qoq::cuda
