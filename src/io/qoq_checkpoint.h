// The QoQ checkpoint directory of DESIGN §5: config.json (HF, amended), qoq.json (how it was quantized, per-layer
// formats), tokenizer files, and model.safetensors (sharded with an index past 4 GB). Writing is all-or-nothing
// (a temp directory renamed into place); reading checks every tensor against qoq.json and config.json and names
// the file, tensor and field that disagree.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qoq/model_config.h"
#include "qoq/model_weights.h"
#include "qoq/tensor.h"
#include "quant/grid.h"

namespace qoq::io {

// One quantized linear as qoq.json records it (keyed by its HF prefix, e.g. "model.layers.0.self_attn.q_proj").
struct QuantLayerInfo {
  quant::WeightFormat format = quant::WeightFormat::W4PerChannel;
  int64_t out_features = 0;  // N
  int64_t in_features = 0;   // K of the model
  int64_t k_padded = 0;      // K_pad: K rounded up to the group (W4 group) or to even (W4 per-channel), = K for W8
  int64_t group_size = -1;   // W4 group: G; -1 otherwise
  bool has_bias = false;
  bool operator==(const QuantLayerInfo&) const = default;
};

struct QoqInfo {
  int version = 1;
  int weight_bits = 4;    // 4 | 8
  int group_size = -1;    // requested: 128 | 64 | 32 | -1 (per-channel); per-layer truth is in `layers`
  int kv_bits = 4;        // 4 | 8 | 16
  std::string passes;       // JSON object text: which passes ran, with their parameters (recorded as given)
  std::string calibration;  // JSON object text: files, windows, window length, seed
  std::string timing;       // JSON object text: seconds per pass (informational)
  std::string source_model;   // path as given to `qoq quantize`
  std::string source_sha256;  // of the source model file (or of config.json + weight files of a directory)
  std::map<std::string, QuantLayerInfo> layers;
  // Which tokenizer the checkpoint holds: "none" | "llama2c" | "sentencepiece" | "hf_json" | "gguf", and its file
  // name inside the checkpoint ("" for none). write_qoq_checkpoint sets both from QoqCheckpoint::tokenizer.
  std::string tokenizer_kind = "none";
  std::string tokenizer_file;
};

// What the quantizer produces and the loader returns.
struct QoqCheckpoint {
  ModelConfig config;  // amended (e.g. tie_word_embeddings false after rotation)
  QoqInfo info;
  // Unquantized tensors under HF names (embeddings, norms, lm_head; any float dtype in memory, F16 on disk).
  std::map<std::string, Tensor> float_tensors;
  // Quantized linears by HF prefix (keys equal info.layers' keys); bias (F32 [N]) in float_tensors as prefix.bias.
  std::map<std::string, quant::QuantWeight> linears;
  TokenizerSource tokenizer;  // where it was read from (reading: the copy inside the checkpoint)
  std::string path;           // the checkpoint directory (reading)
};

// Writes `ckpt` into directory `dir` (created; an existing non-empty dir is an error unless `overwrite`).
// The tokenizer is copied from ckpt.tokenizer: tokenizer.json (+ tokenizer_config.json beside it), tokenizer.model,
// tok512-style .bin, or, for a GGUF source, a tensor-less tokenizer.gguf holding its tokenizer.* metadata.
// ckpt.info.layers may be left empty: it is derived from ckpt.linears (and the biases in float_tensors); when given
// it must agree. ckpt.info.tokenizer_kind/file are set from ckpt.tokenizer. Everything (layer set and shapes
// against the config, float tensor set, codes in range) is checked before anything is written; on any error
// nothing is left at `dir` (an overwritten checkpoint stays as it was) and no temp directory lingers.
void write_qoq_checkpoint(const std::string& dir, const QoqCheckpoint& ckpt, bool overwrite = false);

// True when `path` is a directory holding qoq.json.
bool is_qoq_checkpoint(const std::string& path);

// Reads and validates a checkpoint (InputError naming file/tensor/field on any contradiction: missing or extra
// linears, shapes, dtypes, group sizes, codes out of range, a config that does not match the tensors).
QoqCheckpoint read_qoq_checkpoint(const std::string& dir);

// What `qoq inspect` needs without reading any tensor data: config.json, qoq.json and the safetensors headers,
// with every name, dtype and shape checked as read_qoq_checkpoint checks them (values are not: no code range
// check, no dequantization).
struct QoqTensorEntry {
  std::string file;  // file name inside the checkpoint (a shard when sharded)
  DType dtype = DType::F16;
  Shape shape;
  uint64_t nbytes = 0;
};
struct QoqCheckpointLayout {
  std::string path;
  ModelConfig config;
  QoqInfo info;
  TokenizerSource tokenizer;                     // the copy inside the checkpoint
  std::vector<std::string> weight_files;         // model.safetensors, or the index followed by its shards
  std::map<std::string, QoqTensorEntry> tensors;  // every tensor stored, by name
};
QoqCheckpointLayout read_qoq_checkpoint_layout(const std::string& dir);

// qoq.json's tokenizer kind names <-> TokenizerSource::Kind (InputError naming `source` for an unknown name).
const char* tokenizer_kind_json_name(TokenizerSource::Kind kind);
TokenizerSource::Kind tokenizer_kind_from_json_name(const std::string& name, const std::string& source);

// qoq.json's per-layer format names: "w4_per_channel" | "w4_group" | "w8_per_channel".
const char* weight_format_json_name(quant::WeightFormat f);

// The 7 quantized linears per layer a config implies: HF prefix -> (N out, K in), e.g.
// "model.layers.0.self_attn.q_proj" -> (q_dim, hidden).
std::map<std::string, std::pair<int64_t, int64_t>> expected_linears(const ModelConfig& config);

// qoq.json text <-> QoqInfo (exposed for the fuzzer and tests); `source` names the file in errors.
std::string qoq_info_to_json(const QoqInfo& info);
QoqInfo qoq_info_from_json(const std::string& text, const std::string& source);

}  // namespace qoq::io
