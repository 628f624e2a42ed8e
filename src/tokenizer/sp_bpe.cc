#include "tokenizer/sp_bpe.h"

#include <fmt/format.h>

#include <queue>

#include "qoq/error.h"
#include "tokenizer/utf8.h"

namespace qoq {

SpBpeTokenizer::SpBpeTokenizer(SpBpeVocab vocab) : v_(std::move(vocab)) {
  const size_t n = v_.pieces.size();
  QOQ_CHECK(v_.scores.size() == n && v_.types.size() == n, "vocab arrays differ in length");
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = v_.pieces[i];
    if (v_.types[i] == PieceType::Byte) {
      unsigned b = 0;
      if (p.size() == 6 && std::sscanf(p.c_str(), "<0x%02X>", &b) == 1 && byte_id_[b] < 0) byte_id_[b] = int(i);
    } else if (v_.types[i] == PieceType::Normal && !p.empty()) {
      piece_to_id_.emplace(p, int(i));  // first occurrence wins on duplicates
    }
  }
}

int SpBpeTokenizer::find_token(const std::string& text) const {
  for (size_t i = 0; i < v_.pieces.size(); ++i) {
    if (v_.pieces[i] == text) return int(i);
  }
  return -1;
}

std::string SpBpeTokenizer::token_text(int id) const {
  if (id < 0 || size_t(id) >= v_.pieces.size()) fail_input("token id {} out of range [0, {})", id, v_.pieces.size());
  return v_.pieces[id];
}

std::vector<int32_t> SpBpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos && v_.bos >= 0) out.push_back(v_.bos);
  if (text.empty()) return out;

  // Symbols: a doubly linked list over the initial pieces; merged symbols absorb their right neighbour.
  struct Sym {
    int id;
    int prev, next;
    size_t begin, len;  // byte range in `s`
  };
  std::string s;
  s.reserve(text.size() + 1);
  s += ' ';  // dummy prefix
  s += text;
  std::vector<Sym> syms;
  syms.reserve(s.size());
  auto push_sym = [&](int id, size_t begin, size_t len) {
    const int idx = int(syms.size());
    syms.push_back({id, idx - 1, idx + 1, begin, len});
  };
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8::sequence_length(s, i);
    if (len == 0) len = 1;  // an invalid byte stands alone and falls back to its byte piece
    auto it = piece_to_id_.find(std::string(s.substr(i, len)));
    if (it != piece_to_id_.end()) {
      push_sym(it->second, i, len);
    } else {
      for (size_t k = 0; k < len; ++k) {
        const int b = byte_id_[uint8_t(s[i + k])];
        push_sym(b >= 0 ? b : v_.unk, i + k, 1);
      }
    }
    i += len;
  }
  if (!syms.empty()) syms.back().next = -1;

  // Candidate merges, best score first, then leftmost: the same choice as llama2.c's full rescan per step.
  struct Cand {
    float score;
    int left, right;
    size_t len;  // combined length when queued; stale if the symbols changed since
    bool operator<(const Cand& o) const {
      if (score != o.score) return score < o.score;
      return syms_begin > o.syms_begin;
    }
    size_t syms_begin;
  };
  std::priority_queue<Cand> queue;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    auto it = piece_to_id_.find(s.substr(syms[l].begin, syms[l].len + syms[r].len));
    if (it == piece_to_id_.end()) return;
    queue.push({v_.scores[it->second], l, r, syms[l].len + syms[r].len, syms[l].begin});
  };
  for (int i = 0; i + 1 < int(syms.size()); ++i) try_add(i, i + 1);
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    Sym& l = syms[c.left];
    if (l.len == 0 || l.next != c.right || syms[c.right].len == 0 || l.len + syms[c.right].len != c.len) continue;
    Sym& r = syms[c.right];
    l.id = piece_to_id_.at(s.substr(l.begin, c.len));
    l.len = c.len;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    r.len = 0;  // dead
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
  for (int i = 0; i >= 0 && i < int(syms.size()); i = syms[i].next) out.push_back(syms[i].id);
  return out;
}

std::string SpBpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int id = ids[i];
    if (id < 0 || size_t(id) >= v_.pieces.size()) fail_input("token id {} out of range [0, {})", id, v_.pieces.size());
    const PieceType t = v_.types[id];
    if (t == PieceType::Control) continue;
    const bool at_start = i == 0 || ids[i - 1] == v_.bos;
    std::string piece;
    if (t == PieceType::Byte) {
      unsigned b = 0;
      std::sscanf(v_.pieces[id].c_str(), "<0x%02X>", &b);
      piece.assign(1, char(b));
    } else {
      piece = v_.pieces[id];
    }
    if (at_start && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);  // the dummy prefix
    out += piece;
  }
  return out;
}

}  // namespace qoq
