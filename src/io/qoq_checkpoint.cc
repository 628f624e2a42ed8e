#include "io/qoq_checkpoint.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "qoq/error.h"
#include "quant/pack.h"

namespace qoq::io {
namespace {

namespace fs = std::filesystem;
// Ordered, so that passes/calibration/timing keep the key order they were written with.
using json = nlohmann::ordered_json;
using ojson = nlohmann::ordered_json;

// Shard past 4 GiB (DESIGN §5), so no single file approaches the 32-bit-offset limits of older tools.
constexpr uint64_t kMaxShardBytes = uint64_t(4) << 30;
constexpr int64_t kMaxFeatures = int64_t(1) << 24;  // far beyond any Llama; keeps N * K within int64

// Files the checkpoint itself owns; a tokenizer copied under one of these names would clobber it.
const std::set<std::string>& reserved_names() {
  static const std::set<std::string> names = {"config.json", "qoq.json", "model.safetensors",
                                              "model.safetensors.index.json", "tokenizer_config.json",
                                              "chat_template.jinja"};
  return names;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool plain_file_name(const std::string& f) {
  return !f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos && f.find('\0') == std::string::npos;
}

void write_file(const fs::path& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail_input("{}: cannot create: {}", path.string(), std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) fail_input("{}: write failed", path.string());
}

void copy_into(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_regular_file(from, ec)) fail_input("{}: tokenizer file not found", from.string());
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) fail_input("cannot copy {} to {}: {}", from.string(), to.string(), ec.message());
}

// ---- qoq.json ----

const char* kFormatNames[] = {"w4_per_channel", "w4_group", "w8_per_channel"};

// The JSON object text of passes/calibration/timing, parsed (empty text stands for {}).
ojson object_field(const std::string& text, const char* field) {
  if (text.empty()) return ojson::object();
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const ojson::exception& e) {
    fail_input("qoq.json: field '{}' is not valid JSON: {}", field, e.what());
  }
  if (!j.is_object()) fail_input("qoq.json: field '{}' must be a JSON object, got {}", field, j.type_name());
  return j;
}

// Strict field access: the field must exist with the given JSON type; errors name the file and the dotted field.
class Fields {
 public:
  Fields(const json& obj, std::string source, std::string prefix)
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  void only(std::initializer_list<const char*> allowed) const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || it.key() == a;
      if (!ok) fail_input("{}: unknown field '{}{}'", source_, prefix_, it.key());
    }
  }
  const json& get(const char* key, json::value_t type, const char* what) const {
    auto it = obj_.find(key);
    if (it == obj_.end()) fail_input("{}: missing field '{}{}' ({})", source_, prefix_, key, what);
    const bool ok = type == json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
    if (!ok) fail_input("{}: field '{}{}' must be {}, got {}", source_, prefix_, key, what, it->type_name());
    return *it;
  }
  int64_t integer(const char* key) const {
    const json& v = get(key, json::value_t::number_integer, "an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      fail_input("{}: field '{}{}' = {} is out of range", source_, prefix_, key, v.dump());
    return v.get<int64_t>();
  }
  int64_t integer_in(const char* key, std::initializer_list<int64_t> allowed) const {
    const int64_t v = integer(key);
    std::string list;
    for (int64_t a : allowed) {
      if (a == v) return v;
      list += (list.empty() ? "" : ", ") + std::to_string(a);
    }
    fail_input("{}: field '{}{}' = {} is not one of {}", source_, prefix_, key, v, list);
  }
  std::string string(const char* key) const { return get(key, json::value_t::string, "a string").get<std::string>(); }
  bool boolean(const char* key) const { return get(key, json::value_t::boolean, "true or false").get<bool>(); }
  const json& object(const char* key) const { return get(key, json::value_t::object, "a JSON object"); }
  [[noreturn]] void bad(const char* key, const std::string& why) const {
    fail_input("{}: field '{}{}' {}", source_, prefix_, key, why);
  }

 private:
  const json& obj_;
  std::string source_, prefix_;
};

