// FP32 CPU matmul: the packed AVX2 path (cpu::matmul) against the previous one (cpu::matmul_blocked_v1) in the same
// process, on SmolLM2-135M shapes. Prints the machine's measured FMA peak first, then GFLOP/s medians.
// Usage: bench_cpu_matmul [max_m] [min_seconds_per_case]   (threads: QOQ_NUM_THREADS, default all cores)
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/matmul.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// With BENCH_CPU_TIME=1 (and QOQ_NUM_THREADS=1) calls are timed in this thread's CPU time, which other
// processes on the shared machine do not inflate (only their cache and frequency effects remain).
const bool kCpuTime = std::getenv("BENCH_CPU_TIME") && std::atoi(std::getenv("BENCH_CPU_TIME")) != 0;

double now_s() {
  if (!kCpuTime) return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// 10 independent FMA chains (latency 4-5 cycles x 2 pipes needs >= 10 in flight), all in registers; the result
// is returned so the loop is live.
[[gnu::target("avx2,fma"), gnu::noinline]] float fma_loop(int64_t iters) {
  __m256 a[10];
  for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 10
    for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  float s = 0;
  for (int i = 0; i < 10; ++i) s += a[i][0];
  return s;
}

// Peak GFLOP/s over `threads` threads, best of several runs (the machine is shared).
double measure_peak(int threads) {
  const int64_t iters = 10'000'000;
  double best = 0;
  for (int rep = 0; rep < 10; ++rep) {
    std::vector<std::thread> ts;
    const auto t0 = Clock::now();
    std::vector<double> cpu(threads);
    for (int i = 0; i < threads; ++i)
      ts.emplace_back([&, i] {
        const double c0 = now_s();
        volatile float sink = fma_loop(iters);
        (void)sink;
        cpu[i] = now_s() - c0;
      });
    for (auto& t : ts) t.join();
    const double s = kCpuTime ? *std::max_element(cpu.begin(), cpu.end()) : seconds_since(t0);
    best = std::max(best, double(threads) * iters * 10 * 16 / s / 1e9);
  }
  return best;
}

using MatmulFn = void (*)(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t);

// Median seconds per call: at least 3 runs and at least min_s in total (after one warm-up call).
double time_median(MatmulFn fn, const float* x, const float* w, const float* b, float* y, int64_t m, int64_t n,
                   int64_t k, double min_s) {
  fn(x, w, b, y, m, n, k);
  std::vector<double> ts;
  const auto start = Clock::now();
  while (ts.size() < 3 || (seconds_since(start) < min_s && ts.size() < 1000)) {
    const double t0 = now_s();
    fn(x, w, b, y, m, n, k);
    ts.push_back(now_s() - t0);
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t max_m = argc > 1 ? std::atoll(argv[1]) : 2048;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 0.5;
  const int threads = qoq::ThreadPool::global().num_threads();
  const double peak1 = measure_peak(1), peak = measure_peak(threads);
  std::printf("FMA peak: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads (best of 10)%s\n\n", peak1, peak, threads,
              kCpuTime ? ", thread CPU time" : ", wall time");

  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const Shape shapes[] = {{"q/o 576x576", 576, 576},
                          {"k/v 192x576", 192, 576},
                          {"gate/up 1536x576", 1536, 576},
                          {"down 576x1536", 576, 1536},
                          {"lm_head 49152x576", 49152, 576}};
  const int64_t ms[] = {1, 4, 8, 16, 128, 512, 2048};  // 8: just below where matmul switches to the packed path
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::printf("| shape (NxK) | M | v1 GFLOP/s | new GFLOP/s | new/v1 | new %% of peak | max rel diff |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const auto& s : shapes) {
    std::vector<float> w(size_t(s.n * s.k)), b(size_t(s.n));
    for (float& v : w) v = nd(rng) * 0.05f;
    for (float& v : b) v = nd(rng);
    for (int64_t m : ms) {
      if (m > max_m) continue;
      std::vector<float> x(size_t(m * s.k)), y0(size_t(m * s.n)), y1(size_t(m * s.n));
      for (float& v : x) v = nd(rng);
      const double flops = 2.0 * m * s.n * s.k;
      const double t_old =
          time_median(qoq::cpu::matmul_blocked_v1, x.data(), w.data(), b.data(), y0.data(), m, s.n, s.k, min_s);
      const double t_new = time_median(qoq::cpu::matmul, x.data(), w.data(), b.data(), y1.data(), m, s.n, s.k, min_s);
      double diff = 0;
      for (size_t i = 0; i < y0.size(); ++i)
        diff = std::max(diff, double(std::fabs(y0[i] - y1[i])) / (1.0 + std::fabs(y0[i])));
      const double g_old = flops / t_old / 1e9, g_new = flops / t_new / 1e9;
      std::printf("| %s | %lld | %.1f | %.1f | %.2fx | %.0f%% | %.1e |\n", s.name, (long long)m, g_old, g_new,
                  g_new / g_old, 100.0 * g_new / peak, diff);
      std::fflush(stdout);
    }
  }
  return 0;
}
