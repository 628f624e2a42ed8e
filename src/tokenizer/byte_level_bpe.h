// Byte-level BPE (GPT-2 style) as in HF `tokenizers`: special tokens are split out of the text first
// (leftmost, longest), the rest is pre-tokenized by regex (pretokenizer.h) and each piece is BPE-merged by
// merge rank over its bytes. Vocabulary strings use GPT-2's byte-to-unicode alphabet; they are turned back into
// raw bytes once at load, so encode and decode work on bytes directly. Decode concatenates token bytes
// (special tokens as their text, as HF's decode does by default) and never replaces invalid UTF-8.
#pragma once
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_base.h"

namespace qoq {

struct ByteBpeSpec {
  std::string source;               // file name, for error messages
  std::vector<std::string> tokens;  // as stored (byte-level unicode alphabet); id = index; may have holes ("")
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order, same alphabet
  std::vector<int> specials;  // ids matched literally in the input text (added / control tokens)
  PreTokenizer pre;
  bool ignore_merges = false;  // a piece that is itself a token is taken whole (Llama-3)
  bool nfc = false;            // NFC-normalize text segments first (Qwen2's normalizer)
  int bos = -1, eos = -1;
  int unk = -1;  // stands for a byte without a token; -1: such bytes are dropped (HF BPE without unk_token)
  bool add_bos = false;
};

// GPT-2's reversible byte <-> printable code point map.
uint32_t byte_to_unicode(uint8_t b);
// Raw bytes of a vocabulary string; a string with a character outside the alphabet is taken as plain UTF-8
// (what HF's ByteLevel decoder does).
std::string byte_level_to_bytes(const std::string& s);

class ByteBpeTokenizer : public TokenizerBase {
 public:
  explicit ByteBpeTokenizer(ByteBpeSpec spec);  // throws InputError naming spec.source on inconsistencies

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override { return int(bytes_.size()); }
  int bos_id() const override { return bos_; }
  int eos_id() const override { return eos_; }
  bool adds_bos() const override { return add_bos_ && bos_ >= 0; }
  std::string token_text(int id) const override;

 protected:
  int find_token(const std::string& text) const override;

 private:
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::string source_;
  std::vector<std::string> text_;   // as stored
  std::vector<std::string> bytes_;  // raw bytes per id
  std::unordered_map<std::string, int> bytes_to_id_;
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;  // (left id, right id) -> (rank, merged id)
  int byte_id_[256];
  std::vector<std::pair<std::string, int>> specials_;  // text, id; longest first
  std::vector<std::vector<int>> specials_by_byte_;     // first byte -> indices into specials_, longest first
  std::vector<bool> is_special_;
  PreTokenizer pre_;
  bool ignore_merges_ = false, nfc_ = false;
  int bos_ = -1, eos_ = -1, unk_ = -1;
  bool add_bos_ = false;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // piece -> ids
};

}  // namespace qoq
