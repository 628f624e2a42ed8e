// GEMM benchmark: cuBLAS bf16, cuBLASLt fp8 e4m3 (per-tensor scales) and int8, against our W8A8, W4A8 per-channel
// and W4A8 g128, in one process, on Llama-3-8B linear shapes. Each entry: CUDA graph of 20 calls rotating through
// enough weight/activation copies to defeat the 60 MB L2, 25 timed replays, the median per call.
// Usage: bench_gemm [--csv FILE] [--quick] [--no-pdl]   (our GEMMs are timed without and, unless --no-pdl, with
//        programmatic dependent launch: "+P" columns)
//        bench_gemm --one SHAPE:M:METHOD[,...] [--time]   (METHOD w8|pc|g128): one launch of each case and nothing
//        else (for ncu -k regex:qgemm); --time also times each as the full benchmark does.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "qoq/cuda_gemm.h"

namespace {
namespace cuda = qoq::cuda;

#define CB(x)                                                                                 \
  do {                                                                                        \
    const cublasStatus_t s_ = (x);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                        \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, int(s_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

constexpr int kCallsPerGraph = 20;
constexpr int kReplays = 25;
constexpr double kInt8PeakTops = 1979.0;  // dense int8/fp8 tensor peak (datasheet); bf16 is half
constexpr size_t kRotateBytes = size_t(256) << 20;

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t bytes) { CK(cudaMalloc(&p, std::max<size_t>(bytes, 16))); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

uint32_t hash32(uint64_t x) {
  x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull, x ^= x >> 33;
  return uint32_t(x);
}

// Fills `bytes` with random data of a kind: raw nibbles/int8 in [-127,127], bf16 in (-1,1), fp8 e4m3 finite, fp16.
enum class Fill { kBytes, kInt8, kBf16, kFp8, kFp16, kScales16, kG128Params };
void fill(void* dst, size_t bytes, Fill kind, uint64_t seed) {
  std::vector<uint8_t> h(bytes);
  for (size_t i = 0; i < bytes; i += 2) {
    const uint32_t r = hash32(seed * 0x9E3779B97F4A7C15ull + i);
    uint16_t v;
    switch (kind) {
      case Fill::kBytes:
        v = uint16_t(r);
        break;
      case Fill::kInt8:
        v = uint16_t((r % 255) | ((r >> 16) % 255) << 8) - 0x7F7F;
        break;  // each byte in [-127,127]
      case Fill::kBf16:
        v = uint16_t(0x3C00 | (r & 0x3FF) | (r & 0x8000));
        break;  // +-[2^-7, 2^-6)
      case Fill::kFp8:
        v = uint16_t(r & 0xBEBE);
        break;  // e4m3 finite, |x| <= 2^7: never the NaN pattern
      case Fill::kFp16:
        v = uint16_t(0x3800 | (r & 0x3FF) | (r & 0x8000));
        break;  // +-[0.5, 1)
      case Fill::kScales16:
        v = uint16_t(0x1C00 | (r & 0x3FF));
        break;  // ~0.004
      case Fill::kG128Params:
        v = uint16_t(1 + (r & 7)) | uint16_t(((r >> 8) & 7) << 8);
        break;  // s2 1..8, z 0..7
      default:
        v = 0;
    }
    std::memcpy(&h[i], &v, std::min<size_t>(2, bytes - i));
  }
  CK(cudaMemcpy(dst, h.data(), bytes, cudaMemcpyHostToDevice));
}

// Times `call(i)` (i = rotation index) as a graph of kCallsPerGraph calls; returns the median microseconds per call.
double time_us(cudaStream_t s, const std::function<void(int)>& call) {
  for (int i = 0; i < 3; ++i) call(i);  // warm-up outside the graph (handles, attributes, tensor maps)
  CK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kCallsPerGraph; ++i) call(i);
  CK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int r = 0; r < kReplays; ++r) {
    CK(cudaEventRecord(e0, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(1000.0 * ms / kCallsPerGraph);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Device-to-device copy of 2 GiB, best of 10 after 3 warm-ups, counting bytes read + written.
double copy_bandwidth(cudaStream_t s) {
  const size_t bytes = size_t(2) << 30;
  Buf a(bytes), b(bytes);
  CK(cudaMemset(a.p, 1, bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int i = 0; i < 13; ++i) {
    CK(cudaEventRecord(e0, s));
    CK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 3) best = std::min(best, ms);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return 2.0 * bytes / (best * 1e-3) / 1e12;
}

struct Lt {
  cublasLtHandle_t h;
  Buf ws{size_t(32) << 20};
  Lt() { CB(cublasLtCreate(&h)); }
  ~Lt() { cublasLtDestroy(h); }
};

// D[M,N] (row-major) = A[M,K] W[N,K]^T through cuBLASLt: column-major D^T[N,M] = W^T(op T) * A^T.
struct LtGemm {
  cublasLtMatmulDesc_t desc{};
  cublasLtMatrixLayout_t la{}, lb{}, lc{};
  cublasLtMatmulHeuristicResult_t algo{};
  bool ok = false;
  LtGemm(Lt& lt, int M, int N, int K, cudaDataType ab, cudaDataType cd, cublasComputeType_t ct, cudaDataType st,
         const float* a_scale, const float* b_scale) {
    CB(cublasLtMatmulDescCreate(&desc, ct, st));
    const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
    CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof(n)));
    if (a_scale) {
      CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)));
      CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)));
    }
    CB(cublasLtMatrixLayoutCreate(&la, ab, K, N, K));
    CB(cublasLtMatrixLayoutCreate(&lb, ab, K, M, K));
    CB(cublasLtMatrixLayoutCreate(&lc, cd, N, M, N));
    cublasLtMatmulPreference_t pref;
    CB(cublasLtMatmulPreferenceCreate(&pref));
    const size_t wsb = size_t(32) << 20;
    CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)));
    int found = 0;
    ok = cublasLtMatmulAlgoGetHeuristic(lt.h, desc, la, lb, lc, lc, pref, 1, &algo, &found) == CUBLAS_STATUS_SUCCESS &&
         found > 0;
    cublasLtMatmulPreferenceDestroy(pref);
  }
  ~LtGemm() {
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
  }
  void run(Lt& lt, const void* alpha, const void* beta, const void* w, const void* a, void* d, cudaStream_t s) {
    CB(cublasLtMatmul(lt.h, desc, alpha, w, la, a, lb, beta, d, lc, d, lc, &algo.algo, lt.ws.p, size_t(32) << 20, s));
  }
};

