// Persistent variant of the 128-token GEMM with two consumer warpgroups: one CTA per SM loops over output tiles.
//
// Why: a non-persistent CTA owns the SM alone (~200 KB of shared memory), so each of its tiles pays the pipeline
// fill (first stage from L2/HBM) and the epilogue with the tensor cores idle; gate_up at M = 8192 runs 32 k-tiles
// per tile and lost ~15% to this against down's 112 (bench/NOTES.md, v6). Here the producer runs on into the next
// tile's k-tiles while the consumers finish the current one, and each consumer warpgroup writes its own channels
// through a private buffer, so one warpgroup's epilogue overlaps the other's main loop. The epilogue computes the
// DESIGN §3 formula in the accumulator layout, rounds to 16 bits and transposes with stmatrix, so the global stores
// are 16 contiguous bytes (8 channels of one token) per thread, as in the non-persistent kernel.
#pragma once
#include "kernels/cuda/gemm/qgemm_kernel.cuh"

namespace qoq::cuda {

template <WeightFormat F, int kRowTiles_, int kConsumers_>
struct PersistentTraits {
  static constexpr WeightFormat kFormat = F;
  static constexpr int kTokens = 128;
  static constexpr int kRowTiles = kRowTiles_;
  static constexpr int kConsumers = kConsumers_;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kRows = 64 * kRowTiles * kConsumers;
  static constexpr int kActBytes = kTokens * 128;
  static constexpr int kWTileBytes = tile_bytes(F);
  static constexpr int kWBytes = kWTileBytes * kRowTiles * kConsumers;
  static constexpr int kStageBytes = kActBytes + kWBytes;
  static constexpr int kEpiTokens = 64;                      // the epilogue writes a tile in two halves of 64 tokens
  static constexpr int kEpiPitch = 64 * kRowTiles * 2 + 16;  // bytes per token row; +16 keeps stmatrix conflict-free
  static constexpr int kEpiBytes = kEpiTokens * kEpiPitch;   // per consumer warpgroup
  static constexpr int kSmemLimit = 227 * 1024;
  static constexpr int kFixed = 1024 + kConsumers * kEpiBytes + 2 * 8 * 8;
  static constexpr int kStages = (kSmemLimit - kFixed) / kStageBytes > 8 ? 8 : (kSmemLimit - kFixed) / kStageBytes;
  static constexpr int kSmemBytes = 1024 + kStages * kStageBytes + kConsumers * kEpiBytes + 2 * kStages * 8;
  static_assert(kConsumers == 2, "the persistent kernel overlaps one consumer's epilogue with the other's loop");
  static_assert(kStages >= 3, "shared memory budget too small");
  static_assert(kSmemBytes <= kSmemLimit, "too much shared memory");
};

namespace detail {

// Grouped rasterization (as in qgemm_kernel): consecutive tile indices cover kRasterGroup weight row blocks x all
// token blocks, so the CTAs working at the same time share both operands in L2.
__device__ __forceinline__ void tile_coords(int tile, int n_blocks, int m_blocks, int& n_block, int& m_block) {
  const int per_group = kRasterGroup * m_blocks;
  const int first_n = tile / per_group * kRasterGroup;
  const int group_rows = min(kRasterGroup, n_blocks - first_n);
  const int in_group = tile % per_group;
  n_block = first_n + in_group % group_rows, m_block = in_group / group_rows;
}

struct EpiCtx {
  uint8_t* buf;  // this warpgroup's epilogue buffer
  int M, N, m_block, n0, tid;
};

// One consumer warpgroup's epilogue of a tile, in two halves of kEpiTokens tokens: the DESIGN §3 formula in the
// accumulator layout (acc[mi][4j + e]: channel mi * 64 + 16 * warp + g + 8 * (e >> 1) of the warpgroup, token
// 8j + 2t + (e & 1) of the tile), rounded to 16 bits, transposed into the buffer with stmatrix, then written as
// 16-byte rows (8 channels of one token). kOut: 0 = output dtype chosen at run time, 1 = fp16, 2 = bf16.
template <typename T, int kOut, bool kResidual>
__device__ __forceinline__ void epilogue_tile(const int32_t (&acc)[T::kRowTiles][T::kTokens / 2],
                                              const float (&sw)[T::kRowTiles][2], const int32_t (&z)[T::kRowTiles][2],
                                              const float (&bias)[T::kRowTiles][2], const EpilogueParams& ep,
                                              const EpiCtx& x) {
  const int warp = x.tid / 32, lane = x.tid % 32, g = lane / 4, t = lane % 4;
  const bool bf16 = kOut == 0 ? ep.bf16 : kOut == 2;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    // The per-token scales and sums of this thread's 16 tokens of the half, loads issued together (one latency;
    // loaded one token group at a time they stalled the v3 epilogue on every use). A whole tile's would spill.
    float sa_all[T::kEpiTokens / 8][2];
    int32_t asum_all[T::kEpiTokens / 8][2];
#pragma unroll
    for (int jl = 0; jl < T::kEpiTokens / 8; ++jl)
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const int m = x.m_block * T::kTokens + half * T::kEpiTokens + 8 * jl + 2 * t + k;
        const bool ok = m < x.M;
        sa_all[jl][k] = ok ? __ldg(ep.a_scales + m) : 0.f;
        asum_all[jl][k] = ok && (ep.zeros || ep.zconst) ? __ldg(ep.a_sums + m) : 0;
      }
#pragma unroll
    for (int jl = 0; jl < T::kEpiTokens / 8; ++jl) {
      const int j = half * (T::kEpiTokens / 8) + jl;
#pragma unroll
      for (int mi = 0; mi < T::kRowTiles; ++mi) {
        uint32_t packed[2];
#pragma unroll
        for (int hi = 0; hi < 2; ++hi) {
          uint32_t o[2];
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            float res = 0.f;
            if constexpr (kResidual) {
              const int m = x.m_block * T::kTokens + 8 * j + 2 * t + k;
              const int n = x.n0 + mi * 64 + 16 * warp + g + 8 * hi;
              if (m < x.M) res = out_to_float(ep.residual[size_t(m) * x.N + n], bf16);
            }
            const float y = epilogue_value(acc[mi][4 * j + 2 * hi + k], sa_all[jl][k], asum_all[jl][k], sw[mi][hi],
                                           z[mi][hi], bias[mi][hi], res);
            o[k] = to_out(y, bf16);
          }
          packed[hi] = o[0] | (o[1] << 16);
        }
        // Matrix hi holds channels 16 * warp + 8 * hi + (0..7) x tokens 8 jl + (0..7); transposed, row c of it
        // (token 8 jl + c) lands at the address lane 8 hi + c gives.
        const int i = (lane >> 3) & 1, c = lane & 7;
        ptx::stmatrix_x2_trans(x.buf + (8 * jl + c) * T::kEpiPitch + (mi * 64 + 16 * warp + 8 * i) * 2, packed[0],
                               packed[1]);
      }
    }
    const int wg = threadIdx.x / 128;
    ptx::named_barrier(2 + wg, 128);
    constexpr int kChunks = T::kRowTiles * 8;  // 16-byte chunks per token row
    for (int c = x.tid; c < T::kEpiTokens * kChunks; c += 128) {
      const int tok = c / kChunks, r8 = c % kChunks;
      const int m = x.m_block * T::kTokens + half * T::kEpiTokens + tok;
      if (m < x.M)
        ptx::st_global_v4(ep.out + size_t(m) * x.N + x.n0 + r8 * 8,
                          ptx::ld_shared_v4(x.buf + tok * T::kEpiPitch + r8 * 16));
    }
    ptx::named_barrier(2 + wg, 128);  // the buffer is rewritten next
  }
}

}  // namespace detail

