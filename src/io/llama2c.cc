#include "io/llama2c.h"

#include <cstring>
#include <filesystem>

#include "core/progress.h"
#include "io/model_import.h"

namespace qoq::io {
namespace {

constexpr int64_t kHeaderBytes = 7 * 4;
constexpr uint32_t kLlama2cV1Magic = 0x616b3432;  // "ak42": the newer llama2.c export versions

}  // namespace

Llama2cHeader parse_llama2c_header(const uint8_t* data, size_t size, const std::string& path) {
  if (size < size_t(kHeaderBytes))
    fail_input("{}: truncated llama2.c checkpoint: {} bytes, the header alone needs {}", path, size, kHeaderBytes);
  int32_t v[7];
  std::memcpy(v, data, sizeof(v));
  if (uint32_t(v[0]) == kLlama2cV1Magic)
    fail_input("{}: llama2.c export version with magic 'ak42' is not supported (only the legacy format)", path);
  Llama2cHeader h;
  h.dim = v[0];
  h.hidden_dim = v[1];
  h.n_layers = v[2];
  h.n_heads = v[3];
  h.n_kv_heads = v[4];
  h.shared_classifier = v[5] > 0;
  h.vocab_size = v[5] == INT32_MIN ? 0 : (v[5] < 0 ? -v[5] : v[5]);
  h.seq_len = v[6];
  auto range = [&](const char* field, int64_t x, int64_t lo, int64_t hi) {
    if (x < lo || x > hi)
      fail_input("{}: llama2.c header field {} = {} is out of range [{}, {}]", path, field, x, lo, hi);
  };
  // Bounds keep every product below in int64 and match the limits of ModelConfig::validate.
  range("dim", h.dim, 1, 1 << 16);
  range("hidden_dim", h.hidden_dim, 1, 1 << 18);
  range("n_layers", h.n_layers, 1, 1024);
  range("n_heads", h.n_heads, 1, 1024);
  range("n_kv_heads", h.n_kv_heads, 1, h.n_heads);
  range("vocab_size", h.vocab_size, 1, 1 << 22);
  range("seq_len", h.seq_len, 1, 1 << 24);
  if (h.dim % h.n_heads != 0)
    fail_input("{}: llama2.c header: dim = {} is not a multiple of n_heads = {}", path, h.dim, h.n_heads);
  if (h.n_heads % h.n_kv_heads != 0)
    fail_input("{}: llama2.c header: n_heads = {} is not a multiple of n_kv_heads = {}", path, h.n_heads, h.n_kv_heads);
  const int64_t head_dim = h.dim / h.n_heads;
  if (head_dim % 2 != 0) fail_input("{}: llama2.c header: head size {} must be even", path, head_dim);
  const int64_t d = h.dim, f = h.hidden_dim, L = h.n_layers, V = h.vocab_size, kv = head_dim * h.n_kv_heads;
  const int64_t floats = V * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d + 3 * L * f * d + d +
                         int64_t(h.seq_len) * head_dim + (h.shared_classifier ? 0 : V * d);
  h.expected_file_size = kHeaderBytes + 4 * floats;
  if (int64_t(size) != h.expected_file_size)
    fail_input(
        "{}: llama2.c checkpoint is {} bytes but its header (dim {}, hidden {}, layers {}, heads {}/{}, vocab "
        "{}, seq_len {}) implies {} bytes{}",
        path, size, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, v[5], h.seq_len, h.expected_file_size,
        int64_t(size) < h.expected_file_size ? " (truncated)" : "");
  return h;
}

std::string find_llama2c_tokenizer(const std::string& model_path) {
  const std::filesystem::path dir = std::filesystem::path(model_path).parent_path();
  for (const char* name : {"tok512.bin", "tokenizer.bin"}) {
    std::error_code ec;
    const auto p = dir / name;
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

ModelWeights import_llama2c(std::shared_ptr<MappedFile> file, const LoadOptions& opts) {
  const std::string& path = file->path();
  const Llama2cHeader h = parse_llama2c_header(file->data(), file->size(), path);

  ModelWeights w;
  w.source_path = path;
  w.source_format = "llama2c";
  ModelConfig& c = w.config;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.hidden_size = h.dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.intermediate_size = h.hidden_dim;
  c.vocab_size = h.vocab_size;
  c.max_position_embeddings = h.seq_len;
  c.rope_theta = 10000.0f;  // fixed in llama2.c
  c.rms_norm_eps = 1e-5f;   // fixed in llama2.c's rmsnorm
  c.tie_word_embeddings = h.shared_classifier;
  // llama2.c's tokenizer: <unk> 0, <s> 1, </s> 2.
  c.bos_token_id = c.vocab_size > 1 ? 1 : -1;
  if (c.vocab_size > 2) c.eos_token_ids = {2};
  c.validate(path);

  const std::string tok = find_llama2c_tokenizer(path);
  if (tok.empty())
    fail_input("{}: llama2.c tokenizer not found: expected tok512.bin or tokenizer.bin in {}", path,
               std::filesystem::path(path).parent_path().string());
  w.tokenizer.kind = TokenizerSource::Kind::Llama2c;
  w.tokenizer.path = tok;

  const int64_t d = c.hidden_size, f = c.intermediate_size, L = c.num_layers, kv = c.kv_dim();
  // Weights are float32 at offset 28, so 4-byte aligned in the page-aligned map: views need no copy.
  auto* base = const_cast<uint8_t*>(file->data()) + kHeaderBytes;
  std::shared_ptr<void> keep = file;
  Progress progress("loading " + std::filesystem::path(path).filename().string(), 10 + (h.shared_classifier ? 0 : 1),
                    opts.progress);
  auto next = [&](Shape shape) {
    Tensor t = Tensor::view(base, DType::F32, shape, keep);
    base += t.nbytes();
    return t;
  };
  auto per_layer = [&](const std::string& suffix, Shape shape, bool rope_heads = false, int heads = 0) {
    Shape all = shape;
    all.insert(all.begin(), L);
    Tensor t = next(all);
    for (int64_t i = 0; i < L; ++i) {
      Tensor layer = t.slice_rows(i, i + 1).reshape(shape);
      const std::string name = fmt::format("model.layers.{}.{}", i, suffix);
      if (rope_heads) layer = interleaved_to_rotate_half(layer, heads, name);
      w.tensors[name] = convert_float(layer, opts.dtype);
    }
    progress.advance();
  };
  w.tensors["model.embed_tokens.weight"] = convert_float(next({c.vocab_size, d}), opts.dtype);
  progress.advance();
  per_layer("input_layernorm.weight", {d});
  per_layer("self_attn.q_proj.weight", {d, d}, true, c.num_heads);
  per_layer("self_attn.k_proj.weight", {kv, d}, true, c.num_kv_heads);
  per_layer("self_attn.v_proj.weight", {kv, d});
  per_layer("self_attn.o_proj.weight", {d, d});
  per_layer("post_attention_layernorm.weight", {d});
  per_layer("mlp.gate_proj.weight", {f, d});
  per_layer("mlp.down_proj.weight", {d, f});
  per_layer("mlp.up_proj.weight", {f, d});
  w.tensors["model.norm.weight"] = convert_float(next({d}), opts.dtype);
  base += size_t(c.max_position_embeddings) * size_t(c.head_dim) * 4;  // legacy RoPE tables, unused
  if (!h.shared_classifier) {
    w.tensors["lm_head.weight"] = convert_float(next({c.vocab_size, d}), opts.dtype);
    progress.advance();
  }
  progress.finish();
  check_tensors(w, path);
  return w;
}

}  // namespace qoq::io
