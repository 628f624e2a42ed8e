// Prefill attention on Hopper warpgroup MMAs (FlashAttention-3 form), head_dim 128, over the paged KV4 / KV8 / fp16
// cache. Two launches:
//  1. prefill_stage_kernel: every 128-key tile a prefill reads, per (sequence, KV head), is written to the workspace
//     as an fp16 image ready for wgmma (K then V, each sw128: prefill_wgmma.cuh), x̂ = scale * (c - zero) in fp32 as
//     ref::kv_dequantize_head, rounded once to fp16 (the values the mma.sync kernel attends over); positions at or
//     past the sequence's end are zeros, so no garbage meets a zero probability. fp16 caches are copied.
//  2. prefill_wgmma_kernel: CTA = (query tile of 128 rows, KV head, sequence), 3 warpgroups. Row = (token, query head
//     of the group) as in the mma.sync kernel (GQA: one K/V tile serves all G heads). Warpgroup 0 is the producer
//     (one thread: cp.async.bulk of the next tiles, 64 KB each, into a 3-stage mbarrier ring); warpgroups 1-2 are
//     consumers of 64 rows each (setmaxnreg 24 / 240): S = Q K^T as 8 wgmma m64n128k16 from shared memory, causal
//     mask only on tiles that reach past the warpgroup's first query, online softmax in fp32 registers (exp2, scale
//     folded), then O += P V as 8 wgmma with P from registers and V as the transposed (MN-major) B operand.
// Tiles are 128 keys aligned to absolute positions and fully masked tiles are exact no-ops, so a row's output depends
// only on its position: chunked prefill equals one shot bit for bit. CTAs are ordered by work, longest first.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <type_traits>

#include "kernels/cuda/attention/prefill_kernel.cuh"
#include "kernels/cuda/attention/prefill_wgmma.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.h"

