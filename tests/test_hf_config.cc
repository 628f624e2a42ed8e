// ModelConfig from/to Hugging Face config.json: Llama-3 (llama3 RoPE scaling), Qwen2 (bias), Mistral, SmolLM2,
// the defaults, and rejections that name the source and the field.
#include <gtest/gtest.h>

#include "io_test_util.h"
#include "qoq/model_config.h"

namespace qoq {
namespace {

using testing::expect_input_error;

const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256})";

const char* kQwen25_05B = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
  "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
  "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

const char* kMistral7B_v03 = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0, "sliding_window": null, "tie_word_embeddings": false, "vocab_size": 32768})";

const char* kSmolLM2 = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 576, "intermediate_size": 1536, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true, "vocab_size": 49152})";

TEST(HfConfig, Llama31WithLlama3Scaling) {
  const ModelConfig c = ModelConfig::from_hf_json(kLlama31_8B, "llama31.json");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
}

TEST(HfConfig, Qwen2HasBiasAndInactiveWindow) {
  const ModelConfig c = ModelConfig::from_hf_json(kQwen25_05B, "qwen.json");
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});
}

TEST(HfConfig, MistralAndSmolLM2) {
  const ModelConfig m = ModelConfig::from_hf_json(kMistral7B_v03, "mistral.json");
  EXPECT_EQ(m.model_type, "mistral");
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_FALSE(m.attention_bias);
  EXPECT_EQ(m.rope_scaling.type, RopeScaling::Type::None);
  const ModelConfig s = ModelConfig::from_hf_json(kSmolLM2, "smol.json");
  EXPECT_EQ(s.hidden_size, 576);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_FLOAT_EQ(s.rope_theta, 100000.0f);
}

TEST(HfConfig, DefaultsAndExplicitHeadDim) {
  const ModelConfig c = ModelConfig::from_hf_json(
      R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 128, "vocab_size": 100, "head_dim": 32,
          "rope_scaling": {"type": "linear", "factor": 2.0}})",
      "d.json");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");  // from model_type alone
  EXPECT_EQ(c.num_kv_heads, 4);                   // defaults to the query heads
  EXPECT_EQ(c.head_dim, 32);                      // explicit, not hidden/heads
  EXPECT_EQ(c.q_dim(), 128);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 2.0f);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
  const ModelConfig d = ModelConfig::from_hf_json(
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
          "rope_scaling": {"rope_type": "default"}})",
      "d.json");
  EXPECT_EQ(d.rope_scaling.type, RopeScaling::Type::None);
}

TEST(HfConfig, RoundTrip) {
  for (const char* text : {kLlama31_8B, kQwen25_05B, kMistral7B_v03, kSmolLM2}) {
    const ModelConfig a = ModelConfig::from_hf_json(text, "a.json");
    const ModelConfig b = ModelConfig::from_hf_json(a.to_hf_json(), "b.json");
    EXPECT_EQ(a.to_hf_json(), b.to_hf_json());
    EXPECT_EQ(b.architecture, a.architecture);
    EXPECT_EQ(b.head_dim, a.head_dim);
    EXPECT_EQ(b.rope_scaling.type, a.rope_scaling.type);
    EXPECT_EQ(b.rope_scaling.factor, a.rope_scaling.factor);
    EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
    EXPECT_EQ(b.eos_token_ids, a.eos_token_ids);
    EXPECT_EQ(b.attention_bias, a.attention_bias);
    EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
  }
}

std::string smol_with(const std::string& key, const std::string& value) {
  std::string s = kSmolLM2;
  return s.substr(0, s.rfind('}')) + ", \"" + key + "\": " + value + "}";
}

TEST(HfConfig, Rejections) {
  expect_input_error([] { ModelConfig::from_hf_json(R"({"architectures": ["GPT2LMHeadModel"]})", "c.json"); },
                     {"c.json", "GPT2LMHeadModel", "unsupported architecture"});
  expect_input_error([] { ModelConfig::from_hf_json(R"({"model_type": "gemma"})", "c.json"); }, {"c.json", "gemma"});
  expect_input_error([] { ModelConfig::from_hf_json(R"({"hidden_size": 1})", "c.json"); }, {"c.json", "architectures"});
  expect_input_error([] { ModelConfig::from_hf_json("{not json", "c.json"); }, {"c.json", "invalid JSON"});
  expect_input_error([] { ModelConfig::from_hf_json("[1]", "c.json"); }, {"c.json", "object"});
  for (const char* t : {"yarn", "dynamic", "longrope"})
    expect_input_error(
        [&] {
          ModelConfig::from_hf_json(smol_with("rope_scaling", fmt::format(R"({{"type": "{}", "factor": 4}})", t)),
                                    "c.json");
        },
        {"c.json", t, "rope_scaling"});
  expect_input_error(
      [] { ModelConfig::from_hf_json(smol_with("rope_scaling", R"({"rope_type": "linear"})"), "c.json"); },
      {"c.json", "factor"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("hidden_act", R"("gelu")"), "c.json"); },
                     {"c.json", "hidden_act", "gelu"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("mlp_bias", "true"), "c.json"); },
                     {"c.json", "mlp_bias"});
  // Mistral v0.1 has an active 4096-token window.
  std::string mistral01 = kMistral7B_v03;
  mistral01.replace(mistral01.find("\"sliding_window\": null"), 22, "\"sliding_window\": 4096");
  expect_input_error([&] { ModelConfig::from_hf_json(mistral01, "m.json"); }, {"m.json", "sliding_window = 4096"});
  std::string qwen_sw = kQwen25_05B;
  qwen_sw.replace(qwen_sw.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": true");
  qwen_sw.replace(qwen_sw.find("\"sliding_window\": 32768"), 23, "\"sliding_window\": 4096");
  expect_input_error([&] { ModelConfig::from_hf_json(qwen_sw, "q.json"); }, {"q.json", "sliding_window"});

  std::string missing = kSmolLM2;
  missing.replace(missing.find("\"intermediate_size\": 1536,"), 26, "");
  expect_input_error([&] { ModelConfig::from_hf_json(missing, "c.json"); },
                     {"c.json", "missing field 'intermediate_size'"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("num_key_value_heads", "2"), "c.json"); },
                     {"c.json", "num_key_value_heads = 2"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("num_key_value_heads", "30"), "c.json"); },
                     {"c.json", "num_key_value_heads = 30", "[1, 9]"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("hidden_size", "\"576\""), "c.json"); },
                     {"c.json", "hidden_size", "integer"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("vocab_size", "1e20"), "c.json"); },
                     {"c.json", "vocab_size"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("vocab_size", "99999999999"), "c.json"); },
                     {"c.json", "vocab_size"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("eos_token_id", "49152"), "c.json"); },
                     {"c.json", "eos_token_id = 49152"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("eos_token_id", "[2, \"x\"]"), "c.json"); },
                     {"c.json", "eos_token_id"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("rms_norm_eps", "0"), "c.json"); },
                     {"c.json", "rms_norm_eps"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("head_dim", "63"), "c.json"); },
                     {"c.json", "head_dim = 63", "even"});
  expect_input_error([] { ModelConfig::from_hf_json(smol_with("num_attention_heads", "7"), "c.json"); },
                     {"c.json", "hidden_size = 576", "num_attention_heads = 7"});
}

}  // namespace
}  // namespace qoq
