// Prefill attention over the paged KV cache (docs/kv_cache.md), one template for KV4 / KV8 / fp16 and D 64 / 128.
//
// CTA = (query tile, KV head, sequence), 4 warps, 128 rows. A row is one (token, query head) pair of the KV head's
// group: row r -> token t0 + r / G, head kvh * G + r % G, so every K/V tile is read and dequantized once for all G
// heads (GQA) and the CTA's 128 rows stay full for any G (128 / G tokens per CTA). Each warp owns 32 rows (two m16
// tiles: twice the MMAs per shared-memory fragment load of a 16-row warp, which matters because ldmatrix bandwidth,
// not the tensor pipe, bounds a 16-row FlashAttention-2 warp).
// Per 64-key tile (= one page block): the raw block is fetched with cp.async (fp16: straight into the double-buffered
// fp16 tile; KV4/KV8: into a staging buffer, then dequantized by all threads to fp16(x̂), x̂ = scale * (c - zero) in
// fp32 as the CPU reference, with rows past the CTA's last key zeroed so garbage never meets a zero probability). Then
// S = Q K^T and O += P V on mma.m16n8k16 (fp16 in, fp32 accumulate), online softmax in fp32 (exp2, scale folded).
// Shared tiles are XOR-swizzled in 16-byte units (unit ^ row % 8), so ldmatrix and the dequant stores are
// conflict-free. A row's result depends only on its own position, never on the CTA it lands in (fully masked tiles
// are exact no-ops), so chunked prefill reproduces one-shot prefill bit for bit.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/attention/common.cuh"
#include "qoq/cuda_attention.h"

