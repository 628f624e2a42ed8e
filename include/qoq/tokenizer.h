// Tokenizers: SentencePiece-style BPE (llama2.c tok512.bin, GGUF "llama" vocabularies, tokenizer.model via
// libsentencepiece) and byte-level BPE (GPT-2 style; tokenizer.json or GGUF "gpt2" metadata). All share this
// interface. Implementations live in src/tokenizer/; encode/decode are thread-safe.
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
  // add_bos: prepend BOS when the tokenizer has one (pass adds_bos() for the family default). Special-token text
  // in `text` (e.g. "<|im_start|>", or "<s>" for tokenizer.model) becomes its id, except for llama2.c files; a
  // BOS spelled at the very start of the text is not doubled when add_bos is set.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
  // Raw bytes, never with U+FFFD substituted. Byte-level BPE renders special tokens as their text (as HF's
  // decode does); SentencePiece-style tokenizers drop control tokens and strip the dummy-prefix space from the
  // first piece and from the piece right after BOS. Throws InputError for an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;                    // -1 if none
  virtual int eos_id() const = 0;                    // -1 if none
  virtual bool adds_bos() const = 0;                 // whether the family prepends BOS by default
  virtual std::string token_text(int id) const = 0;  // raw piece, for debugging/inspect

  // Chat template of the family (ChatML, Llama-3, Llama-2), with the assistant turn opened.
  // Throws InputError when the model has no known chat format.
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages) const = 0;
  // Ids that end generation: eos first (when there is one), then the end-of-turn tokens present in the vocabulary
  // (<|im_end|>, <|eot_id|>, <|end_of_text|>, <|endoftext|>).
  virtual std::vector<int32_t> stop_ids() const = 0;
};

// Streaming detokenizer: feed ids one by one, get the text that became complete (never a split UTF-8 char;
// invalid bytes are passed through). The concatenation of all pushes and flush() equals decode(all ids). Work
// per push is bounded: the window shrinks to the last token whenever everything so far has been emitted.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  // context: ids already shown (e.g. the prompt); only its last id matters. Pass it when streaming a continuation
  // so that SentencePiece-style tokenizers keep the leading space of the first new piece (without context the
  // first piece counts as the start of the text and loses its dummy-prefix space).
  StreamDecoder(const Tokenizer& tok, const std::vector<int32_t>& context);
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

// Throws InputError naming the file and the field for unreadable or inconsistent tokenizer data.
std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerSource& src);

}  // namespace qoq
