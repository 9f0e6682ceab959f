// pipepool/pool.hpp: Python's multiprocessing.Pool, in C++, over nothing but fork and pipes.
//
//   int square(int x) { return x * x; }
//   int sum_two(int a, int b) { return a + b; }
//
//   pipepool::Pool pool(4);                                      // four worker processes
//   std::vector<int> v = pool.map(square, std::vector<int>{1, 2, 3});          // {1, 4, 9}
//   int s = pool.apply(sum_two, 3, 4);                                         // 7
//   pipepool::AsyncResult<int> r = pool.apply_async(square, 7);                // r.get() == 49
//   auto pairs = pool.starmap(sum_two, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}});
//   auto all = pool.map_async(square, xs);            // AsyncResult<std::vector<int>>
//   for (int y : pool.imap(square, xs, 16)) {}         // lazy, input order, bounded memory
//   for (int y : pool.imap_unordered(square, xs)) {}   // lazy, completion order
//   pool.close(); pool.join();                         // or pool.terminate()
//
// What can be sent. A task is a plain function, a captureless lambda, a stateless functor, or
// pipepool::bind(f, values...) of one (Python's functools.partial: the bound values go through the
// codec). Its bytes are copied into a worker forked from this process's image. A lambda with
// captures ([&], [=], [x]) or a functor with data members does not compile (a static_assert says
// why). Arguments and results are any type pipepool::Codec supports (see codec.hpp), move-only
// ones included; anything else is a compile-time error. When the task's signature is known,
// arguments are converted to its parameter types as a call would ("literal" for a std::string).
//
// WHAT CANNOT BE DETECTED, so must not be done:
//   - a trivially copyable struct holding a pointer is sent as raw bytes: in the worker the
//     pointer points into the worker's copy of memory as of the fork, and a result's pointer
//     points at nothing. Give such a type a Codec.
//   - a function from a library loaded (dlopen) after the pool was constructed does not exist in
//     the workers (forked from the fork server, a copy of this process at construction): calling
//     it crashes the worker (WorkerLost).
//   - a function pointer passed as an argument, or a pointer inside a bound value, is not checked.
//
// Errors (errors.hpp). A task that throws makes get()/map()/... throw a RemoteError that is also
// the original standard exception type; map raises the error of the lowest failing index.
// WorkerLost when the worker died, TimeoutError for get(timeout) and task timeouts, PoolClosed
// for submissions after close()/terminate(), ProtocolError for malformed frames.
//
// Lifetime. The destructor closes and joins: it waits for the submitted work (never for anyone to
// read results) and returns once every worker has exited. terminate() returns at once, kills
// every worker and fails their unfinished tasks with WorkerLost ("terminated").
//
// Threads. Each pool with processes > 0 runs one I/O thread and one single-threaded fork server
// process (started in the constructor, before the thread) from which every worker is forked.
// Callbacks run on the I/O thread; a result is ready only once its callback returned, and a call
// that would wait from inside a callback throws UsageError (async_result.hpp). The Pool's methods
// may be called from any thread. Pool is movable, not copyable.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "pipepool/async_result.hpp"
#include "pipepool/codec.hpp"
#include "pipepool/detail/core.hpp"
#include "pipepool/detail/task.hpp"
#include "pipepool/errors.hpp"
#include "pipepool/options.hpp"

