// An unquantized model in memory: config, tensors under Hugging Face names, and where its tokenizer lives.
#pragma once
#include <map>
#include <string>

#include "qoq/model_config.h"
#include "qoq/tensor.h"

namespace qoq {

// Where the tokenizer of a model comes from; load_tokenizer() (tokenizer.h) turns this into a Tokenizer.
struct TokenizerSource {
  enum class Kind { None, Llama2c, SentencePiece, HfJson, Gguf };
  Kind kind = Kind::None;
  std::string path;  // tok512.bin | tokenizer.model | tokenizer.json | the .gguf file
  std::string chat_template;  // Jinja text as found (GGUF metadata or tokenizer_config.json), may be empty
};

// Tensor names (HF): model.embed_tokens.weight, model.norm.weight, lm_head.weight (absent when tied),
// model.layers.{i}.input_layernorm.weight, model.layers.{i}.post_attention_layernorm.weight,
// model.layers.{i}.self_attn.{q,k,v,o}_proj.weight (+ .bias for q/k/v when attention_bias),
// model.layers.{i}.mlp.{gate,up,down}_proj.weight. Weights are [out, in] row-major.
// RoPE convention: HF rotate-half (channel i pairs with i + head_dim/2); importers of interleaved formats
// (llama2.c, GGUF) permute q/k rows at import so the rest of the engine knows one RoPE.
struct ModelWeights {
  ModelConfig config;
  std::map<std::string, Tensor> tensors;
  TokenizerSource tokenizer;
  std::string source_path;
  std::string source_format;  // "safetensors" | "gguf" | "llama2c"

  const Tensor& get(const std::string& name) const;  // throws InputError naming the missing tensor
  bool has(const std::string& name) const { return tensors.count(name) != 0; }
};

struct LoadOptions {
  DType dtype = DType::F32;  // float dtype of the returned tensors (F32 for the CPU reference)
  bool progress = true;
};

// Detects the format: a directory with config.json + *.safetensors, a .gguf file, or a llama2.c .bin.
// Checks that every tensor the config implies is present with the right shape (error names the tensor).
ModelWeights load_model(const std::string& path, const LoadOptions& opts = {});

}  // namespace qoq