namespace qoq::cuda::attn {

constexpr int kPrefillWarps = 4;
constexpr int kPrefillRows = 128;  // (token, head) rows per CTA, 32 per warp
constexpr int kPrefillTile = 64;   // keys per tile: one page block

struct PrefillParams {
  const uint8_t* pool;
  const int32_t* page_table;
  int max_pages;
  int n_kv_heads;
  int group;
  int n_heads;
  int tokens_per_cta;  // kPrefillRows / group
  const uint16_t* q;
  const int32_t* cu_tokens;
  const int32_t* starts;
  float scale_log2;  // softmax scale * log2(e)
  uint16_t* out;
};

template <int D, int BITS>
struct PrefillFmt {
  static constexpr int kRow = D * BITS / 8;  // bytes of one cached row
  static constexpr int kBlock = 2 * kKvPageTokens * kRow + (BITS == 16 ? 0 : 2 * kKvPageTokens * 4);
  static constexpr int kUnits = D / 8;  // 16-byte units of one fp16 row
  static constexpr int kQBytes = kPrefillRows * D * 2;
  static constexpr int kTileBytes = kPrefillTile * D * 2;  // one fp16 K or V tile
  // fp16: Q, then two stages of (K, V). KV4/KV8: Q, one fp16 (K, V), one raw staging block.
  static constexpr int kSmem = BITS == 16 ? kQBytes + 4 * kTileBytes : kQBytes + 2 * kTileBytes + kBlock;
};

// 16-byte unit index of (row, unit) in a swizzled fp16 tile of D channels.
template <int D>
__device__ __forceinline__ int swz(int row, int unit) {
  return row * (D / 8) + (unit ^ (row & 7));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Dequantizes the staged raw block into the fp16 K and V tiles: thread = (row tid % 64, half of the channels), so the
// 8 threads of a store phase hit 8 distinct swizzled units. Rows at or past `valid` are zeroed.
template <int D, int BITS>
__device__ __forceinline__ void dequant_tile(const uint8_t* staging, uint16_t* sk, uint16_t* sv, int valid) {
  using F = PrefillFmt<D, BITS>;
  constexpr int kHalfBytes = F::kRow / 2;  // code bytes of half a row
  constexpr int kWords = kHalfBytes / 4;
  constexpr int kOut = D / 16;  // 16-byte fp16 units of half a row
  const int r = threadIdx.x & 63, half = threadIdx.x >> 6;
  const bool ok = r < valid;
#pragma unroll
  for (int kv = 0; kv < 2; ++kv) {
    uint4* dst = reinterpret_cast<uint4*>(kv ? sv : sk);
    uint32_t w[kWords];
    const uint4* src = reinterpret_cast<const uint4*>(staging + kv * kKvPageTokens * F::kRow + r * F::kRow +
                                                      half * kHalfBytes);
#pragma unroll
    for (int i = 0; i < kWords / 4; ++i) {
      const uint4 v = src[i];
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
    const uint32_t prm =
        *reinterpret_cast<const uint32_t*>(staging + 2 * kKvPageTokens * F::kRow + kv * kKvPageTokens * 4 + r * 4);
    const float scale = __half2float(__ushort_as_half(uint16_t(prm & 0xFFFF)));
    const float zero = __half2float(__ushort_as_half(uint16_t(prm >> 16)));
    const __half2 bias = __half2half2(__ushort_as_half(0x6400));
#pragma unroll
    for (int o = 0; o < kOut; ++o) {
      uint32_t h[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t t;
        if constexpr (BITS == 4) {
          // Byte j of word o holds channels 2j (low nibble) and 2j + 1 (high nibble).
          const uint32_t x = w[o];
          t = prmt(x, x >> 4, uint32_t(j | (j << 4) | ((4 + j) << 8) | ((4 + j) << 12)));
          asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(t) : "r"(t), "r"(0x000F000Fu), "r"(0x64006400u));
        } else {
          // One code per byte: two bytes into the low bytes of two halves whose high bytes are 0x64 (1024 + c).
          t = prmt(w[2 * o + j / 2], 0x64646464u, (j % 2) ? 0x4342u : 0x4140u);
        }
        // x̂ = scale * (c - zero) in fp32 exactly as ref::kv_dequantize_head (c - zero is exact), rounded once to
        // fp16. (A fused fp16 c * scale + fp16(-zero * scale) was 2.5x cheaper but its rounded offset, the same for
        // every channel of a row, shifted scores by ~1e-3 and failed the decode tolerance: device run 1.)
        const float2 cf = __half22float2(__hsub2(*reinterpret_cast<const __half2*>(&t), bias));
        h[j] = ok ? pack_half2(__fmul_rn(__fsub_rn(cf.x, zero), scale), __fmul_rn(__fsub_rn(cf.y, zero), scale)) : 0u;
      }
      dst[swz<D>(r, half * kOut + o)] = make_uint4(h[0], h[1], h[2], h[3]);
    }
  }
}

template <int D, int BITS>
__global__ void __launch_bounds__(kPrefillWarps * 32, 2) prefill_kernel(const PrefillParams p) {
  using F = PrefillFmt<D, BITS>;
  constexpr int kU = F::kUnits;
  constexpr int kNT = D / 8;  // O n-tiles
  extern __shared__ __align__(128) uint8_t smem[];
  uint16_t* sq = reinterpret_cast<uint16_t*>(smem);
  uint16_t* tiles = reinterpret_cast<uint16_t*>(smem + F::kQBytes);
  uint8_t* staging = smem + F::kQBytes + 2 * F::kTileBytes;  // KV4/KV8 only

  // Heaviest query tiles (most keys) first, so the causal triangle's long CTAs do not form the last wave.
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int kvh = blockIdx.y, b = blockIdx.z;
  const int tok0 = p.cu_tokens[b], n = p.cu_tokens[b + 1] - tok0;
  const int t0 = qt * p.tokens_per_cta;
  if (t0 >= n) return;
  const int G = p.group, start = p.starts[b];
  const int nq = min(p.tokens_per_cta, n - t0);
  const int rows = nq * G;
  const int ctx_end = start + t0 + nq;  // keys [0, ctx_end) are seen by some row
  const int n_tiles = (ctx_end + kPrefillTile - 1) / kPrefillTile;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const size_t head0 = size_t(kvh) * G;

  // Q rows (zeros past `rows`).
  for (int i = tid; i < kPrefillRows * kU; i += kPrefillWarps * 32) {
    const int r = i / kU, u = i % kU;
    const uint16_t* src = p.q;
    int bytes = 0;
    if (r < rows) {
      src = p.q + ((size_t(tok0 + t0 + r / G) * p.n_heads + head0 + r % G) * D + u * 8);
      bytes = 16;
    }
    cp_async16(smem_addr(sq) + swz<D>(r, u) * 16, src, bytes);
  }

  const int32_t* table = p.page_table + size_t(b) * p.max_pages;
  auto load_tile = [&](int j, int stage) {
    const uint8_t* blk = p.pool + (size_t(table[j]) * p.n_kv_heads + kvh) * F::kBlock;
    if constexpr (BITS == 16) {
      const uint32_t sk = smem_addr(tiles + stage * 2 * kPrefillTile * D);
      const int valid = ctx_end - j * kPrefillTile;
#pragma unroll 4
      for (int i = tid; i < 2 * kPrefillTile * kU; i += kPrefillWarps * 32) {
        const int kv = i / (kPrefillTile * kU), rem = i % (kPrefillTile * kU), r = rem / kU, u = rem % kU;
        cp_async16(sk + kv * F::kTileBytes + swz<D>(r, u) * 16, blk + kv * kKvPageTokens * F::kRow + r * F::kRow + u * 16,
                   r < valid ? 16 : 0);
      }
    } else {
      const uint32_t st = smem_addr(staging);
      for (int i = tid; i < F::kBlock / 16; i += kPrefillWarps * 32) cp_async16(st + i * 16, blk + i * 16, 16);
    }
    cp_async_commit();
  };
  load_tile(0, 0);

  // This thread's four rows: (m-tile mt, half hf) -> row 32 warp + 16 mt + lane / 4 + 8 hf; padding rows take the
  // first row's position (they are computed, never stored).
  const int wrow0 = 32 * warp;
  const bool warp_active = wrow0 < rows;
  const int warp_qmin = start + t0 + wrow0 / G;
  const int warp_qmax = start + t0 + min(wrow0 + 31, rows - 1) / G;
  int qpos[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int r = wrow0 + 16 * mt + lane / 4 + 8 * hf;
      qpos[mt][hf] = start + t0 + (r < rows ? r : 0) / G;
    }

  float o[2][kNT][4];
  float m[2][2], l[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }
  const float c = p.scale_log2;
  // ldmatrix addresses as (per-lane register) + (compile-time offset): every row a lane addresses has row % 8 ==
  // lane % 8, and unit 2i + x (x in {0, 1}) is 2i ^ x, so the swizzled unit of k-step / n-pair i is 8 (i / 4) +
  // ((2 (i % 4)) ^ x ^ lane % 8): four per-lane offsets per operand, the rest immediates (fewer live registers).
  constexpr int kRowBytes = D * 2;
  const int l7 = lane & 7;
  uint32_t q_addr[4], k_off[4], v_off[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    q_addr[i] = smem_addr(sq) + (wrow0 + (lane & 15)) * kRowBytes + ((2 * i) ^ (lane >> 4) ^ l7) * 16;
    k_off[i] = (l7 + ((lane >> 4) << 3)) * kRowBytes + ((2 * i) ^ ((lane >> 3) & 1) ^ l7) * 16;
    v_off[i] = (l7 + (((lane >> 3) & 1) << 3)) * kRowBytes + ((2 * i) ^ (lane >> 4) ^ l7) * 16;
  }

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait_all();
    __syncthreads();  // tile j landed; every warp is done with the buffers tile j + 1 overwrites
    uint32_t sk_base, sv_base;
    if constexpr (BITS == 16) {
      sk_base = smem_addr(tiles + (j & 1) * 2 * kPrefillTile * D);
      if (j + 1 < n_tiles) load_tile(j + 1, (j + 1) & 1);
    } else {
      dequant_tile<D, BITS>(staging, tiles, tiles + kPrefillTile * D, ctx_end - j * kPrefillTile);
      __syncthreads();  // fp16 tile ready, staging free
      if (j + 1 < n_tiles) load_tile(j + 1, 0);
      sk_base = smem_addr(tiles);
    }
    sv_base = sk_base + F::kTileBytes;
    // Tiles wholly after this warp's last query are masked for all its rows: skip them (an exact no-op).
    if (!warp_active || j * kPrefillTile > warp_qmax) continue;

    // S = Q K^T: 32 rows x 64 keys.
    float s[2][8][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
        ldsm_x4(q_addr[ks % 4] + (ks / 4) * 128 + mt * 16 * kRowBytes, a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(sk_base + k_off[ks % 4] + (ks / 4) * 128 + np * 16 * kRowBytes, b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_16816(s[mt][2 * np], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
          mma_16816(s[mt][2 * np + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
        }
      }
    }

    // Causal mask (only on tiles that reach past the warp's first query), online softmax.
    const bool need_mask = j * kPrefillTile + kPrefillTile - 1 > warp_qmin;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        if (need_mask) {
#pragma unroll
          for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int kp = j * kPrefillTile + 8 * nt + 2 * (lane & 3) + e;
              if (kp > qpos[mt][hf]) s[mt][nt][2 * hf + e] = -INFINITY;
            }
        }
        float mx = m[mt][hf];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hf], s[mt][nt][2 * hf + 1]));
        mx = quad_max(mx);
        // Tile 0 always holds key 0 <= every query, so mx is finite; the guard only keeps NaN out regardless.
        const float mc = mx == -INFINITY ? 0.f : __fmul_rn(mx, c);
        // Plain products: a tile that moves no maximum gives alpha == 1 exactly (the no-op chunking relies on).
        const float alpha = fast_exp2(__fmul_rn(m[mt][hf], c) - mc);
        m[mt][hf] = mx;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float pe = fast_exp2(fmaf(s[mt][nt][2 * hf + e], c, -mc));
            s[mt][nt][2 * hf + e] = pe;
            sum += pe;
          }
        l[mt][hf] = l[mt][hf] * alpha + sum;
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) o[mt][nt][2 * hf] *= alpha, o[mt][nt][2 * hf + 1] *= alpha;
      }
    }

    // O += P V: P from the S accumulators (FlashAttention-2 register reuse), V through ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        a[mt][0] = pack_half2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_half2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_half2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_half2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int np = 0; np < D / 16; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(sv_base + v_off[np % 4] + (np / 4) * 128 + kk * 16 * kRowBytes, b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_16816(o[mt][2 * np], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
          mma_16816(o[mt][2 * np + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
        }
      }
    }
  }

  if (!warp_active) return;
  // Normalize, stage in this warp's own Q rows (no other warp reads them), then 16-byte row stores.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const float inv = 1.f / quad_sum(l[mt][hf]);
      const int r = wrow0 + 16 * mt + lane / 4 + 8 * hf;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        reinterpret_cast<uint32_t*>(sq)[swz<D>(r, nt) * 4 + (lane & 3)] =
            pack_half2(o[mt][nt][2 * hf] * inv, o[mt][nt][2 * hf + 1] * inv);
    }
  __syncwarp();
  for (int i = lane; i < 32 * kU; i += 32) {
    const int r = wrow0 + i / kU, u = i % kU;
    if (r >= rows) break;
    const uint4 v = reinterpret_cast<const uint4*>(sq)[swz<D>(r, u)];
    *reinterpret_cast<uint4*>(p.out + (size_t(tok0 + t0 + r / G) * p.n_heads + head0 + r % G) * D + u * 8) = v;
  }
}

