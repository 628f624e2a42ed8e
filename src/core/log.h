// Logging goes through spdlog to stderr so stdout carries only results (generated text, numbers).
#pragma once
#include <spdlog/spdlog.h>

namespace qoq {
// Call once from main: level from QOQ_LOG (trace|debug|info|warn|error|off), default info.
void init_logging();
}  // namespace qoq