QuantLayerInfo parse_layer(const json& v, const std::string& source, const std::string& name) {
  const std::string prefix = "layers." + name + ".";
  if (!v.is_object()) fail_input("{}: field 'layers.{}' must be a JSON object, got {}", source, name, v.type_name());
  Fields f(v, source, prefix);
  f.only({"format", "out_features", "in_features", "k_padded", "group_size", "bias"});
  QuantLayerInfo l;
  const std::string fmt_name = f.string("format");
  if (fmt_name == kFormatNames[0]) {
    l.format = quant::WeightFormat::W4PerChannel;
  } else if (fmt_name == kFormatNames[1]) {
    l.format = quant::WeightFormat::W4Group;
  } else if (fmt_name == kFormatNames[2]) {
    l.format = quant::WeightFormat::W8PerChannel;
  } else {
    f.bad("format", fmt::format("= '{}' is not one of w4_per_channel, w4_group, w8_per_channel", fmt_name));
  }
  l.out_features = f.integer("out_features");
  if (l.out_features < 1 || l.out_features > kMaxFeatures)
    f.bad("out_features", fmt::format("= {} is outside [1, {}]", l.out_features, kMaxFeatures));
  l.in_features = f.integer("in_features");
  if (l.in_features < 1 || l.in_features > kMaxFeatures)
    f.bad("in_features", fmt::format("= {} is outside [1, {}]", l.in_features, kMaxFeatures));
  l.group_size = f.integer_in("group_size", {-1, 32, 64, 128, 256});
  l.k_padded = f.integer("k_padded");
  l.has_bias = f.boolean("bias");
  const int64_t K = l.in_features, Kp = l.k_padded;
  if (Kp < K) f.bad("k_padded", fmt::format("= {} is below in_features {}", Kp, K));
  switch (l.format) {
    case quant::WeightFormat::W4Group: {
      if (l.group_size <= 0) f.bad("group_size", "must be a group size (32, 64, 128, 256) for format w4_group");
      if (Kp % l.group_size != 0)
        f.bad("k_padded", fmt::format("= {} is not a multiple of group_size {}", Kp, l.group_size));
      const int64_t want = (K + l.group_size - 1) / l.group_size * l.group_size;
      if (Kp != want)
        f.bad("k_padded", fmt::format("= {} is not in_features {} rounded up to group_size {} ({})", Kp, K,
                                      l.group_size, want));
      break;
    }
    case quant::WeightFormat::W4PerChannel:
      if (l.group_size != -1) f.bad("group_size", fmt::format("= {} must be -1 for format w4_per_channel", l.group_size));
      if (Kp % 2 != 0) f.bad("k_padded", fmt::format("= {} is not a multiple of 2 (two codes per byte)", Kp));
      if (Kp != K + (K & 1))
        f.bad("k_padded", fmt::format("= {} is not in_features {} rounded up to even ({})", Kp, K, K + (K & 1)));
      break;
    case quant::WeightFormat::W8PerChannel:
      if (l.group_size != -1) f.bad("group_size", fmt::format("= {}: a w8_per_channel layer has no group", l.group_size));
      if (Kp != K) f.bad("k_padded", fmt::format("= {} must equal in_features {} for format w8_per_channel", Kp, K));
      break;
  }
  return l;
}

// ---- checkpoint layout ----

const char* kAttn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
const char* kMlp[] = {"gate_proj", "up_proj", "down_proj"};

struct Expected {
  DType dtype;
  Shape shape;
  std::string what;     // for messages: which layer/field it belongs to
  bool is_float = true;  // a float tensor (QoqCheckpoint::float_tensors), not part of a packed linear
};

// Every tensor the checkpoint must hold, by name, from config.json and qoq.json (already checked to agree).
std::map<std::string, Expected> expected_checkpoint_tensors(const ModelConfig& c, const QoqInfo& info) {
  std::map<std::string, Expected> out;
  const int64_t d = c.hidden_size, V = c.vocab_size;
  out["model.embed_tokens.weight"] = {DType::F16, {V, d}, "embeddings"};
  out["model.norm.weight"] = {DType::F16, {d}, "final norm"};
  if (!c.tie_word_embeddings) out["lm_head.weight"] = {DType::F16, {V, d}, "lm_head (tie_word_embeddings false)"};
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    out[p + "input_layernorm.weight"] = {DType::F16, {d}, "norm"};
    out[p + "post_attention_layernorm.weight"] = {DType::F16, {d}, "norm"};
  }
  for (const auto& [name, l] : info.layers) {
    const int64_t N = l.out_features, Kp = l.k_padded;
    const std::string what = fmt::format("{} layer {}", kFormatNames[int(l.format)], name);
    out[name + ".scales"] = {DType::F16, {N}, what, false};
    switch (l.format) {
      case quant::WeightFormat::W4PerChannel:
        out[name + ".qweight"] = {DType::U8, {N, Kp / 2}, what, false};
        out[name + ".zeros"] = {DType::U8, {N}, what, false};
        break;
      case quant::WeightFormat::W4Group:
        out[name + ".qweight"] = {DType::U8, {N, Kp / 2}, what, false};
        out[name + ".group_scales"] = {DType::U8, {N, Kp / l.group_size}, what, false};
        out[name + ".group_zeros"] = {DType::U8, {N, Kp / l.group_size}, what, false};
        break;
      case quant::WeightFormat::W8PerChannel:
        out[name + ".weight"] = {DType::I8, {N, l.in_features}, what, false};
        break;
    }
    if (l.has_bias) out[name + ".bias"] = {DType::F16, {N}, what + " (bias true)"};
  }
  return out;
}

// qoq.json's layers against config.json: exactly the 7 linears per layer, with the config's shapes.
void check_layers_against_config(const ModelConfig& c, const QoqInfo& info, const std::string& qoq_path,
                                 const std::string& config_path) {
  const auto want = expected_linears(c);
  for (const auto& [name, nk] : want) {
    const auto it = info.layers.find(name);
    if (it == info.layers.end())
      fail_input("{}: layers: missing linear '{}' (implied by {}: num_layers {})", qoq_path, name, config_path,
                 c.num_layers);
    if (it->second.out_features != nk.first || it->second.in_features != nk.second)
      fail_input("{}: layers.{}: out_features {} / in_features {} contradict {} (which implies [{}, {}])", qoq_path,
                 name, it->second.out_features, it->second.in_features, config_path, nk.first, nk.second);
  }
  for (const auto& [name, l] : info.layers)
    if (!want.count(name))
      fail_input("{}: layers.{}: not a linear of the model in {} (num_layers {})", qoq_path, name, config_path,
                 c.num_layers);
  if (c.attention_bias)
    for (int i = 0; i < c.num_layers; ++i)
      for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
        const std::string name = fmt::format("model.layers.{}.self_attn.{}", i, proj);
        if (!info.layers.at(name).has_bias)
          fail_input("{}: layers.{}.bias is false but {} has attention_bias true", qoq_path, name, config_path);
      }
}

std::string read_chat_template_config(const fs::path& cfg) {
  json j;
  try {
    j = json::parse(read_text_file(cfg.string()));
  } catch (const json::exception& e) {
    fail_input("{}: invalid JSON: {}", cfg.string(), e.what());
  }
  if (!j.is_object() || !j.contains("chat_template") || j["chat_template"].is_null()) return "";
  const json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array())
    for (const auto& e : t)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
  return "";
}

// The chat template a checkpoint's tokenizer files carry: chat_template.jinja, else tokenizer_config.json
// (HF/SentencePiece), else the GGUF metadata.
std::string checkpoint_chat_template(const fs::path& dir, TokenizerSource::Kind kind, const std::string& file) {
  if (is_file(dir / "chat_template.jinja")) return read_text_file((dir / "chat_template.jinja").string());
  if ((kind == TokenizerSource::Kind::HfJson || kind == TokenizerSource::Kind::SentencePiece) &&
      is_file(dir / "tokenizer_config.json"))
    return read_chat_template_config(dir / "tokenizer_config.json");
  if (kind == TokenizerSource::Kind::Gguf) {
    const GgufFile g = GgufFile::open((dir / file).string());
    if (g.has("tokenizer.chat_template")) return g.get_string("tokenizer.chat_template");
  }
  return "";
}

