// Fused elementwise kernels of a W4A8 layer: RMSNorm + int8 quantization (fp16 and bf16 residual stream) and SwiGLU +
// int8 quantization, Llama-3-8B (hidden 4096, intermediate 14336), SmolLM2 (576, 1536), Llama-3-70B hidden (8192)
// and in-between shapes. Bytes = input read + codes written + scales and row sums written; inputs rotated over
// >= 512 MB so they are not L2-resident; median of graph replays. Per shape, in one process: v4 (the pipelined ring
// kernels), v2 (the previous kernels, the baseline) and the direct-load kernels forced, each in its default
// configuration, then the public entry point (which picks direct or v4 by shape), with copy_shaped (a kernel that
// reads the same input bytes and writes the same code bytes, no arithmetic) and cudaMemcpyAsync D2D of the same
// total bytes (half read, half written) as references. Last, the ring's default configurations at M = 8192.
// Usage: bench_fused [--no-sweep]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_check.h"
#include "kernels/cuda/fused/fused_internal.h"
#include "qoq/cuda_attention.h"

namespace {

namespace qf = qoq::cuda::fused;
constexpr double kPeak = 4.24e12;  // copy bandwidth of this H200 (read + write), bytes/s

template <typename F>
double time_graph(F f, int calls, int iters) {
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  for (int i = 0; i < calls; ++i) f(i, s);
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

struct Buffers {
  size_t pool = size_t(1) << 30;
  uint8_t* in = nullptr;
  int8_t* codes = nullptr;
  float* scales = nullptr;
  int32_t* sums = nullptr;
  uint16_t* w = nullptr;
  uint8_t* scratch = nullptr;  // memcpy destination
};

enum Kind { kRmsFp16, kRmsBf16, kSilu };
const char* kind_name(Kind k) { return k == kRmsFp16 ? "rmsnorm fp16" : k == kRmsBf16 ? "rmsnorm bf16" : "silu_mul"; }

struct Case {
  Kind kind;
  int M, K;  // K: hidden size (RMSNorm) or intermediate size I (SwiGLU)
  size_t in_bytes() const { return size_t(M) * K * 2 * (kind == kSilu ? 2 : 1); }
  size_t out_bytes() const { return size_t(M) * K + 8 * size_t(M); }
  int copies(size_t pool) const {
    return int(std::max<size_t>(1, std::min<size_t>(pool / in_bytes(), (size_t(512) << 20) / in_bytes() + 1)));
  }
};

// Times the fused kernel of case c under cfg (nullptr: the public entry point; v2: the previous kernels; direct: the
// direct-load kernels under cfg).
double time_kernel(const Buffers& b, const Case& c, const qf::Config* cfg, bool v2, qf::Config* used = nullptr,
                   bool direct = false) {
  const int copies = c.copies(b.pool);
  bool ok = true;
  const double us = time_graph(
      [&](int i, cudaStream_t s) {
        const uint8_t* x = b.in + size_t(i % copies) * c.in_bytes();
        const auto* gu = reinterpret_cast<const uint16_t*>(x);
        const bool bf16 = c.kind == kRmsBf16;
        if (c.kind == kSilu) {
          if (v2)
            qf::silu_mul_quantize_v2(gu, c.M, c.K, b.codes, b.scales, b.sums, s);
          else if (direct)
            ok = ok && qf::silu_mul_quantize_direct(*cfg, gu, c.M, c.K, b.codes, b.scales, b.sums, s).warps > 0;
          else if (cfg) {
            const qf::Config u = qf::silu_mul_quantize_cfg(*cfg, gu, c.M, c.K, b.codes, b.scales, b.sums, s);
            ok = ok && u.warps > 0;
            if (used) *used = u;
          } else
            qoq::cuda::silu_mul_quantize(gu, c.M, c.K, b.codes, b.scales, b.sums, s);
        } else {
          if (v2)
            qf::rmsnorm_quantize_v2(x, bf16, c.M, c.K, b.w, 1e-5f, b.codes, b.scales, b.sums, nullptr, s);
          else if (direct)
            ok = ok &&
                 qf::rmsnorm_quantize_direct(*cfg, x, bf16, c.M, c.K, b.w, 1e-5f, b.codes, b.scales, b.sums, nullptr, s)
                         .warps > 0;
          else if (cfg) {
            const qf::Config u =
                qf::rmsnorm_quantize_cfg(*cfg, x, bf16, c.M, c.K, b.w, 1e-5f, b.codes, b.scales, b.sums, nullptr, s);
            ok = ok && u.warps > 0;
            if (used) *used = u;
          } else
            qoq::cuda::rmsnorm_quantize(x, bf16, c.M, c.K, b.w, 1e-5f, b.codes, b.scales, b.sums, nullptr, s);
        }
      },
      std::max(2, std::min(20, copies)), 15);
  return ok ? us : -1.0;
}

double time_copy_shaped(const Buffers& b, const Case& c) {
  const int copies = c.copies(b.pool);
  return time_graph(
      [&](int i, cudaStream_t s) {
        qf::copy_shaped(b.in + size_t(i % copies) * c.in_bytes(), c.in_bytes(), b.codes, c.kind == kSilu ? 4 : 2, s);
      },
      std::max(2, std::min(20, copies)), 15);
}

double time_memcpy(const Buffers& b, const Case& c) {
  const int copies = c.copies(b.pool);
  const size_t half = (c.in_bytes() + c.out_bytes()) / 2;
  return time_graph(
      [&](int i, cudaStream_t s) {
        CK(cudaMemcpyAsync(b.scratch, b.in + size_t(i % copies) * c.in_bytes(), half, cudaMemcpyDeviceToDevice, s));
      },
      std::max(2, std::min(20, copies)), 15);
}

}  // namespace

int main(int argc, char** argv) {
  const bool sweep = !(argc > 1 && std::strcmp(argv[1], "--no-sweep") == 0);
  Buffers b;
  CK(cudaMalloc(&b.in, b.pool));
  {
    std::vector<uint16_t> h(b.pool / 2);
    for (size_t i = 0; i < h.size(); ++i) h[i] = uint16_t(0x3000 + (i * 2654435761u >> 20) % 0x1000);  // finite
    CK(cudaMemcpy(b.in, h.data(), b.pool, cudaMemcpyHostToDevice));
  }
  CK(cudaMalloc(&b.codes, size_t(8192) * 14336));
  CK(cudaMalloc(&b.scratch, size_t(8192) * 14336 * 3));
  CK(cudaMalloc(&b.scales, 8192 * 4));
  CK(cudaMalloc(&b.sums, 8192 * 4));
  CK(cudaMalloc(&b.w, 16384 * 2));
  CK(cudaMemset(b.w, 0x3C, 16384 * 2));

  // pub/best: the public entry point against the fastest of the three forced paths (1.00 = the dispatch chose right);
  // v2/v4, v2/dir: speed-ups over v2.
  std::printf("%-13s %5s %5s | %8s %3s %7s %5s %5s | %8s %8s %8s | %5s %6s | %7s %7s | %8s\n", "kernel", "K", "M",
              "pub us", "via", "GB/s", "/mcp", "/4.24", "v4 us", "v2 us", "dir us", "v2/v4", "v2/dir", "cpy us",
              "mcp us", "pub/best");
  struct Shape {
    Kind kind;
    int K;
  };
  const Shape shapes[] = {{kRmsFp16, 576}, {kRmsFp16, 1024}, {kRmsFp16, 2048}, {kRmsFp16, 4096}, {kRmsFp16, 8192},
                          {kRmsBf16, 576}, {kRmsBf16, 4096}, {kSilu, 1536},    {kSilu, 8192},    {kSilu, 14336}};
  const qf::Config dflt{};
  for (const Shape& sh : shapes) {
    for (int M : {1, 16, 64, 256, 512, 1024, 2048, 4096, 8192}) {
      const Case c{sh.kind, M, sh.K};
      const double bytes = double(c.in_bytes() + c.out_bytes());
      const double t4 = time_kernel(b, c, &dflt, false), t2 = time_kernel(b, c, nullptr, true),
                   td = time_kernel(b, c, &dflt, false, nullptr, true), tp = time_kernel(b, c, nullptr, false);
      const double tc = time_copy_shaped(b, c), tm = time_memcpy(b, c);
      const bool direct = sh.kind == kSilu ? qf::silu_mul_uses_direct(M, sh.K) : qf::rmsnorm_uses_direct(M, sh.K);
      const double bwp = bytes / tp * 1e6, bwm = double((c.in_bytes() + c.out_bytes()) / 2 * 2) / tm * 1e6;
      std::printf(
          "%-13s %5d %5d | %8.2f %3s %7.1f %5.2f %5.2f | %8.2f %8.2f %8.2f | %5.2f %6.2f | %7.2f %7.2f | %8.2f\n",
          kind_name(sh.kind), sh.K, M, tp, direct ? "dir" : "v4", bwp * 1e-9, bwp / bwm, bwp / kPeak, t4, t2, td,
          t2 / t4, t2 / td, tc, tm, tp / std::min(std::min(t2, t4), td));
    }
  }
  if (!sweep) return 0;

  // The default launch configuration of each shape at M = 8192 (rounds 2-4 swept (warps, vecs) x CTAs per SM x
  // stages: bench/NOTES_fused.md), timed again through the explicit-configuration entry point.
  std::printf("\nM=8192 defaults: kernel K warps vecs ctas/SM(asked->resident) stages: us GB/s /4.24\n");
  struct Sweep {
    Kind kind;
    int K;
    std::vector<qf::Config> cfgs;
  };
  const std::vector<Sweep> sweeps = {
      {kRmsFp16, 4096, {{}}}, {kRmsBf16, 4096, {{}}}, {kRmsFp16, 576, {{}}}, {kSilu, 14336, {{}}}, {kSilu, 1536, {{}}}};
  for (const Sweep& sw : sweeps) {
    const Case c{sw.kind, 8192, sw.K};
    const double bytes = double(c.in_bytes() + c.out_bytes());
    for (const qf::Config& want : sw.cfgs) {
      qf::Config used{};
      const double t = time_kernel(b, c, &want, false, &used);
      if (t < 0) {
        std::printf("%-13s %5d %2dw %dv %dc %ds: not launched\n", kind_name(c.kind), c.K, want.warps, want.vecs,
                    want.ctas_per_sm, want.stages);
        continue;
      }
      std::printf("%-13s %5d %2dw %dv %d->%dc %ds%s: %8.2f %7.1f %5.3f\n", kind_name(c.kind), c.K, used.warps,
                  used.vecs, want.ctas_per_sm, used.ctas_per_sm, used.stages, want.warps ? "" : " (default)", t,
                  bytes / t * 1e-3, bytes / t * 1e6 / kPeak);
    }
  }
  return 0;
}
