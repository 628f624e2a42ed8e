// Decode attention benchmark, Llama-3-8B shape (32 q heads, 8 KV heads, D = 128), one process:
// our KV4 kernel, the same design over an fp16 cache (the baseline of DESIGN §6), KV8, and the simple kernel
// (CTA per query head, fp32 dequantization) over the KV4 cache. Per case: median over graph replays of several calls,
// each call reading a different copy of the cache (page tables rotate over >= 512 MB, so KV is not L2-resident).
// Usage: bench_attention [--quick] [--v2] [--sweep] [--cases B:L,B:L,...] [--csv FILE]
//   --v2: also the previous KV4 kernel (v2, grid of (KV head, sequence, split) CTAs) side by side;
//   --sweep: decode_attention's knobs one at a time at each case (kernel variants, PDL, tail split, pieces);
//   --trace FILE: per case, one more call with per-CTA timestamps (decode_trace) written to FILE as CSV.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "qoq/cuda_attention.h"

namespace qc = qoq::cuda;

// Experiment knobs of decode_attention (src/kernels/cuda/attention/decode.cu; not public API).
namespace qoq::cuda {
void decode_tuning(const char* knob, int value);
void decode_trace(unsigned long long* buf);
}  // namespace qoq::cuda

namespace {

constexpr int kHq = 32, kHkv = 8, kD = 128;
constexpr double kCopyBw = 4.24e12;

// Fills `bytes` with hashed words masked to finite positive fp16 halves (any codes): 256 MB from the host, then
// doubling device-to-device copies.
void fill(uint8_t* p, size_t bytes, uint32_t seed) {
  const size_t first = std::min(bytes, size_t(256) << 20) / 4 * 4;
  std::vector<uint32_t> h(first / 4);
  for (size_t i = 0; i < h.size(); ++i) {
    uint32_t x = uint32_t(i) * 0x9E3779B9u ^ seed;
    x ^= x >> 16, x *= 0x85EBCA6Bu, x ^= x >> 13;
    h[i] = x & 0x3F3F3F3Fu;
  }
  CK(cudaMemcpy(p, h.data(), first, cudaMemcpyHostToDevice));
  for (size_t done = first; done < bytes;) {
    const size_t n = std::min(done, bytes - done);
    CK(cudaMemcpy(p + done, p, n, cudaMemcpyDeviceToDevice));
    done += n;
  }
}

struct Pool {
  qc::KvCacheLayout layout;
  uint8_t* p = nullptr;
  size_t pages = 0;
};

Pool make_pool(int bits, size_t pages) {
  Pool pl{{bits, kHkv, kD}, nullptr, pages};
  const size_t bytes = pl.layout.page_bytes() * pages;
  CK(cudaMalloc(&pl.p, bytes));
  fill(pl.p, bytes, 1234u + bits);
  return pl;
}

// Times `calls` calls of f(i) captured in one graph; median over `iters` replays, microseconds per call.
template <typename F>
double time_graph(F f, int calls, int iters) {
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  for (int i = 0; i < calls; ++i) f(i, s);  // warm-up (and first-call setup)
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < calls; ++i) f(i, s);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, s));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int it = 0; it < iters; ++it) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.f / calls);
  }
  std::sort(t.begin(), t.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  CK(cudaStreamDestroy(s));
  return t[t.size() / 2];
}

struct Setup {
  int B, L, copies, pages_per_copy, max_pages;
  int32_t* tables = nullptr;  // [copies][B][max_pages]
  int32_t* lengths = nullptr;
};

Setup make_setup(int B, int L, size_t pool_pages, size_t copy_bytes, std::mt19937& rng) {
  Setup s{B, L, 0, 0, (L + qc::kKvPageTokens - 1) / qc::kKvPageTokens};
  s.pages_per_copy = B * s.max_pages;
  const size_t want = std::max<size_t>(1, (size_t(512) << 20) / std::max<size_t>(copy_bytes, 1) + 1);
  s.copies = int(std::min<size_t>({want, pool_pages / s.pages_per_copy, 16}));
  std::vector<int32_t> perm(s.pages_per_copy), tab(size_t(s.copies) * s.pages_per_copy);
  std::iota(perm.begin(), perm.end(), 0);
  for (int c = 0; c < s.copies; ++c) {
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < s.pages_per_copy; ++i) tab[size_t(c) * s.pages_per_copy + i] = c * s.pages_per_copy + perm[i];
  }
  CK(cudaMalloc(&s.tables, tab.size() * 4));
  CK(cudaMemcpy(s.tables, tab.data(), tab.size() * 4, cudaMemcpyHostToDevice));
  std::vector<int32_t> lens(B, L);
  CK(cudaMalloc(&s.lengths, B * 4));
  CK(cudaMemcpy(s.lengths, lens.data(), B * 4, cudaMemcpyHostToDevice));
  return s;
}

