#include "tokenizer/byte_level_bpe.h"

#include <utf8proc.h>

#include <algorithm>
#include <queue>

#include "qoq/error.h"
#include "tokenizer/utf8.h"

namespace qoq {

namespace {

constexpr size_t kCacheLimit = 1 << 18;  // pieces; the cache is dropped when full

struct ByteMaps {
  uint32_t to_cp[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMaps() {
    // Printable Latin-1 bytes map to themselves; the other 68 bytes to U+0100.. in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      to_cp[b] = keep ? uint32_t(b) : next++;
      to_byte[to_cp[b]] = uint8_t(b);
    }
  }
};

const ByteMaps& maps() {
  static const ByteMaps m;
  return m;
}

uint64_t pair_key(int a, int b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

std::string nfc(std::string_view s) {
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), utf8proc_ssize_t(s.size()), &out,
                              utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return std::string(s);  // invalid UTF-8: leave as is (HF cannot receive it at all)
  std::string r(reinterpret_cast<char*>(out), size_t(n));
  std::free(out);
  return r;
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return maps().to_cp[b]; }

std::string byte_level_to_bytes(const std::string& s) {
  std::string out;
  const auto& m = maps().to_byte;
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8::sequence_length(s, i);
    if (len == 0) return s;
    const auto it = m.find(utf8::decode(s, i, len));
    if (it == m.end()) return s;
    out += char(it->second);
    i += len;
  }
  return out;
}

ByteBpeTokenizer::ByteBpeTokenizer(ByteBpeSpec spec)
    : source_(std::move(spec.source)),
      text_(std::move(spec.tokens)),
      pre_(std::move(spec.pre)),
      ignore_merges_(spec.ignore_merges),
      nfc_(spec.nfc),
      bos_(spec.bos),
      eos_(spec.eos),
      unk_(spec.unk),
      add_bos_(spec.add_bos) {
  const int n = int(text_.size());
  if (n == 0) fail_input("{}: the vocabulary is empty", source_);
  for (int id : {bos_, eos_, unk_}) {
    if (id >= n) fail_input("{}: special token id {} is outside the vocabulary of {} tokens", source_, id, n);
  }
  is_special_.assign(n, false);
  for (int id : spec.specials) {
    if (id < 0 || id >= n) fail_input("{}: special token id {} is outside the vocabulary of {} tokens", source_, id, n);
    if (text_[id].empty()) fail_input("{}: special token {} has empty text", source_, id);
    is_special_[id] = true;
    specials_.emplace_back(text_[id], id);
  }
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  specials_by_byte_.resize(256);
  for (size_t i = 0; i < specials_.size(); ++i) specials_by_byte_[uint8_t(specials_[i].first[0])].push_back(int(i));

  bytes_.resize(n);
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  for (int id = 0; id < n; ++id) {
    bytes_[id] = is_special_[id] ? text_[id] : byte_level_to_bytes(text_[id]);
    if (is_special_[id] || text_[id].empty()) continue;
    bytes_to_id_.emplace(bytes_[id], id);  // first id wins on duplicates
    if (bytes_[id].size() == 1 && byte_id_[uint8_t(bytes_[id][0])] < 0) byte_id_[uint8_t(bytes_[id][0])] = id;
  }

  merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    const std::string ab = byte_level_to_bytes(a), bb = byte_level_to_bytes(b);
    const auto ia = bytes_to_id_.find(ab), ib = bytes_to_id_.find(bb), im = bytes_to_id_.find(ab + bb);
    if (ia == bytes_to_id_.end() || ib == bytes_to_id_.end() || im == bytes_to_id_.end()) {
      fail_input("{}: merge {} '{} {}' uses a token that is not in the vocabulary", source_, rank, a, b);
    }
    merges_.emplace(pair_key(ia->second, ib->second), std::make_pair(int(rank), im->second));  // first rank wins
  }
}

std::string ByteBpeTokenizer::token_text(int id) const {
  if (id < 0 || id >= vocab_size()) fail_input("token id {} out of range [0, {})", id, vocab_size());
  return text_[id];
}