namespace pipepool {

namespace detail {

template <class T>
inline constexpr bool is_callbacks_v = false;
template <class T>
inline constexpr bool is_callbacks_v<Callbacks<T>> = true;

template <class F>
constexpr void check_callable() {
  static_assert(!std::is_member_pointer_v<F>,
                "pipepool: a task cannot be a pointer to member: wrap the call in a captureless "
                "lambda taking the object as an argument");
  static_assert(!(std::is_class_v<F> && !std::is_empty_v<F> && !is_bound_v<F>),
                "pipepool: a task cannot hold data (a lambda with captures, [&] or [=], or a "
                "functor with members): its bytes would be copied into a worker process, where a "
                "captured reference or pointer points at nothing useful. Pass the values as "
                "arguments, or bind them with pipepool::bind(f, values...), which sends them "
                "through the codec like any argument");
  static_assert(is_sendable_callable_v<F> || (std::is_class_v<F> && !std::is_empty_v<F>) ||
                    std::is_member_pointer_v<F>,
                "pipepool: a task must be a plain function, a captureless lambda, a stateless "
                "trivially copyable functor, or pipepool::bind(...) of one");
}

template <class T>
constexpr void check_result() {
  static_assert(
      std::is_void_v<T> || Encodable<std::decay_t<T>>,
      "pipepool: the task's return type cannot be sent back from a worker: see codec.hpp");
}

template <class F, class Tuple>
using apply_result_t = decltype(std::apply(std::declval<const F&>(), std::declval<Tuple>()));

// Builds the payloads of a map over items [begin, end), `chunksize` items per task, in gather
// mode: their bulk segments point into the items, which must outlive the tasks (payload.hpp);
// `keep` (may be null) is what each payload keeps alive for that; `copy_items`: the items do not
// outlive the tasks, so their bulk bytes are copied into the payloads.
template <class ArgsTuple, class F, class It, class Encode>
std::vector<Payload> encode_chunks(const F& f, It begin, size_t items, size_t chunksize,
                                   Encode encode_item, const std::shared_ptr<const void>& keep,
                                   bool copy_items) {
  std::vector<Payload> payloads;
  payloads.reserve((items + chunksize - 1) / chunksize);
  for (size_t done = 0; done < items;) {
    const size_t n = std::min(chunksize, items - done);
    GatherBuilder builder(keep);
    begin_task<F, ArgsTuple>(builder, f, n);
    WriterCopies copied(builder.writer(), copy_items);
    for (size_t i = 0; i < n; ++i, ++begin) encode_item(builder.writer(), *begin);
    payloads.push_back(std::move(builder).finish());
    done += n;
  }
  return payloads;
}

// Throws the error of the lowest failing task, else returns the concatenated results.
// `chunksize` and `items` (the input's length) say which input items each task held; chunksize 0:
// not a map (apply).
template <class R>
std::vector<Stored<R>> gather_results(const std::vector<std::optional<Outcome>>& outcomes,
                                      size_t chunksize = 0, size_t items = 0) {
  for (size_t task = 0; task < outcomes.size(); ++task) {
    if (outcomes[task]->ok()) continue;
    InputItems held;
    if (chunksize != 0) {
      held.first = task * chunksize;
      held.count = std::min(chunksize, items - held.first);
    }
    std::rethrow_exception(to_exception(*outcomes[task], held));
  }
  std::vector<Stored<R>> results;
  for (const auto& outcome : outcomes) decode_results<R>(outcome->payload, results);
  return results;
}

// A lazy imap / imap_unordered over an owned or borrowed range, of any length (unbounded too),
// read once from front to back.
template <class R, class F, class ArgsTuple, class View, class Encode, bool Ordered>
class ImapRange {
  struct State;

 public:
  using value_type = Stored<R>;

  ImapRange(std::shared_ptr<Core> core, F f, View view, size_t chunksize, Encode encode_item)
      : state_(
            std::make_unique<State>(std::move(core), f, std::move(view), chunksize, encode_item)) {
    state_->top_up(false);
  }
  ImapRange(const ImapRange&) = delete;
  ImapRange(ImapRange&&) noexcept = default;
  // Leaving early (the range destroyed before the end) cancels the chunks no worker has started.
  ~ImapRange() = default;

  class iterator {
   public:
    using value_type = Stored<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(State* state) : state_(state) { state_->advance(); }
    value_type& operator*() const { return state_->buffer[state_->position]; }
    iterator& operator++() {
      state_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return state_->done; }

   private:
    State* state_ = nullptr;
  };

