// SentencePiece-style BPE over scored pieces, as in llama2.c: prepend a space (the dummy prefix), split into
// UTF-8 characters, map each to its piece (or to byte pieces <0xNN> when unknown), then repeatedly merge the
// adjacent pair whose concatenation is a piece with the highest score (leftmost on ties). Used for llama2.c's
// tok512.bin. Decode maps byte pieces back to bytes, drops control pieces and strips the dummy-prefix space
// from the first piece of the sequence and from the piece right after BOS. Like llama2.c, text that spells a
// control piece ("<s>") is not special: it is encoded as ordinary characters.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_base.h"

namespace qoq {

enum class PieceType : uint8_t { Normal, Unknown, Control, Byte };

struct SpBpeVocab {
  std::vector<std::string> pieces;  // raw UTF-8; spaces as ' ' (not U+2581)
  std::vector<float> scores;
  std::vector<PieceType> types;
  int bos = -1, eos = -1, unk = -1;
  bool add_bos = true;
};

class SpBpeTokenizer : public TokenizerBase {
 public:
  explicit SpBpeTokenizer(SpBpeVocab vocab);

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override { return int(v_.pieces.size()); }
  int bos_id() const override { return v_.bos; }
  int eos_id() const override { return v_.eos; }
  bool adds_bos() const override { return v_.add_bos && v_.bos >= 0; }
  std::string token_text(int id) const override;

 protected:
  int find_token(const std::string& text) const override;

 private:
  SpBpeVocab v_;
  std::unordered_map<std::string, int> piece_to_id_;  // normal pieces only: what merges may produce
  int byte_id_[256];
};

// Reads llama2.c's tokenizer file (int32 max_token_length; per token: float32 score, int32 length, bytes).
// The vocabulary size is what the file holds; expected_vocab > 0 makes a mismatch an error.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int expected_vocab = 0);

}  // namespace qoq