namespace qoq::cuda::attn {
namespace {

constexpr int kD = 128;
constexpr int kTileN = 128;                        // keys per tile
constexpr int kCtaRows = 128;                      // (token, head) rows per CTA: 2 consumer warpgroups x 64
constexpr int kStages = 3;  // 3 x 64 KB + Q 32 KB: the most that fits (227 KB), 1 CTA per SM either way
constexpr int kHalfBytes = kTileN * kD * 2;        // one K or V tile image: 32 KB
constexpr int kTileBytes = 2 * kHalfBytes;         // K + V of one tile in the workspace: 64 KB
constexpr int kQBytes = 64 * kD * 2;               // one consumer's Q rows: 16 KB
constexpr int kSmemBytes = 2 * kQBytes + kStages * kTileBytes + 128 /* barriers */ + 1024 /* alignment */;

struct StageParams {
  const uint8_t* pool;
  const int32_t* page_table;
  int max_pages;
  int n_kv_heads;
  size_t block_bytes;
  const int32_t* cu_tokens;
  const int32_t* starts;
  uint8_t* work;
  int max_tiles;
};

struct WgParams {
  const uint16_t* q;
  const int32_t* cu_tokens;
  const int32_t* starts;
  const uint8_t* work;
  int max_tiles;
  int batch;
  int n_kv_heads;
  int group;
  int n_heads;
  int tokens_per_cta;
  int n_qt;
  float scale_log2;
  uint16_t* out;
};

// One CTA per (128-key tile, KV head, sequence): 4096 16-byte output units (K and V, 128 rows, 16 units), 8 per
// thread. All 8 units' loads are issued before the first store (a store between them would order the next loads
// behind it: round 2 measured 16 us at 4096 tokens with the loads serialized, 1.3 TB/s).
constexpr int kStageThreads = 512, kStageUnits = 2 * kTileN * 16 / kStageThreads;
template <int BITS>
__global__ void __launch_bounds__(kStageThreads) prefill_stage_kernel(const StageParams p) {
  // The wgmma kernel launched next (programmatic dependent launch) may start its prologue now; it waits for this
  // grid's completion (griddepcontrol.wait) before reading the workspace.
  launch_dependents();
  constexpr int R = kD * BITS / 8;  // bytes of one cached row
  using Raw = std::conditional_t<BITS == 16, uint4, std::conditional_t<BITS == 8, uint2, uint32_t>>;
  const int j = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int len = p.starts[b] + p.cu_tokens[b + 1] - p.cu_tokens[b];
  if (j * kTileN >= len) return;
  uint8_t* dst = p.work + ((size_t(b) * p.n_kv_heads + kvh) * p.max_tiles + j) * kTileBytes;
  const int32_t* table = p.page_table + size_t(b) * p.max_pages;
  Raw raw[kStageUnits];
  uint32_t prm[kStageUnits];
#pragma unroll
  for (int k = 0; k < kStageUnits; ++k) {
    const int i = threadIdx.x + k * kStageThreads;
    const int kv = i >> 11, r = (i >> 4) & (kTileN - 1), u = i & 15;
    const int pos = j * kTileN + r;
    raw[k] = Raw{};
    prm[k] = 0;
    if (pos < len) {
      const uint8_t* blk = p.pool + (size_t(__ldg(table + pos / kKvPageTokens)) * p.n_kv_heads + kvh) * p.block_bytes;
      const int rr = pos % kKvPageTokens;
      raw[k] = __ldg(reinterpret_cast<const Raw*>(blk + kv * kKvPageTokens * R + rr * R) + u);
      if constexpr (BITS != 16)
        prm[k] = __ldg(reinterpret_cast<const uint32_t*>(blk + 2 * kKvPageTokens * R + kv * kKvPageTokens * 4) + rr);
    }
  }
#pragma unroll
  for (int k = 0; k < kStageUnits; ++k) {
    const int i = threadIdx.x + k * kStageThreads;
    const int kv = i >> 11, r = (i >> 4) & (kTileN - 1), u = i & 15;
    uint4 v;
    if constexpr (BITS == 16) {
      v = raw[k];  // zeros past the end
    } else {
      const float scale = __half2float(__ushort_as_half(uint16_t(prm[k] & 0xFFFF)));
      const float zero = __half2float(__ushort_as_half(uint16_t(prm[k] >> 16)));
      int c[8];
      if constexpr (BITS == 4) {
#pragma unroll
        for (int e = 0; e < 8; ++e) c[e] = (raw[k] >> (4 * e)) & 15;  // channel 2i: low nibble of byte i
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) c[e] = (raw[k].x >> (8 * e)) & 255, c[4 + e] = (raw[k].y >> (8 * e)) & 255;
      }
      uint32_t h[4];
      // x̂ = scale * (c - zero) in fp32 as ref::kv_dequantize_head; past the end scale = zero = 0 gives zeros.
#pragma unroll
      for (int e = 0; e < 4; ++e)
        h[e] = wg::pack_h2(__fmul_rn(__fsub_rn(float(c[2 * e]), zero), scale),
                           __fmul_rn(__fsub_rn(float(c[2 * e + 1]), zero), scale));
      v = make_uint4(h[0], h[1], h[2], h[3]);
    }
    *reinterpret_cast<uint4*>(dst + kv * kHalfBytes + wg::sw128_offset(kTileN, r, u)) = v;
  }
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Per-consumer-thread state and the steps of one tile (the two loop schedules below share them).
struct Consumer {
  uint32_t sq_addr;
  int lane;
  int qpos[2];  // positions of this thread's two rows
  int wg_qmin;
  float c;  // scale * log2(e)
  float m[2], l[2];

