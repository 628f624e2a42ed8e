// HF tokenizer.json (byte-level BPE models: GPT-2, SmolLM, Llama-3, Qwen2): model.vocab, model.merges (both
// "a b" strings and [a, b] pairs), model.ignore_merges, added_tokens (all split out of the text, as HF does),
// normalizer (none or NFC), pre_tokenizer (Split with a regex and Isolated behaviour, ByteLevel, Digits,
// Sequence of those), post_processor (TemplateProcessing that prepends a special token = BOS). A
// tokenizer_config.json next to the file supplies bos/eos token names, add_bos_token and chat_template.
#pragma once
#include <memory>
#include <string>

#include "qoq/tokenizer.h"

namespace qoq {

// chat_template: overrides tokenizer_config.json's when not empty.
std::unique_ptr<Tokenizer> load_hf_json_tokenizer(const std::string& path, const std::string& chat_template = "");

}  // namespace qoq
