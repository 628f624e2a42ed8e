// llama2.c tokenizer files (tok512.bin and the like): validated read into an SpBpeTokenizer.
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "qoq/error.h"
#include "tokenizer/sp_bpe.h"

namespace qoq {

namespace {
constexpr int32_t kMaxTokenLengthLimit = 1 << 16;  // far above any real vocabulary; rejects garbage headers

bool is_byte_piece(const std::string& p) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return p.size() == 6 && p.compare(0, 3, "<0x") == 0 && hex(p[3]) && hex(p[4]) && p[5] == '>';
}
}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int expected_vocab) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input("cannot open llama2.c tokenizer '{}'", path);
  const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto read_i32 = [&](const char* what, size_t index) {
    if (data.size() - pos < 4) fail_input("{}: truncated at byte {} reading {} of token {}", path, pos, what, index);
    int32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  if (data.size() < 4) fail_input("{}: file is {} bytes, too short for the max_token_length header", path, data.size());
  int32_t max_len;
  std::memcpy(&max_len, data.data(), 4);
  pos = 4;
  if (max_len <= 0 || max_len > kMaxTokenLengthLimit) {
    fail_input("{}: max_token_length {} out of range [1, {}]", path, max_len, kMaxTokenLengthLimit);
  }

  SpBpeVocab v;
  while (pos < data.size()) {
    const size_t index = v.pieces.size();
    float score;
    const int32_t score_bits = read_i32("the score", index);
    std::memcpy(&score, &score_bits, 4);
    if (!std::isfinite(score)) fail_input("{}: token {} has a non-finite score", path, index);
    const int32_t len = read_i32("the length", index);
    if (len < 0 || len > max_len) {
      fail_input("{}: token {} has length {} outside [0, max_token_length={}]", path, index, len, max_len);
    }
    if (data.size() - pos < size_t(len)) {
      fail_input("{}: token {} needs {} bytes but only {} remain", path, index, len, data.size() - pos);
    }
    std::string piece = data.substr(pos, size_t(len));
    pos += size_t(len);
    // llama2.c's exporter fixes ids 0..2 as <unk>, BOS, EOS (it spells the latter "\n<s>\n", "\n</s>\n").
    PieceType t = PieceType::Normal;
    if (index == 0)
      t = PieceType::Unknown;
    else if (index <= 2)
      t = PieceType::Control;
    else if (is_byte_piece(piece))
      t = PieceType::Byte;
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(t);
  }
  const int n = int(v.pieces.size());
  if (n < 3) fail_input("{}: holds {} tokens; a llama2.c vocabulary needs at least <unk>, <s>, </s>", path, n);
  if (expected_vocab > 0 && n != expected_vocab) {
    fail_input("{}: holds {} tokens but the model's vocab_size is {}", path, n, expected_vocab);
  }
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  auto tok = std::make_unique<SpBpeTokenizer>(std::move(v));
  tok->set_chat_template(ChatTemplate{});  // stories models have no chat format; stop on EOS only
  return tok;
}

}  // namespace qoq
