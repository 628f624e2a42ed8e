// ModelConfig <-> Hugging Face config.json, and the consistency checks every importer relies on.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "qoq/error.h"
#include "qoq/model_config.h"

namespace qoq {
namespace {

using json = nlohmann::json;

// Generous upper bounds: real models are far below them, and they keep a corrupted config from asking
// for absurd allocations later (shapes are products of these).
constexpr int kMaxHidden = 1 << 16;
constexpr int kMaxLayers = 1024;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 1024;
constexpr int kMaxIntermediate = 1 << 18;
constexpr int kMaxVocab = 1 << 22;
constexpr int kMaxPositions = 1 << 24;

struct ArchInfo {
  const char* architecture;
  const char* model_type;
};
constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"}};

int get_int(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail_input("{}: missing field '{}'", source, key);
  if (!it->is_number_integer()) fail_input("{}: field '{}' must be an integer, got {}", source, key, it->dump());
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int>::max()))
      fail_input("{}: field '{}' = {} exceeds {}", source, key, u, std::numeric_limits<int>::max());
    return int(u);
  }
  const int64_t v = it->get<int64_t>();
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    fail_input("{}: field '{}' = {} is out of the int range", source, key, v);
  return int(v);
}

int get_int_or(const json& j, const char* key, int dflt, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  return get_int(j, key, source);
}

double get_num_or(const json& j, const char* key, double dflt, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number()) fail_input("{}: field '{}' must be a number, got {}", source, key, it->dump());
  return it->get<double>();
}

bool get_bool_or(const json& j, const char* key, bool dflt, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail_input("{}: field '{}' must be true or false, got {}", source, key, it->dump());
  return it->get<bool>();
}

std::string get_str_or(const json& j, const char* key, const std::string& dflt, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_string()) fail_input("{}: field '{}' must be a string, got {}", source, key, it->dump());
  return it->get<std::string>();
}

// A float field stored in the config; rejects values that do not fit a float.
float to_float(double v, const char* key, const std::string& source) {
  if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()))
    fail_input("{}: field '{}' = {} is not a finite float", source, key, v);
  return float(v);
}

RopeScaling parse_rope_scaling(const json& j, const std::string& source) {
  RopeScaling rs;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return rs;
  if (!it->is_object()) fail_input("{}: field 'rope_scaling' must be an object or null", source);
  const json& r = *it;
  // Newer transformers write "rope_type", older "type".
  std::string type = get_str_or(r, "rope_type", "", source + ": rope_scaling");
  if (type.empty()) type = get_str_or(r, "type", "", source + ": rope_scaling");
  if (type.empty()) fail_input("{}: rope_scaling has no 'rope_type' or 'type'", source);
  if (type == "default") return rs;
  const std::string ctx = source + ": rope_scaling";
  if (type == "linear") {
    rs.type = RopeScaling::Type::Linear;
  } else if (type == "llama3") {
    rs.type = RopeScaling::Type::Llama3;
    rs.low_freq_factor = to_float(get_num_or(r, "low_freq_factor", 1.0, ctx), "rope_scaling.low_freq_factor", source);
    rs.high_freq_factor =
        to_float(get_num_or(r, "high_freq_factor", 4.0, ctx), "rope_scaling.high_freq_factor", source);
    rs.original_max_position_embeddings = get_int_or(r, "original_max_position_embeddings", 8192, ctx);
  } else {
    fail_input("{}: rope_scaling type '{}' is not supported (supported: linear, llama3)", source, type);
  }
  auto f = r.find("factor");
  if (f == r.end() || f->is_null()) fail_input("{}: rope_scaling '{}' has no 'factor'", source, type);
  rs.factor = to_float(get_num_or(r, "factor", 1.0, ctx), "rope_scaling.factor", source);
  return rs;
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  auto range = [&](const char* field, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) fail_input("{}: {} = {} is out of range [{}, {}]", source, field, v, lo, hi);
  };
  bool known = false;
  for (const ArchInfo& a : kArchs) known |= model_type == a.model_type;
  if (!known) fail_input("{}: model_type '{}' is not supported (supported: llama, mistral, qwen2)", source, model_type);
  range("hidden_size", hidden_size, 1, kMaxHidden);
  range("num_hidden_layers", num_layers, 1, kMaxLayers);
  range("num_attention_heads", num_heads, 1, kMaxHeads);
  range("num_key_value_heads", num_kv_heads, 1, num_heads);
  if (num_heads % num_kv_heads != 0)
    fail_input("{}: num_attention_heads = {} is not a multiple of num_key_value_heads = {}", source, num_heads,
               num_kv_heads);
  range("head_dim", head_dim, 2, kMaxHeadDim);
  if (head_dim % 2 != 0) fail_input("{}: head_dim = {} must be even (RoPE rotates channel pairs)", source, head_dim);
  range("intermediate_size", intermediate_size, 1, kMaxIntermediate);
  range("vocab_size", vocab_size, 1, kMaxVocab);
  range("max_position_embeddings", max_position_embeddings, 1, kMaxPositions);
  if (!(rope_theta > 0) || !std::isfinite(rope_theta))
    fail_input("{}: rope_theta = {} must be a positive number", source, rope_theta);
  if (!(rms_norm_eps > 0) || !(rms_norm_eps < 1))
    fail_input("{}: rms_norm_eps = {} must be in (0, 1)", source, rms_norm_eps);
  if (rope_scaling.type != RopeScaling::Type::None && !(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor)))
    fail_input("{}: rope_scaling.factor = {} must be a positive number", source, rope_scaling.factor);
  if (rope_scaling.type == RopeScaling::Type::Llama3) {
    if (!(rope_scaling.low_freq_factor > 0) || !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor))
      fail_input("{}: rope_scaling needs 0 < low_freq_factor ({}) < high_freq_factor ({})", source,
                 rope_scaling.low_freq_factor, rope_scaling.high_freq_factor);
    range("rope_scaling.original_max_position_embeddings", rope_scaling.original_max_position_embeddings, 1,
          kMaxPositions);
  }
  range("bos_token_id", bos_token_id, -1, vocab_size - 1);
  for (int e : eos_token_ids) range("eos_token_id", e, 0, vocab_size - 1);
}