  // Single pass: begin() may be called once.
  iterator begin() { return iterator(state_.get()); }
  std::default_sentinel_t end() { return {}; }

 private:
  // On the heap, so that moving the range moves no iterator into the input (a filter_view's
  // iterators point at their view).
  struct State {
    // Keeps chunks in flight: at least `window` (two per worker, at least 4), more while they are
    // small, up to kMaxChunksInFlight chunks and kMaxBytesInFlight encoded bytes, so memory stays
    // bounded whatever the input's length while tiny tasks are not paced by one round trip each.
    static constexpr size_t kMaxChunksInFlight = 256;
    static constexpr size_t kMaxBytesInFlight = size_t{64} << 20;

    State(std::shared_ptr<Core> core_in, F f_in, View view_in, size_t chunksize_in,
          Encode encode_in)
        : core(std::move(core_in)),
          f(f_in),
          view(std::move(view_in)),
          cursor(std::ranges::begin(view)),
          chunksize(chunksize_in == 0 ? 1 : chunksize_in),
          window(std::max<size_t>(4, 2 * static_cast<size_t>(std::max(1, processes(*core))))),
          encode_item(encode_in),
          calls(std::make_shared<StreamState>()) {}
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
      if (submitted > consumed) cancel(*core, calls);  // chunks nobody will read
    }

    void top_up(bool continuation) {
      std::vector<Payload> payloads;
      std::vector<uint64_t> items;  // per chunk: its timeout budget is that many task_timeouts
      const size_t first = submitted;
      while (!input_done) {
        const size_t in_flight = submitted - consumed;
        const bool room = in_flight < window ||
                          (in_flight < kMaxChunksInFlight && bytes_in_flight < kMaxBytesInFlight);
        if (!room) break;
        if (cursor == std::ranges::end(view)) {
          input_done = true;
          break;
        }
        // A chunk's frame may be written after this range is gone (a break cancels only the
        // chunks no worker was given): its items' bulk bytes are copied into the payload, once,
        // as Python pickles at submission; the small ones are in the head anyway.
        GatherBuilder builder;
        const size_t count_at = begin_task<F, ArgsTuple>(builder, f, chunksize);
        Writer& writer = builder.writer();
        WriterCopies copied(writer, true);
        size_t n = 0;
        for (; n < chunksize && cursor != std::ranges::end(view); ++n, ++cursor) {
          encode_item(writer, *cursor);
        }
        set_task_count(builder, count_at, n);
        Payload& payload = payloads.emplace_back(std::move(builder).finish());
        items.push_back(n);
        last_chunk_items = n;
        chunk_bytes.push_back(payload.size());
        bytes_in_flight += payload.size();
        ++submitted;
      }
      // An empty first submission still goes through submit(): it throws PoolClosed on a closed
      // pool, as Python's imap over an empty iterable raises on a closed Pool.
      if (!payloads.empty() || !continuation) {
        submit(*core, std::move(payloads), calls, first, continuation, std::move(items));
      }
    }

    void advance() {
      if (++position < buffer.size()) return;
      buffer.clear();
      position = 0;
      while (buffer.empty()) {
        if (consumed == submitted) {
          top_up(true);
          if (consumed == submitted) {
            done = true;
            return;
          }
        }
        size_t chunk = consumed;
        Outcome outcome = Ordered ? calls->take(chunk) : calls->take_next(chunk);
        ++consumed;
        // In-flight bytes are counted in submission order; close enough for a bound.
        bytes_in_flight -= chunk_bytes.front();
        chunk_bytes.pop_front();
        if (!outcome.ok()) {
          // Chunks are cut in order, chunksize items each but the last.
          const size_t held = input_done && chunk + 1 == submitted ? last_chunk_items : chunksize;
          std::rethrow_exception(to_exception(outcome, InputItems{chunk * chunksize, held}));
        }
        decode_results<R>(outcome.payload, buffer);
        top_up(true);
      }
    }

