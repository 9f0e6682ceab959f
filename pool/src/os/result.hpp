// os/result.hpp: the return type of every wrapper in pipepool::os.
//
// A Result<T> holds either a value or an Error: the errno of the failed call and the name of that
// call. The os layer never throws for a failed system call; it hands the errno back, and the
// driver decides what the failure means (the public API turns it into a typed exception).
//
//   os::Result<os::Fd> fd = os::make_eventfd();
//   if (!fd.ok()) return fd.failure();          // propagate, keeping errno and the call's name
//   use(fd.value().get());
//   ...
//   std::string why = r.message();              // "pipe2: Too many open files"
//
// Constructing, copying and inspecting a Result never allocates (the operation name is a string
// literal), so Results may be used in a child between fork and _exit. Only message() allocates.
//
// Thread safety: plain value types.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace pipepool::os {

// A failed system call: its errno and a static string naming it ("pipe2", "F_SETPIPE_SZ").
struct Error {
  int code = 0;
  const char* operation = "";

  // "operation: strerror(code)", e.g. "pipe2: Too many open files". Allocates.
  std::string message() const;
};

// The Error for the errno the last failed call left behind. Call it right after the failure.
inline Error last_error(const char* operation) noexcept {
  return Error{errno, operation};
}

// Thrown by Result::value() on a failed Result: a contract violation, never a runtime failure.
class BadResultAccess : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A value of type T, or the Error that prevented it.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Error error) : state_(std::in_place_index<1>, error) {}         // NOLINT: implicit

  bool ok() const noexcept { return state_.index() == 0; }

  // The value; throws BadResultAccess when !ok().
  T& value() & {
    check();
    return *std::get_if<0>(&state_);
  }
  const T& value() const& {
    check();
    return *std::get_if<0>(&state_);
  }
  T&& value() && {
    check();
    return std::move(*std::get_if<0>(&state_));
  }

  // errno of the failure, 0 when ok().
  int error() const noexcept { return ok() ? 0 : std::get_if<1>(&state_)->code; }
  // Name of the failed call, "" when ok().
  const char* operation() const noexcept { return ok() ? "" : std::get_if<1>(&state_)->operation; }
  // The failure itself, to propagate it; {0, ""} when ok().
  Error failure() const noexcept { return ok() ? Error{} : *std::get_if<1>(&state_); }
  // "pipe2: Too many open files"; "ok" when ok(). Allocates.
  std::string message() const { return ok() ? std::string("ok") : failure().message(); }

 private:
  void check() const {
    if (!ok()) throw BadResultAccess("os::Result::value() on a failure: " + message());
  }

  std::variant<T, Error> state_;
};

// Success without a value, or the Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(error), failed_(true) {}  // NOLINT: implicit

  bool ok() const noexcept { return !failed_; }
  // Throws BadResultAccess when !ok(), for symmetry with Result<T>.
  void value() const {
    if (failed_) throw BadResultAccess("os::Result::value() on a failure: " + message());
  }
  int error() const noexcept { return failed_ ? error_.code : 0; }
  const char* operation() const noexcept { return failed_ ? error_.operation : ""; }
  Error failure() const noexcept { return failed_ ? error_ : Error{}; }
  std::string message() const { return failed_ ? error_.message() : std::string("ok"); }

 private:
  Error error_{};
  bool failed_ = false;
};

}  // namespace pipepool::os
