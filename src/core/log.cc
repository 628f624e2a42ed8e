#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>

namespace qoq {

void init_logging() {
  auto logger = spdlog::stderr_color_mt("qoq");
  logger->set_pattern("[%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::level::level_enum level = spdlog::level::info;
  if (const char* env = std::getenv("QOQ_LOG")) level = spdlog::level::from_str(env);
  spdlog::set_level(level);
}

}  // namespace qoq
