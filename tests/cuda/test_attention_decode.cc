// The paged-KV attention kernels against the CPU references (DESIGN §3):
// - rope_quantize_write: rotated q bit-exact with cpu::rope_apply, cached codes / scales / zeros bit-exact with
//   ref::kv_quantize_head (fp16 cache: fp16 of the same values), pages found through shuffled page tables;
// - decode_attention over KV4 / KV8 / fp16 caches: against cpu::attention over ref::kv_dequantize of the stored
//   cache, ragged lengths, GQA 1/3/4/8, D 64/128, outputs poisoned with NaN first.
// Decode tolerance: |out - ref| <= 2e-3 * |ref| + 2e-3 * rms(ref row of that head). The kernel rounds P * scale_v to
// fp16 for the tensor cores (FlashAttention's rounding, 2^-12 relative per weight) and the output to fp16 (2^-12).
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
#include "kernels/cpu/rope.h"
#include "qoq/cuda_attention.h"
#include "qoq/half.h"

using namespace qoq;

// Knobs of decode_attention (src/kernels/cuda/attention/decode.cu; not public API): the tests force the kernel
// variants and schedules the default shapes do not reach.
namespace qoq::cuda {
void decode_tuning(const char* knob, int value);
}
using cuda::kKvPageTokens;
using cuda::KvCacheLayout;

namespace {

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
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size()) { upload(v); }
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

// A host image of a paged cache: pages handed out in a shuffled order.
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
    pages += 3;  // a few pages nobody owns
    std::vector<int32_t> ids(pages);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(size_t(batch) * max_pages, -1);
    size_t next = 0;
    for (int b = 0; b < batch; ++b)
      for (int j = 0; j < (lengths[b] + kKvPageTokens - 1) / kKvPageTokens; ++j)
        table[size_t(b) * max_pages + j] = ids[next++];
    // Garbage everywhere first (random bytes: NaNs and infs too in the fp16 cache), real rows written later; 8 bytes
    // per step of a splitmix64 stream (a byte per mt19937 call made this the slowest part of the test).
    pool.resize(L.page_bytes() * pages);
    uint64_t x = rng();
    for (size_t i = 0; i < pool.size(); i += 8) {
      uint64_t z = (x += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull, z = (z ^ (z >> 27)) * 0x94D049BB133111EBull, z ^= z >> 31;
      std::memcpy(pool.data() + i, &z, std::min<size_t>(8, pool.size() - i));
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
  // x̂ of one stored row (the values attention must use).
  void dequant(int b, int pos, int kvh, bool v, float* out) {
    if (L.bits == 16) {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(row(b, pos, kvh, v));
      for (int i = 0; i < L.head_dim; ++i) out[i] = half_to_float(h[i]);
    } else {
      const uint16_t* prm = param(b, pos, kvh, v);
      ref::kv_dequantize_head(row(b, pos, kvh, v), L.head_dim, L.bits, prm[0], prm[1], out);
    }
  }
};

struct DecodeCase {
  int D, n_heads, n_kv, bits;
  std::vector<int> lengths;
  int splits = 0;
};

std::string name(const DecodeCase& c) {
  return "D" + std::to_string(c.D) + " H" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv) + " KV" +
         std::to_string(c.bits) + " B" + std::to_string(c.lengths.size()) + " maxL" +
         std::to_string(*std::max_element(c.lengths.begin(), c.lengths.end())) + " splits" + std::to_string(c.splits);
}

