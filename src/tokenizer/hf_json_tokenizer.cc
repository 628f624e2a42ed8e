#include "tokenizer/hf_json_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qoq/error.h"
#include "tokenizer/byte_level_bpe.h"

namespace qoq {

namespace {

using json = nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input("cannot open '{}'", path);
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    fail_input("{}: not valid JSON: {}", path, e.what());
  }
}

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

// Adds the splits of one HF pre-tokenizer (recursing into Sequence); records whether ByteLevel was seen.
void add_pre_tokenizer(const std::string& path, const json& j, PreTokenizer& pre, bool& byte_level) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      fail_input("{}: pre_tokenizer Sequence without a 'pretokenizers' array", path);
    }
    for (const json& p : j["pretokenizers"]) add_pre_tokenizer(path, p, pre, byte_level);
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (j.value("add_prefix_space", false)) {
      fail_input("{}: pre_tokenizer ByteLevel with add_prefix_space=true is not supported", path);
    }
    if (j.value("use_regex", true)) pre.add_split(kGpt2Pattern);
  } else if (type == "Digits") {
    pre.add_split(j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Split") {
    const std::string behavior = j.value("behavior", "");
    if (behavior != "Isolated" || j.value("invert", false)) {
      fail_input("{}: pre_tokenizer Split with behavior '{}'{} is not supported (only Isolated)", path, behavior,
                 j.value("invert", false) ? " and invert=true" : "");
    }
    const json& pat = j.value("pattern", json::object());
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      pre.add_split(pat["Regex"].get<std::string>());
    } else if (pat.contains("String") && pat["String"].is_string()) {
      // A literal: escape every character for PCRE2.
      std::string lit;
      for (char c : pat["String"].get<std::string>()) {
        if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) lit += '\\';
        lit += c;
      }
      pre.add_split(lit);
    } else {
      fail_input("{}: pre_tokenizer Split without a Regex or String pattern", path);
    }
  } else {
    fail_input("{}: pre_tokenizer type '{}' is not supported (supported: Sequence, ByteLevel, Digits, Split)", path,
               type);
  }
}

// tokenizer_config.json spells special tokens as strings or as {"content": ...}.
std::string token_name(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_json_tokenizer(const std::string& path, const std::string& chat_template) {
  const json root = read_json(path);
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object()) {
    fail_input("{}: no 'model' object (not a Hugging Face tokenizer.json)", path);
  }
  const json& model = root["model"];
  const std::string mtype = type_of(model);
  if (!mtype.empty() && mtype != "BPE") fail_input("{}: model.type '{}' is not supported (only BPE)", path, mtype);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail_input("{}: model.vocab is missing", path);
  if (!model.contains("merges") || !model["merges"].is_array()) fail_input("{}: model.merges is missing", path);
  if (model.value("byte_fallback", false)) {
    fail_input("{}: model.byte_fallback=true (a SentencePiece-style BPE) is not supported; use tokenizer.model", path);
  }

  ByteBpeSpec spec;
  spec.source = path;
  constexpr int64_t kMaxVocab = 1 << 24;
  auto place = [&](const std::string& text, const json& idj, const char* where) {
    if (!idj.is_number_integer() || idj.get<int64_t>() < 0 || idj.get<int64_t>() >= kMaxVocab) {
      fail_input("{}: {} '{}' has id {} (must be an integer in [0, {}))", path, where, text, idj.dump(), kMaxVocab);
    }
    const size_t id = idj.get<size_t>();
    if (id >= spec.tokens.size()) spec.tokens.resize(id + 1);
    spec.tokens[id] = text;
    return int(id);
  };
  for (const auto& [text, idj] : model["vocab"].items()) place(text, idj, "model.vocab token");
  for (const json& m : model["merges"]) {
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= s.size())
        fail_input("{}: model.merges entry '{}' is not 'a b'", path, s);
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail_input("{}: model.merges entry {} is neither 'a b' nor [a, b]", path, m.dump());
    }
  }
  spec.ignore_merges = model.value("ignore_merges", false);
  const json unk = model.value("unk_token", json());
  if (unk.is_string()) {
    const auto it = model["vocab"].find(unk.get<std::string>());
    if (it == model["vocab"].end()) fail_input("{}: model.unk_token '{}' is not in model.vocab", path, unk.dump());
    spec.unk = it->get<int>();
  }

  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (const json& t : root["added_tokens"]) {
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id")) {
        fail_input("{}: added_tokens entry {} lacks 'id' or 'content'", path, t.dump());
      }
      spec.specials.push_back(place(t["content"].get<std::string>(), t["id"], "added token"));
    }
  }

  const json normalizer = root.value("normalizer", json());
  if (type_of(normalizer) == "NFC") {
    spec.nfc = true;
  } else if (!normalizer.is_null()) {
    fail_input("{}: normalizer '{}' is not supported (none or NFC)", path, type_of(normalizer));
  }

  bool byte_level = false;
  add_pre_tokenizer(path, root.value("pre_tokenizer", json()), spec.pre, byte_level);
  if (type_of(root.value("decoder", json())) == "ByteLevel") byte_level = true;
  if (!byte_level) fail_input("{}: neither pre_tokenizer nor decoder is ByteLevel: not a byte-level BPE", path);

  auto find = [&](const std::string& text) {
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
      if (!text.empty() && spec.tokens[i] == text) return int(i);
    }
    return -1;
  };

  // BOS: the special token a TemplateProcessing post-processor puts before $A.
  const json post = root.value("post_processor", json());
  if (type_of(post) == "TemplateProcessing" && post.contains("single") && post["single"].is_array() &&
      !post["single"].empty() && post["single"][0].contains("SpecialToken")) {
    const std::string name = post["single"][0]["SpecialToken"].value("id", "");
    spec.bos = find(name);
    if (spec.bos < 0) fail_input("{}: post_processor adds '{}' which is not a token", path, name);
    spec.add_bos = true;
  }

  std::string jinja = chat_template;
  const auto cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const json cfg = read_json(cfg_path.string());
    if (cfg.contains("bos_token") && spec.bos < 0) spec.bos = find(token_name(cfg["bos_token"]));
    if (cfg.contains("eos_token")) spec.eos = find(token_name(cfg["eos_token"]));
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) spec.add_bos = cfg["add_bos_token"];
    if (jinja.empty() && cfg.contains("chat_template")) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        jinja = ct.get<std::string>();
      } else if (ct.is_array()) {  // named templates: take "default"
        for (const json& e : ct) {
          if (e.value("name", "") == "default") jinja = e.value("template", "");
        }
      }
    }
  }

  auto tok = std::make_unique<ByteBpeTokenizer>(std::move(spec));
  const std::string bos = tok->bos_id() >= 0 ? tok->token_text(tok->bos_id()) : "";
  const std::string eos = tok->eos_id() >= 0 ? tok->token_text(tok->eos_id()) : "";
  ByteBpeTokenizer* t = tok.get();
  t->set_chat_template(detect_chat_template(
      jinja, [t](const std::string& s) { return t->has_token(s); }, bos, eos));
  return tok;
}

}  // namespace qoq
