// Host dispatch of decode attention (split choice, workspace carving) and the simple baseline kernel.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "kernels/cuda/attention/decode_tma.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace qoq::cuda {
namespace {

using attn::kMaxGroup;
using attn::kMaxSlots;

constexpr size_t kCounterBytes = 64 * 1024;  // up to 16384 (sequence, KV head) counters

void check_args(const PagedKv& c, const DecodeArgs& a) {
  const KvCacheLayout& L = c.layout;
  QOQ_CUDA_REQUIRE(L.bits == 4 || L.bits == 8 || L.bits == 16, "decode_attention: bits must be 4, 8 or 16");
  QOQ_CUDA_REQUIRE(L.head_dim == 64 || L.head_dim == 128, "decode_attention: head_dim must be 64 or 128");
  QOQ_CUDA_REQUIRE(L.n_kv_heads > 0 && a.n_heads % L.n_kv_heads == 0 && a.n_heads / L.n_kv_heads <= kMaxGroup,
                   "decode_attention: n_heads must be a multiple of n_kv_heads, at most 8 per KV head");
  QOQ_CUDA_REQUIRE(a.batch >= 0 && a.max_length >= 0, "decode_attention: negative batch or length");
}

}  // namespace

// Partials the workspace holds: enough for ~3 CTAs per SM of small batches and 4 splits of large ones.
static int partial_slots(int batch, int n_kv_heads) { return std::max(kMaxSlots, 4 * batch * n_kv_heads); }

size_t decode_workspace_bytes(int batch, int n_heads, int n_kv_heads, int head_dim) {
  const int G = n_heads / std::max(n_kv_heads, 1);
  return kCounterBytes + size_t(partial_slots(batch, n_kv_heads)) * G * (head_dim + 2) * sizeof(float);
}

