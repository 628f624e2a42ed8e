// The llama2.c legacy checkpoint (.bin): seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size — negative means an unshared classifier — and seq_len), then float32 weights. Its tokenizer is
// tok512.bin (or tokenizer.bin) in the same directory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace qoq::io {

struct Llama2cHeader {
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;   // vocab_size was positive in the file
  int64_t expected_file_size = 0;  // header + all float arrays this header implies
};

// Validates the header against the file size; throws InputError naming `path` and the field.
Llama2cHeader parse_llama2c_header(const uint8_t* data, size_t size, const std::string& path);

// The tokenizer file next to a llama2.c checkpoint: tok512.bin, else tokenizer.bin; "" when neither exists.
std::string find_llama2c_tokenizer(const std::string& model_path);

}  // namespace qoq::io
