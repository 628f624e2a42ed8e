// Incremental detokenization. decode() of every tokenizer is a concatenation of per-token pieces whose only
// context is the previous token (the SentencePiece dummy-prefix rule: strip at position 0 and after BOS), so
// once everything decoded so far has been emitted the window can shrink to the last token alone.
#include "qoq/tokenizer.h"
#include "tokenizer/utf8.h"

namespace qoq {

StreamDecoder::StreamDecoder(const Tokenizer& tok, const std::vector<int32_t>& context) : tok_(tok) {
  if (!context.empty()) {
    ids_.assign(1, context.back());
    emitted_ = tok_.decode(ids_).size();
  }
}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_);
  const size_t ready = utf8::complete_prefix(text);
  std::string out = ready > emitted_ ? text.substr(emitted_, ready - emitted_) : std::string();
  emitted_ = std::max(emitted_, ready);
  if (emitted_ == text.size() && ids_.size() > 1) {
    // Keep the last token as context; what it decodes to on its own has (by the rule above) been emitted.
    ids_.assign(1, id);
    emitted_ = tok_.decode(ids_).size();
  }
  return out;
}

std::string StreamDecoder::flush() {
  const std::string text = tok_.decode(ids_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace qoq
