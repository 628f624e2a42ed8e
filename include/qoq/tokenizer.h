// Tokenizers: SentencePiece-style BPE (llama2.c tok512.bin, tokenizer.model via libsentencepiece) and
// byte-level BPE (GPT-2 style; tokenizer.json or GGUF metadata). All share this interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qoq/model_weights.h"

namespace qoq {

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // add_bos: prepend BOS when the tokenizer has one and the model family adds it.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 if none
  virtual int eos_id() const = 0;  // -1 if none
  virtual bool adds_bos() const = 0;  // whether the family prepends BOS by default
  virtual std::string token_text(int id) const = 0;  // raw piece, for debugging/inspect

  // Chat template of the family (ChatML, Llama-3, Llama-2), with the assistant turn opened.
  // Throws InputError when the model has no known chat format.
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages) const = 0;
  // Extra stop ids beyond eos (e.g. <|im_end|>, <|eot_id|>).
  virtual std::vector<int32_t> stop_ids() const = 0;
};

// Streaming detokenizer: feed ids one by one, get the text that became complete (never a split UTF-8 char).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerSource& src);

}  // namespace qoq
