// Fuzzes the tokenizer tables read from GGUF metadata (tokens, merges, token types, pre-tokenizer name).
#include <cstddef>
#include <cstdint>

#include "fuzz_tokenizer_files.h"
#include "io/gguf.h"
#include "tokenizer/gguf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto file = qoq::GgufFile::from_memory(data, size, nullptr, "fuzz.gguf");
    const auto tok = qoq::load_gguf_tokenizer(file);
    fuzz::exercise(*tok);
  } catch (const qoq::InputError&) {
  }
  return 0;
}
