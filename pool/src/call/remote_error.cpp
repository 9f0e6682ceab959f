// Exceptions across the pipe: encoding in the worker, rethrowing in the parent.
#include <cxxabi.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "pipepool/codec.hpp"
#include "pipepool/detail/call_state.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/remote_exceptions.hpp"

namespace pipepool::detail {
namespace {

struct Registry {
  std::mutex mutex;
  std::unordered_map<std::string, ExceptionFactory> factories;
};

template <class E>
std::exception_ptr make_standard(const std::string& type_name, const std::string& message,
                                 size_t input_index) {
  return std::make_exception_ptr(RemoteException<E>(type_name, message, message, input_index));
}

// "input item 12" or "input items 50 to 99".
std::string describe(InputItems items) {
  if (items.count == 1) return "input item " + std::to_string(items.first);
  return "input items " + std::to_string(items.first) + " to " +
         std::to_string(items.first + items.count - 1);
}

// The engine's messages name its own task number ("while task 17 was running"): a user knows the
// input's index, so name that instead.
std::string name_input_items(const Outcome& outcome, InputItems items) {
  if (items.count == 0 || outcome.task == 0) return outcome.message;
  const std::string internal = "task " + std::to_string(outcome.task);
  const std::string instead = "the task of " + describe(items);
  std::string text = outcome.message;
  for (size_t at = text.find(internal); at != std::string::npos;
       at = text.find(internal, at + instead.size())) {
    const size_t end = at + internal.size();
    if (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) {
      at = end;  // "task 170" is not "task 17"
      continue;
    }
    text.replace(at, internal.size(), instead);
  }
  if (text == outcome.message) text += " (" + describe(items) + ")";
  return text;
}

Registry& registry() {
  static Registry* instance = [] {
    auto* r = new Registry;
    r->factories["std::invalid_argument"] = &make_standard<std::invalid_argument>;
    r->factories["std::out_of_range"] = &make_standard<std::out_of_range>;
    r->factories["std::domain_error"] = &make_standard<std::domain_error>;
    r->factories["std::length_error"] = &make_standard<std::length_error>;
    r->factories["std::logic_error"] = &make_standard<std::logic_error>;
    r->factories["std::range_error"] = &make_standard<std::range_error>;
    r->factories["std::overflow_error"] = &make_standard<std::overflow_error>;
    r->factories["std::underflow_error"] = &make_standard<std::underflow_error>;
    r->factories["std::runtime_error"] = &make_standard<std::runtime_error>;
    return r;
  }();
  return *instance;
}

ExceptionFactory find_factory(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.factories.find(name);
  return it == r.factories.end() ? nullptr : it->second;
}

// The nearest standard base of the exception being handled.
const char* standard_base() {
  try {
    throw;
  } catch (const std::invalid_argument&) {
    return "std::invalid_argument";
  } catch (const std::out_of_range&) {
    return "std::out_of_range";
  } catch (const std::domain_error&) {
    return "std::domain_error";
  } catch (const std::length_error&) {
    return "std::length_error";
  } catch (const std::logic_error&) {
    return "std::logic_error";
  } catch (const std::range_error&) {
    return "std::range_error";
  } catch (const std::overflow_error&) {
    return "std::overflow_error";
  } catch (const std::underflow_error&) {
    return "std::underflow_error";
  } catch (const std::runtime_error&) {
    return "std::runtime_error";
  } catch (...) {
    return "";
  }
}

}  // namespace

std::string demangle(const char* mangled) {
  int status = 0;
  char* text = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || text == nullptr) return mangled;
  std::string out(text);
  std::free(text);
  return out;
}

void register_exception_factory(const std::string& type_name, ExceptionFactory factory) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.factories[type_name] = factory;
}

void encode_current_exception(std::string& out, uint64_t index) {
  std::string type_name = "unknown exception";
  std::string message = "a value that is not a std::exception was thrown";
  try {
    throw;
  } catch (const std::exception& e) {
    type_name = demangle(typeid(e).name());
    message = e.what();
  } catch (...) {
  }
  Writer writer(out);
  writer.write_trivial<uint64_t>(index);
  pipepool::encode(writer, type_name);
  pipepool::encode(writer, std::string(standard_base()));
  pipepool::encode(writer, message);
}

Reader open_gathered(std::string_view payload, size_t bulk_threshold_bytes) {
  uint64_t head_bytes = 0;
  if (payload.size() < sizeof head_bytes) {
    throw ProtocolError("pipepool: a payload of " + std::to_string(payload.size()) +
                        " byte(s) is too short for its head length");
  }
  std::memcpy(&head_bytes, payload.data(), sizeof head_bytes);
  if (head_bytes > payload.size() - sizeof head_bytes) {
    throw ProtocolError("pipepool: a payload's head of " + std::to_string(head_bytes) +
                        " byte(s) does not fit in its " + std::to_string(payload.size()) +
                        " bytes");
  }
  const std::string_view rest = payload.substr(sizeof head_bytes);
  return Reader(rest.substr(0, head_bytes), rest.substr(head_bytes), bulk_threshold_bytes);
}

bool execute_task(std::string_view payload, Payload& out) {
  Reader reader = open_gathered(payload);
  const auto address = reader.read_trivial<uintptr_t>();
  if (address == 0) throw ProtocolError("task payload without a function");
  const auto trampoline = reinterpret_cast<Trampoline>(address);
  return trampoline(reader, out);
}

std::exception_ptr to_exception(const Outcome& outcome, InputItems items) {
  switch (outcome.kind) {
    case Outcome::Kind::Result:
      return nullptr;
    case Outcome::Kind::RemoteError: {
      std::string type_name, base, message;
      uint64_t item_in_task = 0;
      try {
        Reader reader(outcome.payload);
        item_in_task = reader.read_trivial<uint64_t>();
        type_name = pipepool::decode<std::string>(reader);
        base = pipepool::decode<std::string>(reader);
        message = pipepool::decode<std::string>(reader);
      } catch (const ProtocolError& e) {
        return std::make_exception_ptr(e);
      }
      const size_t index = items.count == 0 ? RemoteError::kNoIndex
                                            : items.first + static_cast<size_t>(item_in_task);
      if (ExceptionFactory factory = find_factory(type_name)) {
        return factory(type_name, message, index);
      }
      if (ExceptionFactory factory = find_factory(base)) return factory(type_name, message, index);
      return std::make_exception_ptr(RemoteException<std::runtime_error>(
          type_name, message, type_name + ": " + message, index));
    }
    case Outcome::Kind::WorkerLost:
    case Outcome::Kind::Terminated:
    case Outcome::Kind::Cancelled:  // never delivered (Core::deliver drops it); as Terminated
      return std::make_exception_ptr(
          WorkerLost(name_input_items(outcome, items), outcome.signal, outcome.exit_code));
    case Outcome::Kind::ProtocolError:
      return std::make_exception_ptr(ProtocolError(name_input_items(outcome, items)));
    case Outcome::Kind::Timeout:
      return std::make_exception_ptr(TimeoutError(name_input_items(outcome, items)));
  }
  return nullptr;
}

}  // namespace pipepool::detail
