// load_model(): HF directories (single and sharded safetensors, tokenizer files, chat template), GGUF models
// written here with llama.cpp's Q/K permutation (undone exactly, checked through RoPE), format detection, and
// errors that name the tensor and the file.
#include <gtest/gtest.h>

#include <random>

#include "io/gguf_writer.h"
#include "io/model_import.h"
#include "io/safetensors.h"
#include "io_test_util.h"
#include "qoq/half.h"
#include "qoq/model_weights.h"

namespace qoq {
namespace {

using io::GgufWriter;
using testing::expect_input_error;
using testing::TempDir;

const LoadOptions kQuiet{.dtype = DType::F32, .progress = false};

void expect_same(const Tensor& a, const Tensor& b, const std::string& name) {
  ASSERT_EQ(a.shape(), b.shape()) << name;
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.at_f32(i), b.at_f32(i)) << name << "[" << i << "]";
}

// stories260K written out as a HF directory.
ModelWeights write_hf_dir(const TempDir& dir, uint64_t shard_limit, DType dtype = DType::F32) {
  ModelWeights src = load_model(testing::data_file("stories260K/stories260K.bin"), kQuiet);
  testing::write_text(dir.file("config.json"), src.config.to_hf_json());
  io::TensorMap out;
  for (const auto& [n, t] : src.tensors) out[n] = t.to(dtype);
  out["model.rotary_emb.inv_freq"] = Tensor::zeros(DType::F32, {4});  // old checkpoints carry extras
  io::write_safetensors_sharded(dir.path(), out, {{"format", "pt"}}, shard_limit);
  return src;
}

TEST(ModelLoader, HfDirectorySingleFile) {
  TempDir dir;
  const ModelWeights src = write_hf_dir(dir, 1 << 30);
  testing::write_text(dir.file("tokenizer.json"), "{}");
  testing::write_text(dir.file("tokenizer_config.json"), R"({"chat_template": "{{ messages }}"})");
  const ModelWeights w = load_model(dir.path(), kQuiet);
  EXPECT_EQ(w.source_format, "safetensors");
  EXPECT_EQ(w.config.to_hf_json(), src.config.to_hf_json());
  EXPECT_EQ(w.tensors.size(), src.tensors.size());
  for (const auto& [n, t] : src.tensors) expect_same(w.get(n), t, n);
  EXPECT_EQ(w.tokenizer.kind, TokenizerSource::Kind::HfJson);
  EXPECT_EQ(w.tokenizer.path, dir.file("tokenizer.json"));
  EXPECT_EQ(w.tokenizer.chat_template, "{{ messages }}");
  expect_input_error([&] { w.get("model.layers.9.mlp.up_proj.weight"); }, {dir.path(), "model.layers.9.mlp.up_proj"});
}

TEST(ModelLoader, HfDirectorySharded) {
  TempDir dir;
  const ModelWeights src = write_hf_dir(dir, 64 << 10);
  ASSERT_TRUE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  ASSERT_FALSE(std::filesystem::exists(dir.file("model.safetensors")));
  testing::write_text(dir.file("tokenizer.model"), "x");
  testing::write_text(
      dir.file("tokenizer_config.json"),
      R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  const ModelWeights w = load_model(dir.path(), kQuiet);
  for (const auto& [n, t] : src.tensors) expect_same(w.get(n), t, n);
  EXPECT_EQ(w.tokenizer.kind, TokenizerSource::Kind::SentencePiece);
  EXPECT_EQ(w.tokenizer.chat_template, "D");
}

TEST(ModelLoader, ConvertsDtypes) {
  TempDir dir;
  const ModelWeights src = write_hf_dir(dir, 1 << 30, DType::BF16);
  const ModelWeights w32 = load_model(dir.path(), kQuiet);
  const ModelWeights w16 = load_model(dir.path(), {.dtype = DType::F16, .progress = false});
  const Tensor& a = w32.get("model.layers.2.mlp.up_proj.weight");
  const Tensor& b = w16.get("model.layers.2.mlp.up_proj.weight");
  const Tensor& s = src.get("model.layers.2.mlp.up_proj.weight");
  ASSERT_EQ(a.dtype(), DType::F32);
  ASSERT_EQ(b.dtype(), DType::F16);
  for (int64_t i = 0; i < a.numel(); i += 7) {
    const float bf = bf16_to_float(float_to_bf16(s.at_f32(i)));
    ASSERT_EQ(a.at_f32(i), bf);
    ASSERT_EQ(b.at_f32(i), half_to_float(float_to_half(bf)));
  }
}

TEST(ModelLoader, HfDirectoryErrors) {
  {
    TempDir dir;
    expect_input_error([&] { load_model(dir.path(), kQuiet); }, {dir.path(), "config.json"});
    write_hf_dir(dir, 1 << 30);
    std::filesystem::remove(dir.file("model.safetensors"));
    expect_input_error([&] { load_model(dir.path(), kQuiet); }, {dir.path(), "model.safetensors"});
    testing::write_text(dir.file("pytorch_model.bin"), "x");
    expect_input_error([&] { load_model(dir.path(), kQuiet); }, {dir.path(), "pytorch_model.bin"});
  }
  ModelWeights src = load_model(testing::data_file("stories260K/stories260K.bin"), kQuiet);
  auto with = [&](const std::function<void(io::TensorMap&)>& edit, const std::vector<std::string>& parts) {
    TempDir dir;
    testing::write_text(dir.file("config.json"), src.config.to_hf_json());
    io::TensorMap m(src.tensors.begin(), src.tensors.end());
    edit(m);
    io::write_safetensors(dir.file("model.safetensors"), m);
    std::vector<std::string> all = parts;
    all.push_back(dir.file("model.safetensors"));
    expect_input_error([&] { load_model(dir.path(), kQuiet); }, all);
  };
  with([](io::TensorMap& m) { m.erase("model.layers.3.self_attn.v_proj.weight"); },
       {"missing tensor 'model.layers.3.self_attn.v_proj.weight'", "[32, 64]"});
  with([](io::TensorMap& m) { m["model.norm.weight"] = Tensor::zeros(DType::F32, {63}); },
       {"'model.norm.weight'", "[63]", "[64]"});
  with([](io::TensorMap& m) { m["model.norm.weight"] = Tensor::zeros(DType::I32, {64}); },
       {"'model.norm.weight'", "I32"});
}

TEST(ModelLoader, FormatDetection) {
  TempDir dir;
  expect_input_error([&] { load_model(dir.file("nope.gguf"), kQuiet); }, {"nope.gguf", "no such file"});
  testing::write_text(dir.file("x.gguf"), "GGUX and more bytes");
  expect_input_error([&] { load_model(dir.file("x.gguf"), kQuiet); }, {"x.gguf", "GGUF"});
  testing::write_text(dir.file("x.safetensors"), "12345678{}");
  expect_input_error([&] { load_model(dir.file("x.safetensors"), kQuiet); }, {"x.safetensors", "directory"});
  testing::write_text(dir.file("x.txt"), "hello");
  expect_input_error([&] { load_model(dir.file("x.txt"), kQuiet); }, {"x.txt", "unrecognized model format"});
}

// A tiny Llama (or Qwen2) in HF layout, random weights.
struct TinyModel {
  ModelConfig config;
  std::map<std::string, Tensor> tensors;
};

TinyModel tiny_model(bool qwen2, bool tied) {
  TinyModel m;
  ModelConfig& c = m.config;
  c.architecture = qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.model_type = qwen2 ? "qwen2" : "llama";
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.intermediate_size = 48;
  c.vocab_size = 40;
  c.max_position_embeddings = 128;
  c.rope_theta = 5000.0f;
  c.rms_norm_eps = 1e-6f;
  c.tie_word_embeddings = tied;
  c.attention_bias = qwen2;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (const auto& [name, shape] : io::expected_tensors(c)) {
    Tensor t = Tensor::empty(DType::F32, shape);
    for (float& v : t.span<float>()) v = nd(rng);
    m.tensors[name] = t;
  }
  return m;
}

// llama.cpp's convert_hf_to_gguf permute(): w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2), written
// out index by index: output row (h, b, a) = input row (h, a, b).
std::vector<float> llama_cpp_permute(const Tensor& w, int n_head) {
  const int64_t rows = w.dim(0), cols = w.numel() / rows, half = rows / n_head / 2;
  std::vector<float> out(size_t(w.numel()));
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < half; ++b)
        for (int64_t c = 0; c < cols; ++c)
          out[size_t(((h * half + b) * 2 + a) * cols + c)] = w.data<float>()[((h * 2 + a) * half + b) * cols + c];
  return out;
}

std::vector<float> values(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

GgufWriter tiny_gguf(const TinyModel& m, const std::string& skip = "", bool bad_shape = false) {
  const ModelConfig& c = m.config;
  const std::string arch = c.model_type;
  GgufWriter w;
  w.add("general.architecture", GgufWriter::str(arch));
  w.add(arch + ".block_count", GgufWriter::u32(uint32_t(c.num_layers)));
  w.add(arch + ".context_length", GgufWriter::u32(uint32_t(c.max_position_embeddings)));
  w.add(arch + ".embedding_length", GgufWriter::u32(uint32_t(c.hidden_size)));
  w.add(arch + ".feed_forward_length", GgufWriter::u32(uint32_t(c.intermediate_size)));
  w.add(arch + ".attention.head_count", GgufWriter::u32(uint32_t(c.num_heads)));
  w.add(arch + ".attention.head_count_kv", GgufWriter::u32(uint32_t(c.num_kv_heads)));
  w.add(arch + ".rope.freq_base", GgufWriter::f32(c.rope_theta));
  w.add(arch + ".attention.layer_norm_rms_epsilon", GgufWriter::f32(c.rms_norm_eps));
  std::vector<std::string> tokens;
  for (int i = 0; i < c.vocab_size; ++i) tokens.push_back("t" + std::to_string(i));
  w.add("tokenizer.ggml.tokens", GgufWriter::str_array(tokens));
  w.add("tokenizer.ggml.bos_token_id", GgufWriter::u32(1));
  w.add("tokenizer.ggml.eos_token_id", GgufWriter::u32(2));
  w.add("tokenizer.chat_template", GgufWriter::str("{{ x }}"));
  auto add = [&](const std::string& gname, const std::string& hf, int permute_heads) {
    if (gname == skip) return;
    const Tensor& t = m.tensors.at(hf);
    Shape shape = t.shape();
    if (bad_shape && gname == "blk.1.ffn_down.weight") std::swap(shape[0], shape[1]);
    w.add_f32(gname, shape, permute_heads ? llama_cpp_permute(t, permute_heads) : values(t));
  };
  add("token_embd.weight", "model.embed_tokens.weight", 0);
  add("output_norm.weight", "model.norm.weight", 0);
  if (!c.tie_word_embeddings) add("output.weight", "lm_head.weight", 0);
  const bool permute = c.model_type == "llama";
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".", h = "model.layers." + std::to_string(i) + ".";
    add(b + "attn_norm.weight", h + "input_layernorm.weight", 0);
    add(b + "ffn_norm.weight", h + "post_attention_layernorm.weight", 0);
    add(b + "attn_q.weight", h + "self_attn.q_proj.weight", permute ? c.num_heads : 0);
    add(b + "attn_k.weight", h + "self_attn.k_proj.weight", permute ? c.num_kv_heads : 0);
    add(b + "attn_v.weight", h + "self_attn.v_proj.weight", 0);
    add(b + "attn_output.weight", h + "self_attn.o_proj.weight", 0);
    if (c.attention_bias) {
      add(b + "attn_q.bias", h + "self_attn.q_proj.bias", 0);
      add(b + "attn_k.bias", h + "self_attn.k_proj.bias", 0);
      add(b + "attn_v.bias", h + "self_attn.v_proj.bias", 0);
    }
    add(b + "ffn_gate.weight", h + "mlp.gate_proj.weight", 0);
    add(b + "ffn_up.weight", h + "mlp.up_proj.weight", 0);
    add(b + "ffn_down.weight", h + "mlp.down_proj.weight", 0);
  }
  return w;
}

TEST(ModelLoader, GgufUndoesLlamaCppPermutation) {
  for (bool tied : {true, false}) {
    TempDir dir;
    const TinyModel m = tiny_model(false, tied);
    tiny_gguf(m).write(dir.file("tiny.gguf"));
    const ModelWeights w = load_model(dir.file("tiny.gguf"), kQuiet);
    EXPECT_EQ(w.config.to_hf_json(), m.config.to_hf_json());
    EXPECT_EQ(w.tokenizer.chat_template, "{{ x }}");
    EXPECT_EQ(w.tensors.size(), m.tensors.size());
    for (const auto& [n, t] : m.tensors) expect_same(w.get(n), t, n);
  }
}

// llama.cpp runs interleaved ("normal") RoPE on its permuted q/k rows; we run rotate-half on the imported
// rows. Attention scores must agree.
TEST(ModelLoader, GgufRopeEquivalence) {
  TempDir dir;
  const TinyModel m = tiny_model(false, true);
  const ModelConfig& c = m.config;
  tiny_gguf(m).write(dir.file("tiny.gguf"));
  const ModelWeights w = load_model(dir.file("tiny.gguf"), kQuiet);
  const GgufFile g = GgufFile::open(dir.file("tiny.gguf"));
  const Tensor gq = g.load_tensor_f32("blk.1.attn_q.weight"), gk = g.load_tensor_f32("blk.1.attn_k.weight");
  const Tensor& q = w.get("model.layers.1.self_attn.q_proj.weight");
  const Tensor& k = w.get("model.layers.1.self_attn.k_proj.weight");
  std::vector<float> x(size_t(c.hidden_size));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i) * 0.7f);
  auto mv = [&](const Tensor& t) {
    std::vector<float> y(size_t(t.dim(0)), 0.0f);
    for (int64_t r = 0; r < t.dim(0); ++r)
      for (int64_t j = 0; j < t.dim(1); ++j) y[size_t(r)] += t.data<float>()[r * t.dim(1) + j] * x[size_t(j)];
    return y;
  };
  auto q_cpp = mv(gq), k_cpp = mv(gk), q_hf = mv(q), k_hf = mv(k);
  const int D = c.head_dim;
  for (int h = 0; h < c.num_heads; ++h) {
    testing::rope_interleaved(&q_cpp[size_t(h * D)], D, 21, c.rope_theta);
    testing::rope_rotate_half(&q_hf[size_t(h * D)], D, 21, c.rope_theta);
  }
  for (int h = 0; h < c.num_kv_heads; ++h) {
    testing::rope_interleaved(&k_cpp[size_t(h * D)], D, 5, c.rope_theta);
    testing::rope_rotate_half(&k_hf[size_t(h * D)], D, 5, c.rope_theta);
  }
  for (int h = 0; h < c.num_heads; ++h) {
    const int g2 = h / (c.num_heads / c.num_kv_heads);
    float s_cpp = 0, s_hf = 0;
    for (int i = 0; i < D; ++i) {
      s_cpp += q_cpp[size_t(h * D + i)] * k_cpp[size_t(g2 * D + i)];
      s_hf += q_hf[size_t(h * D + i)] * k_hf[size_t(g2 * D + i)];
    }
    EXPECT_NEAR(s_hf, s_cpp, 1e-4f * (1 + std::fabs(s_cpp))) << "head " << h;
  }
}