    std::shared_ptr<Core> core;
    F f;
    View view;
    std::ranges::iterator_t<View> cursor;
    size_t chunksize, window;
    Encode encode_item;
    std::shared_ptr<StreamState> calls;
    size_t submitted = 0, consumed = 0;
    bool input_done = false;
    size_t last_chunk_items = 0;     // of the newest chunk
    std::deque<size_t> chunk_bytes;  // encoded size of each chunk in flight, oldest first
    size_t bytes_in_flight = 0;
    std::vector<Stored<R>> buffer;
    size_t position = static_cast<size_t>(-1);
    bool done = false;
  };

  std::unique_ptr<State> state_;
};

// Encodes `arg` as the parameter type P it is for, converting it as a call would (a string literal
// for a std::string parameter); an argument of type P itself is encoded without a copy (in gather
// mode its bulk borrows from `arg`, which the caller keeps alive), a converted one is copied.
template <class P, class A>
void encode_as(Writer& writer, A&& arg) {
  if constexpr (std::is_same_v<std::remove_cvref_t<A>, P>) {
    pipepool::encode(writer, static_cast<const P&>(arg));
  } else {
    static_assert(std::is_convertible_v<A&&, P>,
                  "pipepool: an argument does not convert to the task's parameter type");
    const P converted = std::forward<A>(arg);
    WriterCopies copied(writer, true);  // `converted` is gone before the frame is written
    pipepool::encode(writer, converted);
  }
}

template <class ArgsTuple, class... Args>
void encode_args(Writer& writer, Args&&... args) {
  static_assert(std::tuple_size_v<ArgsTuple> == sizeof...(Args));
  [&]<size_t... I>(std::index_sequence<I...>) {
    (encode_as<std::tuple_element_t<I, ArgsTuple>>(writer, std::forward<Args>(args)), ...);
  }
  (std::index_sequence_for<Args...>{});
}

// map, imap: each item is the one argument. An item that is not an lvalue (a view's computed
// value) is a temporary: its bulk bytes are copied.
template <class ArgsTuple>
struct EncodeAs {
  template <class T>
  void operator()(Writer& writer, T&& item) const {
    WriterCopies temporary(writer, !std::is_lvalue_reference_v<T>);
    encode_as<std::tuple_element_t<0, ArgsTuple>>(writer, std::forward<T>(item));
  }
};

// starmap: each item is a tuple, pair or array of the arguments.
template <class ArgsTuple>
struct EncodeStarAs {
  template <class T>
  void operator()(Writer& writer, T&& item) const {
    WriterCopies temporary(writer, !std::is_lvalue_reference_v<T>);
    std::apply([&](const auto&... args) { encode_args<ArgsTuple>(writer, args...); },
               static_cast<const std::remove_cvref_t<T>&>(item));
  }
};

// The payload of apply(f, args...): borrowing the arguments (the synchronous apply, which keeps
// them alive until its task completed), or owning them (apply_async: rvalues moved in, lvalues
// copied once, as Python pickles at submit time; a type that cannot be copied is encoded by copy).
template <class F, class ArgsTuple, bool Owned, class... Args>
Payload encode_apply(const F& f, Args&&... args) {
  if constexpr (Owned && std::is_constructible_v<ArgsTuple, Args&&...>) {
    // Encoded from the call's own tuple; kept (moved to the heap: a move keeps a string's or
    // vector's heap buffer) only when some of it is bulk, so small calls allocate nothing more.
    ArgsTuple owned(std::forward<Args>(args)...);
    GatherBuilder builder;
    begin_task<F, ArgsTuple>(builder, f, 1);
    pipepool::encode(builder.writer(), owned);
    if (builder.writer().bulk_bytes() != 0) {
      builder.keep_also(std::make_shared<const ArgsTuple>(std::move(owned)));
    }
    return std::move(builder).finish();
  } else {
    GatherBuilder builder;
    begin_task<F, ArgsTuple>(builder, f, 1);
    WriterCopies copied(builder.writer(), Owned);
    encode_args<ArgsTuple>(builder.writer(), std::forward<Args>(args)...);
    return std::move(builder).finish();
  }
}

}  // namespace detail

