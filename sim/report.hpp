// Reports of simulations: text for a person, JSON for a program. No system calls; the callers
// print. sim/README.md ("How to read a report") walks through one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "explore.hpp"
#include "scenario.hpp"
#include "world.hpp"

namespace pipepool::sim {

// JSON values (nlohmann-json, keys in insertion order); callers dump them with dump(2).
using Json = nlohmann::ordered_json;

// "unbatched, shortest-backlog, 1 worker, pipes of 16 x 4096-byte pages (65536 bytes)".
std::string describe_setup(const Scenario& scenario);

// The deadlock: the cycle, then each process, its call and its pipe. Lines start with `indent`.
std::string format_deadlock(const DeadlockReport& report, std::string_view indent);
Json deadlock_json(const DeadlockReport& report);
Json scenario_json(const Scenario& scenario);

// "deadlock", "livelock", "failure", "no-failure", "error": the one-word outcome.
std::string verdict(const ExploreResult& result);

// The whole report of an exploration (or a replay): verdict, statistics, determinism check and
// counterexample with the last `trace_tail` steps of its trace (0: all of it).
std::string format_explore_text(const Scenario& scenario, const ExploreOptions& options,
                                const ExploreResult& result, size_t trace_tail);
// wall_seconds >= 0 (measured by the caller: the simulator reads no clock) adds "speed".
std::string format_explore_json(const Scenario& scenario, const ExploreOptions& options,
                                const ExploreResult& result, size_t trace_tail,
                                double wall_seconds = -1);

}  // namespace pipepool::sim
