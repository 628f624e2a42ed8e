// load_model(): format detection and the checks shared by every importer.
#include <cstring>
#include <filesystem>

#include "core/log.h"
#include "io/model_import.h"

namespace qoq {

const Tensor& ModelWeights::get(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail_input("{}: model has no tensor '{}'", source_path, name);
  return it->second;
}

namespace io {

std::vector<std::pair<std::string, Shape>> expected_tensors(const ModelConfig& c) {
  const int64_t d = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.intermediate_size, V = c.vocab_size;
  std::vector<std::pair<std::string, Shape>> out = {{"model.embed_tokens.weight", {V, d}}, {"model.norm.weight", {d}}};
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, d}});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    out.push_back({p + "input_layernorm.weight", {d}});
    out.push_back({p + "post_attention_layernorm.weight", {d}});
    out.push_back({p + "self_attn.q_proj.weight", {q, d}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, d}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, d}});
    out.push_back({p + "self_attn.o_proj.weight", {d, q}});
    if (c.attention_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {q}});
      out.push_back({p + "self_attn.k_proj.bias", {kv}});
      out.push_back({p + "self_attn.v_proj.bias", {kv}});
    }
    out.push_back({p + "mlp.gate_proj.weight", {f, d}});
    out.push_back({p + "mlp.up_proj.weight", {f, d}});
    out.push_back({p + "mlp.down_proj.weight", {d, f}});
  }
  return out;
}

void check_tensors(const ModelWeights& w, const std::string& source) {
  for (const auto& [name, shape] : expected_tensors(w.config)) {
    auto it = w.tensors.find(name);
    if (it == w.tensors.end())
      fail_input("{}: missing tensor '{}' (expected shape {})", source, name, shape_str(shape));
    if (it->second.shape() != shape)
      fail_input("{}: tensor '{}' has shape {}, expected {}", source, name, shape_str(it->second.shape()),
                 shape_str(shape));
    const DType t = it->second.dtype();
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
      fail_input("{}: tensor '{}' has dtype {}, expected a float type (F32, F16, BF16)", source, name, dtype_name(t));
  }
}

Tensor convert_float(const Tensor& t, DType dtype) {
  QOQ_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, "load dtype {} is not a float type",
            dtype_name(dtype));
  return t.dtype() == dtype ? t : t.to(dtype);
}

Tensor interleaved_to_rotate_half(const Tensor& w, int n_heads, const std::string& name) {
  const int64_t rows = w.dim(0);
  const int64_t cols = w.ndim() == 1 ? 1 : w.numel() / rows;
  if (n_heads <= 0 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0)
    fail_input("{}: {} rows cannot be split into {} heads of even size", name, rows, n_heads);
  const int64_t D = rows / n_heads, half = D / 2;
  const Tensor src = w.dtype() == DType::F32 ? w : w.to(DType::F32);
  Tensor out = Tensor::empty(DType::F32, w.shape());
  const float* in = src.data<float>();
  float* o = out.data<float>();
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      std::memcpy(o + (h * D + i) * cols, in + (h * D + 2 * i) * cols, size_t(cols) * 4);
      std::memcpy(o + (h * D + half + i) * cols, in + (h * D + 2 * i + 1) * cols, size_t(cols) * 4);
    }
  }
  return out;
}

}  // namespace io

ModelWeights load_model(const std::string& path, const LoadOptions& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail_input("{}: no such file or directory", path);
  if (fs::is_directory(path, ec)) return io::import_hf_dir(path, opts);

  auto file = io::MappedFile::open(path);
  const uint8_t* p = file->data();
  const size_t n = file->size();
  if (n >= 4 && std::memcmp(p, "GGUF", 4) == 0) {
    const GgufFile gguf = GgufFile::from_memory(p, n, file, path);
    return io::import_gguf(gguf, opts);
  }
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".gguf") fail_input("{}: has the .gguf extension but does not start with the magic 'GGUF'", path);
  if (ext == ".safetensors")
    fail_input("{}: pass the model directory (with config.json), not a single .safetensors file", path);
  if (ext == ".bin") return io::import_llama2c(std::move(file), opts);
  fail_input("{}: unrecognized model format (expected a directory with config.json, a .gguf file, or a llama2.c .bin)",
             path);
}

}  // namespace qoq
