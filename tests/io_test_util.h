// Helpers shared by the IO tests: data paths that fail loudly, temp dirs, small file writers, RoPE references.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "qoq/error.h"

namespace qoq::testing {

// Absolute path of a shared data file; fails the test (not skips) with the path when it is missing.
inline std::string data_file(const std::string& rel) {
  const std::string p = std::string(QOQ_DATA_DIR) + "/" + rel;
  EXPECT_TRUE(std::filesystem::exists(p)) << "missing shared data file: " << p;
  return p;
}
inline std::string smollm2_gguf() {
  const std::string p = std::string(QOQ_MODEL_CACHE) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  EXPECT_TRUE(std::filesystem::exists(p)) << "missing model file (run scripts/setup.sh): " << p;
  return p;
}

// A fresh directory removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qoq_io_XXXXXX").string();
    QOQ_CHECK(mkdtemp(tmpl.data()) != nullptr, "mkdtemp {}", tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}
inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
inline void write_text(const std::string& path, const std::string& s) {
  std::ofstream out(path, std::ios::binary);
  out << s;
}

// Runs `fn`, expects an InputError whose message contains every one of `parts`.
template <typename Fn>
void expect_input_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an InputError mentioning " << ::testing::PrintToString(parts);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// RoPE on one head vector x[D] at position pos, in the two conventions.
inline void rope_interleaved(float* x, int D, int pos, float theta) {
  for (int i = 0; i < D / 2; ++i) {
    const double a = pos * std::pow(double(theta), -2.0 * i / D);
    const double c = std::cos(a), s = std::sin(a), x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = float(x0 * c - x1 * s);
    x[2 * i + 1] = float(x0 * s + x1 * c);
  }
}
inline void rope_rotate_half(float* x, int D, int pos, float theta) {
  for (int i = 0; i < D / 2; ++i) {
    const double a = pos * std::pow(double(theta), -2.0 * i / D);
    const double c = std::cos(a), s = std::sin(a), x0 = x[i], x1 = x[i + D / 2];
    x[i] = float(x0 * c - x1 * s);
    x[i + D / 2] = float(x0 * s + x1 * c);
  }
}

}  // namespace qoq::testing
