// Fused elementwise kernels of a W4A8 layer: RMSNorm + int8 quantization (fp16 and bf16 residual stream, Llama-3-8B
// hidden 4096) and SwiGLU + int8 quantization (intermediate 14336). Bytes = input read + codes written (+ scales);
// inputs rotated over >= 512 MB so they are not L2-resident; median of graph replays. Usage: bench_fused
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "qoq/cuda_attention.h"

#define CK(x)                                                                                     \
  do {                                                                                            \
    const cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

namespace {

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
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  return t[t.size() / 2];
}

}  // namespace

int main() {
  namespace qc = qoq::cuda;
  const size_t pool = size_t(1) << 30;
  uint8_t* in;
  CK(cudaMalloc(&in, pool));
  {
    std::vector<uint16_t> h(pool / 2);
    for (size_t i = 0; i < h.size(); ++i) h[i] = uint16_t(0x3000 + (i * 2654435761u >> 20) % 0x1000);  // finite
    CK(cudaMemcpy(in, h.data(), pool, cudaMemcpyHostToDevice));
  }
  int8_t* codes;
  float* scales;
  int32_t* sums;
  CK(cudaMalloc(&codes, size_t(8192) * 14336));
  CK(cudaMalloc(&scales, 8192 * 4));
  CK(cudaMalloc(&sums, 8192 * 4));
  uint16_t* w;
  CK(cudaMalloc(&w, 16384 * 2));
  CK(cudaMemset(w, 0x3C, 16384 * 2));
  std::printf("%-22s %6s %9s %8s %6s\n", "kernel", "M", "us", "GB/s", "frac");
  for (int kind = 0; kind < 3; ++kind) {
    for (int M : {1, 16, 256, 1024, 4096, 8192}) {
      const int K = kind == 2 ? 14336 : 4096;
      const size_t in_bytes = size_t(M) * K * 2 * (kind == 2 ? 2 : 1);
      const int copies = int(std::max<size_t>(1, std::min<size_t>(pool / in_bytes, (size_t(512) << 20) / in_bytes + 1)));
      const double bytes = double(in_bytes) + double(M) * K + 8.0 * M;
      const double us = time_graph(
          [&](int i, cudaStream_t s) {
            const uint8_t* x = in + size_t(i % copies) * in_bytes;
            if (kind == 2)
              qc::silu_mul_quantize(reinterpret_cast<const uint16_t*>(x), M, K, codes, scales, sums, s);
            else
              qc::rmsnorm_quantize(x, kind == 1, M, K, w, 1e-5f, codes, scales, sums, nullptr, s);
          },
          std::max(2, std::min(20, copies)), 15);
      const char* name = kind == 0 ? "rmsnorm+quant fp16" : kind == 1 ? "rmsnorm+quant bf16" : "silu_mul+quant fp16";
      std::printf("%-22s %6d %9.2f %8.1f %6.2f\n", name, M, us, bytes / us * 1e-3, bytes / us * 1e6 / 4.24e12);
    }
  }
  return 0;
}