// Binds leading arguments to a task, as Python's functools.partial: pipepool::bind(f, a, b)(x)
// is f(a, b, x) in the worker. The bound values are sent through the codec (copied or moved into
// the result here, encoded with every task), so they may be strings, vectors or your Codec types;
// a captured reference could not be. `f` must itself be sendable (a plain function, a captureless
// lambda).
//
//   double scale(double factor, double x) { return factor * x; }
//   pool.map(pipepool::bind(scale, 2.5), xs);          // [2.5 * x for x in xs]
template <class F, class... Values>
BoundCall<F, std::decay_t<Values>...> bind(F f, Values&&... values) {
  detail::check_callable<F>();
  static_assert((Encodable<std::decay_t<Values>> && ...),
                "pipepool::bind: a bound value has no codec (see codec.hpp)");
  return {f, std::tuple<std::decay_t<Values>...>(std::forward<Values>(values)...)};
}

class Pool {
 public:
  // As many workers as CPUs this process may use (affinity and cgroup CPU quota).
  Pool() : Pool(Options{}) {}
  // `processes` workers; 0 runs tasks inline. Throws std::invalid_argument if negative.
  explicit Pool(int processes) : Pool(Options{.processes = processes}) {}
  // Throws std::invalid_argument for impossible options, std::system_error if processes cannot be
  // started.
  explicit Pool(Options options) : core_(detail::make_core(std::move(options))) {}

  ~Pool() { shut_down(); }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // Movable (a member created later, a pool returned from a function). A moved-from Pool holds no
  // workers: any call but destruction and assignment throws UsageError. Assigning over a pool
  // first closes and joins it, as its destructor would.
  Pool(Pool&& other) noexcept = default;
  Pool& operator=(Pool&& other) noexcept {
    if (this != &other) {
      shut_down();
      core_ = std::move(other.core_);
    }
    return *this;
  }

  // ---- apply ---------------------------------------------------------------------------------

  // f(args...) in a worker; waits for it. Throws what the task threw (see errors.hpp). The task's
  // frame points into `args` (no copy of their large strings and vectors): apply returns or
  // throws only once its task completed.
  template <class F, class... Args>
  requires(!(detail::is_callbacks_v<std::decay_t<Args>> || ...)) auto apply(F f, Args&&... args) {
    using R = std::invoke_result_t<const F&, std::decay_t<Args>...>;
    using ArgsTuple = detail::call_args_tuple_t<F, std::decay_t<Args>...>;
    detail::check_callable<F>();
    detail::check_result<R>();
    detail::check_not_in_callback("apply");  // before the frame borrows anything
    return submit_apply<R>(
               detail::encode_apply<F, ArgsTuple, false>(f, std::forward<Args>(args)...), {})
        .take();  // moves the value out
  }

  // f(args...) in a worker; returns at once. The call owns its arguments: rvalues are moved into
  // it, lvalues copied once, now (as Python pickles them at submit time).
  template <class F, class... Args>
  requires(!(detail::is_callbacks_v<std::decay_t<Args>> || ...)) auto apply_async(F f,
                                                                                  Args&&... args) {
    using R = std::invoke_result_t<const F&, std::decay_t<Args>...>;
    return apply_async(Callbacks<R>{}, f, std::forward<Args>(args)...);
  }

  // As above, with callbacks run on completion.
  template <class R, class F, class... Args>
  AsyncResult<R> apply_async(Callbacks<R> callbacks, F f, Args&&... args) {
    using ArgsTuple = detail::call_args_tuple_t<F, std::decay_t<Args>...>;
    static_assert(std::is_same_v<R, std::invoke_result_t<const F&, std::decay_t<Args>...>>,
                  "pipepool: Callbacks<R> must name the task's return type");
    detail::check_callable<F>();
    detail::check_result<R>();
    return submit_apply<R>(detail::encode_apply<F, ArgsTuple, true>(f, std::forward<Args>(args)...),
                           std::move(callbacks));
  }

