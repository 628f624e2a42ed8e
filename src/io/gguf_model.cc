// GGUF (llama.cpp) models: llama.* / qwen2.* metadata to ModelConfig, ggml tensor names to HF names, and
// llama.cpp's Q/K row permutation undone so q/k end in HF rotate-half order.
#include <filesystem>

#include "core/log.h"
#include "core/progress.h"
#include "io/model_import.h"

namespace qoq::io {
namespace {

// Array length without copying the elements (the token list has ~50k strings).
int64_t array_size(const GgufFile& g, const std::string& key) {
  auto it = g.metadata().find(key);
  if (it == g.metadata().end()) return -1;
  const auto* a = std::get_if<GgufArray>(&it->second.v);
  if (!a) fail_input("{}: metadata '{}' must be an array", g.path(), key);
  return int64_t(a->size());
}

int to_int(const GgufFile& g, const std::string& key, int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX) fail_input("{}: metadata '{}' = {} is out of the int32 range", g.path(), key, v);
  return int(v);
}

int get_i(const GgufFile& g, const std::string& key) { return to_int(g, key, g.get_int(key)); }
int get_i_or(const GgufFile& g, const std::string& key, int dflt) { return g.has(key) ? get_i(g, key) : dflt; }
float get_f_or(const GgufFile& g, const std::string& key, float dflt) {
  return g.has(key) ? float(g.get_float(key)) : dflt;
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& g) {
  const std::string arch = g.get_string("general.architecture");
  ModelConfig c;
  if (arch == "llama") {
    c.architecture = "LlamaForCausalLM";
    c.model_type = "llama";
  } else if (arch == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
    c.model_type = "qwen2";
    c.attention_bias = true;
  } else {
    fail_input("{}: general.architecture '{}' is not supported (supported: llama, qwen2)", g.path(), arch);
  }
  const std::string p = arch + ".";
  c.hidden_size = get_i(g, p + "embedding_length");
  c.num_layers = get_i(g, p + "block_count");
  c.intermediate_size = get_i(g, p + "feed_forward_length");
  c.num_heads = get_i(g, p + "attention.head_count");
  c.num_kv_heads = get_i_or(g, p + "attention.head_count_kv", c.num_heads);
  if (c.num_heads <= 0) fail_input("{}: {}attention.head_count = {} must be positive", g.path(), p, c.num_heads);
  c.head_dim = get_i_or(g, p + "attention.key_length", c.hidden_size / c.num_heads);
  if (g.has(p + "attention.value_length") && get_i(g, p + "attention.value_length") != c.head_dim)
    fail_input("{}: {}attention.value_length differs from the key length {} (unsupported)", g.path(), p, c.head_dim);
  if (g.has(p + "rope.dimension_count") && get_i(g, p + "rope.dimension_count") != c.head_dim)
    fail_input("{}: {}rope.dimension_count = {} differs from the head size {} (partial RoPE is unsupported)", g.path(),
               p, get_i(g, p + "rope.dimension_count"), c.head_dim);
  c.max_position_embeddings = get_i_or(g, p + "context_length", 2048);
  c.rope_theta = get_f_or(g, p + "rope.freq_base", 10000.0f);
  c.rms_norm_eps = get_f_or(g, p + "attention.layer_norm_rms_epsilon", 1e-5f);

  if (g.has(p + "rope.scaling.type")) {
    const std::string type = g.get_string(p + "rope.scaling.type");
    if (type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::Linear;
      c.rope_scaling.factor = float(g.get_float(p + "rope.scaling.factor"));
    } else if (type != "none") {
      fail_input("{}: {}rope.scaling.type '{}' is not supported (supported: none, linear)", g.path(), p, type);
    }
  } else if (g.has(p + "rope.scale_linear")) {
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = float(g.get_float(p + "rope.scale_linear"));
  }
  // llama.cpp stores Llama-3.1 scaling as precomputed per-frequency factors, not the HF parameters.
  if (g.find_tensor("rope_freqs.weight"))
    fail_input("{}: tensor 'rope_freqs.weight' (Llama-3.1 style RoPE scaling in GGUF) is not supported", g.path());

  int64_t vocab = g.has(p + "vocab_size") ? g.get_int(p + "vocab_size") : array_size(g, "tokenizer.ggml.tokens");
  if (vocab < 0) {
    const GgufTensorInfo* emb = g.find_tensor("token_embd.weight");
    if (!emb || emb->dims.size() != 2) fail_input("{}: cannot determine the vocabulary size", g.path());
    vocab = emb->dims[1];
  }
  c.vocab_size = to_int(g, "vocab_size", vocab);
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  c.bos_token_id = get_i_or(g, "tokenizer.ggml.bos_token_id", -1);
  if (g.has("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {get_i(g, "tokenizer.ggml.eos_token_id")};
  c.validate(g.path());
  return c;
}

ModelWeights import_gguf(const GgufFile& g, const LoadOptions& opts) {
  ModelWeights w;
  w.config = gguf_model_config(g);
  w.source_path = g.path();
  w.source_format = "gguf";
  w.tokenizer.kind = TokenizerSource::Kind::Gguf;
  w.tokenizer.path = g.path();
  if (g.has("tokenizer.chat_template")) w.tokenizer.chat_template = g.get_string("tokenizer.chat_template");
  const ModelConfig& c = w.config;
  // llama.cpp's converter permutes q/k rows only for architectures with interleaved ("normal") RoPE.
  const bool permuted = c.model_type == "llama";

  auto gguf_name = [](const std::string& hf) -> std::string {
    static const std::pair<const char*, const char*> kTop[] = {{"model.embed_tokens.weight", "token_embd.weight"},
                                                               {"model.norm.weight", "output_norm.weight"},
                                                               {"lm_head.weight", "output.weight"}};
    for (const auto& [h, gg] : kTop)
      if (hf == h) return gg;
    static const std::pair<const char*, const char*> kLayer[] = {
        {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},       {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},        {"mlp.down_proj.weight", "ffn_down.weight"}};
    const std::string prefix = "model.layers.";
    const size_t dot = hf.find('.', prefix.size());
    const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
    const std::string rest = hf.substr(dot + 1);
    for (const auto& [h, gg] : kLayer)
      if (rest == h) return "blk." + layer + "." + gg;
    QOQ_CHECK(false, "no GGUF name for {}", hf);
  };

  const auto expected = expected_tensors(c);
  Progress progress("loading " + std::filesystem::path(g.path()).filename().string(), int64_t(expected.size()),
                    opts.progress);
  for (const auto& [hf, shape] : expected) {
    const std::string gn = gguf_name(hf);
    const GgufTensorInfo* info = g.find_tensor(gn);
    if (!info) fail_input("{}: missing tensor '{}' (for {}, expected shape {})", g.path(), gn, hf, shape_str(shape));
    const Shape file_shape(info->dims.rbegin(), info->dims.rend());
    if (file_shape != shape)
      fail_input("{}: tensor '{}' has shape {}, expected {}", g.path(), gn, shape_str(file_shape), shape_str(shape));
    Tensor t = g.load_tensor_f32(gn);
    const bool is_q = hf.find("self_attn.q_proj") != std::string::npos;
    const bool is_k = hf.find("self_attn.k_proj") != std::string::npos;
    if (permuted && (is_q || is_k))
      t = interleaved_to_rotate_half(t, is_q ? c.num_heads : c.num_kv_heads, g.path() + ": " + gn);
    w.tensors[hf] = convert_float(t, opts.dtype);
    progress.advance();
  }
  progress.finish();
  check_tensors(w, g.path());
  return w;
}

}  // namespace qoq::io
