// tools/report_parts.hpp: the parts of other subcommands that `pipepool report` reuses, so that the
// report runs exactly what `pipepool demo`, `pipepool fuzz` and `pipepool tiers` run.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "check.hpp"

namespace pipepool::tools {

// fuzz_command.cpp: fuzz::check on one built-in strategy (1 worker, 64 KiB pipes,
// ShortestBacklog, seed 1), for `demo` and `report`.
struct FuzzDemoRow {
  Strategy strategy;
  fuzz::CheckResult result;
};
// Epoll, Batched and Unbatched, `runs` workloads each (each stops at its first failure).
std::vector<FuzzDemoRow> fuzz_demo_rows(uint32_t runs);
// "  epoll      holds over 100 scenarios" / "  batched    DEADLOCK ... replay: ..." lines.
std::string format_fuzz_demo_rows(const std::vector<FuzzDemoRow>& rows);
// The demo's section: a heading and fuzz_demo_rows(100).
std::string fuzz_demo_section();

// tiers_command.cpp: the spin workload of `pipepool tiers --workload spin` over `tiers_mb`,
// `seconds` each, one cgroup per tier (removed afterwards). On success returns 0 and fills `whole`
// with what `pipepool tiers --json` prints; else returns its exit status (3: the cgroups cannot be
// written, 128+N: interrupted) and sets `failure` to the reason. Prints nothing but progress.
int tier_sweep(const std::vector<uint64_t>& tiers_mb, double seconds, bool quiet,
               nlohmann::ordered_json& whole, std::string& failure);
// Draws `whole` (as tier_sweep fills it) to `png` with tools/tiers_plot.py, its data beside it in
// `png`.json. Empty on success, else the reason.
std::string plot_tiers(const nlohmann::ordered_json& whole, const std::string& png);

}  // namespace pipepool::tools
