// A progress bar on stderr for long work (loading, perplexity, quantization). Redraws at most ~10 times a
// second; when stderr is not a terminal it prints a line at each 10% instead, so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace qoq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  void update(int64_t done, const std::string& suffix = "");
  void advance(int64_t n = 1, const std::string& suffix = "") { update(done_ + n, suffix); }
  void finish(const std::string& suffix = "");
  double elapsed_seconds() const;

 private:
  void draw(const std::string& suffix, bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace qoq