ModelConfig ModelConfig::from_hf_json(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail_input("{}: invalid JSON: {}", source, e.what());
  }
  if (!j.is_object()) fail_input("{}: config must be a JSON object", source);

  ModelConfig c;
  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string())
      fail_input("{}: field 'architectures' must be a non-empty list of strings", source);
    arch = (*it)[0].get<std::string>();
  }
  const std::string model_type = get_str_or(j, "model_type", "", source);
  const ArchInfo* info = nullptr;
  for (const ArchInfo& a : kArchs)
    if (arch.empty() ? model_type == a.model_type : arch == a.architecture) info = &a;
  if (!info) {
    if (arch.empty() && model_type.empty()) fail_input("{}: missing field 'architectures' (and 'model_type')", source);
    fail_input("{}: unsupported architecture '{}' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
               source, arch.empty() ? model_type : arch);
  }
  c.architecture = info->architecture;
  c.model_type = info->model_type;

  const std::string act = get_str_or(j, "hidden_act", "silu", source);
  if (act != "silu") fail_input("{}: hidden_act '{}' is not supported (only silu)", source, act);
  if (get_bool_or(j, "mlp_bias", false, source)) fail_input("{}: mlp_bias = true is not supported", source);

  c.hidden_size = get_int(j, "hidden_size", source);
  c.num_layers = get_int(j, "num_hidden_layers", source);
  c.num_heads = get_int(j, "num_attention_heads", source);
  c.num_kv_heads = get_int_or(j, "num_key_value_heads", c.num_heads, source);
  c.intermediate_size = get_int(j, "intermediate_size", source);
  c.vocab_size = get_int(j, "vocab_size", source);
  if (c.num_heads <= 0) fail_input("{}: num_attention_heads = {} must be positive", source, c.num_heads);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = get_int(j, "head_dim", source);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      fail_input("{}: hidden_size = {} is not a multiple of num_attention_heads = {} and no head_dim is given", source,
                 c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.max_position_embeddings = get_int_or(j, "max_position_embeddings", 2048, source);
  c.rope_theta = to_float(get_num_or(j, "rope_theta", 10000.0, source), "rope_theta", source);
  c.rope_scaling = parse_rope_scaling(j, source);
  c.rms_norm_eps = to_float(get_num_or(j, "rms_norm_eps", 1e-6, source), "rms_norm_eps", source);
  c.tie_word_embeddings = get_bool_or(j, "tie_word_embeddings", false, source);
  // Qwen2 always has q/k/v biases; Llama declares them; Mistral has none.
  c.attention_bias = c.model_type == "qwen2" ? true : get_bool_or(j, "attention_bias", false, source);

  // A sliding window is active when enabled (Qwen2 needs use_sliding_window) and shorter than the context.
  if (auto it = j.find("sliding_window"); it != j.end() && !it->is_null() && c.model_type != "llama") {
    const int window = get_int(j, "sliding_window", source);
    const bool enabled = c.model_type == "qwen2" ? get_bool_or(j, "use_sliding_window", false, source) : true;
    if (enabled && window < c.max_position_embeddings)
      fail_input("{}: sliding_window = {} (< max_position_embeddings = {}) is not supported", source, window,
                 c.max_position_embeddings);
  }

  c.bos_token_id = get_int_or(j, "bos_token_id", -1, source);
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_array()) {
      for (const json& e : *it) {
        if (!e.is_number_integer()) fail_input("{}: field 'eos_token_id' must hold integers, got {}", source, e.dump());
        const int64_t v = e.get<int64_t>();
        if (v < 0 || v > std::numeric_limits<int>::max())
          fail_input("{}: field 'eos_token_id' value {} is out of range", source, v);
        c.eos_token_ids.push_back(int(v));
      }
    } else {
      c.eos_token_ids.push_back(get_int(j, "eos_token_id", source));
    }
  }
  c.validate(source);
  return c;
}

std::string ModelConfig::to_hf_json() const {
  json j;
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["intermediate_size"] = intermediate_size;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == RopeScaling::Type::None) {
    j["rope_scaling"] = nullptr;
  } else {
    json r;
    r["factor"] = rope_scaling.factor;
    if (rope_scaling.type == RopeScaling::Type::Linear) {
      r["rope_type"] = "linear";
    } else {
      r["rope_type"] = "llama3";
      r["low_freq_factor"] = rope_scaling.low_freq_factor;
      r["high_freq_factor"] = rope_scaling.high_freq_factor;
      r["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = r;
  }
  j["rms_norm_eps"] = rms_norm_eps;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (model_type != "qwen2") j["attention_bias"] = attention_bias;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    j["eos_token_id"] = eos_token_ids;
  }
  return j.dump(2) + "\n";
}

}  // namespace qoq
