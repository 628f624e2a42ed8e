// The architecture hyper-parameters of a Llama-family model, in Hugging Face terms. Every importer
// (HF config.json, GGUF metadata, llama2.c header) produces one of these; the forward pass reads only this.
#pragma once
#include <string>
#include <vector>

namespace qoq {

struct RopeScaling {
  enum class Type { None, Linear, Llama3 };
  Type type = Type::None;
  float factor = 1.0f;
  // llama3 only
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // HF architectures[0]
  std::string model_type = "llama";                 // llama | mistral | qwen2
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 2048;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  int bos_token_id = -1;        // -1: none
  std::vector<int> eos_token_ids;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }

  // Throws InputError naming `source` and the offending field when values are inconsistent.
  void validate(const std::string& source) const;
  // Parses a HF config.json text; unknown architectures / unsupported options are rejected by name.
  static ModelConfig from_hf_json(const std::string& json_text, const std::string& source);
  std::string to_hf_json() const;  // pretty-printed config.json text
};

}  // namespace qoq
