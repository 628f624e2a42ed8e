// The first lines of WikiText-2's test file: a prefix keeps tokenization fast under the sanitizers, and the first
// windows of a row-aligned prefix tokenize like those of the whole file.
#pragma once
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace qoq::test {

inline std::string wiki_prefix(int lines) {
  const std::string path = std::string(QOQ_DATA_DIR) + "/wikitext-2-raw/wiki.test.raw";
  std::ifstream in(path, std::ios::binary);
  if (!in) ADD_FAILURE() << "missing " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string raw = ss.str();
  size_t pos = 0;
  for (int i = 0; i < lines && pos != std::string::npos; ++i) pos = raw.find('\n', pos + (i ? 1 : 0));
  return raw.substr(0, pos == std::string::npos ? raw.size() : pos + 1);
}

}  // namespace qoq::test
