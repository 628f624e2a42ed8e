// Host dispatch of prefill attention and the naive baseline kernel.
#include <cuda_fp16.h>

#include "kernels/cuda/attention/prefill_kernel.cuh"
#include "kernels/cuda/check.h"

namespace qoq::cuda {
namespace {

void check_args(const PagedKv& c, const PrefillArgs& a) {
  const KvCacheLayout& L = c.layout;
  QOQ_CUDA_REQUIRE(L.bits == 4 || L.bits == 8 || L.bits == 16, "prefill_attention: bits must be 4, 8 or 16");
  QOQ_CUDA_REQUIRE(L.head_dim == 64 || L.head_dim == 128, "prefill_attention: head_dim must be 64 or 128");
  QOQ_CUDA_REQUIRE(L.n_kv_heads > 0 && a.n_heads % L.n_kv_heads == 0 &&
                       a.n_heads / L.n_kv_heads <= attn::kPrefillRows,
                   "prefill_attention: n_heads must be a multiple of n_kv_heads, at most 128 per KV head");
  QOQ_CUDA_REQUIRE(a.batch >= 0 && a.max_tokens >= 0, "prefill_attention: negative batch or tokens");
  QOQ_CUDA_REQUIRE(a.batch <= 65535 && L.n_kv_heads <= 65535, "prefill_attention: batch or KV heads too large");
}

attn::PrefillParams make_params(const PagedKv& c, const PrefillArgs& a) {
  attn::PrefillParams p{};
  p.pool = c.pool;
  p.page_table = c.page_table;
  p.max_pages = c.max_pages;
  p.n_kv_heads = c.layout.n_kv_heads;
  p.group = a.n_heads / c.layout.n_kv_heads;
  p.n_heads = a.n_heads;
  p.tokens_per_cta = attn::kPrefillRows / p.group;
  p.q = a.q;
  p.cu_tokens = a.cu_tokens;
  p.starts = a.starts;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.out = a.out;
  return p;
}

}  // namespace

size_t prefill_workspace_bytes(int batch, int max_pages, int n_kv_heads, int head_dim) {
  return attn::prefill_wgmma_workspace_bytes(batch, max_pages, n_kv_heads, head_dim);
}

void prefill_attention(const PagedKv& cache, const PrefillArgs& a, AttnStream stream) {
  check_args(cache, a);
  if (a.batch == 0 || a.max_tokens == 0) return;
  if (attn::launch_prefill_wgmma(cache, a, stream)) return;
  prefill_attention_mma(cache, a, stream);
}

void prefill_attention_mma(const PagedKv& cache, const PrefillArgs& a, AttnStream stream) {
  check_args(cache, a);
  if (a.batch == 0 || a.max_tokens == 0) return;
  const attn::PrefillParams p = make_params(cache, a);
  const dim3 grid((a.max_tokens + p.tokens_per_cta - 1) / p.tokens_per_cta, cache.layout.n_kv_heads, a.batch);
  switch (cache.layout.bits) {
    case 4: attn::launch_prefill<4>(cache.layout.head_dim, p, grid, stream); break;
    case 8: attn::launch_prefill<8>(cache.layout.head_dim, p, grid, stream); break;
    default: attn::launch_prefill<16>(cache.layout.head_dim, p, grid, stream); break;
  }
  QOQ_CUDA_CHECK_LAUNCH();
}

// ---- The naive baseline: CTA per (token, query head), warp per key, fp32 dequantization per channel.

namespace {

template <int D, int BITS>
__global__ void __launch_bounds__(128) prefill_simple_kernel(const attn::PrefillParams p) {
  constexpr int R = D * BITS / 8, C = D / 32;  // channels per lane
  constexpr size_t kBlock = attn::PrefillFmt<D, BITS>::kBlock;
  const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
  const int tok0 = p.cu_tokens[b];
  if (t >= p.cu_tokens[b + 1] - tok0) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int len = p.starts[b] + t + 1;
  const size_t row = (size_t(tok0 + t) * p.n_heads + h) * D;
  float q[C], o[C] = {};
  for (int c = 0; c < C; ++c) q[c] = __half2float(__ushort_as_half(p.q[row + lane * C + c]));
  float m = -INFINITY, l = 0.f;
  for (int tok = warp; tok < len; tok += 4) {
    const uint8_t* base =
        p.pool + (size_t(p.page_table[size_t(b) * p.max_pages + tok / kKvPageTokens]) * p.n_kv_heads + kvh) * kBlock;
    const int r = tok % kKvPageTokens;
    float k[C], v[C];
    for (int c = 0; c < C; ++c) {
      const int ch = lane * C + c;
      if constexpr (BITS == 16) {
        k[c] = __half2float(reinterpret_cast<const __half*>(base + r * R)[ch]);
        v[c] = __half2float(reinterpret_cast<const __half*>(base + kKvPageTokens * R + r * R)[ch]);
      } else {
        const __half2* prm = reinterpret_cast<const __half2*>(base + 2 * kKvPageTokens * R);
        const float2 ksz = __half22float2(prm[r]), vsz = __half22float2(prm[kKvPageTokens + r]);
        int kc, vc;
        if constexpr (BITS == 4) {
          kc = (base[r * R + ch / 2] >> (4 * (ch & 1))) & 15;
          vc = (base[kKvPageTokens * R + r * R + ch / 2] >> (4 * (ch & 1))) & 15;
        } else {
          kc = base[r * R + ch];
          vc = base[kKvPageTokens * R + r * R + ch];
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
    p.out[row + threadIdx.x] = __half_as_ushort(__float2half_rn(O / L));
  }
}

template <int BITS>
void launch_simple(int D, const attn::PrefillParams& p, dim3 grid, cudaStream_t s) {
  if (D == 64)
    prefill_simple_kernel<64, BITS><<<grid, 128, 0, s>>>(p);
  else
    prefill_simple_kernel<128, BITS><<<grid, 128, 0, s>>>(p);
}

}  // namespace

void prefill_attention_simple(const PagedKv& cache, const PrefillArgs& a, AttnStream stream) {
  check_args(cache, a);
  if (a.batch == 0 || a.max_tokens == 0) return;
  const attn::PrefillParams p = make_params(cache, a);
  const dim3 grid(a.max_tokens, a.n_heads, a.batch);
  switch (cache.layout.bits) {
    case 4: launch_simple<4>(cache.layout.head_dim, p, grid, stream); break;
    case 8: launch_simple<8>(cache.layout.head_dim, p, grid, stream); break;
    default: launch_simple<16>(cache.layout.head_dim, p, grid, stream); break;
  }
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda
