// Each subcommand lives in its own cmd_*.cc and registers itself here, so main.cc never changes.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace qoq::cli {

struct Command {
  std::string name, description;
  // Adds options to `sub` and returns the action to run after parsing (returns the exit code).
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Command>& registry();

struct Register {
  explicit Register(Command c) { registry().push_back(std::move(c)); }
};

}  // namespace qoq::cli
