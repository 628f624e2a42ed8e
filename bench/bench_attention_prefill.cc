// Prefill attention benchmark, Llama-3-8B shape (32 q heads, 8 KV heads, D = 128), causal, one sequence of n tokens
// (start 0), one process, per cache format (KV4, KV8, fp16): prefill_attention (the wgmma path; its time includes the
// staging pass that writes the fp16 K/V tiles to the workspace), the mma.sync kernel (prefill_attention_mma, the
// baseline) and, for KV4 up to 4096 tokens, the naive kernel (CTA per token and head, fp32 dequantization on CUDA
// cores). Also a chunked case: the last 1024 tokens after 7168 cached positions.
// TFLOP/s counts causal work: 2 (QK and PV) * 2 flops * n^2 / 2 * D * heads (chunk: 4 * n * (start + n/2) * D * H).
// Median of cudaEvent-timed calls after a warm-up.
// Usage: bench_attention_prefill [--csv FILE] [--only N (the start-0 case of N tokens, KV4, wgmma path once: profiling)]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "cuda_check.h"
#include "qoq/cuda_attention.h"

namespace qc = qoq::cuda;

namespace {

constexpr int kHq = 32, kHkv = 8, kD = 128;

// Hashed words masked to finite positive fp16 halves (any codes; params and fp16 values in [~0, ~2]).
void fill(uint8_t* p, size_t bytes, uint32_t seed) {
  std::vector<uint32_t> h(bytes / 4);
  for (size_t i = 0; i < h.size(); ++i) {
    uint32_t x = uint32_t(i) * 0x9E3779B9u ^ seed;
    x ^= x >> 16, x *= 0x85EBCA6Bu, x ^= x >> 13;
    h[i] = x & 0x3F3F3F3Fu;
  }
  CK(cudaMemcpy(p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
}

template <typename F>
double time_ms(F f, int iters) {
  f();  // warm-up (and first-call setup)
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < iters; ++i) {
    CK(cudaEventRecord(a));
    f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = nullptr;
  int only = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = std::atoi(argv[++i]);
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  constexpr int kMaxLen = 8192, kPages = kMaxLen / qc::kKvPageTokens;
  // One sequence; pages in a shuffled order.
  std::vector<int32_t> tab(kPages);
  std::iota(tab.begin(), tab.end(), 0);
  std::mt19937 rng(5);
  std::shuffle(tab.begin(), tab.end(), rng);
  int32_t* dtab;
  CK(cudaMalloc(&dtab, kPages * 4));
  CK(cudaMemcpy(dtab, tab.data(), kPages * 4, cudaMemcpyHostToDevice));
  uint8_t* pools[3];
  const int bits_of[3] = {4, 8, 16};
  for (int i = 0; i < 3; ++i) {
    const qc::KvCacheLayout L{bits_of[i], kHkv, kD};
    CK(cudaMalloc(&pools[i], L.page_bytes() * kPages));
    fill(pools[i], L.page_bytes() * kPages, 77u + i);
  }
  uint16_t *q, *out;
  const size_t qn = size_t(kMaxLen) * kHq * kD;
  CK(cudaMalloc(&q, qn * 2));
  CK(cudaMalloc(&out, qn * 2));
  fill(reinterpret_cast<uint8_t*>(q), qn * 2, 3u);
  int32_t *cu, *starts;
  CK(cudaMalloc(&cu, 8));
  CK(cudaMalloc(&starts, 4));
  const size_t ws_bytes = qc::prefill_workspace_bytes(1, kPages, kHkv, kD);
  void* ws;
  CK(cudaMalloc(&ws, ws_bytes));
  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  if (csv) std::fprintf(csv, "start,n,format,wgmma_us,mma_us,naive_us,wgmma_tflops,mma_tflops\n");

  enum Kernel { kWgmma, kMma, kNaive };
  auto call = [&](int which, int start, int n, Kernel k) {
    return [=] {
      const qc::PagedKv kv{{bits_of[which], kHkv, kD}, pools[which], dtab, kPages};
      qc::PrefillArgs a;
      a.q = q, a.cu_tokens = cu, a.starts = starts, a.batch = 1, a.n_heads = kHq, a.max_tokens = n;
      a.scale = 0.0883883f, a.out = out, a.workspace = ws, a.workspace_bytes = ws_bytes;
      if (k == kNaive)
        qc::prefill_attention_simple(kv, a);
      else if (k == kMma)
        qc::prefill_attention_mma(kv, a);
      else
        qc::prefill_attention(kv, a);
    };
  };

  // Dense fp16 tensor-core rate of the H200 (datasheet ~990 TFLOP/s; wgmma only, mma.sync reaches ~2/3 of it).
  constexpr double kPeak = 989.0;
  std::printf("\n%6s %6s %5s | %10s %10s %11s | %9s %9s %8s | %8s %9s\n", "start", "n", "cache", "wgmma us",
              "mma us", "naive us", "wgmma TF", "mma TF", "frac", "mma/wg", "naive/wg");
  const int cases[][2] = {{0, 1024}, {0, 2048}, {0, 4096}, {0, 8192}, {7168, 1024}};
  const char* fmt_name[3] = {"KV4", "KV8", "FP16"};
  if (only > 0) {
    const int32_t h_cu[2] = {0, only}, zero = 0;
    CK(cudaMemcpy(cu, h_cu, 8, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(starts, &zero, 4, cudaMemcpyHostToDevice));
    call(0, 0, only, kWgmma)();
    CK(cudaDeviceSynchronize());
    return 0;
  }
  for (const auto& cs : cases) {
    const int start = cs[0], n = cs[1];
    const int32_t h_cu[2] = {0, n};
    CK(cudaMemcpy(cu, h_cu, 8, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(starts, &start, 4, cudaMemcpyHostToDevice));
    const double flops = 4.0 * n * (start + n / 2.0) * kD * kHq;
    const int iters = 15;
    for (int f = 0; f < 3; ++f) {
      const double tw = time_ms(call(f, start, n, kWgmma), iters) * 1e3;
      const double tm = time_ms(call(f, start, n, kMma), iters) * 1e3;
      // The naive kernel is slow: few calls, KV4 only, up to 4096 tokens.
      const double ts = f == 0 && n + start <= 4096 ? time_ms(call(f, start, n, kNaive), 3) * 1e3 : NAN;
      std::printf("%6d %6d %5s | %10.1f %10.1f %11.1f | %9.1f %9.1f %8.2f | %8.2f %9.1f\n", start, n, fmt_name[f], tw,
                  tm, ts, flops / tw * 1e-6, flops / tm * 1e-6, flops / tw * 1e-6 / kPeak, tm / tw, ts / tw);
      std::fflush(stdout);
      if (csv)
        std::fprintf(csv, "%d,%d,%s,%.2f,%.2f,%.2f,%.1f,%.1f\n", start, n, fmt_name[f], tw, tm, ts, flops / tw * 1e-6,
                     flops / tm * 1e-6);
    }
  }
  if (csv) std::fclose(csv);
  return 0;
}
