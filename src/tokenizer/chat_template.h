// Chat templates of the supported families, rendered in C++ (no Jinja engine). The family is recognised
// from the model's Jinja text (or its special tokens when it has none); the output equals what the real
// template renders with add_generation_prompt=true (checked against jinja2 in scripts/gen_tokenizer_fixtures.py).
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "qoq/tokenizer.h"

namespace qoq {

enum class ChatFormat { None, ChatML, Llama3, Llama2 };

struct ChatTemplate {
  ChatFormat format = ChatFormat::None;
  std::string default_system;  // inserted as the first message when none is given (SmolLM2's template does)
  std::string bos_text;        // Llama-2/3 templates emit the BOS token text
  std::string eos_text;        // Llama-2 closes each answered turn with it

  // Throws InputError when format is None or a message has an unknown role.
  std::string render(const std::vector<ChatMessage>& messages) const;
};

const char* chat_format_name(ChatFormat f);

// jinja: template text as found (may be empty); has_token: whether the vocabulary holds a special token.
ChatTemplate detect_chat_template(std::string_view jinja, const std::function<bool(const std::string&)>& has_token,
                                  const std::string& bos_text, const std::string& eos_text);

}  // namespace qoq
