// Host API of the Hopper attention kernels over the paged KV cache (layout: docs/kv_cache.md; numerics: DESIGN §3,
// reference: src/kernels/cpu/kv_quant.h). All pointers are device pointers; calls are asynchronous on `stream`.
#pragma once
#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace qoq::cuda {

using AttnStream = CUstream_st*;

// Tokens per page: every page holds 64 consecutive positions of one sequence, for every KV head of one layer.
inline constexpr int kKvPageTokens = 64;

// The cache of one layer: a pool of pages; bits 4 (KV4), 8 (KV8) or 16 (fp16, no scales).
struct KvCacheLayout {
  int bits = 4;
  int n_kv_heads = 0;
  int head_dim = 0;  // 64 or 128
  // Bytes of one token's codes of one head (head_dim * bits / 8).
  constexpr int row_bytes() const { return head_dim * bits / 8; }
  // One (page, KV head) block: K rows [64][row_bytes], V rows [64][row_bytes], then for KV4/KV8 K params [64] and V
  // params [64], each param the fp16 pair (scale, zero) in 4 bytes.
  constexpr size_t block_bytes() const {
    return 2 * size_t(kKvPageTokens) * row_bytes() + (bits == 16 ? 0 : 2 * kKvPageTokens * 4);
  }
  constexpr size_t page_bytes() const { return block_bytes() * n_kv_heads; }
  // Offsets inside a block.
  constexpr size_t k_offset() const { return 0; }
  constexpr size_t v_offset() const { return size_t(kKvPageTokens) * row_bytes(); }
  constexpr size_t k_param_offset() const { return 2 * size_t(kKvPageTokens) * row_bytes(); }
  constexpr size_t v_param_offset() const { return k_param_offset() + kKvPageTokens * 4; }
};

// Page table: int32 [batch, max_pages]; entry j of sequence b is the pool page holding its positions 64j .. 64j+63.
struct PagedKv {
  KvCacheLayout layout;
  uint8_t* pool = nullptr;         // page_bytes() * pages
  const int32_t* page_table = nullptr;
  int max_pages = 0;               // row pitch of page_table
};

// Fused RoPE + KV quantization + paged write for `tokens` tokens of the qkv GEMM output.
//   qkv fp16 [tokens, (n_heads + 2 * n_kv_heads) * head_dim]: q heads, then k heads, then v heads.
//   seq_ids, positions int32 [tokens]: token t is position positions[t] of sequence seq_ids[t] (its page is
//   page_table[seq_ids[t] * max_pages + positions[t] / 64]).
//   inv_freq fp32 [head_dim / 2]: cpu::rope_inv_freq(config) (theta, linear and llama3 scaling already applied).
//   q_out fp16 [tokens, n_heads, head_dim]: rotated queries.
// Numerics: x = float(fp16); angle = float(pos) * inv_freq[i] (fp32), cos/sin of it evaluated in double and rounded
// to float (as cpu::rope_apply); a' = a*c - b*s, b' = b*c + a*s in fp32 without contraction. Keys are quantized from
// the fp32 rotated values, values from float(fp16), exactly as ref::kv_quantize_head (bit-exact codes, scales, zeros);
// the fp16 cache stores fp16(rotated K) and V as given; q_out = fp16(rotated q).
void rope_quantize_write(const uint16_t* qkv, const int32_t* seq_ids, const int32_t* positions, int tokens,
                         int n_heads, const float* inv_freq, const PagedKv& cache, uint16_t* q_out,
                         AttnStream stream = nullptr);

// Scratch for decode split-K: partials and per-(sequence, KV head) counters. The counters must be zero before the
// first call; every call leaves them zero again, so zero the buffer once at allocation.
size_t decode_workspace_bytes(int batch, int n_heads, int n_kv_heads, int head_dim);

struct DecodeArgs {
  const uint16_t* q = nullptr;   // fp16 [batch, n_heads, head_dim], rotated
  const int32_t* lengths = nullptr;  // int32 [batch]: positions 0 .. lengths[b]-1 are attended (the new token too)
  int batch = 0;
  int n_heads = 0;      // multiple of n_kv_heads, at most 8 query heads per KV head
  int max_length = 0;   // >= every lengths[b]; sizes the split
  float scale = 0.f;    // softmax scale, usually 1/sqrt(head_dim)
  uint16_t* out = nullptr;  // fp16 [batch, n_heads, head_dim]
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int splits = 0;       // 0: chosen from batch, heads and max_length; else forced (tests)
};

// Decode attention (one query token per sequence) over the paged cache: GQA per KV head, split-K with the combine
// done by the last CTA of each (sequence, KV head). Scores and softmax in fp32 over x̂ = scale * (c - zero).
void decode_attention(const PagedKv& cache, const DecodeArgs& args, AttnStream stream = nullptr);

// The simple baseline (benchmarks only): one CTA per query head, each re-reading its KV head, fp32 dequantization
// on CUDA cores, one warp per token. Same arguments; no split, no workspace.
void decode_attention_simple(const PagedKv& cache, const DecodeArgs& args, AttnStream stream = nullptr);


