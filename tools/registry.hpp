// tools/registry.hpp: what register_command collected, for main.cpp only.
#pragma once

#include <vector>

#include "command.hpp"

namespace pipepool::tools {

struct Registration {
  const char* path;     // "tiers", "sim run"
  const char* summary;  // one line for the parent's --help
  Setup setup;
};

std::vector<Registration>& registrations();

}  // namespace pipepool::tools
