// SHA-256 of files and model directories (OpenSSL EVP), recorded in qoq.json so a checkpoint names exactly
// which source weights it was quantized from.
#pragma once
#include <string>
#include <string_view>

namespace qoq::io {

// Lower-case hex digest of bytes in memory.
std::string sha256_hex(std::string_view bytes);

// Lower-case hex digest of a file's contents, streamed (InputError naming the path when unreadable).
std::string sha256_file(const std::string& path);

// Digest of a Hugging Face model directory: SHA-256 of the manifest text made of one line
// "<sha256 of file>  <file name>\n" (sha256sum's format) for config.json, then for every *.safetensors and
// *.safetensors.index.json file in byte-wise sorted name order. Tokenizer files are left out: they do not change
// the weights. InputError when config.json or every weight file is missing.
std::string sha256_model_dir(const std::string& dir);

// sha256_model_dir for a directory, sha256_file for anything else (GGUF, llama2.c .bin).
std::string sha256_source(const std::string& path);

}  // namespace qoq::io
