// The Hopper quantized GEMMs against the CPU reference (src/kernels/cpu/qgemm_ref.h): activation quantization
// bit-exact, the repack a bijection, GEMM outputs bit-exact (0 ulp) against the reference epilogue of the exact
// int32 accumulators, and the split-K workspace left clean for the next call. Outputs are poisoned before runs.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "kernels/cpu/qgemm_ref.h"
#include "kernels/cuda/gemm/layout.h"
#include "qoq/cuda_gemm.h"
#include "qoq/half.h"

using namespace qoq;
using cuda::WeightFormat;

namespace {

#define CK(x) ASSERT_EQ((x), cudaSuccess) << #x
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
  DevBuf(const std::vector<T>& v) : DevBuf(v.size()) { upload(v); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  void upload(const std::vector<T>& v) { CKV(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> v(n);
    CKV(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void poison() { CKV(cudaMemset(p, 0xFF, n * sizeof(T))); }
};

// Fast reproducible random bits (xorshift64*).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return uint32_t((s * 0x2545F4914F6CDD1Dull) >> 32);
  }
  int uniform(int lo, int hi) { return lo + int(next() % uint32_t(hi - lo + 1)); }
};

std::vector<uint16_t> random_scales(int N, Rng& rng) {
  std::vector<uint16_t> s(N);
  for (auto& v : s) v = float_to_half(0.001f + 0.02f * float(rng.next() % 1000) / 1000.f);
  return s;
}

// fp16 activations with a few outlier channels, as after the QoQ rotations most are moderate.
std::vector<uint16_t> random_acts(int M, int K, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint16_t> x(size_t(M) * K);
  for (size_t i = 0; i < x.size(); ++i) {
    const float out = (i % K) % 97 == 5 ? 20.f : 1.f;
    const float v = float(int(rng.next() % 2001) - 1000 + int(rng.next() % 2001) - 1000) / 700.f;  // triangular
    x[i] = float_to_half(v * out);
  }
  return x;
}

ref::ActQuant ref_acts(const std::vector<uint16_t>& x, int M, int K) {
  std::vector<float> f(x.size());
  for (size_t i = 0; i < x.size(); ++i) f[i] = half_to_float(x[i]);
  return ref::quantize_activations(f.data(), M, K);
}

// A weight in all the forms the tests need: the reference struct and the canonical checkpoint tensors.
struct TestWeight {
  WeightFormat format;
  int N, K;
  ref::W4PerChannel pc;
  ref::W4Group g;
  ref::W8 w8;
  std::vector<uint8_t> qweight;  // canonical packed (W4) or int8 bytes (W8)
  std::vector<uint16_t> bias;
};

TestWeight make_weight(WeightFormat f, int N, int K, uint64_t seed) {
  TestWeight t{f, N, K, {}, {}, {}, {}, {}};
  Rng rng(seed);
  if (f == WeightFormat::kW4PerChannel) {
    t.pc.N = N, t.pc.K = K;
    t.pc.q.resize(size_t(N) * K);
    for (auto& q : t.pc.q) q = uint8_t(rng.next() & 15);
    t.pc.scales = random_scales(N, rng);
    t.pc.zeros.resize(N);
    for (auto& z : t.pc.zeros) z = uint8_t(rng.next() & 15);
    t.qweight = ref::pack_nibbles(t.pc.q, N, K);
  } else if (f == WeightFormat::kW4G128) {
    // Valid progressive parameters drawn directly: |s2 (q - z)| <= 127 and q s2 <= 240, like the quantizer's.
    t.g.N = N, t.g.K = K, t.g.G = 128;
    t.g.q.resize(size_t(N) * K);
    t.g.scales = random_scales(N, rng);
    t.g.gscales.resize(size_t(N) * (K / 128));
    t.g.gzeros.resize(size_t(N) * (K / 128));
    for (int n = 0; n < N; ++n)
      for (int g = 0; g < K / 128; ++g) {
        const int s2 = rng.uniform(1, 16), z = rng.uniform(0, 15), span = 127 / s2;
        t.g.gscales[size_t(n) * (K / 128) + g] = uint8_t(s2);
        t.g.gzeros[size_t(n) * (K / 128) + g] = uint8_t(z);
        const int lo = std::max(0, z - span), hi = std::min(15, z + span);
        for (int k = 0; k < 128; ++k) t.g.q[size_t(n) * K + g * 128 + k] = uint8_t(rng.uniform(lo, hi));
      }
    t.qweight = ref::pack_nibbles(t.g.q, N, K);
  } else {
    t.w8.N = N, t.w8.K = K;
    t.w8.w.resize(size_t(N) * K);
    for (auto& w : t.w8.w) w = int8_t(rng.uniform(-127, 127));
    t.w8.scales = random_scales(N, rng);
    t.qweight.resize(t.w8.w.size());
    std::memcpy(t.qweight.data(), t.w8.w.data(), t.qweight.size());
  }
  t.bias.resize(N);
  for (auto& b : t.bias) b = float_to_half(float(rng.uniform(-1000, 1000)) / 500.f);
  return t;
}

// The weight on the device, repacked on the GPU from its canonical form.
struct DevWeight {
  DevBuf<uint8_t> packed, zeros, gs, gz;
  DevBuf<uint16_t> scales, bias;
  cuda::QuantLinear lin;
  DevWeight(const TestWeight& t, bool with_bias)
      : packed(cuda::packed_weight_bytes(t.format, t.N, t.K)),
        zeros(t.format == WeightFormat::kW4PerChannel ? t.pc.zeros : std::vector<uint8_t>(1)),
        gs(t.format == WeightFormat::kW4G128 ? t.g.gscales : std::vector<uint8_t>(1)),
        gz(t.format == WeightFormat::kW4G128 ? t.g.gzeros : std::vector<uint8_t>(1)),
        scales(t.format == WeightFormat::kW4PerChannel ? t.pc.scales
               : t.format == WeightFormat::kW4G128     ? t.g.scales
                                                       : t.w8.scales),
        bias(t.bias) {
    DevBuf<uint8_t> canon(t.qweight);
    packed.poison();
    if (t.format == WeightFormat::kW4PerChannel) cuda::repack_w4(canon.p, t.N, t.K, packed.p);
    if (t.format == WeightFormat::kW4G128) cuda::repack_w4_g128(canon.p, gs.p, gz.p, t.N, t.K, packed.p);
    if (t.format == WeightFormat::kW8) cuda::repack_w8(reinterpret_cast<int8_t*>(canon.p), t.N, t.K, packed.p);
    CKV(cudaDeviceSynchronize());
    lin.format = t.format;
    lin.N = t.N;
    lin.K = t.K;
    lin.packed = packed.p;
    lin.scales = scales.p;
    lin.zeros = t.format == WeightFormat::kW4PerChannel ? zeros.p : nullptr;
    lin.bias = with_bias ? bias.p : nullptr;
  }
};

// Reference accumulators for the chosen tokens, all N, computed in parallel over row blocks.
std::vector<int32_t> ref_acc(const TestWeight& t, const ref::ActQuant& a) {
  const int threads = int(std::max(1u, std::min(32u, std::thread::hardware_concurrency())));
  std::vector<std::vector<int32_t>> parts(threads);
  std::vector<std::thread> pool;
  const int per = (t.N + threads - 1) / threads;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([&, i] {
      const int b = std::min(t.N, i * per), e = std::min(t.N, b + per);
      if (t.format == WeightFormat::kW4PerChannel) parts[i] = ref::acc_w4_per_channel(a, t.pc, b, e);
      if (t.format == WeightFormat::kW4G128) parts[i] = ref::acc_w4_group(a, t.g, b, e);
      if (t.format == WeightFormat::kW8) parts[i] = ref::acc_w8(a, t.w8, b, e);
    });
  for (auto& th : pool) th.join();
  std::vector<int32_t> acc(size_t(a.M) * t.N);
  for (int i = 0; i < threads; ++i) {
    const int b = std::min(t.N, i * per), e = std::min(t.N, b + per);
    for (int m = 0; m < a.M; ++m)
      for (int n = b; n < e; ++n) acc[size_t(m) * t.N + n] = parts[i][size_t(m) * (e - b) + (n - b)];
  }
  return acc;
}

// Tokens checked against the CPU: all of them for small problems, else the first and last, both sides of each
// 128-token tile edge near the start, and a few in between.
std::vector<int> checked_tokens(int M, double macs_per_token) {
  if (macs_per_token * M <= 2e9) {
    std::vector<int> all(M);
    for (int m = 0; m < M; ++m) all[m] = m;
    return all;
  }
  std::set<int> s = {0, M - 1, std::min(M - 1, 127), std::min(M - 1, 128), M / 2, M / 3 + 1};
  return {s.begin(), s.end()};
}

struct Case {
  int M;
  bool bias = false, residual = false, bf16 = false;
  const cuda::GemmConfig* config = nullptr;
};

// Runs one GEMM and compares: every output written (no poison left), checked tokens bit-exact.
void run_case(const TestWeight& t, DevWeight& dw, const Case& c, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "N=" << t.N << " K=" << t.K << " M=" << c.M << " format=" << int(t.format)
                                    << (c.config ? " forced config" : "") << (c.bias ? " bias" : "")
                                    << (c.residual ? " residual" : "") << (c.bf16 ? " bf16" : ""));
  const int M = c.M, N = t.N, K = t.K;
  const auto x = random_acts(M, K, seed);
  DevBuf<uint16_t> dx(x);
  DevBuf<int8_t> codes(size_t(M) * K);
  DevBuf<float> sc(M);
  DevBuf<int32_t> sums(M);
  cuda::quantize_activations(dx.p, M, K, codes.p, sc.p, sums.p);
  std::vector<uint16_t> res;
  if (c.residual) {
    Rng rng(seed + 7);
    res.resize(size_t(M) * N);
    for (auto& r : res)
      r = c.bf16 ? float_to_bf16(float(rng.uniform(-300, 300)) / 64.f)
                 : float_to_half(float(rng.uniform(-300, 300)) / 64.f);
  }
  DevBuf<uint16_t> dres(c.residual ? res : std::vector<uint16_t>(1));
  DevBuf<uint16_t> out(size_t(M) * N);
  out.poison();
  cuda::GemmArgs args;
  args.a = codes.p;
  args.a_scales = sc.p;
  args.a_sums = sums.p;
  args.M = M;
  args.residual = c.residual ? dres.p : nullptr;
  args.out = out.p;
  args.out_bf16 = c.bf16;
  args.config = c.config;
  const size_t ws_bytes = cuda::gemm_workspace_bytes(dw.lin, M, c.config);
  DevBuf<int32_t> ws(ws_bytes / 4 + 1);
  CKV(cudaMemset(ws.p, 0, ws.n * sizeof(int32_t)));  // the contract: zero once at allocation
  args.workspace = ws.p;
  args.workspace_bytes = ws_bytes;
  dw.lin.bias = c.bias ? dw.bias.p : nullptr;
  cuda::gemm(dw.lin, args);
  CK(cudaDeviceSynchronize());
  CK(cudaGetLastError());
  const auto y = out.download();
  size_t unwritten = 0;
  for (auto v : y) unwritten += v == 0xFFFF;
  ASSERT_EQ(unwritten, 0u) << "outputs left poisoned";

  // Quantization is per token, so the reference quantizes only the checked tokens.
  const auto rows = checked_tokens(M, double(N) * K);
  std::vector<uint16_t> x_rows;
  for (int m : rows) x_rows.insert(x_rows.end(), x.begin() + size_t(m) * K, x.begin() + size_t(m + 1) * K);
  const auto a = ref_acts(x_rows, int(rows.size()), K);
  const auto acc = ref_acc(t, a);
  std::vector<uint16_t> res_rows;
  for (int m : rows)
    if (c.residual) res_rows.insert(res_rows.end(), res.begin() + size_t(m) * N, res.begin() + size_t(m + 1) * N);
  const uint16_t* ws_scales = t.format == WeightFormat::kW4PerChannel ? t.pc.scales.data()
                              : t.format == WeightFormat::kW4G128     ? t.g.scales.data()
                                                                      : t.w8.scales.data();
  const auto expect =
      ref::apply_epilogue(acc, a, ws_scales, t.format == WeightFormat::kW4PerChannel ? t.pc.zeros.data() : nullptr, N,
                          c.bias ? t.bias.data() : nullptr, c.residual ? res_rows.data() : nullptr, c.bf16);
  size_t bad = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    for (int n = 0; n < N; ++n) {
      const uint16_t got = y[size_t(rows[i]) * N + n], want = expect[i * N + n];
      if (got != want && bad++ < 5)
        ADD_FAILURE() << "token " << rows[i] << " channel " << n << ": got 0x" << std::hex << got << " want 0x" << want
                      << std::dec << " (acc " << acc[i * N + n] << ")";
    }
  EXPECT_EQ(bad, 0u) << "mismatching outputs among " << rows.size() * N;

  if (ws_bytes > 0) {  // split-K: the last CTA of each tile must leave partial sums and counters zeroed
    const auto w = ws.download();
    EXPECT_EQ(size_t(std::count(w.begin(), w.end(), 0)), w.size()) << "split-K workspace not left zeroed";
  }
}

const std::vector<int> kMs = {1, 3, 16, 64, 127, 128, 256, 1000, 4096, 16384};

void run_shapes(WeightFormat f, const std::vector<std::pair<int, int>>& shapes, const std::vector<int>& Ms) {
  uint64_t seed = 100;
  for (auto [N, K] : shapes) {
    const TestWeight t = make_weight(f, N, K, ++seed);
    DevWeight dw(t, false);
    for (int M : Ms) {
      run_case(t, dw, {M}, seed * 1000 + M);
      if (::testing::Test::HasFailure()) return;  // one broken shape tells enough; keep the log short
    }
  }
}

const std::vector<std::pair<int, int>> kLlama3_8B = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}};
const std::vector<std::pair<int, int>> kBig = {{10240, 8192}, {8192, 8192},  {57344, 8192},
                                               {8192, 28672}, {59136, 8192}, {8192, 29568}};  // Llama-3-70B, Qwen2-72B