struct Opened {
  QoqCheckpointLayout layout;
  TensorMap tensors;
};

Opened open_checkpoint(const std::string& dir_str) {
  const fs::path dir(dir_str);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail_input("{}: not a directory", dir_str);
  const fs::path config_path = dir / "config.json", qoq_path = dir / "qoq.json";
  if (!is_file(qoq_path)) fail_input("{}: not a QoQ checkpoint: qoq.json is missing", dir_str);
  if (!is_file(config_path)) fail_input("{}: QoQ checkpoint without config.json", dir_str);

  Opened o;
  QoqCheckpointLayout& L = o.layout;
  L.path = dir_str;
  L.config = ModelConfig::from_hf_json(read_text_file(config_path.string()), config_path.string());
  L.info = qoq_info_from_json(read_text_file(qoq_path.string()), qoq_path.string());
  check_layers_against_config(L.config, L.info, qoq_path.string(), config_path.string());

  // Weights: the index and its shards, or the single file; remember which file holds each tensor.
  std::map<std::string, std::string> file_of;
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (is_file(index_path)) {
    o.tensors = read_safetensors_index(index_path.string());
    L.weight_files.push_back(index_path.filename().string());
    json index = json::parse(read_text_file(index_path.string()));  // valid: read_safetensors_index parsed it
    std::set<std::string> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      file_of[it.key()] = it.value().get<std::string>();
      shards.insert(it.value().get<std::string>());
    }
    // The index reader only returns what weight_map lists; a shard holding more is not what was written.
    for (const std::string& s : shards) {
      L.weight_files.push_back(s);
      const SafetensorsFile f = SafetensorsFile::open((dir / s).string());
      for (const auto& [name, t] : f.tensors())
        if (!file_of.count(name) || file_of[name] != s)
          fail_input("{}: tensor '{}' {} is not listed for this shard in {}", f.path(), name, t.str(),
                     index_path.string());
    }
  } else if (is_file(dir / "model.safetensors")) {
    const SafetensorsFile f = SafetensorsFile::open((dir / "model.safetensors").string());
    o.tensors = f.tensors();
    L.weight_files.push_back("model.safetensors");
    for (const auto& kv : o.tensors) file_of[kv.first] = "model.safetensors";
  } else {
    fail_input("{}: QoQ checkpoint without model.safetensors or model.safetensors.index.json", dir_str);
  }

  const auto expected = expected_checkpoint_tensors(L.config, L.info);
  for (const auto& [name, t] : o.tensors) {
    const std::string file = (dir / file_of[name]).string();
    const auto it = expected.find(name);
    if (it == expected.end())
      fail_input("{}: unexpected tensor '{}' {}: not implied by config.json and qoq.json", file, name, t.str());
    if (t.dtype() != it->second.dtype || t.shape() != it->second.shape)
      fail_input("{}: tensor '{}' is {}, expected {}{} ({})", file, name, t.str(), dtype_name(it->second.dtype),
                 shape_str(it->second.shape), it->second.what);
    L.tensors[name] = {file_of[name], t.dtype(), t.shape(), uint64_t(t.nbytes())};
  }
  for (const auto& [name, e] : expected)
    if (!o.tensors.count(name))
      fail_input("{}: missing tensor '{}' (expected {}{}, {})", (dir / L.weight_files.front()).string(), name,
                 dtype_name(e.dtype), shape_str(e.shape), e.what);

  // The tokenizer copy.
  L.tokenizer.kind = tokenizer_kind_from_json_name(L.info.tokenizer_kind, qoq_path.string());
  if (L.tokenizer.kind != TokenizerSource::Kind::None) {
    const fs::path tok = dir / L.info.tokenizer_file;
    if (!is_file(tok))
      fail_input("{}: tokenizer.file '{}' is not in the checkpoint ({} missing)", qoq_path.string(),
                 L.info.tokenizer_file, tok.string());
    L.tokenizer.path = tok.string();
    L.tokenizer.chat_template = checkpoint_chat_template(dir, L.tokenizer.kind, L.info.tokenizer_file);
  }
  return o;
}

