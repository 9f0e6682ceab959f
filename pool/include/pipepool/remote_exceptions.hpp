// pipepool/remote_exceptions.hpp: how a task's exception comes back to the parent.
//
// A task that throws sends its exception's dynamic type name, the nearest standard exception type
// it derives from, and what(). The parent rethrows a RemoteException<E>, which is both an E and a
// pipepool::RemoteError, where E is:
//   - the task's own type, if it was registered with register_remote_exception<E>();
//   - else the nearest standard type (std::invalid_argument, std::out_of_range, std::domain_error,
//     std::length_error, std::logic_error, std::range_error, std::overflow_error,
//     std::underflow_error, std::runtime_error);
//   - else std::runtime_error, whose what() then reads "TypeName: message".
//
//   struct QuotaExceeded : std::runtime_error { using std::runtime_error::runtime_error; };
//   pipepool::register_remote_exception<QuotaExceeded>();   // once, in the parent
//   try { pool.apply(task); } catch (const QuotaExceeded& e) { ... }   // also a RemoteError
#pragma once

#include <exception>
#include <string>
#include <typeinfo>

#include "pipepool/errors.hpp"

namespace pipepool {

template <class E>
class RemoteException final : public E, public RemoteError {
 public:
  RemoteException(const std::string& type_name, const std::string& message, const std::string& what,
                  size_t input_index = RemoteError::kNoIndex)
      : E(what), RemoteError(type_name, message, input_index) {}
};

namespace detail {
using ExceptionFactory = std::exception_ptr (*)(const std::string& type_name,
                                                const std::string& message, size_t input_index);
void register_exception_factory(const std::string& type_name, ExceptionFactory factory);
std::string demangle(const char* mangled);
}  // namespace detail

// Registers E (constructible from a std::string message) so that a task throwing exactly E is
// rethrown as RemoteException<E>. Thread-safe; registering twice is harmless.
template <class E>
void register_remote_exception() {
  detail::register_exception_factory(
      detail::demangle(typeid(E).name()),
      [](const std::string& type_name, const std::string& message, size_t input_index) {
        return std::make_exception_ptr(
            RemoteException<E>(type_name, message, message, input_index));
      });
}

}  // namespace pipepool
