// Hugging Face model directories: config.json + safetensors (single or sharded), tokenizer files alongside.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/progress.h"
#include "io/model_import.h"
#include "io/safetensors.h"

namespace qoq::io {
namespace {

namespace fs = std::filesystem;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The chat template as HF stores it: chat_template.jinja, or tokenizer_config.json "chat_template" (a string,
// or a list of {name, template} where "default" is the one used).
std::string find_chat_template(const fs::path& dir) {
  if (is_file(dir / "chat_template.jinja")) return read_text_file((dir / "chat_template.jinja").string());
  const fs::path cfg = dir / "tokenizer_config.json";
  if (!is_file(cfg)) return "";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(cfg.string()));
  } catch (const nlohmann::json::exception& e) {
    fail_input("{}: invalid JSON: {}", cfg.string(), e.what());
  }
  if (!j.is_object() || !j.contains("chat_template") || j["chat_template"].is_null()) return "";
  const auto& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const auto& e : t)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
    return "";
  }
  fail_input("{}: field 'chat_template' must be a string or a list of named templates", cfg.string());
}

}  // namespace

ModelWeights import_hf_dir(const std::string& dir_str, const LoadOptions& opts) {
  const fs::path dir(dir_str);
  const fs::path config_path = dir / "config.json";
  if (!is_file(config_path)) fail_input("{}: not a model directory: config.json is missing", dir_str);

  ModelWeights w;
  w.source_path = dir_str;
  w.source_format = "safetensors";
  w.config = ModelConfig::from_hf_json(read_text_file(config_path.string()), config_path.string());

  TensorMap raw;
  std::string weights_source;
  if (is_file(dir / "model.safetensors.index.json")) {
    weights_source = (dir / "model.safetensors.index.json").string();
    raw = read_safetensors_index(weights_source);
  } else if (is_file(dir / "model.safetensors")) {
    weights_source = (dir / "model.safetensors").string();
    raw = SafetensorsFile::open(weights_source).tensors();
  } else if (is_file(dir / "pytorch_model.bin")) {
    fail_input("{}: only pytorch_model.bin found; pickled PyTorch weights are not supported (convert to safetensors)",
               dir_str);
  } else {
    fail_input("{}: no model.safetensors or model.safetensors.index.json", dir_str);
  }

  const auto expected = expected_tensors(w.config);
  Progress progress("loading " + dir.filename().string(), int64_t(expected.size()), opts.progress);
  for (const auto& [name, shape] : expected) {
    auto it = raw.find(name);
    if (it == raw.end())
      fail_input("{}: missing tensor '{}' (expected shape {})", weights_source, name, shape_str(shape));
    if (it->second.shape() != shape)
      fail_input("{}: tensor '{}' has shape {}, expected {}", weights_source, name, shape_str(it->second.shape()),
                 shape_str(shape));
    const DType t = it->second.dtype();
    if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
      fail_input("{}: tensor '{}' has dtype {}, expected F32, F16 or BF16", weights_source, name, dtype_name(t));
    w.tensors[name] = convert_float(it->second, opts.dtype);
    progress.advance();
  }
  progress.finish();
  for (const auto& [name, t] : raw)
    if (!w.tensors.count(name)) spdlog::debug("{}: ignoring tensor '{}' {}", weights_source, name, t.str());

  if (is_file(dir / "tokenizer.json")) {
    w.tokenizer.kind = TokenizerSource::Kind::HfJson;
    w.tokenizer.path = (dir / "tokenizer.json").string();
  } else if (is_file(dir / "tokenizer.model")) {
    w.tokenizer.kind = TokenizerSource::Kind::SentencePiece;
    w.tokenizer.path = (dir / "tokenizer.model").string();
  }
  w.tokenizer.chat_template = find_chat_template(dir);
  check_tensors(w, weights_source);
  return w;
}

}  // namespace qoq::io