TEST(ModelLoader, GgufQwen2KeepsRowsAndBiases) {
  TempDir dir;
  const TinyModel m = tiny_model(true, true);
  tiny_gguf(m).write(dir.file("q.gguf"));
  const ModelWeights w = load_model(dir.file("q.gguf"), kQuiet);
  EXPECT_EQ(w.config.model_type, "qwen2");
  EXPECT_TRUE(w.config.attention_bias);
  for (const auto& [n, t] : m.tensors) expect_same(w.get(n), t, n);
}

TEST(ModelLoader, GgufErrorsNameTensorAndFile) {
  TempDir dir;
  const TinyModel m = tiny_model(false, true);
  const std::string p = dir.file("t.gguf");
  tiny_gguf(m, "blk.1.ffn_up.weight").write(p);
  expect_input_error([&] { load_model(p, kQuiet); }, {p, "'blk.1.ffn_up.weight'", "missing"});
  tiny_gguf(m, "", true).write(p);
  expect_input_error([&] { load_model(p, kQuiet); }, {p, "'blk.1.ffn_down.weight'", "[48, 32]", "[32, 48]"});
  GgufWriter other = tiny_gguf(m);
  other.add("general.architecture", GgufWriter::str("falcon"));  // duplicate key: rejected before the arch check
  other.write(p);
  expect_input_error([&] { load_model(p, kQuiet); }, {p, "general.architecture", "twice"});
  GgufWriter falcon;
  falcon.add("general.architecture", GgufWriter::str("falcon"));
  falcon.write(p);
  expect_input_error([&] { load_model(p, kQuiet); }, {p, "'falcon'", "not supported"});
  GgufWriter no_layers;
  no_layers.add("general.architecture", GgufWriter::str("llama"));
  no_layers.write(p);
  expect_input_error([&] { load_model(p, kQuiet); }, {p, "llama.embedding_length", "missing"});
}

}  // namespace
}  // namespace qoq
