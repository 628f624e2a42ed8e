// Fuzzes qoq.json parsing; an accepted qoq.json must survive qoq_info_to_json -> qoq_info_from_json unchanged
// (the writer re-validates what it writes, so a value the parser accepts but the writer rejects is a bug too).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/qoq_checkpoint.h"
#include "qoq/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  qoq::io::QoqInfo info;
  try {
    info = qoq::io::qoq_info_from_json(text, "fuzz/qoq.json");
  } catch (const qoq::InputError&) {
    return 0;
  }
  const std::string again = qoq::io::qoq_info_to_json(info);  // must not throw for accepted input
  const qoq::io::QoqInfo back = qoq::io::qoq_info_from_json(again, "roundtrip/qoq.json");
  if (back.layers != info.layers || back.passes != info.passes || back.source_model != info.source_model ||
      qoq::io::qoq_info_to_json(back) != again)
    std::abort();
  return 0;
}
