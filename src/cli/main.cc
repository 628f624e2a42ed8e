// The qoq binary: dispatches to the registered subcommands. Input errors exit 2, other failures 1.
#include <algorithm>
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "core/log.h"
#include "qoq/error.h"

namespace qoq::cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace qoq::cli

int main(int argc, char** argv) {
  qoq::init_logging();
  CLI::App app{"qoq: W4A8KV4 (QoQ) quantization and inference for Llama-family models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qoq 0.1.0");
  auto& cmds = qoq::cli::registry();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> actions;
  std::vector<std::pair<CLI::App*, const qoq::cli::Command*>> subs;
  for (const auto& c : cmds) subs.push_back({app.add_subcommand(c.name, c.description), &c});
  for (auto& [sub, c] : subs) actions[sub] = c->setup(*sub);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const qoq::InputError& e) {
    std::fprintf(stderr, "qoq: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qoq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
