// Fuzzes the HF tokenizer.json loader (vocab, merges, added tokens, pre-tokenizer regexes) and encode/decode.
#include <cstddef>
#include <cstdint>

#include "fuzz_tokenizer_files.h"
#include "tokenizer/hf_json_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tok = qoq::load_hf_json_tokenizer(fuzz::write_temp("tokenizer.json", data, size));
    fuzz::exercise(*tok);
  } catch (const qoq::InputError&) {
  }
  return 0;
}
