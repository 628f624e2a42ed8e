// Shared by the tokenizer fuzzers: writes the input to a per-process temp file the loaders can open, and drives
// a loaded tokenizer through encode/decode of a fixed text so the parsed tables are exercised, not just read.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "qoq/tokenizer.h"

namespace fuzz {

inline std::string write_temp(const std::string& file_name, const uint8_t* data, size_t size) {
  const auto dir = std::filesystem::temp_directory_path() / ("qoq_fuzz_tok_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / file_name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path.string();
}

inline void exercise(const qoq::Tokenizer& tok) {
  const std::string text = "Hello, world! 123 <|im_start|> \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\n\n  x";
  const auto ids = tok.encode(text, true);
  (void)tok.decode(ids);
  qoq::StreamDecoder stream(tok);
  for (int32_t id : ids) (void)stream.push(id);
  (void)stream.flush();
  for (int id = 0; id < tok.vocab_size() && id < 64; ++id) (void)tok.token_text(id);
}

}  // namespace fuzz
