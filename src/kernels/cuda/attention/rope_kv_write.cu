// Fused RoPE (rotate-half) + KV quantization + paged cache write, reading the qkv GEMM output. One CTA per token:
// the token's cos/sin table once in shared memory, then one warp per head. The fp32 operations are those of
// cpu::rope_apply and ref::kv_quantize_head, each rounded once (explicit _rn intrinsics: no FMA contraction).
#include <cuda_fp16.h>

#include "kernels/cuda/check.h"
#include "qoq/cuda_attention.h"

namespace qoq::cuda {
namespace {

constexpr int kWarps = 4;

__device__ __forceinline__ uint16_t half_sat(float x) {
  return __half_as_ushort(__float2half_rn(fminf(fmaxf(x, -65504.f), 65504.f)));
}

__device__ __forceinline__ float warp_min(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Quantizes x[0..D) (shared memory) as ref::kv_quantize_head and writes row `row` of the code block and its param.
template <int BITS>
__device__ void quantize_row(const float* x, int D, uint8_t* codes_block, uint8_t* param, int row, int lane) {
  constexpr int kLevels = (1 << BITS) - 1;
  float mn = INFINITY, mx = -INFINITY;
  for (int i = lane; i < D; i += 32) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
  mn = warp_min(mn), mx = warp_max(mx);
  uint16_t sb = half_sat(__fdiv_rn(__fsub_rn(mx, mn), float(kLevels)));
  uint16_t zb;
  if (mx == mn || __half2float(__ushort_as_half(sb)) == 0.f) {
    sb = __half_as_ushort(__float2half_rn(1.f));
    zb = half_sat(-mn);
  } else {
    zb = half_sat(__fdiv_rn(-mn, __half2float(__ushort_as_half(sb))));
  }
  const float scale = __half2float(__ushort_as_half(sb)), zero = __half2float(__ushort_as_half(zb));
  auto code = [&](float v) {
    const float c = rintf(__fadd_rn(__fdiv_rn(v, scale), zero));
    return uint32_t(fminf(fmaxf(c, 0.f), float(kLevels)));
  };
  const int R = D * BITS / 8;
  uint8_t* dst = codes_block + size_t(row) * R;
  for (int i = lane; i < R; i += 32) dst[i] = BITS == 8 ? code(x[i]) : code(x[2 * i]) | code(x[2 * i + 1]) << 4;
  if (lane == 0) *reinterpret_cast<uint32_t*>(param + row * 4) = uint32_t(sb) | uint32_t(zb) << 16;
}

template <int BITS>
__global__ void __launch_bounds__(kWarps * 32)
    rope_kv_kernel(const __half* __restrict__ qkv, const int32_t* seq_ids, const int32_t* positions, int n_heads,
                   const float* inv_freq, PagedKv cache, __half* q_out) {
  extern __shared__ float smem[];
  const int D = cache.layout.head_dim, half = D / 2, hkv = cache.layout.n_kv_heads;
  float* cs = smem;                        // [D/2]
  float* sn = cs + half;                   // [D/2]
  float* buf = sn + half + (threadIdx.x / 32) * D;  // this warp's [D]
  const int tok = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pos = positions[tok];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = __fmul_rn(float(pos), inv_freq[i]);
    double s, c;
    sincos(double(angle), &s, &c);
    cs[i] = float(c), sn[i] = float(s);
  }
  __syncthreads();
  const __half* row = qkv + size_t(tok) * (n_heads + 2 * hkv) * D;
  const size_t block_bytes = cache.layout.block_bytes();
  const int page = cache.page_table[size_t(seq_ids[tok]) * cache.max_pages + pos / kKvPageTokens];
  const int slot = pos % kKvPageTokens;
  const int R = cache.layout.row_bytes();
  for (int h = warp; h < n_heads + hkv; h += kWarps) {
    // Rotate head h (a query head, or KV head h - n_heads whose K sits after all query heads) into buf.
    const __half* x = row + size_t(h) * D;
    for (int i = lane; i < half; i += 32) {
      const float a = __half2float(x[i]), b = __half2float(x[i + half]);
      buf[i] = __fsub_rn(__fmul_rn(a, cs[i]), __fmul_rn(b, sn[i]));
      buf[i + half] = __fadd_rn(__fmul_rn(b, cs[i]), __fmul_rn(a, sn[i]));
    }
    __syncwarp();
    if (h < n_heads) {
      __half* dst = q_out + (size_t(tok) * n_heads + h) * D;
      for (int i = lane; i < D; i += 32) dst[i] = __float2half_rn(buf[i]);
    } else {
      const int kvh = h - n_heads;
      uint8_t* blk = cache.pool + (size_t(page) * hkv + kvh) * block_bytes;
      const __half* v = row + size_t(n_heads + hkv + kvh) * D;
      if constexpr (BITS == 16) {
        __half* kd = reinterpret_cast<__half*>(blk) + size_t(slot) * D;
        __half* vd = reinterpret_cast<__half*>(blk + kKvPageTokens * R) + size_t(slot) * D;
        for (int i = lane; i < D; i += 32) kd[i] = __float2half_rn(buf[i]), vd[i] = v[i];
      } else {
        uint8_t* params = blk + 2 * kKvPageTokens * R;
        quantize_row<BITS>(buf, D, blk, params, slot, lane);
        __syncwarp();
        for (int i = lane; i < D; i += 32) buf[i] = __half2float(v[i]);
        __syncwarp();
        quantize_row<BITS>(buf, D, blk + kKvPageTokens * R, params + kKvPageTokens * 4, slot, lane);
      }
    }
    __syncwarp();
  }
}

}  // namespace

void rope_quantize_write(const uint16_t* qkv, const int32_t* seq_ids, const int32_t* positions, int tokens,
                         int n_heads, const float* inv_freq, const PagedKv& cache, uint16_t* q_out,
                         AttnStream stream) {
  const KvCacheLayout& L = cache.layout;
  QOQ_CUDA_REQUIRE(L.bits == 4 || L.bits == 8 || L.bits == 16, "rope_quantize_write: bits must be 4, 8 or 16");
  QOQ_CUDA_REQUIRE(L.head_dim >= 32 && L.head_dim % 32 == 0 && L.n_kv_heads > 0 && n_heads > 0,
                   "rope_quantize_write: head_dim must be a multiple of 32");
  if (tokens <= 0) return;
  const size_t smem = sizeof(float) * (L.head_dim + kWarps * L.head_dim);
  const auto* x = reinterpret_cast<const __half*>(qkv);
  auto* q = reinterpret_cast<__half*>(q_out);
  switch (L.bits) {
    case 4: rope_kv_kernel<4><<<tokens, kWarps * 32, smem, stream>>>(x, seq_ids, positions, n_heads, inv_freq, cache, q); break;
    case 8: rope_kv_kernel<8><<<tokens, kWarps * 32, smem, stream>>>(x, seq_ids, positions, n_heads, inv_freq, cache, q); break;
    default: rope_kv_kernel<16><<<tokens, kWarps * 32, smem, stream>>>(x, seq_ids, positions, n_heads, inv_freq, cache, q);
  }
  QOQ_CUDA_CHECK_LAUNCH();
}

}  // namespace qoq::cuda