const std::vector<std::pair<int, int>> kSmolLM2 = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}};

}  // namespace

TEST(ActQuant, BitExactAgainstReference) {
  for (auto [M, K] : std::vector<std::pair<int, int>>{{1, 576}, {7, 4096}, {300, 1536}, {33, 14336}}) {
    auto x = random_acts(M, K, M * 31 + K);
    for (int k = 0; k < K; ++k) x[k] = 0;  // row 0 all zero: scale 1, codes 0
    DevBuf<uint16_t> dx(x);
    DevBuf<int8_t> codes(size_t(M) * K);
    DevBuf<float> sc(M);
    DevBuf<int32_t> sums(M);
    codes.poison(), sc.poison(), sums.poison();
    cuda::quantize_activations(dx.p, M, K, codes.p, sc.p, sums.p);
    CK(cudaDeviceSynchronize());
    const auto r = ref_acts(x, M, K);
    EXPECT_EQ(codes.download(), r.codes) << M << "x" << K;
    EXPECT_EQ(sums.download(), r.sums) << M << "x" << K;
    const auto s = sc.download();
    for (int m = 0; m < M; ++m) EXPECT_EQ(float_to_bits(s[m]), float_to_bits(r.scales[m])) << m;
  }
}

TEST(Repack, LayoutMapsAreInverseBijections) {
  namespace L = cuda::layout;
  std::vector<int> hits4(L::kW4CodeBytes * 2, 0), hits8(L::kW8Bytes, 0);
  for (int r = 0; r < L::kTileRows; ++r)
    for (int kk = 0; kk < L::kTileK; ++kk) {
      const auto p = L::w4_pos(r, kk);
      ASSERT_TRUE(p.byte >= 0 && p.byte < L::kW4CodeBytes);
      ++hits4[p.byte * 2 + p.high];
      const auto e = L::w4_elem(p.byte, p.high);
      ASSERT_EQ(e.r, r);
      ASSERT_EQ(e.kk, kk);
      const int b8 = L::w8_pos(r, kk);
      ASSERT_TRUE(b8 >= 0 && b8 < L::kW8Bytes);
      ++hits8[b8];
      ASSERT_EQ(L::w8_elem(b8).r, r);
      ASSERT_EQ(L::w8_elem(b8).kk, kk);
    }
  for (int h : hits4) ASSERT_EQ(h, 1);  // every nibble of the tile holds exactly one element
  for (int h : hits8) ASSERT_EQ(h, 1);
}

// The GPU repack puts every canonical element where the layout map says, pads k with zero codes, and writes
// every byte (the buffer is poisoned first).
TEST(Repack, GpuRepackFollowsTheMap) {
  namespace L = cuda::layout;
  for (auto f : {WeightFormat::kW4PerChannel, WeightFormat::kW4G128, WeightFormat::kW8}) {
    const int N = 192, K = f == WeightFormat::kW4G128 ? 384 : 576;  // K = 576: a half-padded last k-tile
    const TestWeight t = make_weight(f, N, K, 7 + int(f));
    DevWeight dw(t, false);
    const auto packed = dw.packed.download();
    const int KT = L::k_tiles(K), tile = f == WeightFormat::kW8       ? L::kW8Bytes
                                         : f == WeightFormat::kW4G128 ? L::kW4GBytes
                                                                      : L::kW4Bytes;
    ASSERT_EQ(packed.size(), size_t(N / 64) * KT * tile);
    size_t bad = 0;
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < KT * 128; ++k) {
        const size_t base = (size_t(n / 64) * KT + k / 128) * tile;
        if (f == WeightFormat::kW8) {
          const int v = int8_t(packed[base + L::w8_pos(n % 64, k % 128)]);
          bad += v != (k < K ? t.w8.w[size_t(n) * K + k] : 0);
        } else {
          const auto p = L::w4_pos(n % 64, k % 128);
          const int v = packed[base + p.byte] >> (4 * p.high) & 15;
          const auto& q = f == WeightFormat::kW4G128 ? t.g.q : t.pc.q;
          bad += v != (k < K ? q[size_t(n) * K + k] : 0);
        }
      }
    if (f == WeightFormat::kW4G128)
      for (int n = 0; n < N; ++n)
        for (int kt = 0; kt < KT; ++kt) {
          const size_t at = (size_t(n / 64) * KT + kt) * tile + L::kW4CodeBytes + 2 * (n % 64);
          const int s2 = t.g.gscales[size_t(n) * (K / 128) + kt], z = t.g.gzeros[size_t(n) * (K / 128) + kt];
          bad += packed[at] != s2 || packed[at + 1] != ((s2 * z) & 0xFF);
        }
    EXPECT_EQ(bad, 0u) << "format " << int(f);
  }
}

// Every row of the dispatch table, with split-K forced on and off, on a shape every tile divides.
TEST(QGemm, EveryConfigAllFormats) {
  const int N = 512, K = 1024;
  const cuda::GemmConfig base[] = {{16, 1, 1, 1}, {16, 2, 1, 1}, {128, 1, 1, 1}, {128, 1, 2, 1}, {128, 2, 2, 1}};
  for (auto f : {WeightFormat::kW4PerChannel, WeightFormat::kW4G128, WeightFormat::kW8}) {
    const TestWeight t = make_weight(f, N, K, 40 + int(f));
    DevWeight dw(t, false);
    for (auto c : base)
      for (int split : {1, 3, 8}) {
        c.split_k = split;
        ASSERT_TRUE(cuda::config_supported(f, c, N, K));
        for (int M : {1, 5, c.tokens, c.tokens + 3, 3 * c.tokens - 1}) run_case(t, dw, {M, false, false, false, &c}, M);
        if (HasFailure()) return;
      }
  }
}

// The persistent kernel: one CTA per SM, or a few (max_ctas), so every CTA loops over several tiles with the ring
// of stages running across tile boundaries; partial token blocks; bias, residual and bf16 through its epilogue.
TEST(QGemm, PersistentConfigs) {
  const int N = 512, K = 1024;
  for (auto f : {WeightFormat::kW4PerChannel, WeightFormat::kW4G128, WeightFormat::kW8}) {
    const TestWeight t = make_weight(f, N, K, 70 + int(f));
    DevWeight dw(t, true);
    for (int rt : {1, 2})
      for (int cap : {0, 1, 3}) {
        cuda::GemmConfig c{128, rt, 2, 1, true, cap};
        ASSERT_TRUE(cuda::config_supported(f, c, N, K));
        for (int M : {1, 5, 128, 131, 383, 700}) run_case(t, dw, {M, false, false, false, &c}, M + 11);
        run_case(t, dw, {300, true, false, false, &c}, 301);
        run_case(t, dw, {300, true, true, false, &c}, 302);
        run_case(t, dw, {300, false, true, true, &c}, 303);
        run_case(t, dw, {257, true, true, true, &c}, 304);
        if (HasFailure()) return;
      }
  }
}

TEST(QGemm, BiasResidualBf16) {
  for (auto f : {WeightFormat::kW4PerChannel, WeightFormat::kW4G128, WeightFormat::kW8}) {
    const TestWeight t = make_weight(f, 1536, 1024, 60 + int(f));
    DevWeight dw(t, true);
    for (int M : {1, 64, 300}) {
      run_case(t, dw, {M, true, false, false}, M + 1);
      run_case(t, dw, {M, true, true, false}, M + 2);
      run_case(t, dw, {M, false, true, true}, M + 3);
      run_case(t, dw, {M, true, true, true}, M + 4);
    }
  }
}

// Programmatic dependent launch: quantizer -> GEMM 1 -> GEMM 2 reading GEMM 1's output as its residual, both GEMMs
// launched with pdl, back to back with no synchronization. GEMM 2 must see all of GEMM 1's output (poisoned before)
// and GEMM 1 the quantizer's; the whole chain must equal the reference applied twice.
TEST(QGemm, PdlChain) {
  for (auto f : {WeightFormat::kW4PerChannel, WeightFormat::kW4G128, WeightFormat::kW8}) {
    const int N = 1024, K = 1024;
    const TestWeight t = make_weight(f, N, K, 80 + int(f));
    DevWeight dw(t, true);
    for (int M : {1, 16, 300}) {
      SCOPED_TRACE(::testing::Message() << "format " << int(f) << " M=" << M);
      const auto x = random_acts(M, K, 90 + M);
      DevBuf<uint16_t> dx(x), out1(size_t(M) * N), out2(size_t(M) * N);
      DevBuf<int8_t> codes(size_t(M) * K);
      DevBuf<float> sc(M);
      DevBuf<int32_t> sums(M);
      codes.poison(), sc.poison(), sums.poison(), out1.poison(), out2.poison();
      const size_t ws_bytes = cuda::gemm_workspace_bytes(dw.lin, M);
      DevBuf<int32_t> ws(ws_bytes / 4 + 1);
      CKV(cudaMemset(ws.p, 0, ws.n * sizeof(int32_t)));
      CKV(cudaDeviceSynchronize());
      cudaStream_t s;
      CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      cuda::quantize_activations(dx.p, M, K, codes.p, sc.p, sums.p, s);
      cuda::GemmArgs args;
      args.a = codes.p, args.a_scales = sc.p, args.a_sums = sums.p, args.M = M, args.out = out1.p;
      args.workspace = ws.p, args.workspace_bytes = ws_bytes, args.pdl = true;
      dw.lin.bias = dw.bias.p;
      cuda::gemm(dw.lin, args, s);
      args.residual = out1.p, args.out = out2.p;
      cuda::gemm(dw.lin, args, s);
      CK(cudaStreamSynchronize(s));
      CK(cudaGetLastError());
      CK(cudaStreamDestroy(s));
      const auto y2 = out2.download();
      const auto a = ref_acts(x, M, K);
      const auto acc = ref_acc(t, a);
      const uint16_t* wsc = f == WeightFormat::kW4PerChannel ? t.pc.scales.data()
                            : f == WeightFormat::kW4G128     ? t.g.scales.data()
                                                             : t.w8.scales.data();
      const uint8_t* z = f == WeightFormat::kW4PerChannel ? t.pc.zeros.data() : nullptr;
      const auto e1 = ref::apply_epilogue(acc, a, wsc, z, N, t.bias.data(), nullptr, false);
      const auto e2 = ref::apply_epilogue(acc, a, wsc, z, N, t.bias.data(), e1.data(), false);
      size_t bad = 0;
      for (size_t i = 0; i < e2.size(); ++i) bad += y2[i] != e2[i];
      EXPECT_EQ(bad, 0u) << "mismatches among " << e2.size();
      if (HasFailure()) return;
    }
  }
}

