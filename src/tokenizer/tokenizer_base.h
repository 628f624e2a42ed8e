// Shared plumbing of the concrete tokenizers: the chat template and the stop ids.
#pragma once
#include <string>
#include <vector>

#include "qoq/tokenizer.h"
#include "tokenizer/chat_template.h"

namespace qoq {

class TokenizerBase : public Tokenizer {
 public:
  std::string apply_chat_template(const std::vector<ChatMessage>& messages) const override {
    return chat_.render(messages);
  }
  std::vector<int32_t> stop_ids() const override { return stop_ids_; }

  const ChatTemplate& chat_template() const { return chat_; }
  bool has_token(const std::string& text) const { return find_token(text) >= 0; }
  // Sets the template and derives stop ids: eos plus the end-of-turn tokens of the family found in the vocab.
  void set_chat_template(ChatTemplate t);

 protected:
  // Id of a token by its exact text, -1 if absent (used for <|im_end|>, <|eot_id|>).
  virtual int find_token(const std::string& text) const = 0;

  ChatTemplate chat_;
  std::vector<int32_t> stop_ids_;
};

}  // namespace qoq
