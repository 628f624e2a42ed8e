#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include "qoq/error.h"

namespace qoq {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

// Unicode White_Space, the set Oniguruma's \s matches in Unicode mode.
constexpr const char* kWhiteSpace =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

struct MatchScratch {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  MatchScratch() {
    md = pcre2_match_data_create(8, nullptr);
    mc = pcre2_match_context_create(nullptr);
    // Long whitespace runs under look-ahead need more than the default 32 KiB JIT stack.
    js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

}  // namespace

std::string with_unicode_whitespace(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      ++i;
      if (n == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (n == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else if (n == 'S') {
        fail_input("pre-tokenizer regex '{}': \\S inside a character class is not supported", p);
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  const std::string translated = with_unicode_whitespace(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail_input("pre-tokenizer regex '{}' does not compile at offset {}: {}", pattern, off,
               reinterpret_cast<const char*>(msg));
  }
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::split(std::string_view text, const std::function<void(size_t, size_t)>& fn) const {
  auto* code = static_cast<pcre2_code*>(code_);
  MatchScratch& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, gap = 0;
  while (pos <= text.size()) {
    const int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), pos, 0, s.md, s.mc)
                        : pcre2_match(code, subject, text.size(), pos, 0, s.md, s.mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      fail_input("pre-tokenizer regex '{}' failed at byte {}: {}", pattern_, pos, reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {
      // Empty match: step over one character (or one invalid byte) so the scan moves on.
      pos = b + 1;
      while (pos < text.size() && (uint8_t(text[pos]) & 0xc0) == 0x80) ++pos;
      continue;
    }
    if (b > gap) fn(gap, b);
    fn(b, e);
    gap = pos = e;
  }
  if (gap < text.size()) fn(gap, text.size());
}

void PreTokenizer::split(std::string_view text, const std::function<void(std::string_view)>& fn) const {
  if (steps_.empty()) {
    if (!text.empty()) fn(text);
    return;
  }
  split_step(0, text, fn);
}

void PreTokenizer::split_step(size_t step, std::string_view text,
                              const std::function<void(std::string_view)>& fn) const {
  steps_[step]->split(text, [&](size_t b, size_t e) {
    const std::string_view piece = text.substr(b, e - b);
    if (step + 1 == steps_.size()) {
      fn(piece);
    } else {
      split_step(step + 1, piece, fn);
    }
  });
}

PreTokenizer PreTokenizer::for_gguf(const std::string& name, const std::string& file, bool* ignore_merges) {
  PreTokenizer p;
  *ignore_merges = false;
  if (name == "smollm") {
    // HF: Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false, use_regex=true)].
    p.add_split(R"(\p{N})");
    p.add_split(kGpt2Pattern);
  } else if (name == "gpt-2" || name == "gpt2") {
    p.add_split(kGpt2Pattern);
  } else if (name == "llama-bpe" || name == "llama3") {
    p.add_split(kLlama3Pattern);
    *ignore_merges = true;
  } else if (name == "qwen2") {
    p.add_split(kQwen2Pattern);
  } else if (name == "default") {
    // What llama.cpp runs for a BPE vocabulary whose pre-tokenizer is "default".
    p.add_split(R"([\p{P}\$\+<=>\^~\|]+)");
    p.add_split(kGpt2Pattern);
    p.add_split(R"(\p{N}+)");
    p.add_split(R"([0-9][0-9][0-9])");
  } else {
    fail_input(
        "{}: tokenizer.ggml.pre '{}' is not a supported pre-tokenizer (supported: smollm, gpt-2, llama-bpe, "
        "qwen2, default)",
        file, name);
  }
  return p;
}

}  // namespace qoq