TEST(QGemm, RejectsUnsupportedShapes) {
  cuda::QuantLinear w;
  w.format = WeightFormat::kW4G128;
  w.N = 256;
  w.K = 576;  // not a multiple of the group size
  EXPECT_FALSE(cuda::config_supported(w.format, cuda::choose_config(w.format, 16, w.N, w.K), w.N, w.K));
  cuda::GemmArgs args;
  args.M = 16;
  EXPECT_THROW(cuda::gemm(w, args), std::exception);
  w.format = WeightFormat::kW8;
  w.N = 100;  // not a multiple of 64
  w.K = 512;
  EXPECT_THROW(cuda::gemm(w, args), std::exception);
}

TEST(QGemm, W4PerChannelLlama3_8B) { run_shapes(WeightFormat::kW4PerChannel, kLlama3_8B, kMs); }
TEST(QGemm, W4G128Llama3_8B) { run_shapes(WeightFormat::kW4G128, kLlama3_8B, kMs); }
TEST(QGemm, W8Llama3_8B) { run_shapes(WeightFormat::kW8, kLlama3_8B, kMs); }
TEST(QGemm, W4PerChannelSmolLM2) { run_shapes(WeightFormat::kW4PerChannel, kSmolLM2, kMs); }
TEST(QGemm, W8SmolLM2) { run_shapes(WeightFormat::kW8, kSmolLM2, kMs); }
// g128 needs K % 128 == 0: of SmolLM2's shapes only down_proj (K = 1536) qualifies (docs/gemm.md).
TEST(QGemm, W4G128SmolLM2Down) { run_shapes(WeightFormat::kW4G128, {{576, 1536}}, kMs); }
TEST(QGemm, W4PerChannelLlama3_70B_Qwen2_72B) { run_shapes(WeightFormat::kW4PerChannel, kBig, kMs); }
TEST(QGemm, W4G128Llama3_70B_Qwen2_72B) { run_shapes(WeightFormat::kW4G128, kBig, kMs); }
TEST(QGemm, W8Llama3_70B_Qwen2_72B) { run_shapes(WeightFormat::kW8, kBig, kMs); }
