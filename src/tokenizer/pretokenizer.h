// Pre-tokenization of byte-level BPE models: the text is cut into pieces by a sequence of regex splits (each
// split keeps both the matches and the text between them, as HF's Split(behavior=Isolated) does), and BPE then
// runs inside each piece. Regexes run on PCRE2 in UTF mode with Unicode properties (JIT when available).
// HF `tokenizers` runs these patterns on Oniguruma, whose \s is Unicode White_Space (it includes U+0085, which
// PCRE2's \s lacks), so \s and \S are rewritten to that explicit class before compiling.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qoq {

// A compiled PCRE2 pattern; safe to share between threads.
class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws InputError naming the pattern on a compile error
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  const std::string& pattern() const { return pattern_; }
  // Calls fn(begin, end) for each non-empty piece of text: matches and the gaps between them, in order.
  // Invalid UTF-8 never matches, so it ends up in gap pieces.
  void split(std::string_view text, const std::function<void(size_t, size_t)>& fn) const;

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

// HF pre-split patterns of the model families.
extern const char* const kGpt2Pattern;
extern const char* const kLlama3Pattern;
extern const char* const kQwen2Pattern;

class PreTokenizer {
 public:
  void add_split(const std::string& pattern) { steps_.push_back(std::make_shared<Regex>(pattern)); }
  // Calls fn for each final piece of text, in order.
  void split(std::string_view text, const std::function<void(std::string_view)>& fn) const;
  bool empty() const { return steps_.empty(); }

  // The pre-tokenizer named by GGUF's tokenizer.ggml.pre; throws InputError naming `name` and `file` if unknown.
  // Sets ignore_merges for families whose HF tokenizer has it (Llama-3).
  static PreTokenizer for_gguf(const std::string& name, const std::string& file, bool* ignore_merges);

 private:
  void split_step(size_t step, std::string_view text, const std::function<void(std::string_view)>& fn) const;
  std::vector<std::shared_ptr<Regex>> steps_;
};

// Rewrites \s and \S (inside and outside character classes) to Unicode White_Space; see the file comment.
std::string with_unicode_whitespace(const std::string& pattern);

}  // namespace qoq