double kv_bytes(int bits, int B, int L) {
  const double row = kD * bits / 8.0 + (bits == 16 ? 0 : 4);
  return double(B) * kHkv * L * 2 * row + 2.0 * B * kHq * kD * 2;  // K and V (+ params), q in, out
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, with_v2 = false, sweep = false, floor = true, kv4_only = false;
  int default_version = 6;  // decode_attention's default kernel for KV4 / KV8
  const char* csv_path = nullptr;
  const char* trace_path = nullptr;
  std::vector<std::pair<int, int>> cases;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--v2")) with_v2 = true;
    if (!std::strcmp(argv[i], "--sweep")) sweep = true;
    if (!std::strcmp(argv[i], "--no-floor")) floor = false;    // (profiling: the cases' kernels only)
    if (!std::strcmp(argv[i], "--kv4-only")) kv4_only = true;  // no KV8 / fp16 / simple columns
    if (!std::strcmp(argv[i], "--version") && i + 1 < argc) default_version = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
    if (!std::strcmp(argv[i], "--trace") && i + 1 < argc) trace_path = argv[++i];
    if (!std::strcmp(argv[i], "--cases") && i + 1 < argc) {
      for (char* tok = std::strtok(argv[++i], ","); tok; tok = std::strtok(nullptr, ",")) {
        int b = 0, l = 0;
        if (std::sscanf(tok, "%d:%d", &b, &l) == 2) cases.emplace_back(b, l);
      }
    }
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::vector<int> Bs = {1, 16, 64, 256, 512}, Ls = {512, 1536, 4096, 16384, 32768};
  if (quick) Bs = {1, 256}, Ls = {1536, 32768};
  if (cases.empty())
    for (int B : Bs)
      for (int L : Ls) cases.emplace_back(B, L);

  // Copy bandwidth, measured (read + write bytes).
  {
    const size_t n = size_t(2) << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    const double us =
        time_graph([&](int, cudaStream_t s) { CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s)); }, 2, 7);
    std::printf("cudaMemcpy D2D 2 GiB (copy engine, read + write): %.2f TB/s; fractions below use 4.24 TB/s\n",
                2.0 * n / us * 1e-6);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }

  qc::decode_tuning("version", default_version);
  const size_t max_tokens = size_t(512) * 32768;
  const size_t pool_pages = max_tokens / qc::kKvPageTokens + 64;
  Pool kv4 = make_pool(4, pool_pages), f16 = make_pool(16, kv4_only ? 1024 : pool_pages);
  Pool kv8 = make_pool(8, kv4_only ? 0 : pool_pages / 2);  // KV8 only where its copy fits
  CK(cudaDeviceSynchronize());
  uint16_t *q, *out;
  CK(cudaMalloc(&q, size_t(512) * kHq * kD * 2));
  CK(cudaMalloc(&out, size_t(512) * kHq * kD * 2));
  CK(cudaMemset(q, 0x3C, size_t(512) * kHq * kD * 2));
  const size_t wsb = qc::decode_workspace_bytes(512, kHq, kHkv, kD);
  void* ws;
  CK(cudaMalloc(&ws, wsb));
  CK(cudaMemset(ws, 0, wsb));
  std::mt19937 rng(5);
  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  FILE* trace = trace_path ? std::fopen(trace_path, "w") : nullptr;
  constexpr size_t kTraceItems = 1 << 15, kStamps = 16;  // attn::kTraceStamps
  unsigned long long* trace_buf = nullptr;
  if (trace) {
    CK(cudaMalloc(&trace_buf, kTraceItems * kStamps * sizeof(unsigned long long)));
    std::fprintf(trace, "B,L,item,start,first_data,warp0_done,all_done,end,sm");
    for (int k = 0; k < 5; ++k) std::fprintf(trace, ",arrive%d,done%d", k, k);
    std::fprintf(trace, "\n");
  }
  if (csv) std::fprintf(csv, "B,L,kv4_us,kv4_v2_us,kv8_us,fp16_us,simple_us,kv4_TBps,fp16_TBps\n");

  auto run = [&](const Pool& pl, const Setup& s, bool simple, int splits) {
    return [&, simple, splits](int i, cudaStream_t st) {
      qc::PagedKv kv{pl.layout, pl.p, s.tables + size_t(i % s.copies) * s.pages_per_copy, s.max_pages};
      qc::DecodeArgs a;
      a.q = q, a.lengths = s.lengths, a.batch = s.B, a.n_heads = kHq, a.max_length = s.L, a.scale = 0.0883883f;
      a.out = out, a.workspace = ws, a.workspace_bytes = wsb, a.splits = splits;
      if (simple)
        qc::decode_attention_simple(kv, a, st);
      else
        qc::decode_attention(kv, a, st);
    };
  };

  // The floor of one call: B=1, L=64 (one 64-token page, 2 items): launch, prologue and epilogue only.
  if (floor) {
    Setup s = make_setup(1, 64, kv4.pages, size_t(kv_bytes(4, 1, 64)), rng);
    std::printf("\nfloor: KV4 B=1 L=64 %.1f us per call", time_graph(run(kv4, s, false, 0), 16, 15));
    if (with_v2) {
      qc::decode_tuning("version", 2);
      std::printf(" (v2 %.1f us)", time_graph(run(kv4, s, false, 0), 16, 15));
      qc::decode_tuning("version", default_version);
    }
    std::printf("\n");
    CK(cudaFree(s.tables));
    CK(cudaFree(s.lengths));
  }

  std::printf("\n%5s %6s | %9s %9s %9s %9s %10s | %7s %6s | %7s %6s | %8s %8s %8s\n", "B", "L", "KV4 us", "v2 us",
              "KV8 us", "FP16 us", "simple us", "KV4TB/s", "frac", "F16TB/s", "frac", "FP16/KV4", "simp/KV4", "v2/KV4");
  for (const auto& [B, L] : cases) {
    const double b4 = kv_bytes(4, B, L), b16 = kv_bytes(16, B, L), b8 = kv_bytes(8, B, L);
    Setup s4 = make_setup(B, L, kv4.pages, size_t(b4), rng);
    Setup s16 = make_setup(B, L, kv4_only ? kv4.pages : f16.pages, size_t(b16), rng);  // (unused if kv4_only)
    const int calls4 = std::max(2, std::min(20, s4.copies)), calls16 = std::max(2, std::min(20, s16.copies));
    const int iters = quick ? 7 : 15;
    const double t4 = time_graph(run(kv4, s4, false, 0), calls4, iters);
    double t2 = NAN;
    if (with_v2) {
      qc::decode_tuning("version", 2);
      t2 = time_graph(run(kv4, s4, false, 0), calls4, iters);
      qc::decode_tuning("version", default_version);
    }
    const double t16 = kv4_only ? NAN : time_graph(run(f16, s16, false, 0), calls16, iters);
    double t8 = NAN;
    if (!kv4_only && size_t(B) * s4.max_pages <= kv8.pages) {
      Setup s8 = make_setup(B, L, kv8.pages, size_t(b8), rng);
      t8 = time_graph(run(kv8, s8, false, 0), std::max(2, std::min(20, s8.copies)), iters);
      CK(cudaFree(s8.tables));
      CK(cudaFree(s8.lengths));
    }
    // The simple kernel is slow: few calls, few replays.
    const double ts = kv4_only ? NAN : time_graph(run(kv4, s4, true, 0), 2, b4 > 2e9 ? 3 : 5);
    std::printf("%5d %6d | %9.1f %9.1f %9.1f %9.1f %10.1f | %7.2f %6.2f | %7.2f %6.2f | %8.2f %8.1f %8.2f\n", B, L, t4,
                t2, t8, t16, ts, b4 / t4 * 1e-6, b4 / t4 * 1e6 / kCopyBw, b16 / t16 * 1e-6, b16 / t16 * 1e6 / kCopyBw,
                t16 / t4, ts / t4, t2 / t4);
    std::fflush(stdout);
    if (csv)
      std::fprintf(csv, "%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f\n", B, L, t4, t2, t8, t16, ts, b4 / t4 * 1e-6,
                   b16 / t16 * 1e-6);
    if (trace) {
      // One call from idle with stamps (ns from the earliest CTA start); a call without stamps first.
      cudaStream_t st;
      CK(cudaStreamCreate(&st));
      run(kv4, s4, false, 0)(0, st);
      CK(cudaMemsetAsync(trace_buf, 0, kTraceItems * kStamps * sizeof(unsigned long long), st));
      qc::decode_trace(trace_buf);
      run(kv4, s4, false, 0)(1, st);
      qc::decode_trace(nullptr);
      CK(cudaStreamSynchronize(st));
      std::vector<unsigned long long> h(kTraceItems * kStamps);
      CK(cudaMemcpy(h.data(), trace_buf, h.size() * sizeof(h[0]), cudaMemcpyDeviceToHost));
      CK(cudaStreamDestroy(st));
      unsigned long long t0 = ~0ull;
      size_t n = 0;
      while (n < kTraceItems && h[n * kStamps]) t0 = std::min(t0, h[n * kStamps]), ++n;
      for (size_t i = 0; i < n; ++i) {
        const unsigned long long* r = &h[i * kStamps];
        std::fprintf(trace, "%d,%d,%zu", B, L, i);
        for (size_t k = 0; k < 5; ++k) std::fprintf(trace, ",%lld", r[k] ? (long long)(r[k] - t0) : -1ll);
        std::fprintf(trace, ",%llu", r[5]);
        for (size_t k = 6; k < kStamps; ++k) std::fprintf(trace, ",%lld", r[k] ? (long long)(r[k] - t0) : -1ll);
        std::fprintf(trace, "\n");
      }
      std::fflush(trace);
    }
    if (sweep) {
      // The knobs of decode_attention one at a time (then back to the default).
      auto knob = [&](const char* name, int value, int dflt, int splits = 0) {
        qc::decode_tuning(name, value);
        const double t = time_graph(run(kv4, s4, false, splits), calls4, iters);
        qc::decode_tuning(name, dflt);
        return t;
      };
      auto knob2 = [&](const char* n1, int v1, int d1, const char* n2, int v2, int d2) {
        qc::decode_tuning(n1, v1);
        qc::decode_tuning(n2, v2);
        const double t = time_graph(run(kv4, s4, false, 0), calls4, iters);
        qc::decode_tuning(n1, d1);
        qc::decode_tuning(n2, d2);
        return t;
      };
      // Kernel variants (decode_tma.cuh, tma_dispatch_d): 0 = page blocks, 2 stages x 3 CTAs/SM, 1 = page blocks,
      // 3 stages x 2 CTAs, 2 = 32-token blocks x 4 CTAs with subnormal operands, 3 = v6 (1024-biased operands),
      // 4 = v6 without shift trick and lazy rescale; the default (-1) picks 0 or 2 by the number of pairs.
      std::printf("      sweep KV4 B=%d L=%d: variants 1 %.1f 2 %.1f 3 %.1f 4 %.1f | no pdl %.1f", B, L,
                  knob("variant", 1, -1), knob("variant", 2, -1), knob("variant", 3, -1), knob("variant", 4, -1),
                  knob("pdl", 0, 1));
      if (B * kHkv >= 528) {
        std::printf(" | variant 0 %.1f | tail split %.1f | tail split in 2 %.1f | last 528 pairs in 2 %.1f",
                    knob("variant", 0, -1), knob("tail", 1, 0), knob2("tail", 1, 0, "tail_pieces", 2, 0),
                    knob2("tail", 528, 0, "tail_pieces", 2, 0));
      } else {
        std::printf(" | pieces of 64-token granularity %.1f | v1 no pdl %.1f | pieces", knob("round", 64, 0),
                    knob2("variant", 1, -1, "pdl", 0, 1));
        for (int sp : {8, 16, 24, 32, 48, 64}) {
          if (B * kHkv * sp > std::max(2048, 4 * B * kHkv)) continue;
          std::printf(" %d: %.1f", sp, time_graph(run(kv4, s4, false, sp), calls4, iters));
        }
      }
      std::printf(" us\n");
    }
    CK(cudaFree(s4.tables));
    CK(cudaFree(s4.lengths));
    CK(cudaFree(s16.tables));
    CK(cudaFree(s16.lengths));
  }
  if (csv) std::fclose(csv);
  if (trace) {
    std::fclose(trace);
    CK(cudaFree(trace_buf));
  }
  return 0;
}