// Prefill (and chunked prefill) of a variable-length batch: sequence b contributes the chunk of new tokens at
// positions [starts[b], starts[b] + n_b), whose K/V rope_quantize_write has already stored in the pages; earlier
// positions 0 .. starts[b]-1 are in the pages from previous chunks. Query row i of the chunk attends causally to
// positions 0 .. starts[b] + i.
struct PrefillArgs {
  const uint16_t* q = nullptr;          // fp16 [tokens, n_heads, head_dim], rotated; the batch's chunks back to back
  const int32_t* cu_tokens = nullptr;   // int32 [batch + 1]: sequence b's rows are cu_tokens[b] .. cu_tokens[b+1]-1
  const int32_t* starts = nullptr;      // int32 [batch]: position of each chunk's first token
  int batch = 0;
  int n_heads = 0;      // multiple of n_kv_heads, at most 128 query heads per KV head
  int max_tokens = 0;   // >= every chunk size n_b; sizes the grid
  float scale = 0.f;    // softmax scale, usually 1/sqrt(head_dim)
  uint16_t* out = nullptr;  // fp16 [tokens, n_heads, head_dim]
  // Scratch of the wgmma path (head_dim 128): prefill_workspace_bytes(batch, cache.max_pages, ...) bytes. Without it
  // (or for head_dim 64) prefill_attention runs the mma.sync kernel.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Workspace of prefill_attention's wgmma path: the fp16 image of every 128-key tile a call can read (64 KB per tile,
// sequence and KV head); 0 for head_dim 64 (mma.sync path, no workspace).
size_t prefill_workspace_bytes(int batch, int max_pages, int n_kv_heads, int head_dim);

// Causal prefill attention over the paged cache. head_dim 128 with a workspace: Hopper wgmma kernel (FlashAttention-3
// form, src/kernels/cuda/attention/prefill_wgmma.cu): a staging pass writes fp16(x̂) of the K/V tiles the call reads
// into the workspace (x̂ = scale * (c - zero) in fp32, rounded once: the values below), then a warp-specialized
// kernel (bulk-copy producer, 2 consumer warpgroups, wgmma for Q K^T and P V, fp32 online softmax). Otherwise the
// mma.sync kernel (prefill_attention_mma). Both: chunked prefill gives the same bits as one shot.
void prefill_attention(const PagedKv& cache, const PrefillArgs& args, AttnStream stream = nullptr);

// The mma.sync kernel (FlashAttention-2 form, mma.m16n8k16; the baseline of the wgmma path): each K/V tile
// is read from its page once per (query tile, KV head) for all query heads of the group and dequantized to fp16
// x̂ = scale * (c - zero) in shared memory (DESIGN §3: the stored values, the chunk's own tokens too); softmax in
// fp32. A token's output does not depend on how the prompt was chunked (bit-identical to one shot). No workspace.
void prefill_attention_mma(const PagedKv& cache, const PrefillArgs& args, AttnStream stream = nullptr);

// The naive baseline (benchmarks only): one CTA per (token, query head), one warp per key, fp32 dequantization on
// CUDA cores. Same arguments.
void prefill_attention_simple(const PagedKv& cache, const PrefillArgs& args, AttnStream stream = nullptr);

}  // namespace qoq::cuda

namespace qoq::cuda {

// ---- Fused elementwise kernels of a W4A8 layer (src/kernels/cuda/fused/). Outputs feed gemm() (cuda_gemm.h):
// int8 codes [M, K], fp32 scales [M], int32 row sums [M], numerics of ref::quantize_activations (DESIGN §3).

// RMSNorm of the residual stream x (fp16, or bf16 when x_bf16) [M, K] + per-token int8 quantization. Per row, fp32:
//   ss = sum_k x_k^2 (fp32, the kernel's summation order); inv = 1 / sqrt(ss / K + eps) (each op rounded once);
//   y_k = w_k * (x_k * inv) with w fp16 [K] (null: 1), then codes / scale / sum = ref::quantize_activations(y).
// inv_out (fp32 [M], may be null) returns inv, so a reference can rebuild y bit for bit. K % 8 == 0, K <= 16384.
void rmsnorm_quantize(const void* x, bool x_bf16, int M, int K, const uint16_t* weight, float eps, int8_t* codes,
                      float* scales, int32_t* sums, float* inv_out = nullptr, AttnStream stream = nullptr);

// SwiGLU + quantization: gate_up fp16 [M, 2I] (gate in columns [0, I), up in [I, 2I), the fused gate_up GEMM's
// output); y = g / (1 + exp(-g)) * u in fp32 (expf: within 2 ulp of the CPU's std::exp, so a code can differ by one
// where y sits on a rounding boundary); then ref::quantize_activations(y). I % 8 == 0, I <= 16384.
void silu_mul_quantize(const uint16_t* gate_up, int M, int I, int8_t* codes, float* scales, int32_t* sums,
                       AttnStream stream = nullptr);

}  // namespace qoq::cuda