  // S = Q K^T of the tile whose K image is at sk_addr (8 wgmma, one commit group).
  __device__ __forceinline__ void issue_qk(float (&sc)[64], uint32_t sk_addr) const {
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks)
      wg::wgmma_ss_m64n128k16(sc, wg::desc_sw128(sq_addr + (ks / 4) * (kQBytes / 2) + (ks % 4) * 32, 16, 1024),
                              wg::desc_sw128(sk_addr + (ks / 4) * (kHalfBytes / 2) + (ks % 4) * 32, 16, 1024), ks);
    wg::wgmma_commit();
  }
  // O += P V of the tile whose V image is at sv_addr.
  __device__ __forceinline__ static void issue_pv(float (&o)[64], const uint32_t (&pa)[8][4], uint32_t sv_addr) {
#pragma unroll
    for (int kk = 0; kk < kTileN / 16; ++kk)
      wg::wgmma_rs_m64n128k16_tb(o, pa[kk], wg::desc_sw128(sv_addr + kk * 2048, kHalfBytes / 2, 1024));
    wg::wgmma_commit();
  }
  // Causal mask (only on tiles reaching past the warpgroup's first query), online softmax: sc becomes P (fp32),
  // alpha the factor O must be scaled by before this tile's P V.
  __device__ __forceinline__ void softmax(float (&sc)[64], int j, float (&alpha)[2]) {
    if (j * kTileN + kTileN - 1 > wg_qmin) {
#pragma unroll
      for (int nt = 0; nt < 16; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int kp = j * kTileN + 8 * nt + 2 * (lane & 3) + (e & 1);
          if (kp > qpos[e >> 1]) sc[4 * nt + e] = -INFINITY;
        }
    }
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      // Row max and sum as 4 independent chains each (a single 32-long dependent chain per row was latency bound).
      float mx4[4] = {m[hf], -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < 16; ++nt)
        mx4[nt & 3] = fmaxf(mx4[nt & 3], fmaxf(sc[4 * nt + 2 * hf], sc[4 * nt + 2 * hf + 1]));
      float mx = fmaxf(fmaxf(mx4[0], mx4[1]), fmaxf(mx4[2], mx4[3]));
      mx = quad_max(mx);
      // Tile 0 holds key 0 <= every query, so mx is finite; the guard only keeps NaN out regardless.
      const float mc = mx == -INFINITY ? 0.f : __fmul_rn(mx, c);
      // Plain products: a tile that moves no maximum gives alpha == 1 exactly (chunking relies on it).
      alpha[hf] = exp2_approx(__fmul_rn(m[hf], c) - mc);
      m[hf] = mx;
      float sum4[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int nt = 0; nt < 16; ++nt) {
        const float p0 = exp2_approx(fmaf(sc[4 * nt + 2 * hf], c, -mc));
        const float p1 = exp2_approx(fmaf(sc[4 * nt + 2 * hf + 1], c, -mc));
        sc[4 * nt + 2 * hf] = p0, sc[4 * nt + 2 * hf + 1] = p1;
        sum4[nt & 3] += p0 + p1;
      }
      l[hf] = l[hf] * alpha[hf] + ((sum4[0] + sum4[1]) + (sum4[2] + sum4[3]));
    }
  }
  __device__ __forceinline__ static void rescale(float (&o)[64], const float (&alpha)[2]) {
#pragma unroll
    for (int nt = 0; nt < 16; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[4 * nt + e] *= alpha[e >> 1];
  }
  __device__ __forceinline__ static void pack(const float (&sc)[64], uint32_t (&pa)[8][4]) {
    wg::pack_a<0>(sc, pa[0]);
    wg::pack_a<1>(sc, pa[1]);
    wg::pack_a<2>(sc, pa[2]);
    wg::pack_a<3>(sc, pa[3]);
    wg::pack_a<4>(sc, pa[4]);
    wg::pack_a<5>(sc, pa[5]);
    wg::pack_a<6>(sc, pa[6]);
    wg::pack_a<7>(sc, pa[7]);
  }
};

// A work item: (query tile, sequence, KV head), numbered longest first (qt descending).
struct Item {
  int b, kvh, tok0, t0, start, nq, rows, ctx_end, n_tiles;
  __device__ __forceinline__ bool load(const WgParams& p, int idx) {
    const int per_qt = p.batch * p.n_kv_heads;
    const int qt = p.n_qt - 1 - idx / per_qt, rem = idx % per_qt;
    b = rem / p.n_kv_heads, kvh = rem % p.n_kv_heads;
    tok0 = p.cu_tokens[b];
    const int n = p.cu_tokens[b + 1] - tok0;
    t0 = qt * p.tokens_per_cta;
    if (t0 >= n) return false;  // past this sequence's chunk (ragged batch)
    start = p.starts[b];
    nq = min(p.tokens_per_cta, n - t0);
    rows = nq * p.group;
    ctx_end = start + t0 + nq;
    n_tiles = (ctx_end + kTileN - 1) / kTileN;
    return true;
  }
};

// Item of a CTA's k-th step: snake order over the grid (even rounds left to right, odd right to left), which balances
// the longest-first list as well as a dynamic queue (a grid of one CTA per item takes item blockIdx.x).
__device__ __forceinline__ int item_index(int k) {
  const int g = int(gridDim.x), x = int(blockIdx.x);
  return k * g + ((k & 1) ? g - 1 - x : x);
}

// Loop schedules. kSched 0: per tile S = QK^T, wait, softmax, O += PV, wait (the two consumer warpgroups overlap each
// other only as they drift). 1 (FlashAttention-3's intra-warpgroup overlap): S_{j+1} = Q K_{j+1} and O += P_j V_j are
// issued together and the softmax of tile j+1 runs while P_j V_j is in the tensor cores. 2: 1 plus FlashAttention-3's
// ping-pong: the warpgroups take turns issuing their MMAs (named barriers 3 and 4), so one's softmax runs under the
// other's MMAs; both then run every tile (no skipping of fully masked ones, exact no-ops) so their turns pair up.
// Persistent or not, the kernel walks items item_index(0), item_index(1), ... while they exist; the stage ring and
// its phases run on across items, so the producer fetches the next item's tiles during the current one's tail.
template <int kSched>
__global__ void __launch_bounds__(384, 1) prefill_wgmma_kernel(const WgParams p) {
  constexpr bool kOverlap = kSched >= 1, kPingpong = kSched == 2;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint8_t* stage_base = smem + 2 * kQBytes;
  uint64_t* full_k = reinterpret_cast<uint64_t*>(stage_base + kStages * kTileBytes);
  uint64_t* full_v = full_k + kStages;
  uint64_t* empty = full_v + kStages;
  const int n_items = p.n_qt * p.batch * p.n_kv_heads;
  const int tid = threadIdx.x, wgi = tid / 128;

  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full_k[s], 1);
      mbar_init(&full_v[s], 1);
      mbar_init(&empty[s], 8);  // one arrival per consumer warp
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wgi == 0) {
    // Producer: one thread streams the tiles of this CTA's items through the ring.
    wg::setmaxnreg_dec<24>();
    if (tid == 0) {
      grid_dependency_wait();  // the staging pass's tiles are complete and visible
      int g = 0;  // tiles issued so far (all items)
      for (int k = 0;; ++k) {
        const int idx = item_index(k);
        if (idx >= n_items) break;
        Item it;
        if (!it.load(p, idx)) continue;
        const uint8_t* src = p.work + (size_t(it.b) * p.n_kv_heads + it.kvh) * p.max_tiles * size_t(kTileBytes);
        for (int j = 0; j < it.n_tiles; ++j, ++g) {
          const int s = g % kStages;
          if (g >= kStages) mbar_wait(&empty[s], ((g / kStages) + 1) & 1);
          uint8_t* dk = stage_base + s * kTileBytes;
          mbar_arrive_expect_tx(&full_k[s], kHalfBytes);
          bulk_g2s(dk, src + size_t(j) * kTileBytes, kHalfBytes, &full_k[s]);
          mbar_arrive_expect_tx(&full_v[s], kHalfBytes);
          bulk_g2s(dk + kHalfBytes, src + size_t(j) * kTileBytes + kHalfBytes, kHalfBytes, &full_v[s]);
        }
      }
    }
  } else {
    wg::setmaxnreg_inc<240>();
    const int cw = wgi - 1, wt = tid - 128 * wgi, warp = wt / 32, lane = tid % 32;
    uint8_t* sq = smem + cw * kQBytes;
    const int wrow0 = 64 * cw, G = p.group;
    // Ping-pong turns: warpgroup 0 issues first; a turn starts on its own barrier and hands over on the other's;
    // warpgroup 0 takes the last hand-over at exit so no arrival is left pending.
    auto turn_begin = [&] {
      if constexpr (kPingpong) wg::named_bar(3 + cw, 256);
    };
    auto turn_end = [&] {
      if constexpr (kPingpong) wg::named_bar_arrive(3 + (1 - cw), 256);
    };
    if constexpr (kPingpong)
      if (cw == 1) wg::named_bar_arrive(3, 256);
    // g: tiles consumed so far (all items): stage g % kStages, phase (g / kStages) & 1.
    auto k_addr = [&](int g) { return smem_u32(stage_base + (g % kStages) * kTileBytes); };
    auto release = [&](int g) {
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[g % kStages]);
    };
    auto wait_k = [&](int g) { mbar_wait(&full_k[g % kStages], (g / kStages) & 1); };
    auto wait_v = [&](int g) { mbar_wait(&full_v[g % kStages], (g / kStages) & 1); };
    Consumer cs;
    cs.sq_addr = smem_u32(sq);
    cs.lane = lane;
    cs.c = p.scale_log2;
    int g0 = 0;

    for (int k = 0;; ++k) {
      const int idx = item_index(k);
      if (idx >= n_items) break;
      Item it;
      if (!it.load(p, idx)) continue;
      const size_t head0 = size_t(it.kvh) * G;
      const int rows = it.rows;
      // Q rows of this warpgroup into its sw128 image (zeros past `rows`); its previous item's MMAs are complete.
      for (int i = wt; i < 64 * 16; i += 128) {
        const int r = i / 16, u = i % 16, gr = wrow0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (gr < rows)
          v = __ldg(reinterpret_cast<const uint4*>(
                        p.q + (size_t(it.tok0 + it.t0 + gr / G) * p.n_heads + head0 + gr % G) * kD) +
                    u);
        *reinterpret_cast<uint4*>(sq + wg::sw128_offset(64, r, u)) = v;
      }
      fence_proxy_async();
      wg::named_bar(1 + cw, 128);

      const int qbase = it.start + it.t0;
      cs.wg_qmin = qbase + wrow0 / G;
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int r = wrow0 + 16 * warp + lane / 4 + 8 * hf;
        cs.qpos[hf] = qbase + (r < rows ? r : 0) / G;  // padding rows: computed, never stored
        cs.m[hf] = -INFINITY, cs.l[hf] = 0.f;
      }
      // Tiles after this warpgroup's last query are masked for all its rows: skipped (an exact no-op), but still
      // waited for and released. An idle warpgroup (no rows) computes nothing.
      const int n_tiles = it.n_tiles;
      const int wg_qmax = qbase + min(wrow0 + 63, rows - 1) / G;
      const int n_work = kPingpong ? n_tiles : wrow0 < rows ? min(n_tiles, wg_qmax / kTileN + 1) : 0;

      float o[64];
