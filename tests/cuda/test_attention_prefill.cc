// prefill_attention over KV4 / KV8 / fp16 paged caches against the CPU reference (DESIGN §3): cpu::attention over
// ref::kv_dequantize_head of every stored row (the chunk's own tokens too), causal from each chunk's start position.
// Chunks of 1 .. 8192 tokens, ragged batches with earlier pages, GQA 1/3/4/8, D 64/128, shuffled page tables, garbage
// in every unused slot, outputs poisoned with NaN; chunked prefill must equal one-shot prefill bit for bit.
// The kernel's K/V tiles hold fp16(x̂) (x̂ in fp32 as ref::kv_dequantize_head, rounded once), P is rounded to fp16 for
// the tensor cores (as FlashAttention) and the output to fp16. Two references:
//   A: cpu::attention over fp16(x̂): tolerance as decode, |out - ref| <= 2e-3 * |ref| + 2e-3 * rms(ref row of the head);
//   B: cpu::attention over the fp32 x̂ (DESIGN §3's values): twice that (the fp16 rounding of x̂, 2^-12 relative per
//      element, moves scores by ~2e-4 and outputs by up to ~2^-12 of |v|; device run 1 measured ~1-3x decode's
//      tolerance for a coarser fp16 dequantization).
// Large cases check sampled query rows (first and last of each chunk) to keep the CPU time small.
// prefill_attention takes its wgmma path for head_dim 128 (a workspace is always passed) and the mma.sync kernel for
// 64; the MmaSync* tests run the mma.sync kernel (prefill_attention_mma, the benchmark's baseline) at head_dim 128.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/kv_quant.h"
#include "qoq/cuda_attention.h"
#include "qoq/half.h"

using namespace qoq;
using cuda::KvCacheLayout;
using cuda::kKvPageTokens;

