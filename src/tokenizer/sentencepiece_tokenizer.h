// tokenizer.model (SentencePiece protobuf) through libsentencepiece: the Llama-2 family. Text that spells a
// control piece ("<s>", "</s>", as the Llama-2 chat template emits) is split out first and becomes that id;
// each remaining segment is encoded by SentencePiece on its own (with its dummy prefix), which is exactly what
// Meta's reference chat code does turn by turn. Decode is done here piece by piece (byte pieces to raw bytes,
// U+2581 to space, control pieces dropped, the dummy-prefix space stripped at the start and after BOS) so that
// it never substitutes U+FFFD for a UTF-8 sequence split across tokens, which streaming relies on.
#pragma once
#include <memory>
#include <string>

#include "qoq/tokenizer.h"

namespace qoq {

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path, const std::string& chat_template);

}  // namespace qoq
