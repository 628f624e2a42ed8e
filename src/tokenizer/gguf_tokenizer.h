// Tokenizers stored in GGUF metadata: tokenizer.ggml.model "gpt2" (byte-level BPE: tokens, merges, token_type,
// tokenizer.ggml.pre naming the pre-tokenizer) and "llama" (SentencePiece-style BPE: tokens, scores, token_type).
#pragma once
#include <memory>
#include <string>

#include "qoq/tokenizer.h"

namespace qoq {

class GgufFile;

// chat_template: overrides tokenizer.chat_template when not empty.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& f, const std::string& chat_template = "");
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path, const std::string& chat_template = "");

}  // namespace qoq
