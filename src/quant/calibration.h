// Calibration windows (DESIGN §4): `windows` runs of `window_len` tokens drawn with a fixed seed from plain-text
// files. Each window starts at a line start found from a random byte offset (file chosen with probability
// proportional to its size, so the draw is uniform over all the text), is tokenized from there (BOS first when the
// tokenizer adds one) and cut to window_len. The draw uses std::mt19937_64, whose sequence the C++ standard fixes,
// and plain modulo arithmetic, so the same seed gives the same windows on every platform.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qoq/tokenizer.h"

namespace qoq::quant {

struct CalibrationOptions {
  std::vector<std::string> files;  // text files (empty: error)
  int windows = 128;
  int window_len = 512;
  uint64_t seed = 0;
};

// [windows, window_len] token ids, row-major. InputError naming the file when one cannot be read or is too short to
// hold a window (a file must have at least 16 x window_len bytes).
std::vector<int32_t> draw_calibration_windows(const Tokenizer& tok, const CalibrationOptions& opts);

// The *.txt files of a directory, sorted by name (InputError when none).
std::vector<std::string> text_files_in(const std::string& dir);

}  // namespace qoq::quant
