// Small UTF-8 helpers shared by the tokenizers (no allocation-heavy Unicode library needed for these).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qoq::utf8 {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), or 0 if the bytes there are not one
// (stray continuation byte, overlong form, surrogate, > U+10FFFF, or truncated).
size_t sequence_length(std::string_view s, size_t i);

// Length of the longest prefix of s that does not end inside an unfinished (but so far valid) multi-byte
// sequence. Invalid bytes never hold output back; only a lead byte still waiting for continuations does.
size_t complete_prefix(std::string_view s);

// Appends the UTF-8 encoding of a code point (must be <= 0x10FFFF and not a surrogate).
void append(std::string& out, uint32_t cp);

// Decodes one well-formed sequence of the given length (as returned by sequence_length).
uint32_t decode(std::string_view s, size_t i, size_t len);

}  // namespace qoq::utf8
