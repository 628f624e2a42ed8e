// The Hopper quantized GEMM: weights on the wgmma M side, dequantized in registers and fed as the register A
// operand; activations (tokens) on the N side, loaded by TMA into 128-byte-swizzled shared memory as B.
//
// CTA = `kConsumers` consumer warpgroups + one producer warpgroup. The producer's first thread streams, per k-tile
// of 128, the activation tile [kTokens x 128] (TMA, zero-filled past M and K) and the CTA's weight tiles (one bulk
// copy each, kernel layout of layout.h) into a ring of shared-memory stages guarded by full/empty mbarriers. Each
// consumer warpgroup owns kRowTiles x 64 output channels: per stage it loads its fragments with 16-byte
// shared-memory loads, dequantizes (W4: mask/shift; g128: one multiply and a byte-wise subtract), and issues
// 4 x kRowTiles wgmma m64 n{kTokens} k32 (int32 accumulators), keeping one stage's wgmmas in flight while it
// dequantizes the next. Epilogue: accumulators go through shared memory so every thread writes 16 contiguous
// bytes of the [M, N] output; with split-K, int32 partials are added into a workspace instead.
#pragma once
#include <cuda.h>

#include <cstdint>

#include "kernels/cuda/gemm/dequant.h"
#include "kernels/cuda/gemm/epilogue.cuh"
#include "kernels/cuda/gemm/layout.h"
#include "kernels/cuda/gemm/ptx.h"
#include "kernels/cuda/gemm/wgmma.h"
#include "qoq/cuda_gemm.h"

namespace qoq::cuda {

constexpr int tile_bytes(WeightFormat f) {
  return f == WeightFormat::kW8 ? layout::kW8Bytes : f == WeightFormat::kW4G128 ? layout::kW4GBytes : layout::kW4Bytes;
}

template <WeightFormat F, int kTokens_, int kRowTiles_, int kConsumers_>
struct QGemmTraits {
  static constexpr WeightFormat kFormat = F;
  static constexpr int kTokens = kTokens_;
  static constexpr int kRowTiles = kRowTiles_;
  static constexpr int kConsumers = kConsumers_;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kRows = 64 * kRowTiles * kConsumers;  // output channels per CTA
  static constexpr int kActBytes = kTokens * 128;            // one stage's activation tile, multiple of 1024
  static constexpr int kWTileBytes = tile_bytes(F);
  static constexpr int kWBytes = kWTileBytes * kRowTiles * kConsumers;
  static constexpr int kStageBytes = kActBytes + kWBytes;
  // One consumer warpgroup per CTA: two CTAs per SM, so one CTA's wgmmas run while the other's consumer loads and
  // dequantizes (a lone consumer waits for each stage's wgmmas: v5 measured ~930 cycles per stage for 64x128 at
  // one CTA per SM, and 192-CTA grids ran in 1.5 waves). Two consumer warpgroups fill one SM.
  static constexpr int kMinBlocks = kConsumers == 1 ? 2 : 1;
  static constexpr int kBudget = kMinBlocks == 2 ? (kTokens <= 16 ? 100 : 110) * 1024 : 200 * 1024;
  static constexpr int kStages = kBudget / kStageBytes > 8 ? 8 : kBudget / kStageBytes;
  static constexpr int kEpiPitch = kRows + 4;  // int32 words per token row; +4 keeps the writes conflict-free
  static constexpr int kEpiBytes = kTokens * kEpiPitch * 4;
  static constexpr int kDataBytes = kStages * kStageBytes > kEpiBytes ? kStages* kStageBytes : kEpiBytes;
  static constexpr int kSmemBytes = 1024 + kDataBytes + 2 * kStages * 8 + 16;  // + align slack, barriers, flag
  static_assert(kStages >= 2, "shared memory budget too small for two stages");
  static_assert(kSmemBytes <= 227 * 1024, "too much shared memory");
};

constexpr int kRasterGroup = 8;

struct QGemmParams {
  const uint8_t* w;  // kernel layout
  int M, N;
  int k_tiles;         // ceil(K / 128)
  int k_tiles_split;   // k-tiles per split (gridDim.z splits)
  int32_t* workspace;  // split-K: [M, N] int32 partial sums, then one counter per output tile; all zero between calls
  int pdl;             // launched with programmatic dependent launch (GemmArgs::pdl)
  EpilogueParams epi;
};

namespace detail {

// Dequantizes one stage's A fragments of one 64-row tile: a[step][reg] for the 4 k32 steps of the k-tile.
// g128 weights reach the tensor cores biased by 128 (unsigned bytes); the epilogue subtracts 128 * sum(a).
template <WeightFormat F>
constexpr bool kUnsignedA = F == WeightFormat::kW4G128;

template <WeightFormat F>
__device__ __forceinline__ void load_fragments(const uint8_t* tile, int tid, uint32_t (&a)[4][4]) {
  if constexpr (F == WeightFormat::kW8) {
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      const uint4 v = ptx::ld_shared_v4(tile + (step * 128 + tid) * 16);
      a[step][0] = v.x, a[step][1] = v.y, a[step][2] = v.z, a[step][3] = v.w;
    }
  } else {
    G128Consts lo_row{}, hi_row{};
    if constexpr (F == WeightFormat::kW4G128) {
      const int r = (tid / 32) * 16 + (tid % 32) / 4;  // row g of this warp; g + 8 is the high nibble
      // ld.shared explicitly: through a generic pointer the compiler emits generic LD.E loads (slower, and they
      // head the dequantization's dependency chain).
      const uint8_t* gp = tile + layout::kW4CodeBytes;
      const uint32_t p0 = ptx::ld_shared_u16(gp + 2 * r), p1 = ptx::ld_shared_u16(gp + 2 * (r + 8));
      lo_row = g128_consts_zs2(p0 & 0xFFu, p0 >> 8);
      hi_row = g128_consts_zs2(p1 & 0xFFu, p1 >> 8);
    }
#pragma unroll
    for (int kp = 0; kp < 2; ++kp) {
      const uint4 v = ptx::ld_shared_v4(tile + (kp * 128 + tid) * 16);
      const uint32_t x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        uint32_t* r = a[2 * kp + s];
        r[0] = low_nibbles(x[2 * s]);
        r[1] = high_nibbles(x[2 * s]);
        r[2] = low_nibbles(x[2 * s + 1]);
        r[3] = high_nibbles(x[2 * s + 1]);
        if constexpr (F == WeightFormat::kW4G128) {  // w8 + 128: the unsigned-A wgmma (kUnsignedA below)
          r[0] = g128_dequant_biased(r[0], lo_row);
          r[1] = g128_dequant_biased(r[1], hi_row);
          r[2] = g128_dequant_biased(r[2], lo_row);
          r[3] = g128_dequant_biased(r[3], hi_row);
        }
      }
    }
  }
}

}  // namespace detail

