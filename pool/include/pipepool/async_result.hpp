// pipepool/async_result.hpp: the handle of an asynchronous call (Python's AsyncResult).
//
//   pipepool::AsyncResult<int> r = pool.apply_async(square, 7);
//   r.wait();                                // blocks until done
//   bool done = r.wait(std::chrono::milliseconds(10));  // true if done within 10 ms
//   r.ready();                               // done?
//   r.successful();                          // done without error? (UsageError if not ready)
//   int v = r.get();                         // the value, or throws the task's error
//   int w = r.get(std::chrono::seconds(1));  // ... or TimeoutError after 1 s (also for 0 s)
//
//   Big b = r.take();                        // moves the value out, no copy (move-only types too)
//
// Thread safety: an AsyncResult may be copied and used from any threads; all copies share one
// result. get() may be called any number of times and returns a copy of the same value; take()
// moves it out once.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "pipepool/detail/call_state.hpp"
#include "pipepool/errors.hpp"

namespace pipepool {

// Callbacks of an async call, run once on the pool's I/O thread (as Python runs them on its
// result-handler thread) when the call completes: `callback` with the value, or `error_callback`
// with the error. The call becomes ready (wait(), get(), ready() and join() return) only once its
// callback has returned. Callbacks must be quick: while one runs, no result of the pool moves.
// A call that would wait from inside a callback (get, wait, apply, map, starmap, iterating an
// imap, join, terminate: on any pool) throws UsageError instead of hanging, since the thread that
// would deliver the result is the one waiting; submitting with apply_async/map_async is fine. An
// exception escaping a callback is caught and dropped. With Pool(0) they run in the submitting
// call, under the same rules.
namespace detail {
// Whether a value can be copied (std::vector<T> says it can even when T cannot: look inside).
template <class T>
struct Copyable : std::bool_constant<std::is_copy_constructible_v<T>> {};
template <class T, class A>
struct Copyable<std::vector<T, A>> : Copyable<T> {};
template <class T>
struct Copyable<std::optional<T>> : Copyable<T> {};
template <class A, class B>
struct Copyable<std::pair<A, B>> : std::bool_constant<Copyable<A>::value && Copyable<B>::value> {};
template <class... Ts>
struct Copyable<std::tuple<Ts...>> : std::bool_constant<(Copyable<Ts>::value && ...)> {};
template <class T>
inline constexpr bool copyable_v = std::is_void_v<T> || Copyable<T>::value;

template <class T>
struct ValueCallback {
  using type = std::function<void(const T&)>;
};
template <>
struct ValueCallback<void> {
  using type = std::function<void()>;
};
}  // namespace detail

template <class T>
struct Callbacks {
  typename detail::ValueCallback<T>::type callback{};
  std::function<void(std::exception_ptr)> error_callback{};
};

namespace detail {

template <class T>
class TypedCallState final : public CallState {
 public:
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  using Decoder = std::function<Stored(const std::vector<std::optional<Outcome>>&)>;

  TypedCallState(size_t tasks, Decoder decoder, Callbacks<T> callbacks)
      : CallState(tasks), decoder_(std::move(decoder)), callbacks_(std::move(callbacks)) {}

  // Decodes once (after ready()); later calls reuse the value or the error.
  void decode_once() {
    std::call_once(decoded_, [this] {
      try {
        value_.emplace(decoder_(outcomes()));
      } catch (...) {
        error_ = std::current_exception();
      }
    });
  }
  const std::optional<Stored>& value() const { return value_; }
  std::optional<Stored>& mutable_value() { return value_; }
  std::exception_ptr error() const { return error_; }

 private:
  void on_done() override {
    if (!callbacks_.callback && !callbacks_.error_callback) return;
    decode_once();
    CallbackScope scope;
    try {
      if (error_) {
        if (callbacks_.error_callback) callbacks_.error_callback(error_);
      } else if (callbacks_.callback) {
        if constexpr (std::is_void_v<T>) {
          callbacks_.callback();
        } else {
          callbacks_.callback(*value_);
        }
      }
    } catch (...) {
      // Documented: exceptions escaping callbacks are dropped.
    }
  }

  Decoder decoder_;
  Callbacks<T> callbacks_;
  std::once_flag decoded_;
  std::optional<Stored> value_;
  std::exception_ptr error_;
};

}  // namespace detail

template <class T>
class AsyncResult {
 public:
  explicit AsyncResult(std::shared_ptr<detail::TypedCallState<T>> state)
      : state_(std::move(state)) {}

  // Waits for the result and returns a copy of it, or throws the call's error (RemoteError,
  // WorkerLost, ...). Only for copyable results: see take().
  T get() & requires detail::copyable_v<T> {
    state_->wait();
    return value();
  }
  // On a temporary (pool.apply_async(...).get()): moves the value out when this is the last handle
  // of its result or the value cannot be copied (as take()), else copies it.
  T get() && {
    state_->wait();
    if constexpr (std::is_void_v<T>) {
      return value();
    } else if constexpr (!detail::copyable_v<T>) {
      return take();
    } else {
      if (state_.use_count() == 1) return take();
      return value();
    }
  }

  // Waits, then moves the value out without copying it (a large vector, a move-only type), or
  // throws the call's error. Afterwards the value is gone for every copy of this handle: get() and
  // take() throw UsageError (ready() and successful() still answer). Must not race with get() on
  // another copy.
  T take() {
    state_->wait();
    state_->decode_once();
    if (state_->error()) std::rethrow_exception(state_->error());
    if constexpr (!std::is_void_v<T>) {
      std::optional<T>& value = state_->mutable_value();
      if (!value) throw UsageError("pipepool: take() called on a result whose value was taken");
      T out = std::move(*value);
      value.reset();
      return out;
    }
  }

  // As get(), but throws TimeoutError if the result is not ready within `timeout` (a timeout of
  // zero only looks).
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait(timeout)) throw TimeoutError("result not ready within the timeout");
    return value();
  }

  void wait() const { state_->wait(); }

  // True if the result became ready within `timeout`.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->wait_until(std::chrono::steady_clock::now() +
                              std::chrono::ceil<std::chrono::steady_clock::duration>(timeout));
  }

  bool ready() const { return state_->ready(); }

  // Whether the call completed without error. Throws UsageError (a std::logic_error) if it is not
  // ready yet, as Python raises ValueError.
  bool successful() const {
    if (!state_->ready()) throw UsageError("successful() called before the result is ready");
    state_->decode_once();
    return state_->error() == nullptr;
  }

 private:
  T value() const {
    state_->decode_once();
    if (state_->error()) std::rethrow_exception(state_->error());
    if constexpr (!std::is_void_v<T>) {
      if (!state_->value())
        throw UsageError("pipepool: get() called on a result whose value was taken");
      return *state_->value();
    }
  }

  std::shared_ptr<detail::TypedCallState<T>> state_;
};

}  // namespace pipepool
