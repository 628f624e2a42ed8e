#include "quant/calibration.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "qoq/error.h"

namespace qoq::quant {

std::vector<std::string> text_files_in(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  QOQ_CHECK_INPUT(fs::is_directory(dir, ec),
                  "calibration: {} is not a directory (give --calib-dir DIR or --calib FILE...)", dir);
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".txt") out.push_back(e.path().string());
  QOQ_CHECK_INPUT(!out.empty(), "calibration: no .txt files in {}", dir);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int32_t> draw_calibration_windows(const Tokenizer& tok, const CalibrationOptions& o) {
  QOQ_CHECK_INPUT(!o.files.empty(), "calibration: no text files given");
  QOQ_CHECK_INPUT(o.windows > 0 && o.windows <= 100000, "calibration: windows must be in [1, 100000], got {}",
                  o.windows);
  QOQ_CHECK_INPUT(o.window_len >= 2 && o.window_len <= (1 << 20),
                  "calibration: window length must be in [2, 1048576], got {}", o.window_len);
  std::vector<std::string> texts;
  uint64_t total = 0;
  const size_t min_bytes = size_t(o.window_len) * 16;
  for (const auto& f : o.files) {
    std::ifstream in(f, std::ios::binary);
    QOQ_CHECK_INPUT(in.good(), "calibration: cannot open {}", f);
    std::ostringstream ss;
    ss << in.rdbuf();
    texts.push_back(ss.str());
    QOQ_CHECK_INPUT(texts.back().size() >= min_bytes,
                    "calibration: {} has {} bytes, fewer than the {} needed for windows of {} tokens", f,
                    texts.back().size(), min_bytes, o.window_len);
    total += texts.back().size();
  }
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> out;
  out.reserve(size_t(o.windows) * size_t(o.window_len));
  const bool bos = tok.adds_bos();
  for (int w = 0; w < o.windows; ++w) {
    // A byte offset uniform over all files, then the file holding it.
    uint64_t at = rng() % total;
    size_t fi = 0;
    while (at >= texts[fi].size()) at -= texts[fi++].size();
    const std::string& text = texts[fi];
    // Start after the next newline (so windows begin at a line), wrapping to the file start near its end.
    size_t start = text.find('\n', size_t(at));
    start = start == std::string::npos ? 0 : start + 1;
    std::vector<int32_t> ids;
    size_t bytes = size_t(o.window_len) * 8;
    for (;;) {
      if (start + bytes > text.size()) start = text.size() > bytes ? text.size() - bytes : 0;
      ids = tok.encode(std::string_view(text).substr(start, bytes), bos);
      if (ids.size() >= size_t(o.window_len) || start == 0) break;
      bytes *= 2;  // dense text (many tokens per byte is rare, few is common): widen until the window fills
      if (bytes >= text.size()) start = 0;
    }
    QOQ_CHECK_INPUT(ids.size() >= size_t(o.window_len), "calibration: {} tokenizes to only {} tokens, fewer than {}",
                    o.files[fi], ids.size(), o.window_len);
    out.insert(out.end(), ids.begin(), ids.begin() + o.window_len);
  }
  return out;
}

}  // namespace qoq::quant