 private:
  template <class R>
  AsyncResult<R> submit_apply(detail::Payload payload, Callbacks<R> callbacks) {
    auto state = std::make_shared<detail::TypedCallState<R>>(
        1,
        [](const std::vector<std::optional<detail::Outcome>>& outcomes) {
          auto results = detail::gather_results<R>(outcomes);
          if constexpr (std::is_void_v<R>) {
            return std::monostate{};
          } else {
            return std::move(results.at(0));
          }
        },
        std::move(callbacks));
    std::vector<detail::Payload> payloads;
    payloads.push_back(std::move(payload));
    detail::submit(core(), std::move(payloads), state, 0);
    return AsyncResult<R>(std::move(state));
  }

 public:
  // ---- map family ----------------------------------------------------------------------------

  // [f(x) for x in xs], in order; chunksize 0 picks Python's default. Raises the error of the
  // lowest failing index. Any input range: one that is not sized and forward (a std::views::filter
  // over an input-only view, a generator) is first read into a vector, as Python's map reads a
  // generator into a list; an unbounded range never ends (use imap).
  // The tasks' frames point into `xs` (no copy of its items' large strings and vectors): map
  // returns or throws only once every task completed.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& xs, size_t chunksize = 0) {
    using Item = std::ranges::range_value_t<Range>;
    using R = std::invoke_result_t<const F&, Item>;
    detail::check_not_in_callback("map");  // before the frames borrow anything
    return submit_map<R, detail::args_tuple_t<F, Item>, false, false>(f, xs, chunksize, {})
        .take();  // moves the value out
  }

  template <class F, std::ranges::input_range Range,
            class R = std::invoke_result_t<const F&, std::ranges::range_value_t<Range>>>
  AsyncResult<std::vector<detail::Stored<R>>> map_async(
      F f, Range&& xs, size_t chunksize = 0,
      Callbacks<std::vector<detail::Stored<R>>> callbacks = {}) {
    using Item = std::ranges::range_value_t<Range>;
    return submit_map<R, detail::args_tuple_t<F, Item>, false, true>(
        f, std::forward<Range>(xs), chunksize, std::move(callbacks));
  }

  // [f(*args) for args in xs] where each element is a tuple, pair or array of arguments.
  // Borrows `xs` as map does.
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& xs, size_t chunksize = 0) {
    using Item = std::ranges::range_value_t<Range>;
    using R = detail::apply_result_t<F, Item>;
    detail::check_not_in_callback("starmap");  // before the frames borrow anything
    return submit_map<R, detail::star_args_tuple_t<F, Item>, true, false>(f, xs, chunksize, {})
        .take();
  }

  template <class F, std::ranges::input_range Range,
            class R = detail::apply_result_t<F, std::ranges::range_value_t<Range>>>
  AsyncResult<std::vector<detail::Stored<R>>> starmap_async(
      F f, Range&& xs, size_t chunksize = 0,
      Callbacks<std::vector<detail::Stored<R>>> callbacks = {}) {
    using Item = std::ranges::range_value_t<Range>;
    return submit_map<R, detail::star_args_tuple_t<F, Item>, true, true>(
        f, std::forward<Range>(xs), chunksize, std::move(callbacks));
  }

  // Lazy map: yields f(x) in input order as results arrive. Any input range, of any length
  // (std::views::iota(0) too), read once and only as far as iteration needs: chunks are encoded
  // and submitted as you iterate, at least max(4, 2 x workers) in flight and, while they are
  // small, more: at most 256 chunks and 64 MiB of encoded input beyond the first max(4, 2 x
  // workers). So memory stays bounded whatever the input's length, and the first result comes
  // after the first chunk. Iterate before join(). Destroying the range before its end (a break)
  // cancels the chunks no worker has started; those running finish and are dropped. An rvalue
  // range is moved into the result; an lvalue one is borrowed and must outlive it. The returned
  // range is single-pass and throws a task's error when iteration reaches it.
  template <class F, std::ranges::viewable_range Range>
  requires std::ranges::input_range<Range>
  auto imap(F f, Range&& xs, size_t chunksize = 1) {
    return make_imap<true>(f, std::forward<Range>(xs), chunksize);
  }

  // As imap, in completion order.
  template <class F, std::ranges::viewable_range Range>
  requires std::ranges::input_range<Range>
  auto imap_unordered(F f, Range&& xs, size_t chunksize = 1) {
    return make_imap<false>(f, std::forward<Range>(xs), chunksize);
  }

  // ---- lifetime ------------------------------------------------------------------------------

  // No more submissions (PoolClosed after this); work already submitted goes on. Returns at once.
  void close() { detail::close(core()); }
  // Waits for every worker to exit after close() (UsageError if the pool is still open).
  // From a callback: UsageError (the I/O thread would wait for itself).
  void join() {
    detail::check_not_in_callback("join()");
    detail::join(core());
  }
  // Kills every worker now; unfinished tasks fail with WorkerLost. Returns at once. From a
  // callback: UsageError (it stops the I/O thread the callback runs on).
  void terminate() {
    detail::check_not_in_callback("terminate()");
    detail::terminate(core());
  }

  // ---- facts ---------------------------------------------------------------------------------

  int processes() const { return detail::processes(core()); }
  // Capacity of each task and result pipe in use, in bytes (0 for Pool(0), and 0 with
  // Transport::SocketPair: there are no pipes).
  uint64_t pipe_capacity_bytes() const { return detail::pipe_capacity_bytes(core()); }
  // Transport::SocketPair: SO_SNDBUF of the parent's end of each worker's socketpair, as
  // getsockopt reports it (the kernel's doubled value; Options::socket_sndbuf_bytes sets it on
  // both ends). It bounds what one side can have in flight towards the other, counted in the
  // kernel's per-skb memory (payload plus overhead), so a socket holds less than this in bytes.
  // 0 with pipes and for Pool(0).
  uint64_t socket_sndbuf_bytes() const { return detail::socket_sndbuf_bytes(core()); }
  std::string_view strategy_name() const { return detail::strategy_name(core()); }
  std::string_view scheduler_name() const { return detail::scheduler_name(core()); }
  PoolStats stats() const { return detail::stats(core()); }

 private:
  // Owned (map_async, starmap_async): the call takes its items, moved from an rvalue range that
  // owns them, copied otherwise (once, as Python pickles at submit time), and its payloads keep
  // them; items that cannot be copied are encoded by copy. Borrowed (map, starmap): the frames
  // point into `xs`, which the caller keeps alive until every task completed.
  template <class R, class ArgsTuple, bool Star, bool Owned, class F, class Range>
  AsyncResult<std::vector<detail::Stored<R>>> submit_map(
      F f, Range&& xs, size_t chunksize, Callbacks<std::vector<detail::Stored<R>>> callbacks) {
    detail::check_callable<F>();
    detail::check_result<R>();
    using Item = std::ranges::range_value_t<Range>;
    using Reference = std::ranges::range_reference_t<Range>;
    constexpr bool kMoveItems = !std::is_lvalue_reference_v<Range> &&
                                !std::ranges::view<std::remove_cvref_t<Range>> &&
                                std::is_lvalue_reference_v<Reference> &&
                                std::is_constructible_v<Item, std::remove_reference_t<Reference>&&>;
    constexpr bool kCopyItems = std::is_constructible_v<Item, Reference>;
    constexpr bool kSinglePass =
        !std::ranges::forward_range<Range> && !std::ranges::sized_range<Range>;
    if constexpr (kSinglePass || (Owned && (kMoveItems || kCopyItems))) {
      // Read the items into a vector the payloads keep: a single-pass range of unknown length
      // (Python's list(iterable)), or the items an async call owns.
      auto items = std::make_shared<std::vector<Item>>();
      if constexpr (std::ranges::sized_range<Range>) items->reserve(std::ranges::size(xs));
      for (auto&& item : xs) {
        if constexpr (kMoveItems) {
          items->push_back(std::move(item));
        } else {
          items->push_back(std::forward<decltype(item)>(item));
        }
      }
      std::vector<Item>& taken = *items;
      return encode_map<R, ArgsTuple, Star>(f, taken, chunksize, std::move(callbacks),
                                            std::move(items), false);
    } else {
      return encode_map<R, ArgsTuple, Star>(f, xs, chunksize, std::move(callbacks), nullptr, Owned);
    }
  }

  // Encodes and submits a map over `xs`: its payloads keep `keep` alive; `copy_items`: the items
  // do not outlive the call, so their bulk bytes are copied.
  template <class R, class ArgsTuple, bool Star, class F, class Range>
  AsyncResult<std::vector<detail::Stored<R>>> encode_map(
      F f, Range& xs, size_t chunksize, Callbacks<std::vector<detail::Stored<R>>> callbacks,
      std::shared_ptr<const void> keep, bool copy_items) {
    const size_t items = static_cast<size_t>(std::ranges::distance(xs));
    if (chunksize == 0) chunksize = detail::default_chunksize(items, processes());
    using Encode =
        std::conditional_t<Star, detail::EncodeStarAs<ArgsTuple>, detail::EncodeAs<ArgsTuple>>;
    auto payloads = detail::encode_chunks<ArgsTuple>(f, std::ranges::begin(xs), items, chunksize,
                                                     Encode{}, keep, copy_items);
    std::vector<uint64_t> held(payloads.size(), chunksize);
    if (!held.empty()) held.back() = items - (held.size() - 1) * chunksize;
    return submit_payloads<R>(std::move(payloads), std::move(held), chunksize, items,
                              std::move(callbacks));
  }

  template <class R>
  AsyncResult<std::vector<detail::Stored<R>>> submit_payloads(
      std::vector<detail::Payload> payloads, std::vector<uint64_t> held, size_t chunksize,
      size_t items, Callbacks<std::vector<detail::Stored<R>>> callbacks) {
    using Value = std::vector<detail::Stored<R>>;
    auto state = std::make_shared<detail::TypedCallState<Value>>(
        payloads.size(),
        [chunksize, items](const std::vector<std::optional<detail::Outcome>>& outcomes) {
          return detail::gather_results<R>(outcomes, chunksize, items);
        },
        std::move(callbacks));
    // Empty or not, the submission is checked (PoolClosed after close(), as Python's map([])).
    const bool empty = payloads.empty();
    detail::submit(core(), std::move(payloads), state, 0, false, std::move(held));
    if (empty) state->finish_empty();
    return AsyncResult<Value>(std::move(state));
  }

  template <bool Ordered, class F, class Range>
  auto make_imap(F f, Range&& xs, size_t chunksize) {
    detail::check_callable<F>();
    using Item = std::ranges::range_value_t<Range>;
    using R = std::invoke_result_t<const F&, Item>;
    detail::check_result<R>();
    using View = std::views::all_t<Range>;
    using ArgsTuple = detail::args_tuple_t<F, Item>;
    return detail::ImapRange<R, F, ArgsTuple, View, detail::EncodeAs<ArgsTuple>, Ordered>(
        shared_core(), f, std::views::all(std::forward<Range>(xs)), chunksize,
        detail::EncodeAs<ArgsTuple>{});
  }

  detail::Core& core() const { return *shared_core(); }
  const std::shared_ptr<detail::Core>& shared_core() const {
    if (!core_) throw UsageError("pipepool: this Pool was moved from; it has no workers");
    return core_;
  }
  void shut_down() noexcept {
    if (!core_) return;
    try {
      detail::close(*core_);
      detail::join(*core_);
    } catch (...) {
    }
  }

  std::shared_ptr<detail::Core> core_;
};

}  // namespace pipepool