template <typename T>
__global__ void __launch_bounds__(T::kThreads, 1)
    qgemm_persistent_kernel(const __grid_constant__ CUtensorMap act_map, const QGemmParams p) {
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint8_t* act_smem = smem;                              // kStages x kActBytes (1024-aligned tiles)
  uint8_t* w_smem = smem + T::kStages * T::kActBytes;    // kStages x kWBytes
  uint8_t* epi_smem = w_smem + T::kStages * T::kWBytes;  // kConsumers x kEpiBytes
  uint64_t* full = reinterpret_cast<uint64_t*>(epi_smem + T::kConsumers * T::kEpiBytes);
  uint64_t* empty = full + T::kStages;

  const int n_blocks = p.N / T::kRows, m_blocks = (p.M + T::kTokens - 1) / T::kTokens;
  const int tiles = n_blocks * m_blocks;
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < T::kStages; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], T::kConsumers);
    }
    mbar_fence_init();
  }
  __syncthreads();
  launch_dependents();  // see qgemm_kernel

  if (wg == T::kConsumers) {
    ptx::setmaxnreg_dec<40>();
    if (tid == 0) {
      auto w_base = [&](int n_block) {
        return p.w + size_t(n_block) * T::kRowTiles * T::kConsumers * p.k_tiles * T::kWTileBytes;
      };
      auto load_weights = [&](const uint8_t* base, int kt, int s) {
#pragma unroll
        for (int t = 0; t < T::kRowTiles * T::kConsumers; ++t)
          bulk_g2s(w_smem + s * T::kWBytes + t * T::kWTileBytes, base + (size_t(t) * p.k_tiles + kt) * T::kWTileBytes,
                   T::kWTileBytes, &full[s]);
      };
      // Unlike the decode kernels, no weights before the wait: with 16 KB activation tiles the activation-first
      // order is worth more than an early weight stream (rounds 3-4).
      int n_block, m_block;
      grid_dependency_wait();
      int it = 0;  // k-tiles issued so far over all tiles: the ring position and phase
      for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        detail::tile_coords(tile, n_blocks, m_blocks, n_block, m_block);
        const uint8_t* base = w_base(n_block);
        for (int kt = 0; kt < p.k_tiles; ++kt, ++it) {
          const int s = it % T::kStages;
          mbar_wait(&empty[s], ((it / T::kStages) & 1) ^ 1);
          mbar_arrive_expect_tx(&full[s], T::kStageBytes);
          ptx::tma_load_2d(act_smem + s * T::kActBytes, &act_map, kt * 128, m_block * T::kTokens, &full[s]);
          load_weights(base, kt, s);
        }
      }
    }
    return;
  }

  grid_dependency_wait();
  ptx::setmaxnreg_inc<232>();
  const int warp = tid / 32, g = (tid % 32) / 4;
  uint8_t* epi = epi_smem + wg * T::kEpiBytes;
  const EpilogueParams& ep = p.epi;
  int it = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int n_block, m_block;
    detail::tile_coords(tile, n_blocks, m_blocks, n_block, m_block);
    // This tile's per-channel epilogue operands, loaded before its main loop (first touch: HBM latency).
    const int n0 = n_block * T::kRows + wg * T::kRowTiles * 64;  // this warpgroup's first channel
    float sw[T::kRowTiles][2], bias[T::kRowTiles][2];
    int32_t z[T::kRowTiles][2];
