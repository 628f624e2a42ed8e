// CPU per-layer speed of the QoQ integer Linear (activation quantization + integer GEMM + epilogue) against the
// FP32 cpu::matmul, on the SmolLM2-135M linear shapes. Prints the median time of each, the weight bytes moved per
// second, GOP/s (2*M*N*K) and the speedup over FP32.
// Usage: bench_cpu_qgemm [samples]   (QOQ_NUM_THREADS sets the threads; QOQ_QGEMM_SCALAR=1 the scalar path)
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/qgemm.h"
#include "model/linear_quant.h"
#include "quant/grid.h"

using namespace qoq;

namespace {

// Median seconds per call: each sample runs enough calls to last about 2 ms, so timer noise stays small.
double median_seconds(const std::function<void()>& fn, int samples) {
  fn();
  int calls = 1;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 2e-3 || calls > (1 << 20)) break;
    calls *= 2;
  }
  std::vector<double> t(static_cast<size_t>(samples));
  for (auto& v : t) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) fn();
    v = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
  }
  std::nth_element(t.begin(), t.begin() + samples / 2, t.end());
  return t[size_t(samples / 2)];
}

std::vector<float> randn(size_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::max(3, std::atoi(argv[1])) : 15;
  struct Shape {
    const char* name;
    int64_t N, K;
  };
  const Shape shapes[] = {{"q/o", 576, 576}, {"k/v", 192, 576}, {"gate/up", 1536, 576}, {"down", 576, 1536}};
  fmt::print("threads {}, isa {}, {} samples (median)\n", ThreadPool::global().num_threads(),
             cpu::qgemm_resolve(cpu::QIsa::kAuto) == cpu::QIsa::kAvx2 ? "avx2" : "scalar", samples);
  fmt::print("{:<8} {:>5} {:>5} {:>4}  {:<9} {:>10} {:>9} {:>8} {:>7}\n", "layer", "N", "K", "M", "path", "us",
             "W GB/s", "GOP/s", "vs f32");
  for (const auto& s : shapes) {
    const auto w = randn(size_t(s.N * s.K), 1, 0.02f);
    for (int64_t M : {1, 16, 512}) {
      const auto x = randn(size_t(M * s.K), 2, 1.f);
      std::vector<float> y(size_t(M * s.N));
      const double ops = 2.0 * double(M) * double(s.N) * double(s.K);
      auto report = [&](const char* path, double sec, double wbytes, double f32_sec) {
        fmt::print("{:<8} {:>5} {:>5} {:>4}  {:<9} {:>10.1f} {:>9.1f} {:>8.1f} {:>6.2f}x\n", s.name, s.N, s.K, M,
                   path, sec * 1e6, wbytes / sec * 1e-9, ops / sec * 1e-9, f32_sec / sec);
      };
      const double f32 =
          median_seconds([&] { cpu::matmul(x.data(), w.data(), nullptr, y.data(), M, s.N, s.K); }, samples);
      report("fp32", f32, 4.0 * double(s.N * s.K), f32);
      struct Path {
        const char* name;
        quant::WeightGrid grid;
      };
      const Path paths[] = {{"w4", quant::w4_per_channel_minmax_grid(w.data(), s.N, s.K)},
                            {"w4-g128", quant::w4_group_grid(w.data(), s.N, s.K, 128)},
                            {"w4-g64", quant::w4_group_grid(w.data(), s.N, s.K, 64)},
                            {"w8", quant::w8_grid(w.data(), s.N, s.K)}};
      for (const auto& p : paths) {
        const auto qw = quant::round_to_grid(p.grid, w.data());
        const auto lin = make_cpu_int_linear(p.name, qw, nullptr);
        const cpu::PackedQWeight packed(qw);
        const double sec = median_seconds([&] { lin->forward(x.data(), M, y.data()); }, samples);
        report(p.name, sec, double(packed.packed_bytes()), f32);
      }
    }
  }
  return 0;
}