namespace {

// Knobs of the benchmark and the tests (decode_tuning, declared there; not public API): the kernel for KV4 / KV8
// (6: decode_tma.cuh, 2: v2 of bench/NOTES_attention.md, kept for side-by-side runs), its variant, the tail split of
// large batches, the pieces' granularity, programmatic dependent launch.
struct Tuning {
  int version = 6;
  int variant = -1;  // decode_tma.cuh: tma_dispatch_d; -1: by shape (decode_v6)
  int tail = 0;      // 1: split the last (pairs mod resident CTAs) pairs; 0: none; > 1: that many pairs
  int tail_pieces = 0;
  int round = 0;  // pieces' token granularity (a multiple of the kernel's block; 0: a block for each warp)
  int pdl = 1;    // safe with any predecessor (the kernel waits for it first); overlaps its launch with their tails
  unsigned long long* trace = nullptr;  // decode_trace
};
Tuning g_tuning;

void carve_workspace(const DecodeArgs& a, int slots, int G, attn::DecodeParams& p) {
  char* ws = static_cast<char*>(a.workspace);
  p.counters = reinterpret_cast<int*>(ws);
  p.ws_m = reinterpret_cast<float*>(ws + kCounterBytes);
  p.ws_l = p.ws_m + size_t(slots) * G;
  p.ws_o = p.ws_l + size_t(slots) * G;
}

// The fields every decode kernel reads, whatever its schedule.
void set_common(const PagedKv& cache, const DecodeArgs& a, attn::DecodeParams& p) {
  p.pool = cache.pool;
  p.page_table = cache.page_table;
  p.max_pages = cache.max_pages;
  p.n_kv_heads = cache.layout.n_kv_heads;
  p.group = a.n_heads / cache.layout.n_kv_heads;
  p.q = a.q;
  p.lengths = a.lengths;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.out = a.out;
}

// CTAs per SM of a kernel variant (occupancy API on first use).
int tma_ctas_per_sm(int bits, int D, int var) {
  static int per_sm[2][2][attn::kTmaVariants] = {};  // [KV8][D == 128][variant]
  int& n = per_sm[bits == 8][D == 128][var];
  if (n == 0) n = bits == 4 ? attn::decode_tma_ctas_per_sm<4>(D, var) : attn::decode_tma_ctas_per_sm<8>(D, var);
  return n;
}

// KV4 / KV8: one CTA per work item (decode_combine.cuh). Large batches: whole pairs (the hardware schedules them; a
// partial last wave of pairs may be cut into pieces); small batches: every pair cut into ~resident CTAs / pairs
// pieces (the kernel is bound by the blocks each SM runs, so the pieces fill every CTA slot once), combined by a
// second kernel.
void decode_v6(const PagedKv& cache, const DecodeArgs& a, cudaStream_t stream) {
  const int hkv = cache.layout.n_kv_heads, G = a.n_heads / hkv, D = cache.layout.head_dim, bits = cache.layout.bits;
  const int pairs = a.batch * hkv;
  int var = std::min(g_tuning.variant, attn::kTmaVariants - 1);
  if (var < 0) {
    // Page blocks (variant 0, 3 CTAs per SM) unless the pairs fill one wave of the 4-CTA kernel (variant 2) but not
    // of variant 0: B=64/L=1536 (512 pairs) 34.3 us against 39.0 (NOTES_decode.md, v7 round 8).
    const int n0 = sm_count() * tma_ctas_per_sm(bits, D, 0), n2 = sm_count() * tma_ctas_per_sm(bits, D, 2);
    var = pairs > n0 && pairs <= n2 && a.splits <= 0 ? 2 : 0;
  }
  const int resident = sm_count() * tma_ctas_per_sm(bits, D, var);
  const int slots = partial_slots(a.batch, hkv);
  int whole = 0, pieces = 1;
  if (a.splits > 0) {
    pieces = a.splits;
  } else if (pairs >= resident) {
    int tail = pairs % resident;
    if (g_tuning.tail > 1) tail = std::min(g_tuning.tail, pairs);
    pieces = tail > 0 && g_tuning.tail ? resident / tail : 1;
    if (g_tuning.tail_pieces > 0) pieces = g_tuning.tail_pieces;
    whole = pairs - tail;
  } else {
    // Sweeps (NOTES_decode.md, round 4): B=1 is bound by the blocks each SM runs, and each piece adds to the last
    // CTA's combine: L=32768 32 pieces 19.2 us, 64 pieces 22.4, 16 21.9; L=16384 32: 14.2, 64: 17.7; L=4096 16
    // (256-token pieces) 8.9, 32: 10.3; B=16: 4 pieces (4 CTAs/SM) 155, 8: 158, 16: 161.
    pieces = std::min(resident / pairs, 32);
    pieces = std::min(pieces, std::max(1, a.max_length / 256));
  }
  // Pieces of at least 128 tokens, a multiple of `round` (default: whole blocks for each warp; pieces start on a
  // block), at most 64 (the combine loads at most 4 pieces' m and l per thread).
  const int tok = bits == 4 ? attn::tma_block_tokens<4>(var) : attn::tma_block_tokens<8>(var);
  const int rnd = g_tuning.round > 0 ? (g_tuning.round + tok - 1) / tok * tok : attn::kDecodeWarps * tok;
  pieces = std::max(1, std::min({pieces, 64, (a.max_length + 127) / 128, slots / std::max(pairs - whole, 1)}));
  int chunk = (a.max_length + pieces - 1) / pieces;
  chunk = std::max(128, (chunk + rnd - 1) / rnd * rnd);
  pieces = (a.max_length + chunk - 1) / chunk;
  if (pieces == 1) whole = pairs;
  attn::DecodeParams p{};
  if (whole < pairs) {
    QOQ_CUDA_REQUIRE(size_t(pairs) * 4 <= kCounterBytes, "decode_attention: too many pairs for the split counters");
    QOQ_CUDA_REQUIRE(a.workspace && a.workspace_bytes >= decode_workspace_bytes(a.batch, a.n_heads, hkv, D),
                     "decode_attention: workspace missing or too small");
    carve_workspace(a, slots, G, p);
  }
  set_common(cache, a, p);
  p.chunk = chunk;
  p.whole = whole;
  p.pieces = pieces;
  p.n_items = whole + (pairs - whole) * pieces;
  p.pdl = g_tuning.pdl;
  p.trace = g_tuning.trace;
  if (bits == 4)
    attn::launch_decode_tma<4>(D, var, p, p.n_items, stream);
  else
    attn::launch_decode_tma<8>(D, var, p, p.n_items, stream);
  QOQ_CUDA_CHECK_LAUNCH();
  if (whole < pairs) {
    // The split pairs' partials: combined by a programmatic dependent (its launch overlaps the decode kernel's tail).
    p.combine_tpe = 1;
    while (p.combine_tpe < 32 && 8 * p.combine_tpe < pieces) p.combine_tpe *= 2;
    const int outs = attn::kDecodeWarps * 32 / p.combine_tpe;
    const dim3 grid(pairs - whole, (G * D + outs - 1) / outs);
    const dim3 block(attn::kDecodeWarps * 32);
    if (D == 64)
      launch_ex(attn::decode_combine_kernel<64>, grid, block, 0, stream, true, p);
    else
      launch_ex(attn::decode_combine_kernel<128>, grid, block, 0, stream, true, p);
    QOQ_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void decode_tuning(const char* knob, int value) {
  const std::string k = knob;
  if (k == "version") g_tuning.version = value;
  if (k == "variant") g_tuning.variant = value;  // (-1: by shape)
  if (k == "tail") g_tuning.tail = value;
  if (k == "tail_pieces") g_tuning.tail_pieces = value;
  if (k == "round" && value >= 0 && value % 16 == 0) g_tuning.round = value;
  if (k == "pdl") g_tuning.pdl = value;
}

// Diagnostics of the KV4 / KV8 kernel (bench_attention --trace): per CTA attn::kTraceStamps stamps into `buf`
// (device memory, at least 8 per work item), nullptr turns it off.
void decode_trace(unsigned long long* buf) { g_tuning.trace = buf; }

void decode_attention(const PagedKv& cache, const DecodeArgs& a, AttnStream stream) {
  check_args(cache, a);
  if (a.batch == 0 || a.max_length == 0) return;
  if (cache.layout.bits != 16 && g_tuning.version != 2) return decode_v6(cache, a, stream);
  const int hkv = cache.layout.n_kv_heads, G = a.n_heads / hkv, D = cache.layout.head_dim;
  const int pairs = a.batch * hkv;
  // Splits (device sweeps, bench/NOTES_attention.md): only when the pairs alone leave SMs empty, and then about one
  // CTA per SM (at least 4 splits): B=1, L=16K-32K: 16 splits beat 32 by 5-15% and 48 by 40% (each split adds a
  // partial to the last CTA's combine); B=16: 4 and 8 equal; B >= 64: any split was slower (B=256, L=1536: 1 split
  // 142 us, 2 splits 183 us).
  int splits = a.splits;
  if (splits <= 0) {
    const int sms = sm_count();
    splits = pairs >= sms ? 1 : std::min(std::max((sms + pairs - 1) / pairs, 4), (a.max_length + 255) / 256);
    splits = std::max(1, std::min({splits, partial_slots(a.batch, hkv) / pairs, 256}));
  }
  int chunk = (a.max_length + splits - 1) / splits;
  // Whole pages, and whole 32-token blocks for each of the 4 warps (B=1, L=32K: 17 splits of 1984 tokens left warps
  // uneven: 28.0 us; 16 splits of 2048: 24.7 us).
  chunk = (chunk + 127) / 128 * 128;
  splits = (a.max_length + chunk - 1) / chunk;
  attn::DecodeParams p{};
  if (splits > 1) {
    const int slots = partial_slots(a.batch, hkv);
    QOQ_CUDA_REQUIRE(size_t(pairs) * splits <= size_t(slots) && splits <= 256 && size_t(pairs) * 4 <= kCounterBytes,
                     "decode_attention: too many splits for the workspace");
    QOQ_CUDA_REQUIRE(a.workspace && a.workspace_bytes >= decode_workspace_bytes(a.batch, a.n_heads, hkv, D),
                     "decode_attention: workspace missing or too small");
    carve_workspace(a, slots, G, p);
  }
  set_common(cache, a, p);
  p.chunk = chunk;
  p.splits = splits;
  const dim3 grid(hkv, a.batch, splits);
  switch (cache.layout.bits) {
    case 4:
      attn::launch_decode<4>(D, p, grid, stream);
      break;
    case 8:
      attn::launch_decode<8>(D, p, grid, stream);
      break;
    default:
      attn::launch_decode<16>(D, p, grid, stream);
      break;
  }
  QOQ_CUDA_CHECK_LAUNCH();
}

// ---- The simple baseline: CTA per (sequence, query head), warp per token, fp32 dequantization per channel.

namespace {

template <int D, int BITS>
__global__ void __launch_bounds__(128) decode_simple_kernel(attn::DecodeParams p, int n_heads) {
  constexpr int R = D * BITS / 8, C = D / 32;  // channels per lane
  constexpr size_t kBlock = attn::Fmt<D, BITS>::kBlock;
  const int h = blockIdx.x, b = blockIdx.y, kvh = h / p.group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int len = p.lengths[b];
  float q[C], o[C] = {};
  for (int c = 0; c < C; ++c) q[c] = __half2float(__ushort_as_half(p.q[(size_t(b) * n_heads + h) * D + lane * C + c]));
  float m = -INFINITY, l = 0.f;
  for (int tok = warp; tok < len; tok += 4) {
    const uint8_t* base =
        p.pool + (size_t(p.page_table[size_t(b) * p.max_pages + tok / kKvPageTokens]) * p.n_kv_heads + kvh) * kBlock;
    const int row = tok % kKvPageTokens;
    float k[C], v[C];
    for (int c = 0; c < C; ++c) {
      const int ch = lane * C + c;
      if constexpr (BITS == 16) {
        k[c] = __half2float(reinterpret_cast<const __half*>(base + row * R)[ch]);
        v[c] = __half2float(reinterpret_cast<const __half*>(base + kKvPageTokens * R + row * R)[ch]);
      } else {
        const __half2* prm = reinterpret_cast<const __half2*>(base + 2 * kKvPageTokens * R);
        const float2 ksz = __half22float2(prm[row]), vsz = __half22float2(prm[kKvPageTokens + row]);
        int kc, vc;
        if constexpr (BITS == 4) {
          kc = (base[row * R + ch / 2] >> (4 * (ch & 1))) & 15;
          vc = (base[kKvPageTokens * R + row * R + ch / 2] >> (4 * (ch & 1))) & 15;
        } else {
          kc = base[row * R + ch];
          vc = base[kKvPageTokens * R + row * R + ch];
        }
        k[c] = ksz.x * (float(kc) - ksz.y);
        v[c] = vsz.x * (float(vc) - vsz.y);
      }
    }
    float s = 0.f;
    for (int c = 0; c < C; ++c) s += q[c] * k[c];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    s *= p.scale_log2;
    const float m_new = fmaxf(m, s), alpha = exp2f(m - m_new), pe = exp2f(s - m_new);
    l = l * alpha + pe;
    for (int c = 0; c < C; ++c) o[c] = o[c] * alpha + pe * v[c];
    m = m_new;
  }
  __shared__ float sm_o[4][D], sm_m[4], sm_l[4];
  for (int c = 0; c < C; ++c) sm_o[warp][lane * C + c] = o[c];
  if (lane == 0) sm_m[warp] = m, sm_l[warp] = l;
  __syncthreads();
  if (threadIdx.x < D) {
    float M = -INFINITY;
    for (int w = 0; w < 4; ++w) M = fmaxf(M, sm_m[w]);
    float L = 0.f, O = 0.f;
    for (int w = 0; w < 4; ++w) {
      const float f = sm_m[w] == -INFINITY ? 0.f : exp2f(sm_m[w] - M);
      L += sm_l[w] * f;
      O += sm_o[w][threadIdx.x] * f;
    }
    p.out[(size_t(b) * n_heads + h) * D + threadIdx.x] = __half_as_ushort(__float2half_rn(O / L));
  }
}

template <int BITS>
void launch_simple(int D, const attn::DecodeParams& p, int n_heads, dim3 grid, cudaStream_t s) {
  if (D == 64)
    decode_simple_kernel<64, BITS><<<grid, 128, 0, s>>>(p, n_heads);
  else
    decode_simple_kernel<128, BITS><<<grid, 128, 0, s>>>(p, n_heads);
}

}  // namespace

void decode_attention_simple(const PagedKv& cache, const DecodeArgs& a, AttnStream stream) {
  check_args(cache, a);
  if (a.batch == 0) return;
  attn::DecodeParams p{};
  set_common(cache, a, p);
  const dim3 grid(a.n_heads, a.batch);
  const int D = cache.layout.head_dim;
  switch (cache.layout.bits) {
    case 4:
      launch_simple<4>(D, p, a.n_heads, grid, stream);
      break;
    case 8:
      launch_simple<8>(D, p, a.n_heads, grid, stream);
      break;
    default:
      launch_simple<16>(D, p, a.n_heads, grid, stream);
      break;
  }
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda
