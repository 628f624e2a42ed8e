// Fuzzes the llama2.c checkpoint importer (header validation, tensor views, RoPE row permutation).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/model_import.h"

namespace {
// The importer wants a tokenizer next to the checkpoint; give it a directory with one.
std::string model_path() {
  static const std::string path = [] {
    const auto dir = std::filesystem::temp_directory_path() / ("qoq_fuzz_llama2c_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tok512.bin") << "x";
    return (dir / "model.bin").string();
  }();
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = qoq::io::MappedFile::from_memory(data, size, nullptr, model_path());
    const qoq::ModelWeights w = qoq::io::import_llama2c(file, {.dtype = qoq::DType::F32, .progress = false});
    volatile float sink = 0;
    for (const auto& [name, t] : w.tensors) sink = sink + t.at_f32(t.numel() - 1);
    (void)sink;
  } catch (const qoq::InputError&) {
  }
  return 0;
}