template <typename T>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    qgemm_kernel(const __grid_constant__ CUtensorMap act_map, const QGemmParams p) {
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint8_t* act_smem = smem;                            // kStages x kActBytes (1024-aligned tiles)
  uint8_t* w_smem = smem + T::kStages * T::kActBytes;  // kStages x kWBytes
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + T::kDataBytes);
  uint64_t* empty = full + T::kStages;

  // Grouped rasterization: CTAs in flight together cover kRasterGroup weight row blocks x many token blocks, so
  // both operands are re-read from L2 rather than HBM (without it a wave of gate_up CTAs streams all 58 MB).
  const int n_blocks = p.N / T::kRows, m_blocks = (p.M + T::kTokens - 1) / T::kTokens;
  const int per_group = kRasterGroup * m_blocks;
  const int first_n = int(blockIdx.x) / per_group * kRasterGroup;
  const int group_rows = min(kRasterGroup, n_blocks - first_n);
  const int in_group = int(blockIdx.x) % per_group;
  const int n_block = first_n + in_group % group_rows, m_block = in_group / group_rows;
  const int kt0 = blockIdx.z * p.k_tiles_split;
  const int kt_end = min(p.k_tiles, kt0 + p.k_tiles_split);
  const int nkt = kt_end - kt0;
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < T::kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], T::kConsumers);
    }
    mbar_fence_init();
  }
  __syncthreads();
  // Programmatic dependent launch (GemmArgs::pdl): the next kernel on the stream may start filling SMs as ours
  // drain; it waits (grid_dependency_wait) before touching anything we write.
  launch_dependents();

  if (wg == T::kConsumers) {
    // Producer warpgroup: one thread issues every copy.
    if constexpr (T::kConsumers > 1) ptx::setmaxnreg_dec<40>();
    if (tid == 0) {
      const uint8_t* w_base = p.w + size_t(n_block) * T::kRowTiles * T::kConsumers * p.k_tiles * T::kWTileBytes;
      auto load_weights = [&](int i, int s) {
#pragma unroll
        for (int t = 0; t < T::kRowTiles * T::kConsumers; ++t)
          bulk_g2s(w_smem + s * T::kWBytes + t * T::kWTileBytes,
                   w_base + (size_t(t) * p.k_tiles + kt0 + i) * T::kWTileBytes, T::kWTileBytes, &full[s]);
      };
      // Decode tiles with PDL: the weights are not written by the kernel before us (GemmArgs::pdl's contract), so
      // the first ring of weight tiles streams before the wait for the previous kernel, whose outputs (our
      // activations) come after it (gate_up M=1: -3 us). Otherwise each stage's activation tile is issued first:
      // queued behind a whole ring of weights, split-K and 128-token CTAs lost their load/compute overlap (qkv M=1
      // split 4: 7.8 -> 9.8 us, qkv M=64 with PDL 14.5 -> 18.7 us in rounds 3 and 4).
      const int pre = p.pdl && T::kTokens <= 16 ? min(nkt, T::kStages) : 0;
      for (int i = 0; i < pre; ++i) {
        mbar_arrive_expect_tx(&full[i], T::kStageBytes);
        load_weights(i, i);
      }
      grid_dependency_wait();
      for (int i = 0; i < nkt; ++i) {
        const int s = i % T::kStages;
        if (i >= pre) {
          mbar_wait(&empty[s], ((i / T::kStages) & 1) ^ 1);
          mbar_arrive_expect_tx(&full[s], T::kStageBytes);
        }
        ptx::tma_load_2d(act_smem + s * T::kActBytes, &act_map, (kt0 + i) * 128, m_block * T::kTokens, &full[s]);
        if (i >= pre) load_weights(i, s);
      }
    }
    return;
  }

  // Consumers read the activation scales and sums, the workspace and the residual, and write the output: all
  // after the previous kernel on the stream has finished.
  grid_dependency_wait();
  if constexpr (T::kConsumers > 1) ptx::setmaxnreg_inc<232>();

  // Decode tiles: this thread's epilogue operands (scales, zeros, bias of its 8-channel chunks; its tokens' scale
  // and sum) are loaded now, so their latency (first touch of per-channel data: HBM) hides behind the main loop
  // instead of following it. The epilogue loops below visit chunk c = threadIdx.x + i * kEpiStride.
  constexpr int kEpiChunks = T::kTokens * (T::kRows / 8), kEpiStride = 128 * T::kConsumers;
  constexpr bool kPrefetch = T::kTokens == 16;
  constexpr int kEpiIters = kPrefetch ? (kEpiChunks + kEpiStride - 1) / kEpiStride : 1;
  Epi8In pre[kEpiIters];
  if constexpr (kPrefetch) {
#pragma unroll
    for (int i = 0; i < kEpiIters; ++i) {
      const int c = threadIdx.x + i * kEpiStride, tok = c / (T::kRows / 8), r8 = c % (T::kRows / 8);
      const int m = m_block * T::kTokens + tok;
      if (c < kEpiChunks && m < p.M) pre[i] = epilogue8_load(m, n_block * T::kRows + r8 * 8, p.epi);
    }
  }
  int32_t acc[T::kRowTiles][T::kTokens / 2];