#pragma unroll
      for (int i = 0; i < 64; ++i) o[i] = 0.f;
      if constexpr (!kOverlap) {
        for (int j = 0; j < n_work; ++j) {
          const int g = g0 + j;
          float sc[64], alpha[2];
          uint32_t pa[8][4];
          wait_k(g);
          wg::wgmma_fence();
          cs.issue_qk(sc, k_addr(g));
          wg::wgmma_wait<0>();
          wg::reg_fence(sc);
          cs.softmax(sc, j, alpha);
          Consumer::rescale(o, alpha);
          Consumer::pack(sc, pa);
          wait_v(g);
          wg::reg_fence(o);
          wg::wgmma_fence();
          Consumer::issue_pv(o, pa, k_addr(g) + kHalfBytes);
          wg::wgmma_wait<0>();
          wg::reg_fence(o);
          release(g);
        }
      } else if (n_work > 0) {
        float sc[64], alpha[2];
        uint32_t pa[8][4];
        wait_k(g0);
        turn_begin();
        wg::wgmma_fence();
        cs.issue_qk(sc, k_addr(g0));
        turn_end();
        wg::wgmma_wait<0>();
        wg::reg_fence(sc);
        cs.softmax(sc, 0, alpha);  // O is zero: alpha unused
        Consumer::pack(sc, pa);
        for (int j = 1; j < n_work; ++j) {
          const int g = g0 + j;
          wait_k(g);
          wait_v(g - 1);
          wg::reg_fence(o);
          turn_begin();
          wg::wgmma_fence();
          cs.issue_qk(sc, k_addr(g));
          Consumer::issue_pv(o, pa, k_addr(g - 1) + kHalfBytes);
          turn_end();
          wg::wgmma_wait<1>();  // S_j landed; P_{j-1} V_{j-1} may still run
          wg::reg_fence(sc);
          cs.softmax(sc, j, alpha);
          wg::wgmma_wait<0>();
          wg::reg_fence(o);
          release(g - 1);
          Consumer::rescale(o, alpha);
          Consumer::pack(sc, pa);
        }
        const int g = g0 + n_work - 1;
        wait_v(g);
        wg::reg_fence(o);
        turn_begin();
        wg::wgmma_fence();
        Consumer::issue_pv(o, pa, k_addr(g) + kHalfBytes);
        turn_end();
        wg::wgmma_wait<0>();
        wg::reg_fence(o);
        release(g);
      }
      for (int j = n_work; j < n_tiles; ++j) {
        wait_k(g0 + j);
        wait_v(g0 + j);
        release(g0 + j);
      }
      g0 += n_tiles;

      if (wrow0 < rows) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const float inv = 1.f / quad_sum(cs.l[hf]);
          const int r = wrow0 + 16 * warp + lane / 4 + 8 * hf;
          if (r < rows) {
            uint16_t* dst =
                p.out + (size_t(it.tok0 + it.t0 + r / G) * p.n_heads + head0 + r % G) * kD + 2 * (lane & 3);
#pragma unroll
            for (int nt = 0; nt < 16; ++nt)
              *reinterpret_cast<uint32_t*>(dst + 8 * nt) =
                  wg::pack_h2(o[4 * nt + 2 * hf] * inv, o[4 * nt + 2 * hf + 1] * inv);
          }
        }
      }
    }
    if constexpr (kPingpong)
      if (cw == 0) wg::named_bar(3, 256);  // warpgroup 1's last hand-over
  }
}