// The GGUF tokenizer as a tensor-less GGUF: every tokenizer.* key plus general.architecture (which some
// readers check first), values copied with their stored types.
void write_gguf_tokenizer(const std::string& src, const fs::path& dst) {
  const GgufFile g = GgufFile::open(src);
  GgufWriter w(3);
  if (g.has("general.architecture")) w.add("general.architecture", g.metadata().at("general.architecture"));
  size_t n = 0;
  for (const auto& [key, value] : g.metadata())
    if (key.rfind("tokenizer.", 0) == 0) {
      w.add(key, value);
      ++n;
    }
  if (n == 0) fail_input("{}: GGUF has no tokenizer.* metadata to copy", src);
  w.write(dst.string());
}

// Copies the tokenizer into `tmp`; returns the qoq.json kind name and file name.
std::pair<std::string, std::string> copy_tokenizer(const TokenizerSource& src, const fs::path& tmp) {
  using K = TokenizerSource::Kind;
  const fs::path from(src.path);
  std::string file;
  switch (src.kind) {
    case K::None:
      return {"none", ""};
    case K::HfJson:
    case K::SentencePiece:
      file = src.kind == K::HfJson ? "tokenizer.json" : "tokenizer.model";
      copy_into(from, tmp / file);
      if (is_file(from.parent_path() / "tokenizer_config.json"))
        copy_into(from.parent_path() / "tokenizer_config.json", tmp / "tokenizer_config.json");
      break;
    case K::Llama2c:
      file = from.filename().string();
      if (!plain_file_name(file) || reserved_names().count(file) || file.rfind("model", 0) == 0)
        fail_input("{}: llama2.c tokenizer file name '{}' clashes with a checkpoint file", src.path, file);
      copy_into(from, tmp / file);
      break;
    case K::Gguf:
      file = "tokenizer.gguf";
      write_gguf_tokenizer(src.path, tmp / file);
      break;
  }
  // Keep the template the model was loaded with when the copied files would not give it back by themselves.
  if (!src.chat_template.empty() && checkpoint_chat_template(tmp, src.kind, file) != src.chat_template)
    write_file(tmp / "chat_template.jinja", src.chat_template);
  return {tokenizer_kind_json_name(src.kind), file};
}

QuantLayerInfo layer_info_of(const quant::QuantWeight& q, bool has_bias, const std::string& name) {
  const quant::WeightGrid& g = q.grid;
  QOQ_CHECK(g.N > 0 && g.K > 0 && g.K_pad >= g.K && q.codes.size() == size_t(g.N * g.K_pad) &&
                g.scales.size() == size_t(g.N),
            "{}: inconsistent QuantWeight (N {}, K {}, K_pad {}, {} codes, {} scales)", name, g.N, g.K, g.K_pad,
            q.codes.size(), g.scales.size());
  // pack_linear keeps only the low nibble; an out-of-range code would be written as a different weight.
  const int lo = g.format == quant::WeightFormat::W8PerChannel ? -127 : 0;
  const int hi = g.format == quant::WeightFormat::W8PerChannel ? 127 : 15;
  for (size_t i = 0; i < q.codes.size(); ++i)
    QOQ_CHECK(q.codes[i] >= lo && q.codes[i] <= hi, "{}: code[{}] = {} outside [{}, {}]", name, i, int(q.codes[i]),
              lo, hi);
  QuantLayerInfo l;
  l.format = g.format;
  l.out_features = g.N;
  l.in_features = g.K;
  l.k_padded = g.K_pad;
  l.group_size = g.format == quant::WeightFormat::W4Group ? g.group : -1;
  l.has_bias = has_bias;
  return l;
}

