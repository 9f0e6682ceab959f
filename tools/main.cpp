// The `pipepool` command: one binary, one subcommand per job. Each subcommand registers itself
// from its own *_command.cpp (see command.hpp); this file only builds the tree and parses.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "command.hpp"
#include "registry.hpp"

#ifndef PIPEPOOL_VERSION
#error "PIPEPOOL_VERSION comes from the CMake project version (tools/CMakeLists.txt)"
#endif

namespace {

using pipepool::tools::Registration;

// One-line summaries of the groups that subcommands may join ("sim run" joins "sim").
const std::map<std::string, std::string> kGroupSummaries = {
    {"sim", "the simulator: the pool's own protocol over byte-exact pipe models"},
};

CLI::App* group(CLI::App& app, const std::string& name) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name() == name) return sub;
  }
  auto summary = kGroupSummaries.find(name);
  CLI::App* sub = app.add_subcommand(name, summary == kGroupSummaries.end() ? "" : summary->second);
  sub->require_subcommand(1);
  return sub;
}

// The deepest subcommand the parser reached, for the error line.
const CLI::App* deepest(const CLI::App& app) {
  const CLI::App* at = &app;
  for (;;) {
    auto parsed = at->get_subcommands();
    if (parsed.empty()) return at;
    at = parsed.front();
  }
}

}  // namespace

int main(int argc, char** argv) {
  pipepool::tools::set_raw_arguments(argc, argv);
  CLI::App app("pipepool: a process pool over pipes, its simulator and its tools", "pipepool");
  app.set_version_flag("--version", std::string("pipepool ") + PIPEPOOL_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Run `pipepool COMMAND --help` for a command's options. Exit status: 0 success, "
      "1 found (a deadlock, a failure), 2 bad usage, 3 environment or tool failure.");

  std::vector<Registration> all = pipepool::tools::registrations();
  std::sort(all.begin(), all.end(), [](const Registration& a, const Registration& b) {
    return std::string(a.path) < b.path;
  });
  std::map<CLI::App*, pipepool::tools::Run> runs;
  for (const Registration& r : all) {
    std::string path = r.path;
    CLI::App* parent = &app;
    for (size_t space; (space = path.find(' ')) != std::string::npos; path.erase(0, space + 1)) {
      parent = group(*parent, path.substr(0, space));
    }
    if (!parent->get_subcommands([&](const CLI::App* sub) { return sub->get_name() == path; })
             .empty()) {
      std::fprintf(stderr, "pipepool: two subcommands register '%s' (tools/*_command.cpp)\n",
                   r.path);
      return pipepool::tools::kExitEnvironment;
    }
    CLI::App* command = parent->add_subcommand(path, r.summary);
    runs[command] = r.setup(*command);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const CLI::App* at = deepest(app);
    const std::string where = pipepool::tools::command_path(*at);
    std::string message = e.what();
    // "A subcommand is required" when the word given is not one: name it and the choices.
    const auto subcommands = at->get_subcommands([](const CLI::App*) { return true; });
    const std::vector<std::string> rest = at->remaining();
    if (!subcommands.empty() && !rest.empty() && rest.front().front() != '-') {
      message = "unknown command '" + rest.front() + "' (";
      for (size_t i = 0; i < subcommands.size(); ++i) {
        message += (i ? ", " : "") + subcommands[i]->get_name();
      }
      message += ")";
    }
    std::fprintf(stderr, "%s: %s (see %s --help)\n", where.c_str(), message.c_str(), where.c_str());
    return pipepool::tools::kExitUsage;
  }
  const CLI::App* chosen = deepest(app);
  auto run = runs.find(const_cast<CLI::App*>(chosen));
  if (run == runs.end() || !run->second) return pipepool::tools::kExitUsage;
  return run->second();
}
