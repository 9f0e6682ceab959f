// Text and JSON renderings of a Diagnosis (doctor.hpp); no /proc access here.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "doctor.hpp"

namespace pipepool::doctor {
namespace {

std::string with_commas(uint64_t value) {
  const std::string digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string pid_list(const std::vector<pid_t>& pids) {
  if (pids.empty()) return "no process";
  std::string text;
  for (size_t i = 0; i < pids.size(); ++i) {
    if (i > 0) text += i + 1 == pids.size() ? " and " : ", ";
    text += std::to_string(pids[i]);
  }
  return text;
}

const ProcessReport* find_process(const Diagnosis& diagnosis, pid_t pid) {
  for (const ProcessReport& report : diagnosis.processes) {
    if (report.pid == pid) return &report;
  }
  return nullptr;
}

const ObjectReport* find_object(const Diagnosis& diagnosis, const std::string& name) {
  auto it = diagnosis.objects.find(name);
  return it == diagnosis.objects.end() ? nullptr : &it->second;
}

// "pipe:[5678] (65,536 of 65,536 bytes queued), whose read end is held only by 1240"
std::string describe_wait(const Diagnosis& diagnosis, const ThreadReport& thread) {
  std::string text;
  if (thread.wait == WaitKind::Child) {
    return "waiting in " + thread.syscall + "(2) for child " + pid_list(thread.waits_for);
  }
  const bool writing = thread.wait == WaitKind::Write;
  text = std::string("blocked in ") + thread.syscall + "(2)";
  if (thread.bytes_requested) text += " of " + with_commas(*thread.bytes_requested) + " bytes";
  text += writing ? " to fd " : " from fd ";
  text += std::to_string(thread.fd) + ", " + thread.object;
  const ObjectReport* object = find_object(diagnosis, thread.object);
  if (object == nullptr) return text;
  if (object->is_pipe) {
    if (object->queued_bytes && object->capacity_bytes) {
      const bool full = *object->queued_bytes + 4096 > *object->capacity_bytes;
      text += " (" + std::string(writing && full ? "pipe full: " : "") +
              with_commas(*object->queued_bytes) + " of " + with_commas(*object->capacity_bytes) +
              " bytes queued)";
    }
    const std::vector<pid_t>& others = writing ? object->readers : object->writers;
    text += std::string(", whose ") + (writing ? "read" : "write") + " end is held " +
            (others.size() <= 1 ? "only " : "only ") + "by " + pid_list(others);
  } else if (object->known_socket) {
    if (writing) {
      const bool full = object->send_queue_bytes >= object->send_buffer_bytes;
      text += " (" + std::string(full ? "send queue full: " : "send queue ") +
              with_commas(object->send_queue_bytes) + " of " +
              with_commas(object->send_buffer_bytes) + " bytes; the peer has " +
              with_commas(object->peer_receive_queue_bytes) + " bytes unread)";
    } else {
      text += " (" + with_commas(object->receive_queue_bytes) + " bytes queued to read)";
    }
    text += ", whose peer socket:[" + std::to_string(object->peer_inode) + "] is held only by " +
            pid_list(object->peer_holders);
  }
  return text;
}

std::string role_of(const ProcessReport& report) {
  return std::to_string(report.pid) + " (" + report.comm + ")";
}

std::string quote_state(char state) {
  return std::string(1, state);
}

nlohmann::json optional_number(const std::optional<uint64_t>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json thread_json(const ThreadReport& thread) {
  nlohmann::json out;
  out["tid"] = thread.tid;
  out["comm"] = thread.comm;
  out["state"] = quote_state(thread.state);
  out["syscall"] =
      thread.syscall.empty() ? nlohmann::json(nullptr) : nlohmann::json(thread.syscall);
  out["wchan"] = thread.wchan.empty() ? nlohmann::json(nullptr) : nlohmann::json(thread.wchan);
  out["fd"] = thread.fd >= 0 ? nlohmann::json(thread.fd) : nlohmann::json(nullptr);
  out["bytes_requested"] = optional_number(thread.bytes_requested);
  out["object"] = thread.object.empty() ? nlohmann::json(nullptr) : nlohmann::json(thread.object);
  out["wait"] = to_string(thread.wait);
  out["waits_for"] = thread.waits_for;
  out["missing"] = thread.missing;
  return out;
}

}  // namespace

std::string explain_cycle(const Diagnosis& diagnosis) {
  if (diagnosis.verdict != Verdict::Deadlock) return "";
  std::string text;
  if (diagnosis.cycle.size() == 1) {
    const ProcessReport* report = find_process(diagnosis, diagnosis.cycle[0]);
    if (report == nullptr || report->threads.empty()) return "";
    const ThreadReport& thread = report->threads[report->main_thread];
    return "a cycle of one: " + role_of(*report) + " thread " + std::to_string(thread.tid) + " " +
           describe_wait(diagnosis, thread) + ", so only it could " +
           (thread.wait == WaitKind::Write ? "read" : "write") + " there, and it never will.";
  }
  const std::vector<pid_t>& order =
      diagnosis.cycle.empty() ? diagnosis.deadlocked : diagnosis.cycle;
  for (pid_t pid : order) {
    const ProcessReport* report = find_process(diagnosis, pid);
    if (report == nullptr || report->threads.empty()) continue;
    const ThreadReport& thread = report->threads[report->main_thread];
    if (!text.empty()) text += ";\n  ";
    text += role_of(*report) + " thread " + std::to_string(thread.tid) + " " +
            describe_wait(diagnosis, thread);
  }
  return text + ";\n  so none of them will ever read or write again.";
}

std::string render_text(const Diagnosis& diagnosis) {
  std::ostringstream out;
  if (!diagnosis.error.empty()) {
    out << "pipepool doctor: " << diagnosis.error;
    if (!diagnosis.gone.empty()) out << ": " << pid_list(diagnosis.gone);
    out << "\n";
    return out.str();
  }
  out << "verdict: " << to_string(diagnosis.verdict);
  if (diagnosis.verdict == Verdict::Deadlock) {
    if (diagnosis.cycle.empty()) {
      out << ": " << pid_list(diagnosis.deadlocked) << " can never progress";
    } else {
      out << ": wait-for cycle ";
      for (pid_t pid : diagnosis.cycle) out << pid << " -> ";
      out << diagnosis.cycle.front();
    }
    out << "\n  " << explain_cycle(diagnosis) << "\n";
  } else if (diagnosis.verdict == Verdict::NoCycle) {
    size_t live = 0;
    for (const ProcessReport& report : diagnosis.processes) live += report.live ? 1 : 0;
    out << ": " << live << " of " << diagnosis.processes.size()
        << " processes may still make progress\n";
  } else {
    out << ": permissions hide facts the diagnosis needs\n";
    for (const ProcessReport& report : diagnosis.processes) {
      if (!report.hidden) continue;
      size_t sleeping = 0;
      for (const ThreadReport& thread : report.threads) sleeping += thread.state == 'S' ? 1 : 0;
      out << "  " << role_of(report) << ": " << sleeping << " of " << report.threads.size()
          << " threads asleep (state S), none runnable; without their system calls the doctor "
             "cannot tell what they wait for, so it cannot say whether they are in a cycle\n";
    }
  }
  if (!diagnosis.gone.empty()) out << "gone: " << pid_list(diagnosis.gone) << "\n";
  if (!diagnosis.missing.empty()) {
    out << "cannot see:\n";
    constexpr size_t kShown = 6;  // --json lists every one
    for (size_t i = 0; i < diagnosis.missing.size() && i < kShown; ++i) {
      out << "  " << diagnosis.missing[i] << "\n";
    }
    if (diagnosis.missing.size() > kShown) {
      out << "  ... and " << diagnosis.missing.size() - kShown << " more like these\n";
    }
  }
  out << "\n";
  for (const ProcessReport& report : diagnosis.processes) {
    out << "process " << role_of(report) << ", parent " << report.ppid << ", state " << report.state
        << (report.in_tree ? "" : ", outside the tree (holds an end)")
        << (report.live      ? ""
            : report.blocked ? ", blocked"
                             : "")
        << "\n";
    for (const ThreadReport& thread : report.threads) {
      out << "  thread " << thread.tid << " (" << thread.comm << ") " << thread.state << " "
          << (thread.syscall.empty() ? std::string("?") : thread.syscall);
      if (!thread.wchan.empty()) out << " in " << thread.wchan;
      if (thread.wait == WaitKind::Write || thread.wait == WaitKind::Read ||
          thread.wait == WaitKind::Child) {
        out << ": " << describe_wait(diagnosis, thread);
      } else if (thread.wait == WaitKind::Internal) {
        out << ": waits for another thread of its process";
      } else if (thread.wait == WaitKind::Hidden) {
        out << ": system call hidden";
      } else if (!thread.object.empty()) {
        out << ": fd " << thread.fd << ", " << thread.object
            << (find_object(diagnosis, thread.object) != nullptr
                    ? " (its other end is held by no process the doctor can see: not followed)"
                    : " (not a pipe or connected AF_UNIX socket: not followed)");
      }
      out << "\n";
    }
  }
  for (const auto& [name, object] : diagnosis.objects) {
    out << name << ": ";
    if (object.is_pipe) {
      if (object.queued_bytes && object.capacity_bytes) {
        out << with_commas(*object.queued_bytes) << " of " << with_commas(*object.capacity_bytes)
            << " bytes queued; ";
      }
      out << "read end held by " << pid_list(object.readers) << ", write end by "
          << pid_list(object.writers) << "\n";
    } else {
      out << "AF_UNIX, held by " << pid_list(object.holders) << "; "
          << with_commas(object.receive_queue_bytes)
          << " bytes to read here, send queue (sk_wmem_alloc) "
          << with_commas(object.send_queue_bytes) << " of SO_SNDBUF "
          << with_commas(object.send_buffer_bytes) << "; peer socket:[" << object.peer_inode
          << "] held by " << pid_list(object.peer_holders) << ", "
          << with_commas(object.peer_receive_queue_bytes) << " bytes unread there\n";
    }
  }
  return out.str();
}

std::string render_json(const Diagnosis& diagnosis) {
  nlohmann::json out;
  out["verdict"] = to_string(diagnosis.verdict);
  out["cycle"] = diagnosis.cycle;
  out["deadlocked"] = diagnosis.deadlocked;
  out["explanation"] = explain_cycle(diagnosis);
  out["gone"] = diagnosis.gone;
  out["missing"] = diagnosis.missing;
  if (!diagnosis.error.empty()) out["error"] = diagnosis.error;
  out["processes"] = nlohmann::json::array();
  for (const ProcessReport& report : diagnosis.processes) {
    nlohmann::json process;
    process["pid"] = report.pid;
    process["ppid"] = report.ppid;
    process["comm"] = report.comm;
    process["in_tree"] = report.in_tree;
    process["live"] = report.live;
    process["blocked"] = report.blocked;
    process["waits_for"] = report.waits_for;
    process["missing"] = report.missing;
    if (!report.threads.empty()) {
      const ThreadReport& thread = report.threads[report.main_thread];
      const nlohmann::json main = thread_json(thread);
      for (const char* key :
           {"tid", "state", "syscall", "wchan", "fd", "bytes_requested", "object", "wait"}) {
        process[key] = main[key];
      }
    } else {
      process["tid"] = nullptr;
      process["state"] = quote_state(report.state);
    }
    process["threads"] = nlohmann::json::array();
    for (const ThreadReport& thread : report.threads)
      process["threads"].push_back(thread_json(thread));
    out["processes"].push_back(std::move(process));
  }
  out["objects"] = nlohmann::json::object();
  for (const auto& [name, object] : diagnosis.objects) {
    nlohmann::json entry;
    entry["kind"] = object.is_pipe ? "pipe" : "unix_socket";
    if (object.is_pipe) {
      entry["queued_bytes"] = optional_number(object.queued_bytes);
      entry["capacity_bytes"] = optional_number(object.capacity_bytes);
      entry["readers"] = object.readers;
      entry["writers"] = object.writers;
    } else {
      entry["peer"] = "socket:[" + std::to_string(object.peer_inode) + "]";
      entry["holders"] = object.holders;
      entry["peer_holders"] = object.peer_holders;
      entry["receive_queue_bytes"] = object.receive_queue_bytes;
      entry["send_queue_bytes"] = object.send_queue_bytes;
      entry["send_buffer_bytes"] = object.send_buffer_bytes;
      entry["peer_receive_queue_bytes"] = object.peer_receive_queue_bytes;
    }
    out["objects"][name] = std::move(entry);
  }
  return out.dump(2) + "\n";
}

}  // namespace pipepool::doctor
