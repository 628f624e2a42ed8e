// The QoQ quantizer driver (DESIGN §4): the passes in order, calibrated layer by layer. Global passes (norm fusion,
// rotation) transform the whole FP model first; then for each block, with calibration activations produced by the
// already-quantized earlier blocks (fake-quant: dequantized weights, int8 activations and the KV cache
// quantize-dequantized exactly as the integer path does):
//   attention half: capture H = hᵀh of the q/k/v input and FP post-RoPE max|K| (SmoothAttention) and the o_proj input
//   ranges (reordering, v/o smoothing with an optional α search); quantize q/k/v (clip search or progressive grid,
//   then GPTQ); recompute the attention with the quantized q/k/v to get o_proj's input, quantize o_proj;
//   MLP half: the same for gate/up -> down.
// Every pass can be switched off; all off is plain round-to-nearest (the RTN baseline).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/qoq_checkpoint.h"
#include "qoq/model_weights.h"
#include "qoq/tokenizer.h"
#include "quant/calibration.h"

namespace qoq::quant {

struct QuantizeOptions {
  int weight_bits = 4;   // 4 | 8 (W8: per-channel symmetric int8)
  int group_size = 128;  // W4: 128 | 64 | 32 | -1 (per-channel)
  int kv_bits = 4;       // 4 | 8 | 16

  bool fuse_norms = true;
  bool rotate = true;   // needs fuse_norms
  bool reorder = true;  // grouped W4 only
  bool smooth_attention = true;
  float smooth_attention_alpha = 0.5f;
  bool smooth_linear = true;
  float smooth_alpha = -1.0f;  // < 0: 0.05 (per-channel, W8) or 0.3 (groups); beta = 1 - alpha
  bool alpha_search = true;    // α over `alpha_grid`, scored by the o_proj / down_proj output error
  std::vector<float> alpha_grid = {0.0f, 0.05f, 0.1f, 0.15f, 0.2f, 0.25f, 0.3f, 0.4f, 0.5f};
  int search_tokens = 512;  // calibration tokens used by the α search
  bool clip_search = true;  // per-channel W4 only
  int clip_ratios = 81;     // how many of 1.00, 0.99, ..., 0.20 (evenly thinned when fewer)
  bool gptq = true;
  double gptq_damp = 0.01;
  int64_t gptq_block = 128;
  bool act_order = true;

  CalibrationOptions calibration;
  bool progress = true;
};

struct QuantizeReport {
  std::vector<std::pair<std::string, double>> seconds;  // per pass, in order of first use
  double total_seconds = 0;
  int64_t calibration_tokens = 0;
  int64_t peak_rss_bytes = 0;
};

// `source` is the path of `w` as given (recorded in qoq.json with its hash). InputError on inconsistent options.
io::QoqCheckpoint quantize_model(const ModelWeights& w, const Tokenizer& tok, const QuantizeOptions& opts,
                                 const std::string& source, QuantizeReport* report = nullptr);

// Checks the option combination (InputError naming the flag).
void validate(const QuantizeOptions& opts);

}  // namespace qoq::quant
