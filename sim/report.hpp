// Reports of simulations: text for a person, JSON for a program. No system calls; the callers
// print. sim/README.md ("How to read a report") walks through one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "explore.hpp"
#include "scenario.hpp"
#include "world.hpp"

namespace pipepool::sim {

// A small streaming JSON writer with two-space indentation. Keys and values are escaped.
//
//   JsonWriter json;
//   json.begin_object().key("schedules").value(uint64_t{12}).end_object();
//   std::string text = json.take();
class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view name);
  JsonWriter& value(std::string_view text);
  JsonWriter& value(const char* text) { return value(std::string_view(text)); }
  JsonWriter& value(const std::string& text) { return value(std::string_view(text)); }
  JsonWriter& value(uint64_t number);
  JsonWriter& value(int64_t number);
  JsonWriter& value(uint32_t number) { return value(uint64_t{number}); }
  JsonWriter& value(int32_t number) { return value(int64_t{number}); }
  JsonWriter& value(double number);
  JsonWriter& value(bool flag);
  JsonWriter& null();
  std::string take();

 private:
  void before_value();
  void newline();
  JsonWriter& close(char bracket);
  std::string out_;
  std::vector<bool> empty_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

std::string json_escape(std::string_view text);

// "unbatched, shortest-backlog, 1 worker, pipes of 16 x 4096-byte pages (65536 bytes)".
std::string describe_setup(const Scenario& scenario);

// The deadlock: the cycle, then each process, its call and its pipe. Lines start with `indent`.
std::string format_deadlock(const DeadlockReport& report, std::string_view indent);
void write_deadlock_json(JsonWriter& json, const DeadlockReport& report);
void write_scenario_json(JsonWriter& json, const Scenario& scenario);

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