void run_decode_case(const DecodeCase& c, uint64_t seed) {
  SCOPED_TRACE(name(c));
  std::mt19937 rng{uint32_t(seed)};
  const KvCacheLayout L{c.bits, c.n_kv, c.D};
  HostCache hc(L, c.lengths, rng);
  const int B = int(c.lengths.size()), D = c.D;
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::normal_distribution<float> nd(0.f, 1.f);
  // Real rows: random codes with realistic scales / zeros, or fp16 values.
  for (int b = 0; b < B; ++b) {
    for (int pos = 0; pos < c.lengths[b]; ++pos) {
      for (int h = 0; h < c.n_kv; ++h) {
        for (int v = 0; v < 2; ++v) {
          uint8_t* r = hc.row(b, pos, h, v);
          if (c.bits == 16) {
            uint16_t* x = reinterpret_cast<uint16_t*>(r);
            for (int i = 0; i < D; ++i) x[i] = float_to_half(1.5f * nd(rng));
          } else {
            for (int i = 0; i < L.row_bytes(); i += 4) {
              const uint32_t w = rng();
              std::memcpy(r + i, &w, 4);
            }
            const float levels = float((1 << c.bits) - 1);
            uint16_t* prm = hc.param(b, pos, h, v);
            prm[0] = float_to_half((0.3f + 0.5f * u(rng)) * 4.f / levels);
            prm[1] = float_to_half(levels * (0.3f + 0.4f * u(rng)));
          }
        }
      }
    }
  }
  std::vector<uint16_t> q(size_t(B) * c.n_heads * D);
  for (auto& x : q) x = float_to_half(nd(rng));
  const int max_len = *std::max_element(c.lengths.begin(), c.lengths.end());
  DevBuf<uint8_t> pool(hc.pool);
  DevBuf<int32_t> table(hc.table), lens(std::vector<int32_t>(c.lengths.begin(), c.lengths.end()));
  DevBuf<uint16_t> dq(q), out(q.size());
  const size_t ws_bytes = cuda::decode_workspace_bytes(B, c.n_heads, c.n_kv, D);
  DevBuf<uint8_t> ws(ws_bytes);
  CKV(cudaMemset(ws.p, 0, ws_bytes));
  out.poison();
  cuda::PagedKv kv{L, pool.p, table.p, hc.max_pages};
  cuda::DecodeArgs a;
  a.q = dq.p, a.lengths = lens.p, a.batch = B, a.n_heads = c.n_heads, a.max_length = max_len;
  a.scale = 1.f / std::sqrt(float(D)), a.out = out.p, a.workspace = ws.p, a.workspace_bytes = ws_bytes;
  a.splits = c.splits;
  cuda::decode_attention(kv, a);
  CKV(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = out.download();
  // Second call: the split-K counters must have been left at zero (same result).
  out.poison();
  cuda::decode_attention(kv, a);
  CKV(cudaDeviceSynchronize());
  const std::vector<uint16_t> got2 = out.download();
  EXPECT_EQ(0, std::memcmp(got.data(), got2.data(), got.size() * 2)) << "second call differs";

  double worst = 0;
  int bad = 0;
  std::vector<float> k, v, qf(size_t(c.n_heads) * D), o(size_t(c.n_heads) * D);
  for (int b = 0; b < B; ++b) {
    const int len = c.lengths[b];
    k.resize(size_t(len) * c.n_kv * D), v.resize(k.size());
    for (int pos = 0; pos < len; ++pos)
      for (int h = 0; h < c.n_kv; ++h) {
        hc.dequant(b, pos, h, false, &k[(size_t(pos) * c.n_kv + h) * D]);
        hc.dequant(b, pos, h, true, &v[(size_t(pos) * c.n_kv + h) * D]);
      }
    for (size_t i = 0; i < qf.size(); ++i) qf[i] = half_to_float(q[size_t(b) * c.n_heads * D + i]);
    cpu::attention(qf.data(), k.data(), v.data(), o.data(), 1, len - 1, c.n_heads, c.n_kv, D, int64_t(c.n_kv) * D,
                   a.scale);
    for (int h = 0; h < c.n_heads; ++h) {
      double rms = 0;
      for (int d = 0; d < D; ++d) rms += double(o[h * D + d]) * o[h * D + d];
      rms = std::sqrt(rms / D);
      for (int d = 0; d < D; ++d) {
        const float r = o[h * D + d];
        const float g = half_to_float(got[(size_t(b) * c.n_heads + h) * D + d]);
        const double tol = 2e-3 * std::fabs(r) + 2e-3 * rms;
        const double err = std::fabs(double(g) - r);
        worst = std::max(worst, std::isfinite(g) ? err / tol : 1e30);
        if (!(err <= tol) && ++bad <= 5)
          ADD_FAILURE() << "b " << b << " len " << len << " head " << h << " d " << d << ": got " << g << " want " << r;
      }
    }
  }
  EXPECT_EQ(bad, 0);
  std::printf("  %-45s worst err / tol = %.3f\n", name(c).c_str(), worst);
}

std::vector<int> ragged(int B, int max_len, std::mt19937& rng) {
  std::vector<int> l(B);
  std::uniform_int_distribution<int> d(1, max_len);
  for (auto& x : l) x = d(rng);
  l[0] = max_len;
  if (B > 2) l[1] = 1;
  if (B > 3) l[2] = 33;
  return l;
}

TEST(Decode, Llama3Shape) {
  std::mt19937 rng(1);
  for (int bits : {4, 8, 16}) {
    run_decode_case({128, 32, 8, bits, {32768}}, 10 + bits);
    run_decode_case({128, 32, 8, bits, ragged(7, 5000, rng)}, 20 + bits);
    run_decode_case({128, 32, 8, bits, ragged(64, 2048, rng)}, 30 + bits);
    run_decode_case({128, 32, 8, bits, ragged(256, 1536, rng)}, 40 + bits);
  }
}

TEST(Decode, GqaRatiosAndHeadDims) {
  std::mt19937 rng(2);
  for (int bits : {4, 8, 16}) {
    run_decode_case({64, 9, 3, bits, ragged(7, 3000, rng)}, 50 + bits);  // SmolLM2: G = 3, D = 64
    run_decode_case({64, 9, 3, bits, ragged(64, 700, rng)}, 60 + bits);
    run_decode_case({128, 8, 8, bits, ragged(7, 2000, rng)}, 70 + bits);   // G = 1
    run_decode_case({128, 32, 4, bits, ragged(7, 2000, rng)}, 80 + bits);  // G = 8
    run_decode_case({64, 16, 2, bits, ragged(1, 32768, rng)}, 90 + bits);  // G = 8, D = 64, long
  }
  run_decode_case({64, 9, 3, 4, ragged(256, 300, rng)}, 100);
}

TEST(Decode, ForcedSplits) {
  std::mt19937 rng(3);
  for (int splits : {1, 2, 3, 7, 64})
    for (int bits : {4, 16}) run_decode_case({128, 32, 8, bits, ragged(3, 4000, rng), splits}, 200 + splits + bits);
}

// The other schedules and kernels behind the knobs: the kernel variants (page or 32-token blocks, ring depth / CTAs
// per SM, subnormal or biased operands, without the shift trick and the lazy rescale), a split tail of a large batch
// (whole pairs, then pieces), other piece granularities, with and without programmatic dependent launch, and v2, on
// ragged batches whose pieces may be empty.
TEST(Decode, Schedules) {
  std::mt19937 rng(4);
  struct Knobs {
    int version, variant, tail, tail_pieces, round, pdl;
  };
  for (const Knobs k :
       {Knobs{6, 1, 1, 0, 0, 0}, Knobs{6, 2, 300, 3, 32, 1}, Knobs{6, 3, 1, 0, 128, 0}, Knobs{6, 4, 1, 0, 0, 1},
        Knobs{6, 0, 700, 2, 64, 0}, Knobs{6, 1, 1, 0, 192, 1}, Knobs{6, 0, 0, 0, 0, 0}, Knobs{2, -1, 1, 0, 0, 0}}) {
    SCOPED_TRACE("version " + std::to_string(k.version) + " variant " + std::to_string(k.variant) + " tail " +
                 std::to_string(k.tail) + "x" + std::to_string(k.tail_pieces) + " round " + std::to_string(k.round) +
                 " pdl " + std::to_string(k.pdl));
    cuda::decode_tuning("version", k.version);
    cuda::decode_tuning("variant", k.variant);
    cuda::decode_tuning("tail", k.tail);
    cuda::decode_tuning("tail_pieces", k.tail_pieces);
    cuda::decode_tuning("round", k.round);
    cuda::decode_tuning("pdl", k.pdl);
    for (int bits : {4, 8}) {
      run_decode_case({128, 32, 8, bits, ragged(100, 1500, rng)}, 600 + bits);  // 800 pairs
      run_decode_case({64, 9, 3, bits, ragged(7, 9000, rng)}, 610 + bits);
      run_decode_case({128, 32, 8, bits, ragged(1, 20000, rng)}, 620 + bits);
    }
  }
  cuda::decode_tuning("version", 6);
  cuda::decode_tuning("variant", -1);
  cuda::decode_tuning("tail", 0);
  cuda::decode_tuning("tail_pieces", 0);
  cuda::decode_tuning("round", 0);
  cuda::decode_tuning("pdl", 1);
}

// ---- RoPE + quantization + paged write.

void run_rope_case(int D, int n_heads, int n_kv, int bits, const ModelConfig& cfg, const std::vector<int>& lengths,
                   uint64_t seed) {
  SCOPED_TRACE("rope D" + std::to_string(D) + " KV" + std::to_string(bits));
  std::mt19937 rng{uint32_t(seed)};
  const KvCacheLayout L{bits, n_kv, D};
  HostCache hc(L, lengths, rng);
  std::vector<int32_t> seq, pos;
  for (int b = 0; b < int(lengths.size()); ++b)
    for (int p = 0; p < lengths[b]; ++p) seq.push_back(b), pos.push_back(p);
  // Tokens in a shuffled order: the kernel must not depend on it.
  std::vector<int> order(seq.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> s2(seq.size()), p2(seq.size());
  for (size_t i = 0; i < order.size(); ++i) s2[i] = seq[order[i]], p2[i] = pos[order[i]];
  const int T = int(seq.size()), W = (n_heads + 2 * n_kv) * D;
  std::vector<uint16_t> qkv(size_t(T) * W);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = float_to_half(nd(rng) * ((i % D) % 37 == 3 ? 8.f : 1.f));
  for (int i = 0; i < W; ++i) qkv[size_t(T - 1) * W + i] = float_to_half(0.25f);  // a constant row: mx == mn
  const std::vector<float> inv = cpu::rope_inv_freq(cfg);
  DevBuf<uint8_t> pool(hc.pool);
  DevBuf<int32_t> table(hc.table), ds(s2), dp(p2);
  DevBuf<uint16_t> dx(qkv), qo(size_t(T) * n_heads * D);
  DevBuf<float> dinv(inv);
  qo.poison();
  cuda::rope_quantize_write(dx.p, ds.p, dp.p, T, n_heads, dinv.p, cuda::PagedKv{L, pool.p, table.p, hc.max_pages},
                            qo.p);
  CKV(cudaDeviceSynchronize());
  const std::vector<uint16_t> gq = qo.download();
  const std::vector<uint8_t> gpool = pool.download();
  hc.pool = gpool;  // read back through the same host page map
  int bad = 0;
  std::vector<float> x(W);
  std::vector<uint8_t> codes(L.row_bytes());
  for (int i = 0; i < T; ++i) {
    for (int c = 0; c < W; ++c) x[c] = half_to_float(qkv[size_t(i) * W + c]);
    cpu::rope_apply(x.data(), 1, n_heads + n_kv, D, p2[i], inv.data());  // q heads and k heads
    for (int c = 0; c < n_heads * D; ++c)
      if (gq[size_t(i) * n_heads * D + c] != float_to_half(x[c]) && ++bad <= 5)
        ADD_FAILURE() << "q token " << i << " channel " << c;
    for (int h = 0; h < n_kv; ++h) {
      for (int v = 0; v < 2; ++v) {
        const float* src = x.data() + size_t(n_heads + (v ? n_kv : 0) + h) * D;
        const uint8_t* row = hc.row(s2[i], p2[i], h, v);
        if (bits == 16) {
          const uint16_t* hrow = reinterpret_cast<const uint16_t*>(row);
          for (int d = 0; d < D; ++d)
            if (hrow[d] != float_to_half(src[d]) && ++bad <= 5) ADD_FAILURE() << "fp16 row token " << i << " d " << d;
          continue;
        }
        uint16_t s, z;
        ref::kv_quantize_head(src, D, bits, codes.data(), &s, &z);
        const uint16_t* prm = hc.param(s2[i], p2[i], h, v);
        if ((prm[0] != s || prm[1] != z || std::memcmp(codes.data(), row, codes.size()) != 0) && ++bad <= 5)
          ADD_FAILURE() << "token " << i << " kv head " << h << (v ? " V" : " K") << ": scale " << prm[0] << " vs " << s
                        << ", zero " << prm[1] << " vs " << z;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(RopeKvWrite, BitExact) {
  ModelConfig llama3;
  llama3.head_dim = 128, llama3.rope_theta = 500000.f;
  llama3.rope_scaling.type = RopeScaling::Type::Llama3;
  llama3.rope_scaling.factor = 8.f, llama3.rope_scaling.low_freq_factor = 1.f;
  llama3.rope_scaling.high_freq_factor = 4.f, llama3.rope_scaling.original_max_position_embeddings = 8192;
  ModelConfig smol;
  smol.head_dim = 64, smol.rope_theta = 100000.f;
  ModelConfig linear = smol;
  linear.rope_scaling.type = RopeScaling::Type::Linear, linear.rope_scaling.factor = 4.f;
  for (int bits : {4, 8, 16}) {
    run_rope_case(128, 32, 8, bits, llama3, {700, 1, 130, 9000}, 300 + bits);
    run_rope_case(64, 9, 3, bits, smol, {300, 77}, 400 + bits);
    run_rope_case(64, 9, 3, bits, linear, {5, 200}, 500 + bits);
  }
}

// Writer then reader: the current token's K/V go through the cache like every other (DESIGN §3).
TEST(RopeKvWrite, ThenDecode) {
  std::mt19937 rng(7);
  const int D = 128, H = 32, HK = 8, W = (H + 2 * HK) * D;
  const std::vector<int> lengths = {1000, 1, 77};
  ModelConfig cfg;
  cfg.head_dim = D, cfg.rope_theta = 500000.f;
  const std::vector<float> inv = cpu::rope_inv_freq(cfg);
  for (int bits : {4, 8}) {
    const KvCacheLayout L{bits, HK, D};
    HostCache hc(L, lengths, rng);
    std::vector<int32_t> seq, pos;
    for (int b = 0; b < 3; ++b)
      for (int p = 0; p < lengths[b]; ++p) seq.push_back(b), pos.push_back(p);
    const int T = int(seq.size());
    std::vector<uint16_t> qkv(size_t(T) * W);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& e : qkv) e = float_to_half(nd(rng));
    DevBuf<uint8_t> pool(hc.pool);
    DevBuf<int32_t> table(hc.table), ds(seq), dp(pos), lens(std::vector<int32_t>(lengths.begin(), lengths.end()));
    DevBuf<uint16_t> dx(qkv), qo(size_t(T) * H * D), qlast(size_t(3) * H * D), out(size_t(3) * H * D);
    DevBuf<float> dinv(inv);
    cuda::PagedKv kv{L, pool.p, table.p, hc.max_pages};
    cuda::rope_quantize_write(dx.p, ds.p, dp.p, T, H, dinv.p, kv, qo.p);
    std::vector<int> last(3);
    for (int b = 0, acc = 0; b < 3; ++b) acc += lengths[b], last[b] = acc - 1;
    for (int b = 0; b < 3; ++b)
      CKV(cudaMemcpy(qlast.p + size_t(b) * H * D, qo.p + size_t(last[b]) * H * D, H * D * 2, cudaMemcpyDeviceToDevice));
    const size_t wsb = cuda::decode_workspace_bytes(3, H, HK, D);
    DevBuf<uint8_t> ws(wsb);
    CKV(cudaMemset(ws.p, 0, wsb));
    out.poison();
    cuda::DecodeArgs a;
    a.q = qlast.p, a.lengths = lens.p, a.batch = 3, a.n_heads = H, a.max_length = 1000,
    a.scale = 1.f / std::sqrt(128.f);
    a.out = out.p, a.workspace = ws.p, a.workspace_bytes = wsb;
    cuda::decode_attention(kv, a);
    CKV(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = out.download();
    // CPU: rope in fp32, fake-quantize K/V (x̂), fp32 attention.
    int bad = 0;
    for (int b = 0, t0 = 0; b < 3; t0 += lengths[b], ++b) {
      const int len = lengths[b];
      std::vector<float> k(size_t(len) * HK * D), v(k.size()), q(size_t(H) * D), o(q.size()), x(W);
      for (int p = 0; p < len; ++p) {
        for (int c = 0; c < W; ++c) x[c] = half_to_float(qkv[size_t(t0 + p) * W + c]);
        cpu::rope_apply(x.data(), 1, H + HK, D, p, inv.data());
        ref::kv_fake_quant(x.data() + H * D, 2 * HK, D, bits);
        std::copy(x.begin() + H * D, x.begin() + (H + HK) * D, k.begin() + size_t(p) * HK * D);
        std::copy(x.begin() + (H + HK) * D, x.end(), v.begin() + size_t(p) * HK * D);
        if (p == len - 1)
          for (int c = 0; c < H * D; ++c) q[c] = half_to_float(float_to_half(x[c]));
      }
      cpu::attention(q.data(), k.data(), v.data(), o.data(), 1, len - 1, H, HK, D, HK * D, a.scale);
      for (int h = 0; h < H; ++h) {
        double rms = 0;
        for (int d = 0; d < D; ++d) rms += double(o[h * D + d]) * o[h * D + d];
        rms = std::sqrt(rms / D);
        for (int d = 0; d < D; ++d) {
          const float g = half_to_float(got[(size_t(b) * H + h) * D + d]), r = o[h * D + d];
          if (!(std::fabs(g - r) <= 2e-3 * std::fabs(r) + 2e-3 * rms) && ++bad <= 5)
            ADD_FAILURE() << "KV" << bits << " b " << b << " h " << h << " d " << d << ": " << g << " vs " << r;
        }
      }
    }
    EXPECT_EQ(bad, 0);
  }
}

}  // namespace
