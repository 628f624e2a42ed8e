// Fuzzes the GGUF reader: header, metadata, tensor infos, dequantization, and the model import on top.
#include <cstddef>
#include <cstdint>

#include "io/gguf.h"
#include "io/model_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const qoq::GgufFile g = qoq::GgufFile::from_memory(data, size, nullptr, "fuzz.gguf");
    for (const auto& t : g.tensors()) {
      if (!qoq::ggml_type_supported(t.type) || t.numel() > (1 << 20)) continue;
      const qoq::Tensor x = g.load_tensor_f32(t.name);
      volatile float sink = x.numel() ? x.data<float>()[x.numel() - 1] : 0.0f;
      (void)sink;
    }
    for (const auto& [key, v] : g.metadata()) {
      try {
        (void)g.get_int(key);
      } catch (const qoq::InputError&) {
      }
      try {
        (void)g.get_string_array(key);
      } catch (const qoq::InputError&) {
      }
      try {
        (void)g.get_float_array(key);
      } catch (const qoq::InputError&) {
      }
    }
    qoq::io::import_gguf(g, {.dtype = qoq::DType::F32, .progress = false});
  } catch (const qoq::InputError&) {
  }
  return 0;
}