// Moves the finished temp dir to `dir`, replacing what is there; on failure restores the old directory.
void install_dir(const fs::path& tmp, const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::rename(tmp, dir, ec);
    if (ec) fail_input("{}: cannot move {} into place: {}", dir.string(), tmp.string(), ec.message());
    return;
  }
  std::string tmpl = (dir.parent_path() / ("." + dir.filename().string() + ".old-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) fail_input("{}: cannot create a backup directory: {}", tmpl, std::strerror(errno));
  const fs::path backup(tmpl);
  fs::rename(dir, backup, ec);  // rename(2) may replace the empty directory mkdtemp made
  if (ec) {
    fs::remove(backup, ec);
    fail_input("{}: cannot move the old checkpoint aside: {}", dir.string(), ec.message());
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    std::error_code ec2;
    fs::rename(backup, dir, ec2);
    fail_input("{}: cannot move {} into place: {}", dir.string(), tmp.string(), ec.message());
  }
  fs::remove_all(backup, ec);
}

}  // namespace

const char* weight_format_json_name(quant::WeightFormat f) { return kFormatNames[int(f)]; }

const char* tokenizer_kind_json_name(TokenizerSource::Kind kind) {
  switch (kind) {
    case TokenizerSource::Kind::None:
      return "none";
    case TokenizerSource::Kind::Llama2c:
      return "llama2c";
    case TokenizerSource::Kind::SentencePiece:
      return "sentencepiece";
    case TokenizerSource::Kind::HfJson:
      return "hf_json";
    case TokenizerSource::Kind::Gguf:
      return "gguf";
  }
  return "?";
}

TokenizerSource::Kind tokenizer_kind_from_json_name(const std::string& name, const std::string& source) {
  using K = TokenizerSource::Kind;
  for (K k : {K::None, K::Llama2c, K::SentencePiece, K::HfJson, K::Gguf})
    if (name == tokenizer_kind_json_name(k)) return k;
  fail_input("{}: field 'tokenizer.kind' = '{}' is not one of none, llama2c, sentencepiece, hf_json, gguf", source,
             name);
}

std::map<std::string, std::pair<int64_t, int64_t>> expected_linears(const ModelConfig& c) {
  const int64_t d = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.intermediate_size;
  const std::pair<int64_t, int64_t> attn[] = {{q, d}, {kv, d}, {kv, d}, {d, q}};
  const std::pair<int64_t, int64_t> mlp[] = {{f, d}, {f, d}, {d, f}};
  std::map<std::string, std::pair<int64_t, int64_t>> out;
  for (int i = 0; i < c.num_layers; ++i) {
    for (int j = 0; j < 4; ++j) out[fmt::format("model.layers.{}.self_attn.{}", i, kAttn[j])] = attn[j];
    for (int j = 0; j < 3; ++j) out[fmt::format("model.layers.{}.mlp.{}", i, kMlp[j])] = mlp[j];
  }
  return out;
}

std::string qoq_info_to_json(const QoqInfo& info) {
  ojson j;
  j["format"] = "qoq";
  j["version"] = info.version;
  j["weight_bits"] = info.weight_bits;
  j["group_size"] = info.group_size;
  j["kv_bits"] = info.kv_bits;
  j["passes"] = object_field(info.passes, "passes");
  j["calibration"] = object_field(info.calibration, "calibration");
  j["timing"] = object_field(info.timing, "timing");
  j["source"] = {{"path", info.source_model}, {"sha256", info.source_sha256}};
  j["tokenizer"] = {{"kind", info.tokenizer_kind}, {"file", info.tokenizer_file}};
  ojson layers = ojson::object();
  for (const auto& [name, l] : info.layers)
    layers[name] = {{"format", weight_format_json_name(l.format)},
                    {"out_features", l.out_features},
                    {"in_features", l.in_features},
                    {"k_padded", l.k_padded},
                    {"group_size", l.group_size},
                    {"bias", l.has_bias}};
  j["layers"] = std::move(layers);
  // A path with invalid UTF-8 must not fail a finished quantization: replace the bad bytes.
  std::string text = j.dump(2, ' ', false, ojson::error_handler_t::replace) + "\n";
  qoq_info_from_json(text, "qoq.json (being written)");  // never write what the reader would reject
  return text;
}

