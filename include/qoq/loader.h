// One entry point for every model the engine runs: an FP model (GGUF, HF safetensors directory, llama2.c .bin) or a
// QoQ checkpoint directory (DESIGN §5), ready for Model::forward on the CPU.
#pragma once
#include <memory>
#include <string>

#include "qoq/model.h"
#include "qoq/model_weights.h"

namespace qoq {

struct OpenOptions {
  // How a QoQ checkpoint's linears run: Integer (int8 activations x W4/W8 codes, int32 accumulation: the
  // contract's numbers) or FakeQuant (dequantized float weights, activations quantize-dequantized in float).
  enum class Exec { Integer, FakeQuant };
  Exec exec = Exec::Integer;
  int kv_bits = 0;  // 0: the checkpoint's (16 for FP models); else 4, 8 or 16
  bool progress = true;
};

struct OpenedModel {
  std::unique_ptr<Model> model;
  TokenizerSource tokenizer;
  std::string description;  // e.g. "FP32 (gguf)" or "QoQ W4A8KV4 g128, integer path"
};

// InputError naming the path when it is neither a supported model nor a valid checkpoint.
OpenedModel open_model(const std::string& path, const OpenOptions& options = {});

}  // namespace qoq