struct Shape {
  const char* name;
  int N, K;
};

// --one: each case's kernel launched once (so a profiler sees exactly these launches), optionally timed.
int run_one(const std::string& spec, bool time_it, cudaStream_t s) {
  const Shape shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096}, {"down", 4096, 14336}};
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    // SHAPE:M:METHOD[:TxRxC[sS]] (optional forced tile: tokens x row tiles x consumers, split S; two consumers
    // without split run persistent)
    std::vector<std::string> f;
    for (size_t a = 0, b; a <= item.size(); a = b + 1) {
      b = item.find(':', a);
      if (b == std::string::npos) b = item.size();
      f.push_back(item.substr(a, b - a));
    }
    if (f.size() < 3) return std::fprintf(stderr, "bad --one item %s\n", item.c_str()), 1;
    const std::string name = f[0], method = f[2];
    const int M = std::atoi(f[1].c_str());
    cuda::GemmConfig forced{};
    if (f.size() > 3) {
      int sp = 1;
      if (std::sscanf(f[3].c_str(), "%dx%dx%ds%d", &forced.tokens, &forced.row_tiles, &forced.consumers, &sp) < 3)
        return std::fprintf(stderr, "bad config in %s\n", item.c_str()), 1;
      forced.split_k = sp;
      forced.persistent = forced.consumers == 2 && sp == 1 && forced.tokens == 128;
    }
    const Shape* sh = nullptr;
    for (const Shape& x : shapes)
      if (name == x.name) sh = &x;
    const cuda::WeightFormat fmt = method == "w8"     ? cuda::WeightFormat::kW8
                                   : method == "g128" ? cuda::WeightFormat::kW4G128
                                                      : cuda::WeightFormat::kW4PerChannel;
    if (!sh || M < 1 || (method != "w8" && method != "g128" && method != "pc"))
      return std::fprintf(stderr, "bad --one item %s\n", item.c_str()), 1;
    const int N = sh->N, K = sh->K;
    const size_t wb = cuda::packed_weight_bytes(fmt, N, K);
    const int n_copies = time_it ? int(std::max<size_t>(2, (kRotateBytes + wb - 1) / wb)) : 1;
    std::vector<std::unique_ptr<Buf>> set;
    for (int i = 0; i < n_copies; ++i) set.push_back(std::make_unique<Buf>(wb));
    if (fmt == cuda::WeightFormat::kW4G128) {  // valid group parameters through the repack
      Buf q(size_t(N) * K / 2), gs(size_t(N) * K / 128), gz(size_t(N) * K / 128);
      fill(q.p, size_t(N) * K / 2, Fill::kBytes, 7);
      CK(cudaMemset(gs.p, 5, size_t(N) * K / 128));
      CK(cudaMemset(gz.p, 7, size_t(N) * K / 128));
      cuda::repack_w4_g128(q.as<uint8_t>(), gs.as<uint8_t>(), gz.as<uint8_t>(), N, K, set[0]->as<uint8_t>(), s);
      CK(cudaStreamSynchronize(s));
    } else {
      fill(set[0]->p, wb, fmt == cuda::WeightFormat::kW8 ? Fill::kInt8 : Fill::kBytes, 5);
    }
    for (int i = 1; i < n_copies; ++i) CK(cudaMemcpy(set[i]->p, set[0]->p, wb, cudaMemcpyDeviceToDevice));
    Buf scales(size_t(2) * N), zeros(N), a16(size_t(2) * M * K), codes(size_t(M) * K), asc(size_t(4) * M),
        asum(size_t(4) * M), out(size_t(2) * M * N);
    fill(scales.p, size_t(2) * N, Fill::kScales16, 7);
    CK(cudaMemset(zeros.p, 3, N));
    fill(a16.p, size_t(2) * M * K, Fill::kFp16, 9);
    cuda::quantize_activations(a16.as<uint16_t>(), M, K, codes.as<int8_t>(), asc.as<float>(), asum.as<int32_t>(), s);
    cuda::QuantLinear w;
    w.format = fmt, w.N = N, w.K = K, w.scales = scales.as<uint16_t>();
    w.zeros = fmt == cuda::WeightFormat::kW4PerChannel ? zeros.as<uint8_t>() : nullptr;
    w.packed = set[0]->as<uint8_t>();
    const cuda::GemmConfig c = forced.tokens ? forced : cuda::choose_config(fmt, M, N, K);
    const size_t ws_bytes = cuda::gemm_workspace_bytes(w, M, &c);
    Buf ws(ws_bytes);
    CK(cudaMemset(ws.p, 0, std::max<size_t>(ws_bytes, 16)));
    cuda::GemmArgs args;
    args.a = codes.as<int8_t>(), args.a_scales = asc.as<float>(), args.a_sums = asum.as<int32_t>();
    args.M = M, args.out = out.p, args.workspace = ws.p, args.workspace_bytes = ws_bytes;
    args.config = &c;
    cuda::gemm(w, args, s);
    CK(cudaStreamSynchronize(s));
    CK(cudaGetLastError());
    std::printf("one %s M=%d %s: config tokens %d rows %d split %d%s", name.c_str(), M, method.c_str(), c.tokens,
                64 * c.row_tiles * c.consumers, c.split_k, c.persistent ? " persistent" : "");
    cuda::GemmConfig legacy = c;  // a persistent dispatch is also timed as the non-persistent kernel
    legacy.persistent = false;
    if (time_it)
      for (int v = 0; v < (c.persistent ? 4 : 2); ++v) {
        const bool pdl = v % 2 == 1;
        args.pdl = pdl;
        args.config = v >= 2 ? &legacy : &c;
        if (v == 2) std::printf("  || non-persistent");
        const double us = time_us(s, [&](int i) {
          w.packed = set[i % set.size()]->as<uint8_t>();
          cuda::gemm(w, args, s);
        });
        const double wbytes = fmt == cuda::WeightFormat::kW8 ? 1.0 * N * K : 0.5 * N * K;
        std::printf("  |%s %.2f us %.3f TB/s %.1f TOP/s", pdl ? " pdl" : "", us, wbytes / (us * 1e-6) / 1e12,
                    2.0 * M * N * K / (us * 1e-6) / 1e12);
      }
    std::printf("\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string csv_path;
  std::string one_spec;
  bool quick = false, time_one = false, pdl = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
    if (!std::strcmp(argv[i], "--one") && i + 1 < argc) one_spec = argv[++i];
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--time")) time_one = true;
    if (!std::strcmp(argv[i], "--no-pdl")) pdl = false;
  }
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  if (!one_spec.empty()) return run_one(one_spec, time_one, s);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  // Limits use the larger of this run's copy bandwidth and DESIGN §6's 4.24 TB/s, so a cold or slow copy path
  // never makes our kernels look closer to the limit than they are.
  const double bw_measured = copy_bandwidth(s);
  const double bw = std::max(bw_measured, 4.24);
  std::printf("device %s, %d SMs, L2 %d MB; copy bandwidth measured %.2f TB/s (read+write), limit uses %.2f\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, bw_measured, bw);
  FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (csv)
    std::fprintf(csv,
                 "shape,N,K,M,method,us,tops,weight_tbps,limit_us,frac_limit,best_cublas_us,ratio_vs_best_cublas\n");

  const std::vector<Shape> shapes = {
      {"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096}, {"down", 4096, 14336}};
  std::vector<int> Ms = {1, 16, 64, 128, 256, 512, 1024, 4096, 8192};
  if (quick) Ms = {1, 16, 8192};
  Lt lt;
  cublasHandle_t cb;
  CB(cublasCreate(&cb));
  CB(cublasSetStream(cb, s));
  Buf cb_ws(size_t(32) << 20);
  CB(cublasSetWorkspace(cb, cb_ws.p, size_t(32) << 20));
  Buf one(4);
  const float f1 = 1.0f;
  CK(cudaMemcpy(one.p, &f1, 4, cudaMemcpyHostToDevice));

  std::printf("\n%-8s %5s | %8s %8s %8s | %8s %8s %8s | %8s %8s %8s | %6s %6s %7s %6s %6s | %5s %5s %5s %5s\n", "shape",
              "M", "bf16", "fp8", "int8", "W8A8", "W4pc", "W4g128", "W8A8+P", "W4pc+P", "g128+P", "pcTB", "pcTB+P",
              "pcTOP", "vsBest", "frLim", "g/pc", "g/pcP", "pc/w8", "w8P");
  for (const Shape& sh : shapes) {
    const int N = sh.N, K = sh.K;
    const int maxM = Ms.back();
    const size_t w4 = cuda::packed_weight_bytes(cuda::WeightFormat::kW4PerChannel, N, K);
    const size_t w4g = cuda::packed_weight_bytes(cuda::WeightFormat::kW4G128, N, K);
    const size_t w8 = cuda::packed_weight_bytes(cuda::WeightFormat::kW8, N, K);
    // Rotation sets for the weights: enough copies to exceed the L2 several times over (per format).
    auto copies = [](size_t bytes) { return int(std::max<size_t>(2, (kRotateBytes + bytes - 1) / bytes)); };
    const int c_bf16 = copies(size_t(2) * N * K), c_8 = copies(size_t(N) * K), c_4 = copies(w4), c_4g = copies(w4g);
    // One random copy per kind, replicated on the device: the L2 sees distinct addresses, which is what matters.
    auto make_set = [&](int n, size_t bytes, Fill kind, uint64_t seed) {
      std::vector<std::unique_ptr<Buf>> set;
      for (int i = 0; i < n; ++i) {
        set.push_back(std::make_unique<Buf>(bytes));
        if (i == 0)
          fill(set[0]->p, bytes, kind, seed);
        else
          CK(cudaMemcpy(set[i]->p, set[0]->p, bytes, cudaMemcpyDeviceToDevice));
      }
      return set;
    };
    auto wb16 = make_set(c_bf16, size_t(2) * N * K, Fill::kBf16, 1);
    auto wf8 = make_set(c_8, size_t(N) * K, Fill::kFp8, 2);
    auto wi8 = make_set(c_8, size_t(N) * K, Fill::kInt8, 3);
    auto ww8 = make_set(c_8, w8, Fill::kInt8, 4);
    auto ww4 = make_set(c_4, w4, Fill::kBytes, 5);
    // g128: random codes and valid group parameters (s2 <= 8, z <= 7), written through the repack.
    auto ww4g = make_set(c_4g, w4g, Fill::kBytes, 6);
    {
      Buf q(size_t(N) * K / 2), gs(size_t(N) * K / 128), gz(size_t(N) * K / 128), params(size_t(N) * K / 64);
      fill(q.p, size_t(N) * K / 2, Fill::kBytes, 7);
      fill(params.p, size_t(N) * K / 64, Fill::kG128Params, 8);
      std::vector<uint8_t> hp(size_t(N) * K / 64), hs(size_t(N) * K / 128), hz(size_t(N) * K / 128);
      CK(cudaMemcpy(hp.data(), params.p, hp.size(), cudaMemcpyDeviceToHost));
      for (size_t j = 0; j < hs.size(); ++j) hs[j] = hp[2 * j], hz[j] = hp[2 * j + 1];
      CK(cudaMemcpy(gs.p, hs.data(), hs.size(), cudaMemcpyHostToDevice));
      CK(cudaMemcpy(gz.p, hz.data(), hz.size(), cudaMemcpyHostToDevice));
      for (auto& b : ww4g)
        cuda::repack_w4_g128(q.as<uint8_t>(), gs.as<uint8_t>(), gz.as<uint8_t>(), N, K, b->as<uint8_t>(), s);
      CK(cudaStreamSynchronize(s));
    }
    Buf scales(size_t(2) * N), zeros(N);
    fill(scales.p, size_t(2) * N, Fill::kScales16, 7);
    {  // zeros in [0, 15]
      std::vector<uint8_t> hz(N);
      for (int n = 0; n < N; ++n) hz[n] = uint8_t(hash32(n) & 15);
      CK(cudaMemcpy(zeros.p, hz.data(), N, cudaMemcpyHostToDevice));
    }
    // Activations: one set of the largest M in each dtype (small next to the weights), plus ours quantized.
    Buf a16(size_t(2) * maxM * K), abf(size_t(2) * maxM * K), af8(size_t(maxM) * K), ai8(size_t(maxM) * K);
    fill(a16.p, size_t(2) * maxM * K, Fill::kFp16, 9);
    fill(abf.p, size_t(2) * maxM * K, Fill::kBf16, 10);
    fill(af8.p, size_t(maxM) * K, Fill::kFp8, 11);
    fill(ai8.p, size_t(maxM) * K, Fill::kInt8, 12);
    Buf codes(size_t(maxM) * K), asc(size_t(4) * maxM), asum(size_t(4) * maxM);
    cuda::quantize_activations(a16.as<uint16_t>(), maxM, K, codes.as<int8_t>(), asc.as<float>(), asum.as<int32_t>(), s);
    Buf out(size_t(4) * maxM * N);  // room for int32 outputs
    CK(cudaStreamSynchronize(s));

    for (int M : Ms) {
      const double ops = 2.0 * M * N * K;
      double t[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};  // cuBLAS x3, ours x3, ours with PDL x3
      // cuBLAS bf16.
      {
        const float alpha = 1.f, beta = 0.f;
        t[0] = time_us(s, [&](int i) {
          CB(cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, wb16[i % c_bf16]->p, CUDA_R_16BF, K, abf.p,
                          CUDA_R_16BF, K, &beta, out.p, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        });
      }
      // cuBLASLt fp8 e4m3 with per-tensor scales, bf16 out.
      {
        LtGemm g(lt, M, N, K, CUDA_R_8F_E4M3, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, one.as<float>(),
                 one.as<float>());
        const float alpha = 1.f, beta = 0.f;
        t[1] = g.ok ? time_us(s, [&](int i) { g.run(lt, &alpha, &beta, wf8[i % c_8]->p, af8.p, out.p, s); }) : 0;
      }
      // cuBLASLt int8 -> int32.
      {
        LtGemm g(lt, M, N, K, CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, nullptr, nullptr);
        const int32_t alpha = 1, beta = 0;
        t[2] = g.ok ? time_us(s, [&](int i) { g.run(lt, &alpha, &beta, wi8[i % c_8]->p, ai8.p, out.p, s); }) : 0;
      }
      // Ours.
      const cuda::WeightFormat fmts[3] = {cuda::WeightFormat::kW8, cuda::WeightFormat::kW4PerChannel,
                                          cuda::WeightFormat::kW4G128};
      for (int f = 0; f < (pdl ? 6 : 3); ++f) {
        cuda::QuantLinear w;
        w.format = fmts[f % 3];
        w.N = N;
        w.K = K;
        w.scales = scales.as<uint16_t>();
        w.zeros = fmts[f % 3] == cuda::WeightFormat::kW4PerChannel ? zeros.as<uint8_t>() : nullptr;
        auto& set = f % 3 == 0 ? ww8 : f % 3 == 1 ? ww4 : ww4g;
        const size_t ws_bytes = cuda::gemm_workspace_bytes(w, M);
        Buf ws(ws_bytes);
        CK(cudaMemset(ws.p, 0, std::max<size_t>(ws_bytes, 16)));
        cuda::GemmArgs args;
        args.a = codes.as<int8_t>();
        args.a_scales = asc.as<float>();
        args.a_sums = asum.as<int32_t>();
        args.M = M;
        args.out = out.p;
        args.workspace = ws.p;
        args.workspace_bytes = ws_bytes;
        args.pdl = f >= 3;
        t[3 + f] = time_us(s, [&](int i) {
          w.packed = set[i % set.size()]->as<uint8_t>();
          cuda::gemm(w, args, s);
        });
      }
      double best_cublas = 1e30;
      for (int j = 0; j < 3; ++j)
        if (t[j] > 0) best_cublas = std::min(best_cublas, t[j]);
      // Limits: minimum bytes (weights + activations + fp16 output) over copy bandwidth, ops over the int8 peak.
      auto limit_us = [&](double wbytes, double elem_a, double elem_o, double peak_tops) {
        const double bytes = wbytes + elem_a * M * K + elem_o * M * N;
        return std::max(bytes / (bw * 1e12) * 1e6, ops / (peak_tops * 1e12) * 1e6);
      };
      const double lim[9] = {limit_us(2.0 * N * K, 2, 2, kInt8PeakTops / 2), limit_us(1.0 * N * K, 1, 2, kInt8PeakTops),
                             limit_us(1.0 * N * K, 1, 4, kInt8PeakTops),     limit_us(1.0 * N * K, 1, 2, kInt8PeakTops),
                             limit_us(0.5 * N * K, 1, 2, kInt8PeakTops),     limit_us(0.5 * N * K, 1, 2, kInt8PeakTops),
                             limit_us(1.0 * N * K, 1, 2, kInt8PeakTops),     limit_us(0.5 * N * K, 1, 2, kInt8PeakTops),
                             limit_us(0.5 * N * K, 1, 2, kInt8PeakTops)};
      const double wbytes[9] = {2.0 * N * K, 1.0 * N * K, 1.0 * N * K, 1.0 * N * K, 0.5 * N * K,
                                0.5 * N * K, 1.0 * N * K, 0.5 * N * K, 0.5 * N * K};
      const char* names[9] = {"cublas_bf16",   "cublaslt_fp8", "cublaslt_int8",   "qoq_w8a8",         "qoq_w4a8_pc",
                              "qoq_w4a8_g128", "qoq_w8a8_pdl", "qoq_w4a8_pc_pdl", "qoq_w4a8_g128_pdl"};
      for (int j = 0; j < 9; ++j)
        if (csv && t[j] > 0)
          std::fprintf(csv, "%s,%d,%d,%d,%s,%.3f,%.1f,%.3f,%.3f,%.3f,%.3f,%.3f\n", sh.name, N, K, M, names[j], t[j],
                       ops / (t[j] * 1e-6) / 1e12, wbytes[j] / (t[j] * 1e-6) / 1e12, lim[j], lim[j] / t[j], best_cublas,
                       best_cublas / t[j]);
      auto ratio = [](double a, double b) { return a > 0 && b > 0 ? a / b : 0.0; };
      std::printf(
          "%-8s %5d | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f | %6.2f %6.2f %7.0f %6.2f %6.2f | "
          "%5.2f %5.2f "
          "%5.2f %5.2f\n",
          sh.name, M, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], wbytes[4] / (t[4] * 1e-6) / 1e12,
          t[7] > 0 ? wbytes[7] / (t[7] * 1e-6) / 1e12 : 0.0, ops / (t[4] * 1e-6) / 1e12, best_cublas / t[4],
          lim[4] / t[4], ratio(t[5], t[4]), ratio(t[8], t[7]), ratio(t[4], t[3]), ratio(t[7], t[6]));
      std::fflush(stdout);
    }
  }
  // Decode-size tuning: every tile/split choice for W4 per-channel at M = 1 and 16 (the dispatch table's input).
  if (!quick) {
    std::printf("\nsplit-K sweep, W4A8 per-channel (us per call; rows = weight rows per CTA):\n");
    for (const Shape& sh : shapes) {
      const int N = sh.N, K = sh.K;
      const size_t w4 = cuda::packed_weight_bytes(cuda::WeightFormat::kW4PerChannel, N, K);
      const int n_copies = int(std::max<size_t>(2, (kRotateBytes + w4 - 1) / w4));
      std::vector<std::unique_ptr<Buf>> set;
      for (int i = 0; i < n_copies; ++i) {
        set.push_back(std::make_unique<Buf>(w4));
        if (i == 0)
          fill(set[0]->p, w4, Fill::kBytes, 21);
        else
          CK(cudaMemcpy(set[i]->p, set[0]->p, w4, cudaMemcpyDeviceToDevice));
      }
      Buf scales(size_t(2) * N), zeros(N), codes(size_t(16) * K), asc(64), asum(64), out(size_t(2) * 16 * N);
      CK(cudaMemset(zeros.p, 3, N));
      fill(scales.p, size_t(2) * N, Fill::kScales16, 22);
      fill(codes.p, size_t(16) * K, Fill::kInt8, 23);
      fill(asc.p, 64, Fill::kScales16, 24);
      CK(cudaMemset(asum.p, 0, 64));
      for (int M : {1, 16}) {
        std::printf("  %-8s M=%-3d", sh.name, M);
        for (int rt : {1, 2})
          for (int split : {1, 2, 4, 8, 16}) {
            cuda::GemmConfig c{16, rt, 1, split};
            if (!cuda::config_supported(cuda::WeightFormat::kW4PerChannel, c, N, K)) continue;
            cuda::QuantLinear w;
            w.format = cuda::WeightFormat::kW4PerChannel;
            w.N = N, w.K = K, w.scales = scales.as<uint16_t>(), w.zeros = zeros.as<uint8_t>();
            const size_t ws_bytes = cuda::gemm_workspace_bytes(w, M, &c);
            Buf ws(ws_bytes);
            CK(cudaMemset(ws.p, 0, std::max<size_t>(ws_bytes, 16)));
            cuda::GemmArgs args;
            args.a = codes.as<int8_t>(), args.a_scales = asc.as<float>(), args.a_sums = asum.as<int32_t>();
            args.M = M, args.out = out.p, args.workspace = ws.p, args.workspace_bytes = ws_bytes, args.config = &c;
            const double us = time_us(s, [&](int i) {
              w.packed = set[i % set.size()]->as<uint8_t>();
              cuda::gemm(w, args, s);
            });
            std::printf("  r%d/s%d %.1f", 64 * rt, split, us);
          }
        const cuda::GemmConfig d = cuda::choose_config(cuda::WeightFormat::kW4PerChannel, M, N, K);
        std::printf("   [dispatch: r%d/s%d]\n", 64 * d.row_tiles * d.consumers, d.split_k);
      }
    }
  }

  // The activation quantizer alone (it runs once per layer input, shared by q/k/v or gate/up).
  {
    const int K = 4096;
    std::printf("\nactivation quant fp16 -> int8 (K=%d):", K);
    for (int M : {1, 16, 128, 1024, 8192}) {
      Buf x(size_t(2) * M * K), c(size_t(M) * K), sc(size_t(4) * M), su(size_t(4) * M);
      fill(x.p, size_t(2) * M * K, Fill::kFp16, 13);
      const double us = time_us(s, [&](int) {
        cuda::quantize_activations(x.as<uint16_t>(), M, K, c.as<int8_t>(), sc.as<float>(), su.as<int32_t>(), s);
      });
      std::printf("  M=%d %.1f us", M, us);
    }
    std::printf("\n");
  }
  if (csv) std::fclose(csv);
  cublasDestroy(cb);
  return 0;
}