template <int kSched>
void launch_kernel(const WgParams& p, unsigned items, bool persistent, cudaStream_t stream) {
  static std::once_flag once;
  std::call_once(once, [] {
    QOQ_CUDA_CHECK(
        cudaFuncSetAttribute(prefill_wgmma_kernel<kSched>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  });
  const unsigned ctas = persistent ? std::min(items, unsigned(sm_count())) : items;
  // Programmatic dependent launch: CTAs start (barrier init, Q rows) while the staging pass finishes.
  launch_ex(prefill_wgmma_kernel<kSched>, dim3(ctas), dim3(384), kSmemBytes, stream, true, p);
}

// Loop schedule (see the kernel) and grid, for benchmarks: QOQ_PREFILL_WGMMA_SCHEDULE=0, 1 or 2, plus 10 for a
// persistent grid (one CTA per SM walking items in snake order; else one CTA per item). Default 11 (the fastest of
// 1, 2, 11, 12 at 4096 and 8192 tokens in round 3 of bench/NOTES_prefill.md, by ~3%).
int schedule() {
  static const int v = [] {
    const char* e = std::getenv("QOQ_PREFILL_WGMMA_SCHEDULE");
    return e ? std::atoi(e) : 11;
  }();
  return v;
}

}  // namespace

size_t prefill_wgmma_workspace_bytes(int batch, int max_pages, int n_kv_heads, int head_dim) {
  if (head_dim != kD) return 0;
  const int max_tiles = (max_pages * kKvPageTokens + kTileN - 1) / kTileN;
  return size_t(batch) * n_kv_heads * max_tiles * kTileBytes;
}

// Returns false (launching nothing) when the shape is not the wgmma kernel's (head_dim 128, workspace large enough).
bool launch_prefill_wgmma(const PagedKv& c, const PrefillArgs& a, cudaStream_t stream) {
  const KvCacheLayout& L = c.layout;
  const size_t need = prefill_wgmma_workspace_bytes(a.batch, c.max_pages, L.n_kv_heads, L.head_dim);
  if (L.head_dim != kD || a.workspace == nullptr || a.workspace_bytes < need) return false;
  const int max_tiles = (c.max_pages * kKvPageTokens + kTileN - 1) / kTileN;
  StageParams sp{c.pool, c.page_table, c.max_pages, L.n_kv_heads, L.block_bytes(), a.cu_tokens, a.starts,
                 static_cast<uint8_t*>(a.workspace), max_tiles};
  const dim3 sgrid(max_tiles, L.n_kv_heads, a.batch);
  switch (L.bits) {
    case 4: prefill_stage_kernel<4><<<sgrid, kStageThreads, 0, stream>>>(sp); break;
    case 8: prefill_stage_kernel<8><<<sgrid, kStageThreads, 0, stream>>>(sp); break;
    default: prefill_stage_kernel<16><<<sgrid, kStageThreads, 0, stream>>>(sp); break;
  }
  QOQ_CUDA_CHECK_LAUNCH();
  WgParams p{};
  p.q = a.q;
  p.cu_tokens = a.cu_tokens;
  p.starts = a.starts;
  p.work = static_cast<const uint8_t*>(a.workspace);
  p.max_tiles = max_tiles;
  p.batch = a.batch;
  p.n_kv_heads = L.n_kv_heads;
  p.group = a.n_heads / L.n_kv_heads;
  p.n_heads = a.n_heads;
  p.tokens_per_cta = kCtaRows / p.group;
  p.n_qt = (a.max_tokens + p.tokens_per_cta - 1) / p.tokens_per_cta;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.out = a.out;
  const long long ctas = (long long)p.n_qt * a.batch * L.n_kv_heads;
  QOQ_CUDA_REQUIRE(ctas < (1LL << 31), "prefill_attention: grid too large");
  const bool persistent = schedule() >= 10;
  switch (schedule() % 10) {
    case 0: launch_kernel<0>(p, unsigned(ctas), persistent, stream); break;
    case 2: launch_kernel<2>(p, unsigned(ctas), persistent, stream); break;
    default: launch_kernel<1>(p, unsigned(ctas), persistent, stream); break;
  }
  QOQ_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace qoq::cuda::attn
