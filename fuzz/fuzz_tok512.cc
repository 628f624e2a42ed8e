// Fuzzes the llama2.c tokenizer loader (tok512.bin format) and encode/decode over whatever it accepts.
#include <cstddef>
#include <cstdint>

#include "fuzz_tokenizer_files.h"
#include "tokenizer/sp_bpe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tok = qoq::load_llama2c_tokenizer(fuzz::write_temp("tok.bin", data, size));
    fuzz::exercise(*tok);
  } catch (const qoq::InputError&) {
  }
  return 0;
}
