// Fuzzes config.json parsing; an accepted config must survive to_hf_json -> from_hf_json unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "qoq/error.h"
#include "qoq/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const qoq::ModelConfig c = qoq::ModelConfig::from_hf_json(text, "fuzz.json");
    const std::string again = c.to_hf_json();
    if (qoq::ModelConfig::from_hf_json(again, "roundtrip.json").to_hf_json() != again) std::abort();
  } catch (const qoq::InputError&) {
  }
  return 0;
}
