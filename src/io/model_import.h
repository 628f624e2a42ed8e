// Internals shared by the importers behind load_model(): per-format entry points (also used by the fuzzers
// on bytes in memory), the expected tensor set of a config, dtype conversion and the RoPE row permutation.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "io/mapped_file.h"
#include "qoq/model_weights.h"

namespace qoq::io {

ModelWeights import_llama2c(std::shared_ptr<MappedFile> file, const LoadOptions& opts);
ModelWeights import_gguf(const GgufFile& gguf, const LoadOptions& opts);
// A Hugging Face model directory: config.json, model.safetensors or model.safetensors.index.json, tokenizer.
ModelWeights import_hf_dir(const std::string& dir, const LoadOptions& opts);

// Maps GGUF metadata (llama.* / qwen2.* and tokenizer.ggml.*) to a validated ModelConfig.
ModelConfig gguf_model_config(const GgufFile& gguf);

// Every tensor (HF name, shape) a model with this config must have.
std::vector<std::pair<std::string, Shape>> expected_tensors(const ModelConfig& c);
// Throws InputError naming `source` and the tensor when one is missing or has the wrong shape.
void check_tensors(const ModelWeights& w, const std::string& source);

// Returns `t` itself when it already has `dtype`, else a converted copy (float dtypes only).
Tensor convert_float(const Tensor& t, DType dtype);

// Rows of each head of a q/k weight [n_heads*D, in] (or bias [n_heads*D]) from interleaved RoPE order
// (pair 2i, 2i+1: llama.c, and llama.cpp's permuted GGUF rows) to HF rotate-half order (pair i, i+D/2):
// out[h*D + i] = in[h*D + 2i], out[h*D + D/2 + i] = in[h*D + 2i + 1]. Returns a new F32 tensor.
Tensor interleaved_to_rotate_half(const Tensor& w, int n_heads, const std::string& name);

}  // namespace qoq::io
