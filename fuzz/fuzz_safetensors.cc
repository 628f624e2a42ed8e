// Fuzzes the safetensors header parser; every tensor view it returns must lie inside the input.
#include <cstddef>
#include <cstdint>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = qoq::io::SafetensorsFile::from_memory(data, size, nullptr, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : f.tensors()) {
      const auto* p = static_cast<const uint8_t*>(t.raw());
      if (t.nbytes()) sink = sink + p[0] + p[t.nbytes() - 1];  // ASan catches a view past the input
    }
    (void)sink;
  } catch (const qoq::InputError&) {
  }
  return 0;
}