#pragma unroll
    for (int mi = 0; mi < T::kRowTiles; ++mi)
#pragma unroll
      for (int hi = 0; hi < 2; ++hi) {
        const int n = n0 + mi * 64 + 16 * warp + g + 8 * hi;
        sw[mi][hi] = __half2float(__ushort_as_half(__ldg(ep.w_scales + n)));
        z[mi][hi] = ep.zeros ? int32_t(__ldg(ep.zeros + n)) : ep.zconst;
        bias[mi][hi] = ep.bias ? __half2float(__ushort_as_half(__ldg(ep.bias + n))) : 0.f;
      }
    int32_t acc[T::kRowTiles][T::kTokens / 2];
#pragma unroll
    for (int mi = 0; mi < T::kRowTiles; ++mi)
#pragma unroll
      for (int j = 0; j < T::kTokens / 2; ++j) acc[mi][j] = 0;

    // Main loop: as qgemm_kernel (each stage's wgmmas retired before the next stage's fragments are written).
    for (int kt = 0; kt < p.k_tiles; ++kt, ++it) {
      const int s = it % T::kStages;
      mbar_wait(&full[s], (it / T::kStages) & 1);
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
      if (tid == 0) mbar_arrive(&empty[s]);
    }

    // Epilogue of this warpgroup's channels, specialized so that the common case (no residual) carries no
    // per-output branches: the fully unrolled general version was ~21 instructions per output and 28% of the
    // consumers' time at gate_up M = 8192 (ncu, round 2), much of it instruction-cache misses.
    const detail::EpiCtx ctx{epi, p.M, p.N, m_block, n0, tid};
    if (ep.residual)
      detail::epilogue_tile<T, 0, true>(acc, sw, z, bias, ep, ctx);
    else if (ep.bf16)
      detail::epilogue_tile<T, 2, false>(acc, sw, z, bias, ep, ctx);
    else
      detail::epilogue_tile<T, 1, false>(acc, sw, z, bias, ep, ctx);
  }
}

}  // namespace qoq::cuda