namespace {

#define CKP(x)                                                                                        \
  do {                                                                                                \
    const cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#x) + ": " + cudaGetErrorString(e_)); \
  } while (0)

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) { CKP(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T))); }
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size()) { upload(v); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  void upload(const std::vector<T>& v) { CKP(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> v(n);
    CKP(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void poison() { CKP(cudaMemset(p, 0xFF, n * sizeof(T))); }  // fp16 NaN
};

// A host image of a paged cache with shuffled pages, garbage in every byte nobody owns, random stored rows.
struct HostCache {
  KvCacheLayout L;
  int batch = 0, max_pages = 0, pages = 0;
  std::vector<int32_t> table;  // [batch, max_pages]
  std::vector<uint8_t> pool;

  HostCache(KvCacheLayout layout, const std::vector<int>& lengths, std::mt19937& rng) : L(layout) {
    batch = int(lengths.size());
    for (int len : lengths) max_pages = std::max(max_pages, (len + kKvPageTokens - 1) / kKvPageTokens);
    max_pages = std::max(max_pages, 1);
    for (int len : lengths) pages += (len + kKvPageTokens - 1) / kKvPageTokens;
    pages += 3;
    std::vector<int32_t> ids(pages);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(size_t(batch) * max_pages, -1);
    size_t next = 0;
    for (int b = 0; b < batch; ++b)
      for (int j = 0; j < (lengths[b] + kKvPageTokens - 1) / kKvPageTokens; ++j)
        table[size_t(b) * max_pages + j] = ids[next++];
    pool.resize(L.page_bytes() * pages);
    for (auto& x : pool) x = uint8_t(rng());
    std::uniform_real_distribution<float> u(0.f, 1.f);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int b = 0; b < batch; ++b)
      for (int pos = 0; pos < lengths[b]; ++pos)
        for (int h = 0; h < L.n_kv_heads; ++h)
          for (int v = 0; v < 2; ++v) {
            uint8_t* r = row(b, pos, h, v);
            if (L.bits == 16) {
              uint16_t* x = reinterpret_cast<uint16_t*>(r);
              for (int i = 0; i < L.head_dim; ++i) x[i] = float_to_half(1.5f * nd(rng));
            } else {
              for (int i = 0; i < L.row_bytes(); ++i) r[i] = uint8_t(rng());
              const float levels = float((1 << L.bits) - 1);
              uint16_t* prm = param(b, pos, h, v);
              prm[0] = float_to_half((0.3f + 0.5f * u(rng)) * 4.f / levels);
              prm[1] = float_to_half(levels * (0.3f + 0.4f * u(rng)));
            }
          }
  }
  uint8_t* block(int b, int pos, int kvh) {
    const int page = table[size_t(b) * max_pages + pos / kKvPageTokens];
    return pool.data() + (size_t(page) * L.n_kv_heads + kvh) * L.block_bytes();
  }
  uint8_t* row(int b, int pos, int kvh, bool v) {
    return block(b, pos, kvh) + (v ? L.v_offset() : L.k_offset()) + size_t(pos % kKvPageTokens) * L.row_bytes();
  }
  uint16_t* param(int b, int pos, int kvh, bool v) {
    return reinterpret_cast<uint16_t*>(block(b, pos, kvh) + (v ? L.v_param_offset() : L.k_param_offset()) +
                                       size_t(pos % kKvPageTokens) * 4);
  }
  // x̂ of positions [0, len) of sequence b: [len, n_kv_heads, D]; fp16-rounded when `round16`.
  void dequant_all(int b, int len, std::vector<float>& k, std::vector<float>& v, bool round16) {
    const int D = L.head_dim, HK = L.n_kv_heads;
    k.resize(size_t(len) * HK * D), v.resize(k.size());
    for (int pos = 0; pos < len; ++pos)
      for (int h = 0; h < HK; ++h)
        for (int kv = 0; kv < 2; ++kv) {
          float* out = (kv ? v : k).data() + (size_t(pos) * HK + h) * D;
          if (L.bits == 16) {
            const uint16_t* x = reinterpret_cast<const uint16_t*>(row(b, pos, h, kv));
            for (int i = 0; i < D; ++i) out[i] = half_to_float(x[i]);
          } else {
            const uint16_t* prm = param(b, pos, h, kv);
            ref::kv_dequantize_head(row(b, pos, h, kv), D, L.bits, prm[0], prm[1], out);
            if (round16)
              for (int i = 0; i < D; ++i) out[i] = half_to_float(float_to_half(out[i]));
          }
        }
  }
};

struct Seq {
  int start, n;  // chunk at positions [start, start + n)
};

bool g_use_mma = false;  // run prefill_attention_mma instead of prefill_attention

struct PrefillCase {
  int D, n_heads, n_kv, bits;
  std::vector<Seq> seqs;
  int sample = 0;  // 0: check every row; else the first `sample` / 4 and last `sample` rows of each chunk
};

std::string name(const PrefillCase& c) {
  std::string s = "D" + std::to_string(c.D) + " H" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv) + " KV" +
                  std::to_string(c.bits) + " chunks";
  for (const Seq& q : c.seqs) s += " " + std::to_string(q.start) + "+" + std::to_string(q.n);
  return s;
}

// Runs prefill of `seqs` over `hc` (device pool and table given) and returns the fp16 output [tokens, H, D].
std::vector<uint16_t> run_gpu(HostCache& hc, const cuda::PagedKv& kv, const std::vector<Seq>& seqs,
                              const std::vector<uint16_t>& q, int n_heads) {
  std::vector<int32_t> cu(1, 0), starts;
  int max_n = 0;
  for (const Seq& s : seqs) cu.push_back(cu.back() + s.n), starts.push_back(s.start), max_n = std::max(max_n, s.n);
  const int D = hc.L.head_dim;
  EXPECT_EQ(size_t(cu.back()) * n_heads * D, q.size());
  DevBuf<int32_t> dcu(cu), dst(starts);
  DevBuf<uint16_t> dq(q), out(q.size());
  out.poison();
  cuda::PrefillArgs a;
  a.q = dq.p, a.cu_tokens = dcu.p, a.starts = dst.p, a.batch = int(seqs.size()), a.n_heads = n_heads;
  a.max_tokens = max_n, a.scale = 1.f / std::sqrt(float(D)), a.out = out.p;
  const size_t ws_bytes = cuda::prefill_workspace_bytes(a.batch, kv.max_pages, hc.L.n_kv_heads, D);
  DevBuf<uint8_t> ws(ws_bytes);
  CKP(cudaMemset(ws.p, 0xFF, std::max<size_t>(ws_bytes, 1)));  // stale tiles must never be read
  a.workspace = ws_bytes ? ws.p : nullptr, a.workspace_bytes = ws_bytes;
  if (g_use_mma)
    cuda::prefill_attention_mma(kv, a);
  else
    cuda::prefill_attention(kv, a);
  CKP(cudaDeviceSynchronize());
  return out.download();
}

struct Worst {
  double a = 0, b = 0;  // worst err / tol against reference A (fp16 x̂) and B (fp32 x̂)
  void merge(const Worst& o) { a = std::max(a, o.a), b = std::max(b, o.b); }
};

// Compares rows [r0, r1) of sequence b's chunk against both CPU references.
Worst check_rows(HostCache& hc, int b, const Seq& s, int r0, int r1, const uint16_t* q, const uint16_t* got,
                 int n_heads, int& bad) {
  Worst w;
  if (r0 >= r1) return w;
  const int D = hc.L.head_dim, HK = hc.L.n_kv_heads;
  const size_t rs = size_t(n_heads) * D;
  std::vector<float> qf(size_t(r1 - r0) * rs), o(qf.size());
  for (size_t i = 0; i < qf.size(); ++i) qf[i] = half_to_float(q[size_t(r0) * rs + i]);
  for (int ref_b = 0; ref_b < (hc.L.bits == 16 ? 1 : 2); ++ref_b) {
    const double rel = ref_b ? 4e-3 : 2e-3;
    std::vector<float> k, v;
    hc.dequant_all(b, s.start + r1, k, v, /*round16=*/ref_b == 0);
    cpu::attention(qf.data(), k.data(), v.data(), o.data(), r1 - r0, s.start + r0, n_heads, HK, D, int64_t(HK) * D,
                   1.f / std::sqrt(float(D)));
    double& worst = ref_b ? w.b : w.a;
    for (int t = 0; t < r1 - r0; ++t)
      for (int h = 0; h < n_heads; ++h) {
        const float* ref = &o[t * rs + size_t(h) * D];
        double rms = 0;
        for (int d = 0; d < D; ++d) rms += double(ref[d]) * ref[d];
        rms = std::sqrt(rms / D);
        for (int d = 0; d < D; ++d) {
          const float g = half_to_float(got[size_t(r0 + t) * rs + size_t(h) * D + d]);
          const double tol = rel * std::fabs(ref[d]) + rel * rms, err = std::fabs(double(g) - ref[d]);
          worst = std::max(worst, std::isfinite(g) ? err / tol : 1e30);
          if (!(err <= tol) && ++bad <= 5)
            ADD_FAILURE() << "ref " << (ref_b ? "B" : "A") << " seq " << b << " row " << r0 + t << " (pos "
                          << s.start + r0 + t << ") head " << h << " d " << d << ": got " << g << " want " << ref[d];
        }
      }
  }
  if (hc.L.bits == 16) w.b = w.a;
  return w;
}

void run_case(const PrefillCase& c, uint64_t seed) {
  SCOPED_TRACE(name(c));
  std::mt19937 rng{uint32_t(seed)};
  const KvCacheLayout L{c.bits, c.n_kv, c.D};
  std::vector<int> lengths;
  int total = 0;
  for (const Seq& s : c.seqs) lengths.push_back(s.start + s.n), total += s.n;
  HostCache hc(L, lengths, rng);
  std::vector<uint16_t> q(size_t(total) * c.n_heads * c.D);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& x : q) x = float_to_half(nd(rng));
  DevBuf<uint8_t> pool(hc.pool);
  DevBuf<int32_t> table(hc.table);
  const cuda::PagedKv kv{L, pool.p, table.p, hc.max_pages};
  const std::vector<uint16_t> got = run_gpu(hc, kv, c.seqs, q, c.n_heads);
  Worst worst;
  int bad = 0;
  const size_t rs = size_t(c.n_heads) * c.D;
  for (int b = 0, off = 0; b < int(c.seqs.size()); off += c.seqs[b].n, ++b) {
    const Seq& s = c.seqs[b];
    const uint16_t* qb = q.data() + size_t(off) * rs;
    const uint16_t* gb = got.data() + size_t(off) * rs;
    if (c.sample == 0 || s.n <= c.sample + c.sample / 4) {
      worst.merge(check_rows(hc, b, s, 0, s.n, qb, gb, c.n_heads, bad));
    } else {
      worst.merge(check_rows(hc, b, s, 0, c.sample / 4, qb, gb, c.n_heads, bad));
      worst.merge(check_rows(hc, b, s, s.n - c.sample, s.n, qb, gb, c.n_heads, bad));
    }
  }
  // Rows not checked against the CPU must still have been written (no NaN left from the poison).
  int nonfinite = 0;
  for (uint16_t x : got) nonfinite += !std::isfinite(half_to_float(x));
  EXPECT_EQ(nonfinite, 0);
  EXPECT_EQ(bad, 0);
  std::printf("  %-70s worst err / tol: A %.3f, B %.3f\n", name(c).c_str(), worst.a, worst.b);
}