QoqInfo qoq_info_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail_input("{}: invalid JSON: {}", source, e.what());
  }
  if (!j.is_object()) fail_input("{}: must be a JSON object, got {}", source, j.type_name());
  const Fields f(j, source, "");
  f.only({"format", "version", "weight_bits", "group_size", "kv_bits", "passes", "calibration", "timing", "source",
          "tokenizer", "layers"});
  const std::string format = f.string("format");
  if (format != "qoq") f.bad("format", fmt::format("= '{}' is not 'qoq'", format));
  QoqInfo info;
  info.version = int(f.integer_in("version", {1}));
  info.weight_bits = int(f.integer_in("weight_bits", {4, 8}));
  info.group_size = int(f.integer_in("group_size", {-1, 32, 64, 128, 256}));
  info.kv_bits = int(f.integer_in("kv_bits", {4, 8, 16}));
  if (info.weight_bits == 8 && info.group_size != -1)
    f.bad("group_size", fmt::format("= {}: 8-bit weights are per-channel only (-1)", info.group_size));
  info.passes = f.object("passes").dump();
  info.calibration = f.object("calibration").dump();
  info.timing = f.object("timing").dump();

  const Fields src(f.object("source"), source, "source.");
  src.only({"path", "sha256"});
  info.source_model = src.string("path");
  info.source_sha256 = src.string("sha256");
  const bool hex = info.source_sha256.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!info.source_sha256.empty() && (info.source_sha256.size() != 64 || !hex))
    src.bad("sha256", fmt::format("= '{}' is not 64 lower-case hex digits (or empty)", info.source_sha256));

  const Fields tok(f.object("tokenizer"), source, "tokenizer.");
  tok.only({"kind", "file"});
  info.tokenizer_kind = tok.string("kind");
  info.tokenizer_file = tok.string("file");
  const bool none = tokenizer_kind_from_json_name(info.tokenizer_kind, source) == TokenizerSource::Kind::None;
  if (none && !info.tokenizer_file.empty())
    tok.bad("file", fmt::format("= '{}' must be empty for kind none", info.tokenizer_file));
  // The reader opens this name inside the checkpoint: a path could point anywhere.
  if (!none && (!plain_file_name(info.tokenizer_file) || reserved_names().count(info.tokenizer_file) ||
                info.tokenizer_file.rfind("model", 0) == 0))
    tok.bad("file", fmt::format("= '{}' is not a plain tokenizer file name", info.tokenizer_file));

  const json& layers = f.object("layers");
  for (auto it = layers.begin(); it != layers.end(); ++it) {
    if (it.key().empty()) fail_input("{}: field 'layers' has an empty layer name", source);
    info.layers[it.key()] = parse_layer(it.value(), source, it.key());
  }
  return info;
}

bool is_qoq_checkpoint(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && is_file(fs::path(path) / "qoq.json");
}

