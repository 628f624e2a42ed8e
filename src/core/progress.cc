#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace qoq {

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && !finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& suffix) {
  done_ = std::min(done, total_);
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
    last_draw_ = now;
    draw(suffix, false);
  } else {
    const int decile = int(done_ * 10 / total_);
    // The 100% line is finish()'s, with the total time.
    if (decile != last_decile_ && done_ < total_) {
      last_decile_ = decile;
      draw(suffix, false);
    }
  }
}

void Progress::finish(const std::string& suffix) {
  if (finished_) return;
  done_ = total_;
  if (enabled_) draw(suffix, true);
  finished_ = true;
}

void Progress::draw(const std::string& suffix, bool final) {
  const double t = elapsed_seconds();
  const double frac = double(done_) / double(total_);
  const double eta = done_ > 0 ? t * (1 - frac) / frac : 0;
  constexpr int kWidth = 30;
  const int filled = int(frac * kWidth);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %.1fs%s%s%s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
               (long long)done_, (long long)total_, t, final ? "" : " eta ",
               final ? "" : std::to_string(int(eta)).c_str(), suffix.empty() ? "" : " ", suffix.c_str());
  if (!tty_ || final)
    std::fputc('\n', stderr);
  else
    std::fputs("\x1b[K", stderr);
  std::fflush(stderr);
}

}  // namespace qoq
