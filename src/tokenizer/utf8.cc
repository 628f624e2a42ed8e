#include "tokenizer/utf8.h"

namespace qoq::utf8 {

namespace {
// Expected total length from a lead byte; 0 for continuation bytes and bytes that never start a sequence.
size_t lead_length(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

// Allowed range of the second byte for a lead byte (excludes overlongs, surrogates and > U+10FFFF).
bool second_ok(uint8_t lead, uint8_t b) {
  if (lead == 0xe0) return b >= 0xa0 && b <= 0xbf;
  if (lead == 0xed) return b >= 0x80 && b <= 0x9f;
  if (lead == 0xf0) return b >= 0x90 && b <= 0xbf;
  if (lead == 0xf4) return b >= 0x80 && b <= 0x8f;
  return b >= 0x80 && b <= 0xbf;
}
}  // namespace

size_t sequence_length(std::string_view s, size_t i) {
  const uint8_t lead = uint8_t(s[i]);
  const size_t n = lead_length(lead);
  if (n <= 1) return n;
  if (i + n > s.size()) return 0;
  if (!second_ok(lead, uint8_t(s[i + 1]))) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((uint8_t(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

size_t complete_prefix(std::string_view s) {
  // Only the last 3 bytes can belong to an unfinished sequence.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t i = n - back;
    const uint8_t b = uint8_t(s[i]);
    if ((b & 0xc0) == 0x80) continue;  // continuation byte: look further back for its lead
    const size_t need = lead_length(b);
    if (need <= back) return n;  // ASCII, invalid lead, or a finished sequence
    // A lead byte still waiting: hold it back only if what follows it so far is a valid start.
    if (back >= 2 && !second_ok(b, uint8_t(s[i + 1]))) return n;
    return i;
  }
  return n;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

uint32_t decode(std::string_view s, size_t i, size_t len) {
  const uint8_t b0 = uint8_t(s[i]);
  if (len == 1) return b0;
  uint32_t cp = b0 & (0xff >> (len + 1));
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3f);
  return cp;
}

}  // namespace qoq::utf8
