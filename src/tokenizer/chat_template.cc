#include "tokenizer/chat_template.h"

#include "qoq/error.h"

namespace qoq {

namespace {

// Python's str.strip() / Jinja's trim for the ASCII whitespace that chat text realistically carries.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

void check_role(const ChatMessage& m) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant") {
    fail_input("chat message role '{}' is not one of system, user, assistant", m.role);
  }
}

// Reads a Jinja string literal body starting after its opening quote; handles the escapes templates use.
std::string unescape_until(std::string_view s, size_t pos, std::string_view stop) {
  std::string out;
  while (pos < s.size() && s.substr(pos, stop.size()) != stop) {
    if (s[pos] == '\\' && pos + 1 < s.size()) {
      const char c = s[pos + 1];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
      pos += 2;
    } else {
      out += s[pos++];
    }
  }
  return out;
}

// ChatML templates that insert a system turn when the conversation has none spell it as a string literal
// "<|im_start|>system\n...<|im_end|>": in a branch on messages[0]['role'] != 'system' (Qwen2, SmolLM2) or in the
// else branch of == 'system' (Qwen2.5). The first such literal whose body is plain text (no quote, so not a
// concatenation with messages[0]['content']) is the default system prompt.
std::string chatml_default_system(std::string_view jinja) {
  if (jinja.find("'system'") == std::string_view::npos && jinja.find("\"system\"") == std::string_view::npos) return "";
  for (std::string_view head : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
    for (size_t p = jinja.find(head); p != std::string_view::npos; p = jinja.find(head, p + 1)) {
      const size_t body = p + head.size();
      const size_t end = jinja.find("<|im_end|>", body);
      if (end == std::string_view::npos) break;
      const std::string_view raw = jinja.substr(body, end - body);
      if (raw.find('\'') == std::string_view::npos && raw.find('"') == std::string_view::npos) {
        return unescape_until(jinja, body, "<|im_end|>");
      }
    }
  }
  return "";
}

std::string render_chatml(const ChatTemplate& t, const std::vector<ChatMessage>& messages) {
  std::string out;  // the default system turn is emitted inside the message loop, so not for an empty one
  if (!t.default_system.empty() && !messages.empty() && messages[0].role != "system") {
    out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(const ChatTemplate& t, const std::vector<ChatMessage>& messages) {
  std::string out = messages.empty() ? "" : t.bos_text;  // BOS is emitted with the first message
  for (const ChatMessage& m : messages) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
  }
  out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_llama2(const ChatTemplate& t, const std::vector<ChatMessage>& messages) {
  // The template reads messages[0] unguarded, so Jinja fails on an empty conversation.
  if (messages.empty()) fail_input("Llama-2 chat template: the conversation has no messages");
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (messages[0].role == "system") {
    system = messages[0].content;
    has_system = true;
    first = 1;
  }
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    // The template's check: (role == 'user') != (index is even) raises; a later system message at an odd
    // index passes the check and renders nothing.
    if ((m.role == "user") != ((i - first) % 2 == 0)) {
      fail_input("Llama-2 chat template: message {} has role '{}'; roles must alternate user/assistant", i, m.role);
    }
    std::string content = m.content;
    if (i == first && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (m.role == "user") {
      out += t.bos_text + "[INST] " + strip(content) + " [/INST]";
    } else if (m.role == "assistant") {
      // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on a chain starting with a literal.
      out += ' ';
      out += strip(content);
      out += ' ';
      out += t.eos_text;
    }
  }
  return out;
}

}  // namespace

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML:
      return "chatml";
    case ChatFormat::Llama3:
      return "llama3";
    case ChatFormat::Llama2:
      return "llama2";
    case ChatFormat::None:
      break;
  }
  return "none";
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages) const {
  for (const ChatMessage& m : messages) check_role(m);
  switch (format) {
    case ChatFormat::ChatML:
      return render_chatml(*this, messages);
    case ChatFormat::Llama3:
      return render_llama3(*this, messages);
    case ChatFormat::Llama2:
      return render_llama2(*this, messages);
    case ChatFormat::None:
      break;
  }
  fail_input("this model has no known chat template (supported: ChatML, Llama-3, Llama-2)");
}

ChatTemplate detect_chat_template(std::string_view jinja, const std::function<bool(const std::string&)>& has_token,
                                  const std::string& bos_text, const std::string& eos_text) {
  ChatTemplate t;
  t.bos_text = bos_text;
  t.eos_text = eos_text;
  if (!jinja.empty()) {
    if (jinja.find("<|im_start|>") != std::string_view::npos) {
      t.format = ChatFormat::ChatML;
      t.default_system = chatml_default_system(jinja);
    } else if (jinja.find("<|start_header_id|>") != std::string_view::npos) {
      // Llama-3.1+ templates always emit a dated system header (and tool blocks): a different rendering.
      if (jinja.find("Cutting Knowledge Date") != std::string_view::npos) {
        fail_input("the Llama-3.1-style chat template (with 'Cutting Knowledge Date') is not supported yet");
      }
      t.format = ChatFormat::Llama3;
    } else if (jinja.find("[INST]") != std::string_view::npos && jinja.find("<<SYS>>") != std::string_view::npos) {
      t.format = ChatFormat::Llama2;
    } else {
      fail_input("unsupported chat template (not ChatML, Llama-3 or Llama-2): '{}'", std::string(jinja.substr(0, 120)));
    }
    return t;
  }
  // No template text: fall back on the special tokens the vocabulary carries.
  if (has_token("<|im_start|>") && has_token("<|im_end|>")) {
    t.format = ChatFormat::ChatML;
  } else if (has_token("<|start_header_id|>") && has_token("<|eot_id|>")) {
    t.format = ChatFormat::Llama3;
  }
  return t;
}

}  // namespace qoq