TEST(Prefill, Llama3ShapeRagged) {
  for (int bits : {4, 8, 16})
    run_case({128, 32, 8, bits, {{0, 1}, {0, 17}, {64, 128}, {5, 1000}, {2000, 300}, {63, 65}}}, 10 + bits);
}

TEST(Prefill, GqaRatiosAndHeadDims) {
  const std::vector<Seq> ragged = {{0, 33}, {100, 257}, {0, 700}, {1500, 64}, {7, 1}};
  for (int bits : {4, 8, 16}) {
    run_case({128, 4, 4, bits, ragged}, 20 + bits);   // G = 1
    run_case({64, 9, 3, bits, ragged}, 30 + bits);    // G = 3 (SmolLM2)
    run_case({64, 8, 2, bits, ragged}, 40 + bits);    // G = 4, D = 64
    run_case({128, 16, 2, bits, ragged}, 50 + bits);  // G = 8
    run_case({128, 24, 8, bits, ragged}, 55 + bits);  // G = 3, D = 128 (126 of 128 rows used)
  }
}

TEST(Prefill, LongChunks) {
  run_case({128, 8, 2, 4, {{0, 4096}}}, 60);                  // 4096 one shot, every row
  run_case({64, 2, 2, 8, {{0, 4096}}}, 61);                   // G = 1
  run_case({128, 8, 1, 4, {{0, 8192}}, 128}, 62);             // 8192, G = 8, sampled rows
  run_case({64, 9, 3, 16, {{0, 8192}}, 128}, 63);             // 8192, G = 3, fp16 cache
  run_case({128, 32, 8, 4, {{4096, 4096}, {0, 1000}}, 64}, 64);  // a long chunk after 4096 cached positions
}