template <int BITS>
void launch_prefill(int head_dim, const PrefillParams& p, dim3 grid, cudaStream_t stream);

// The wgmma path (prefill_wgmma.cu): staging pass + kernel; false (nothing launched) unless head_dim is 128 and the
// workspace is large enough.
size_t prefill_wgmma_workspace_bytes(int batch, int max_pages, int n_kv_heads, int head_dim);
bool launch_prefill_wgmma(const PagedKv& cache, const PrefillArgs& args, cudaStream_t stream);

#define QOQ_INSTANTIATE_PREFILL(BITS)                                                                          \
  template <int D>                                                                                             \
  static void launch_prefill_d##BITS(const PrefillParams& p, dim3 grid, cudaStream_t stream) {                 \
    constexpr int kSmem = PrefillFmt<D, BITS>::kSmem;                                                          \
    static const bool configured = [] {                                                                        \
      return cudaFuncSetAttribute(prefill_kernel<D, BITS>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem) == \
             cudaSuccess;                                                                                      \
    }();                                                                                                       \
    (void)configured;                                                                                          \
    prefill_kernel<D, BITS><<<grid, kPrefillWarps * 32, kSmem, stream>>>(p);                                   \
  }                                                                                                            \
  template <>                                                                                                  \
  void launch_prefill<BITS>(int head_dim, const PrefillParams& p, dim3 grid, cudaStream_t stream) {            \
    if (head_dim == 64)                                                                                        \
      launch_prefill_d##BITS<64>(p, grid, stream);                                                             \
    else                                                                                                       \
      launch_prefill_d##BITS<128>(p, grid, stream);                                                            \
  }

}  // namespace qoq::cuda::attn