#pragma unroll
  for (int mi = 0; mi < T::kRowTiles; ++mi)
#pragma unroll
    for (int j = 0; j < T::kTokens / 2; ++j) acc[mi][j] = 0;

  // wgmma reads its A registers asynchronously until a wait_group covers it, and ptxas serializes every wgmma
  // (C7513) when registers feeding a wgmma are written while another is in flight. So each stage retires its
  // wgmmas (wait 0) before the next stage's fragments are written; the tensor cores stay busy through the other
  // consumer warpgroup or the second CTA on the SM, whose wgmmas overlap this warpgroup's loads and dequantization.
  for (int i = 0; i < nkt; ++i) {
    const int s = i % T::kStages;
    mbar_wait(&full[s], (i / T::kStages) & 1);
    uint32_t a[T::kRowTiles][4][4];
#pragma unroll
    for (int mi = 0; mi < T::kRowTiles; ++mi)
      detail::load_fragments<T::kFormat>(w_smem + s * T::kWBytes + (wg * T::kRowTiles + mi) * T::kWTileBytes, tid,
                                         a[mi]);
    const uint64_t desc = ptx::smem_desc_sw128(act_smem + s * T::kActBytes);
    ptx::wgmma_fence();
#pragma unroll
    for (int step = 0; step < 4; ++step)
#pragma unroll
      for (int mi = 0; mi < T::kRowTiles; ++mi)
        ptx::WgmmaRS<T::kTokens, detail::kUnsignedA<T::kFormat>>::mma(acc[mi], a[mi][step],
                                                                      desc + uint64_t(step * 32 >> 4));
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
    if (tid == 0) mbar_arrive(&empty[s]);  // this stage's tiles are fully consumed
  }

  // Accumulator fragment: acc[mi][4j + e]: row 16*warp + g (+8 for e >= 2), token 8j + 2t + (e & 1).
  const int warp = tid / 32, g = (tid % 32) / 4, t = tid % 4;
  if (gridDim.z > 1) {
    // Split-K: add the int32 partials into the workspace; the CTA that finishes a tile last applies the epilogue
    // and zeroes the workspace and the tile's counter again, so the next call finds them clean (no memset).
#pragma unroll
    for (int mi = 0; mi < T::kRowTiles; ++mi)
#pragma unroll
      for (int j = 0; j < T::kTokens / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int m = m_block * T::kTokens + 8 * j + 2 * t + (e & 1);
          const int n = n_block * T::kRows + (wg * T::kRowTiles + mi) * 64 + warp * 16 + g + (e >> 1) * 8;
          if (m < p.M) atomicAdd(p.workspace + size_t(m) * p.N + n, acc[mi][4 * j + e]);
        }
    __threadfence();
    ptx::named_barrier(1, 128 * T::kConsumers);
    int* last = reinterpret_cast<int*>(empty + T::kStages);
    int* counter = reinterpret_cast<int*>(p.workspace + size_t(p.M) * p.N) + blockIdx.x;
    if (threadIdx.x == 0) *last = atomicAdd(counter, 1) == int(gridDim.z) - 1;
    ptx::named_barrier(1, 128 * T::kConsumers);
    if (!*last) return;
    __threadfence();
    constexpr int kChunks = T::kRows / 8;
    auto reduce_chunk = [&](int c, const Epi8In* q) {
      const int m = m_block * T::kTokens + c / kChunks, n0 = n_block * T::kRows + (c % kChunks) * 8;
      if (m >= p.M) return;
      int4* src = reinterpret_cast<int4*>(p.workspace + size_t(m) * p.N + n0);
      const int4 v0 = __ldcg(src), v1 = __ldcg(src + 1);  // from L2, where the atomics landed
      const int32_t vals[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
      epilogue8(vals, m, n0, q ? *q : epilogue8_load(m, n0, p.epi), p.epi);
      src[0] = src[1] = make_int4(0, 0, 0, 0);
    };
    if constexpr (kPrefetch) {
#pragma unroll
      for (int i = 0; i < kEpiIters; ++i)
        if (threadIdx.x + i * kEpiStride < kEpiChunks) reduce_chunk(threadIdx.x + i * kEpiStride, &pre[i]);
    } else {
      for (int c = threadIdx.x; c < kEpiChunks; c += kEpiStride) reduce_chunk(c, nullptr);
    }
    if (threadIdx.x == 0) *counter = 0;
    return;
  }

  // All consumers are done with the stages (every issued copy was consumed): reuse them for the epilogue.
  ptx::named_barrier(1, 128 * T::kConsumers);
  int32_t* epi = reinterpret_cast<int32_t*>(smem);
#pragma unroll
  for (int mi = 0; mi < T::kRowTiles; ++mi)
#pragma unroll
    for (int j = 0; j < T::kTokens / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int tok = 8 * j + 2 * t + (e & 1);
        const int row = (wg * T::kRowTiles + mi) * 64 + warp * 16 + g + (e >> 1) * 8;
        epi[tok * T::kEpiPitch + row] = acc[mi][4 * j + e];
      }
  ptx::named_barrier(1, 128 * T::kConsumers);
  constexpr int kChunksPerToken = T::kRows / 8;
  auto write_chunk = [&](int c, const Epi8In* q) {
    const int tok = c / kChunksPerToken, r8 = c % kChunksPerToken;
    const int m = m_block * T::kTokens + tok, n0 = n_block * T::kRows + r8 * 8;
    if (m >= p.M) return;
    const int32_t* src = epi + tok * T::kEpiPitch + r8 * 8;
    const int4 v0 = *reinterpret_cast<const int4*>(src), v1 = *reinterpret_cast<const int4*>(src + 4);
    const int32_t vals[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
    epilogue8(vals, m, n0, q ? *q : epilogue8_load(m, n0, p.epi), p.epi);
  };
  if constexpr (kPrefetch) {
#pragma unroll
    for (int i = 0; i < kEpiIters; ++i)
      if (threadIdx.x + i * kEpiStride < kEpiChunks) write_chunk(threadIdx.x + i * kEpiStride, &pre[i]);
  } else {
    for (int c = threadIdx.x; c < kEpiChunks; c += kEpiStride) write_chunk(c, nullptr);
  }
}

}  // namespace qoq::cuda