void write_qoq_checkpoint(const std::string& dir_str, const QoqCheckpoint& ckpt, bool overwrite) {
  fs::path dir = fs::path(dir_str).lexically_normal();
  if (!dir.empty() && dir.filename().empty()) dir = dir.parent_path();  // "out/ckpt/" -> "out/ckpt"
  if (dir.empty() || dir.filename() == "." || dir.filename() == "..")
    fail_input("'{}': not a usable checkpoint directory name", dir_str);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) fail_input("{}: exists and is not a directory", dir.string());
    if (!fs::is_empty(dir, ec) && !overwrite)
      fail_input("{}: directory exists and is not empty (overwrite it explicitly)", dir.string());
  }

  // Everything is checked before anything is written.
  ckpt.config.validate("config.json (being written)");
  QoqInfo info = ckpt.info;
  std::map<std::string, QuantLayerInfo> layers;
  for (const auto& [name, q] : ckpt.linears)
    layers[name] = layer_info_of(q, ckpt.float_tensors.count(name + ".bias") != 0, name);
  if (!info.layers.empty() && info.layers != layers) {
    for (const auto& [name, l] : layers)
      if (!info.layers.count(name) || !(info.layers.at(name) == l))
        fail("writing {}: qoq info for layer '{}' does not describe its QuantWeight", dir.string(), name);
    fail("writing {}: qoq info lists layers that have no QuantWeight", dir.string());
  }
  info.layers = layers;
  const std::string config_json = ckpt.config.to_hf_json();
  check_layers_against_config(ckpt.config, info, "qoq.json (being written)", "config.json (being written)");
  const auto expected = expected_checkpoint_tensors(ckpt.config, info);
  for (const auto& [name, t] : ckpt.float_tensors) {
    const auto it = expected.find(name);
    if (it == expected.end() || !it->second.is_float)
      fail("writing {}: float tensor '{}' is not part of the model", dir.string(), name);
    if (t.shape() != it->second.shape || !(t.dtype() == DType::F32 || t.dtype() == DType::F16 ||
                                           t.dtype() == DType::BF16))
      fail("writing {}: float tensor '{}' is {}, expected a float {}", dir.string(), name, t.str(),
           shape_str(it->second.shape));
  }
  auto is_scales = [](const std::string& n) { return n.size() > 7 && n.compare(n.size() - 7, 7, ".scales") == 0; };
  for (const auto& [name, e] : expected)
    if (e.dtype == DType::F16 && !is_scales(name) && !ckpt.float_tensors.count(name))
      fail("writing {}: missing float tensor '{}' ({})", dir.string(), name, e.what);

  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  std::string tmpl = (parent / ("." + dir.filename().string() + ".tmp-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) fail_input("{}: cannot create a temp directory: {}", tmpl, std::strerror(errno));
  const fs::path tmp(tmpl);
  try {
    const auto [tok_kind, tok_file] = copy_tokenizer(ckpt.tokenizer, tmp);
    info.tokenizer_kind = tok_kind;
    info.tokenizer_file = tok_file;
    write_file(tmp / "config.json", config_json);
    write_file(tmp / "qoq.json", qoq_info_to_json(info));
    TensorMap out;
    for (const auto& [name, t] : ckpt.float_tensors) out[name] = t.to(DType::F16);
    for (const auto& [name, q] : ckpt.linears) quant::store_linear(quant::pack_linear(q), name, out);
    write_safetensors_sharded(tmp.string(), out, {{"format", "qoq"}}, kMaxShardBytes);
    install_dir(tmp, dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

QoqCheckpointLayout read_qoq_checkpoint_layout(const std::string& dir) { return open_checkpoint(dir).layout; }

QoqCheckpoint read_qoq_checkpoint(const std::string& dir) {
  Opened o = open_checkpoint(dir);
  QoqCheckpoint ckpt;
  ckpt.path = dir;
  ckpt.config = o.layout.config;
  ckpt.info = o.layout.info;
  ckpt.tokenizer = o.layout.tokenizer;
  for (const auto& [name, l] : ckpt.info.layers) {
    const std::string file = (fs::path(dir) / o.layout.tensors.at(name + ".scales").file).string();
    try {
      const quant::PackedLinear p = quant::load_linear(o.tensors, name, l.format);
      quant::LinearSpec spec;
      spec.format = l.format;
      spec.N = l.out_features;
      spec.K = l.in_features;
      spec.group = l.format == quant::WeightFormat::W4Group ? l.group_size : 0;
      ckpt.linears[name] = quant::unpack_linear(p, spec, name);
    } catch (const InputError& e) {
      fail_input("{}: {}", file, e.what());
    }
  }
  for (const auto& [name, e] : expected_checkpoint_tensors(ckpt.config, ckpt.info))
    if (e.is_float) ckpt.float_tensors[name] = o.tensors.at(name).to(DType::F32);
  return ckpt;
}

}  // namespace qoq::io