int ByteBpeTokenizer::find_token(const std::string& text) const {
  for (const auto& [t, id] : specials_) {
    if (t == text) return id;
  }
  const auto it = bytes_to_id_.find(text);
  return it == bytes_to_id_.end() ? -1 : it->second;
}

std::vector<int32_t> ByteBpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  size_t pos = 0, seg = 0;
  while (pos < text.size()) {
    // Longest special token starting here (specials_ is sorted longest first).
    int hit = -1;
    size_t hit_len = 0;
    for (int k : specials_by_byte_[uint8_t(text[pos])]) {
      const auto& [t, id] = specials_[k];
      if (text.compare(pos, t.size(), t) == 0) {
        hit = id;
        hit_len = t.size();
        break;
      }
    }
    if (hit < 0) {
      ++pos;
      continue;
    }
    if (pos > seg) encode_text(text.substr(seg, pos - seg), out);
    // A template that spells BOS right after add_bos would double it; keep one.
    if (!(hit == bos_ && add_bos && out.size() == 1 && pos == 0)) out.push_back(hit);
    pos += hit_len;
    seg = pos;
  }
  if (seg < text.size()) encode_text(text.substr(seg), out);
  return out;
}

void ByteBpeTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  if (nfc_) {
    const std::string normalized = nfc(text);
    pre_.split(normalized, [&](std::string_view piece) { encode_piece(piece, out); });
  } else {
    pre_.split(text, [&](std::string_view piece) { encode_piece(piece, out); });
  }
}

void ByteBpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  const auto whole = ignore_merges_ ? bytes_to_id_.find(key) : bytes_to_id_.end();
  if (whole != bytes_to_id_.end()) {
    ids.push_back(whole->second);
  } else {
    // Symbols start as single bytes; the lowest-rank adjacent pair merges first, leftmost on ties.
    struct Sym {
      int id, prev, next;
    };
    // A byte the vocabulary lacks (SmolLM2 has no token for 21 bytes, e.g. 0x13 or 0xff) becomes the model's
    // unk token when it declares one, else it is dropped, as HF's BPE does; its neighbours then become adjacent.
    std::vector<Sym> syms;
    syms.reserve(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) {
      const int id = byte_id_[uint8_t(piece[i])] >= 0 ? byte_id_[uint8_t(piece[i])] : unk_;
      if (id < 0) continue;
      syms.push_back({id, int(syms.size()) - 1, int(syms.size()) + 1});
    }
    if (!syms.empty()) syms.back().next = -1;
    struct Cand {
      int rank, left, right, merged;
      bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    std::priority_queue<Cand> queue;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const auto it = merges_.find(pair_key(syms[l].id, syms[r].id));
      if (it != merges_.end()) queue.push({it->second.first, l, r, it->second.second});
    };
    for (int i = 0; i + 1 < int(syms.size()); ++i) try_add(i, i + 1);
    std::vector<int> merged_into(syms.size(), -2);  // -2: alive
    while (!queue.empty()) {
      const Cand c = queue.top();
      queue.pop();
      // Stale if either side died or changed since the candidate was queued.
      if (merged_into[c.left] != -2 || merged_into[c.right] != -2 || syms[c.left].next != c.right) continue;
      const auto it = merges_.find(pair_key(syms[c.left].id, syms[c.right].id));
      if (it == merges_.end() || it->second.second != c.merged) continue;
      Sym& l = syms[c.left];
      l.id = c.merged;
      l.next = syms[c.right].next;
      if (l.next >= 0) syms[l.next].prev = c.left;
      merged_into[c.right] = c.left;
      try_add(l.prev, c.left);
      try_add(c.left, l.next);
    }
    for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) ids.push_back(syms[i].id);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(key, std::move(ids));
}

std::string ByteBpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) fail_input("token id {} out of range [0, {})", id, vocab_size());
    out += bytes_[id];
  }
  return out;
}

}  // namespace qoq
