#include "tokenizer/gguf_tokenizer.h"

#include "io/gguf.h"
#include "qoq/error.h"
#include "tokenizer/byte_level_bpe.h"
#include "tokenizer/sp_bpe.h"

namespace qoq {

namespace {

// llama.cpp's token types.
enum GgufTokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

int optional_id(const GgufFile& f, const std::string& key, size_t n) {
  if (!f.has(key)) return -1;
  const int64_t id = f.get_int(key);
  if (id < -1 || id >= int64_t(n))
    fail_input("{}: metadata '{}' = {} is outside the vocabulary of {}", f.path(), key, id, n);
  return int(id);
}

std::vector<int64_t> token_types(const GgufFile& f, size_t n) {
  std::vector<int64_t> types(n, kNormal);
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != n) {
      fail_input("{}: tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}", f.path(),
                 types.size(), n);
    }
  }
  return types;
}

std::unique_ptr<TokenizerBase> load_gpt2(const GgufFile& f) {
  ByteBpeSpec spec;
  spec.source = f.path();
  spec.tokens = f.get_string_array("tokenizer.ggml.tokens");
  const size_t n = spec.tokens.size();
  const auto types = token_types(f, n);
  for (size_t i = 0; i < n; ++i) {
    if (types[i] == kControl || types[i] == kUserDefined) spec.specials.push_back(int(i));
  }
  for (const std::string& m : f.get_string_array("tokenizer.ggml.merges")) {
    const size_t sp = m.find(' ', 1);  // the first space after a non-empty left part separates the pair
    if (sp == std::string::npos || sp + 1 >= m.size()) {
      fail_input("{}: tokenizer.ggml.merges entry '{}' is not 'left right'", f.path(), m);
    }
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  const std::string pre = f.has("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "default";
  spec.pre = PreTokenizer::for_gguf(pre, f.path(), &spec.ignore_merges);
  spec.bos = optional_id(f, "tokenizer.ggml.bos_token_id", n);
  spec.eos = optional_id(f, "tokenizer.ggml.eos_token_id", n);
  // tokenizer.ggml.unknown_token_id is not used for bytes missing from the vocabulary: in SmolLM2 it is
  // <|endoftext|>, and a stray control byte must not end the document. Such bytes are dropped, as HF does.
  optional_id(f, "tokenizer.ggml.unknown_token_id", n);  // still validated
  spec.add_bos = f.has("tokenizer.ggml.add_bos_token") ? f.get_bool("tokenizer.ggml.add_bos_token") : false;
  return std::make_unique<ByteBpeTokenizer>(std::move(spec));
}

std::unique_ptr<TokenizerBase> load_llama(const GgufFile& f) {
  SpBpeVocab v;
  v.pieces = f.get_string_array("tokenizer.ggml.tokens");
  const size_t n = v.pieces.size();
  const auto types = token_types(f, n);
  const auto scores = f.get_float_array("tokenizer.ggml.scores");
  if (scores.size() != n) {
    fail_input("{}: tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {}", f.path(), scores.size(), n);
  }
  for (size_t i = 0; i < n; ++i) {
    // SentencePiece spells spaces as U+2581; the scored BPE works on plain spaces.
    std::string spaced;
    for (size_t k = 0; k < v.pieces[i].size();) {
      if (v.pieces[i].compare(k, 3, "\xe2\x96\x81") == 0) {
        spaced += ' ';
        k += 3;
      } else {
        spaced += v.pieces[i][k++];
      }
    }
    v.pieces[i] = std::move(spaced);
    v.scores.push_back(float(scores[i]));
    v.types.push_back(types[i] == kByte                                 ? PieceType::Byte
                      : types[i] == kUnknown                            ? PieceType::Unknown
                      : types[i] == kNormal || types[i] == kUserDefined ? PieceType::Normal
                                                                        : PieceType::Control);
  }
  v.bos = optional_id(f, "tokenizer.ggml.bos_token_id", n);
  v.eos = optional_id(f, "tokenizer.ggml.eos_token_id", n);
  v.unk = optional_id(f, "tokenizer.ggml.unknown_token_id", n);
  v.add_bos = f.has("tokenizer.ggml.add_bos_token") ? f.get_bool("tokenizer.ggml.add_bos_token") : true;
  return std::make_unique<SpBpeTokenizer>(std::move(v));
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& f, const std::string& chat_template) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  std::unique_ptr<TokenizerBase> tok;
  if (model == "gpt2") {
    tok = load_gpt2(f);
  } else if (model == "llama") {
    tok = load_llama(f);
  } else {
    fail_input("{}: tokenizer.ggml.model '{}' is not supported (supported: gpt2, llama)", f.path(), model);
  }
  const std::string jinja = !chat_template.empty()             ? chat_template
                            : f.has("tokenizer.chat_template") ? f.get_string("tokenizer.chat_template")
                                                               : std::string();
  const std::string bos = tok->bos_id() >= 0 ? tok->token_text(tok->bos_id()) : "";
  const std::string eos = tok->eos_id() >= 0 ? tok->token_text(tok->eos_id()) : "";
  TokenizerBase* t = tok.get();
  t->set_chat_template(detect_chat_template(
      jinja, [t](const std::string& s) { return t->has_token(s); }, bos, eos));
  return tok;
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path, const std::string& chat_template) {
  return load_gguf_tokenizer(GgufFile::open(path), chat_template);
}

}  // namespace qoq