// The same prompt in one shot and in chunks (separate calls, and the chunks as one ragged batch sharing the pages)
// must give identical bits: each row's result depends only on its position and the stored x̂.
void run_chunked(int D, int H, int HK, int bits, int len, const std::vector<int>& cuts, uint64_t seed) {
  SCOPED_TRACE("chunked D" + std::to_string(D) + " KV" + std::to_string(bits));
  std::mt19937 rng{uint32_t(seed)};
  const KvCacheLayout L{bits, HK, D};
  HostCache hc(L, {len}, rng);
  std::vector<uint16_t> q(size_t(len) * H * D);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& x : q) x = float_to_half(nd(rng));
  DevBuf<uint8_t> pool(hc.pool);
  DevBuf<int32_t> table(hc.table);
  const cuda::PagedKv kv{L, pool.p, table.p, hc.max_pages};
  const std::vector<uint16_t> one = run_gpu(hc, kv, {{0, len}}, q, H);
  int bad = 0;
  const Worst worst = check_rows(hc, 0, {0, len}, 0, len, q.data(), one.data(), H, bad);
  EXPECT_EQ(bad, 0);
  std::vector<Seq> chunks;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) chunks.push_back({cuts[i], cuts[i + 1] - cuts[i]});
  const size_t rs = size_t(H) * D;
  // Separate calls, one per chunk.
  std::vector<uint16_t> sep;
  for (const Seq& s : chunks) {
    const std::vector<uint16_t> qs(q.begin() + size_t(s.start) * rs, q.begin() + size_t(s.start + s.n) * rs);
    const std::vector<uint16_t> g = run_gpu(hc, kv, {s}, qs, H);
    sep.insert(sep.end(), g.begin(), g.end());
  }
  // All chunks as one batch: every batch entry's page-table row is the same sequence.
  std::vector<int32_t> tab;
  for (size_t i = 0; i < chunks.size(); ++i) tab.insert(tab.end(), hc.table.begin(), hc.table.end());
  DevBuf<int32_t> dtab(tab);
  const std::vector<uint16_t> bat = run_gpu(hc, {L, pool.p, dtab.p, hc.max_pages}, chunks, q, H);
  size_t diff_sep = 0, diff_bat = 0;
  for (size_t i = 0; i < one.size(); ++i) diff_sep += one[i] != sep[i], diff_bat += one[i] != bat[i];
  EXPECT_EQ(diff_sep, 0u);
  EXPECT_EQ(diff_bat, 0u);
  std::printf("  chunked D%d H%d/%d KV%d len %d, %zu chunks: one shot worst err / tol A %.3f B %.3f, differing "
              "halves: separate calls %zu, one batch %zu\n",
              D, H, HK, bits, len, chunks.size(), worst.a, worst.b, diff_sep, diff_bat);
}

TEST(Prefill, ChunkedEqualsOneShot) {
  run_chunked(128, 8, 2, 4, 3000, {0, 1000, 1017, 3000}, 70);
  run_chunked(64, 9, 3, 16, 2500, {0, 1, 640, 1333, 2500}, 71);
  run_chunked(128, 16, 2, 8, 2100, {0, 700, 1400, 2100}, 72);
  run_chunked(128, 12, 4, 16, 1500, {0, 130, 131, 900, 1500}, 73);  // G = 3, fp16 cache
}

// The mma.sync kernel at head_dim 128 (its D = 64 path runs in every test above).
TEST(Prefill, MmaSyncKernel) {
  g_use_mma = true;
  for (int bits : {4, 8, 16})
    run_case({128, 32, 8, bits, {{0, 1}, {0, 17}, {64, 128}, {5, 1000}, {2000, 300}, {63, 65}}}, 80 + bits);
  run_case({128, 8, 2, 4, {{0, 4096}}, 256}, 84);
  run_chunked(128, 8, 2, 4, 3000, {0, 1000, 1017, 3000}, 85);
  g_use_mma = false;
}

}  // namespace
