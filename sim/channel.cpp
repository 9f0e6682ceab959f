// A worker's channel: two PipeModels or one SocketPairModel behind the calls the simulated
// processes make (channel.hpp). Every answer is the model's; this file only routes the calls to
// the right pipe or socket end.
#include "channel.hpp"

#include <cerrno>
#include <stdexcept>

#include "world_internal.hpp"

namespace pipepool::sim {

Channel::Channel(PipeConfig pipes)
    : task_pipe_(std::in_place, pipes), result_pipe_(std::in_place, pipes) {}

Channel::Channel(SocketConfig sockets) : socket_(std::in_place, sockets) {}

Channel::WriteResult Channel::writev(Direction d, std::span<const std::span<const std::byte>> parts,
                                     bool nonblocking, bool splice) {
  WriteResult out;
  if (splice) {
    if (socket_) throw std::logic_error("pipepool::sim: vmsplice on a socketpair");
    PipeModel& pipe = pipe_of(d);
    const PipeModel::WriteResult r =
        pipe.vmsplice(parts, kSimulatedSpliceOffset & (pipe.page_size() - 1), nonblocking);
    out = {r.result, r.written, r.blocked};
  } else if (socket_) {
    const SocketPairModel::WriteResult r = socket_->writev(writer_end(d), parts, nonblocking);
    out = {r.result, r.written, r.blocked};
  } else {
    const PipeModel::WriteResult r = pipe_of(d).writev(parts, nonblocking);
    out = {r.result, r.written, r.blocked};
  }
  count_written(d, out.written);
  return out;
}

Channel::WriteResult Channel::continue_writev(Direction d,
                                              std::span<const std::span<const std::byte>> parts,
                                              size_t written_so_far, bool splice) {
  WriteResult out;
  if (splice) {
    if (socket_) throw std::logic_error("pipepool::sim: vmsplice on a socketpair");
    PipeModel& pipe = pipe_of(d);
    const PipeModel::WriteResult r = pipe.continue_vmsplice(
        parts, kSimulatedSpliceOffset & (pipe.page_size() - 1), written_so_far);
    out = {r.result, r.written, r.blocked};
  } else if (socket_) {
    const SocketPairModel::WriteResult r =
        socket_->continue_writev(writer_end(d), parts, written_so_far);
    out = {r.result, r.written, r.blocked};
  } else {
    const PipeModel::WriteResult r = pipe_of(d).continue_writev(parts, written_so_far);
    out = {r.result, r.written, r.blocked};
  }
  count_written(d, out.written);
  return out;
}

Channel::ReadResult Channel::read(Direction d, std::span<std::byte> out, bool nonblocking) {
  ReadResult r;
  if (socket_) {
    const SocketPairModel::ReadResult m = socket_->read(reader_end(d), out, nonblocking);
    r = {m.result, m.would_block};
  } else {
    const PipeModel::ReadResult m = pipe_of(d).read(out, nonblocking);
    r = {m.result, m.would_block};
  }
  if (r.result > 0)
    (d == Direction::Task ? task_read_ : result_read_) += static_cast<uint64_t>(r.result);
  return r;
}

bool Channel::reader_can_proceed(Direction d) const {
  return socket_ ? socket_->reader_can_proceed(reader_end(d)) : pipe_of(d).reader_can_proceed();
}

bool Channel::writer_can_proceed(Direction d) const {
  return socket_ ? socket_->writer_can_proceed(writer_end(d)) : pipe_of(d).writer_can_proceed();
}

bool Channel::write_can_start(Direction d, size_t total, bool splice) const {
  if (socket_) return true;
  if (splice) return pipe_of(d).writer_can_proceed();
  return sim::write_can_start(pipe_of(d), total);
}

bool Channel::read_is_inner(Direction d, size_t want) const {
  if (want == 0) return false;
  if (socket_) {
    const int end = reader_end(d);
    if (socket_->skbs_queued(end) == 0) return false;
    const SocketPairModel::SkbView skb = socket_->skb(end, 0);
    return want < skb.len - skb.consumed;
  }
  const PipeModel& pipe = pipe_of(d);
  return pipe.slots_used() != 0 && want < pipe.buffer(0).len;
}

bool Channel::parent_read_ready() const {
  if (socket_) return socket_->readable(0) || socket_->hup(0) || socket_->err(0);
  return result_pipe_->readable() || result_pipe_->hup();
}

bool Channel::parent_write_ready() const {
  if (socket_) return socket_->writable(0) || socket_->hup(0) || socket_->err(0);
  return task_pipe_->writable() || task_pipe_->err();
}

void Channel::close_worker_ends() {
  if (socket_) {
    socket_->close(1);
    return;
  }
  task_pipe_->close_reader();
  result_pipe_->close_writer();
}

DirectionState Channel::state(Direction d) const {
  DirectionState s;
  s.transport = transport();
  s.describe = describe(d);
  if (socket_) {
    const int reader = reader_end(d), writer = writer_end(d);
    s.queued_bytes = socket_->inq_bytes(reader);
    s.queued_units = static_cast<uint32_t>(socket_->skbs_queued(reader));
    s.charged_bytes = socket_->outq_bytes(writer);
    s.charge_limit = socket_->sndbuf_bytes(writer);
    s.has_reader = socket_->open(reader);
    s.has_writer = socket_->open(writer);
    return s;
  }
  const PipeModel& pipe = pipe_of(d);
  s.queued_bytes = pipe.bytes();
  s.queued_units = pipe.slots_used();
  s.unit_limit = pipe.slots();
  s.charged_bytes = uint64_t{pipe.slots_used()} * pipe.page_size();
  s.charge_limit = pipe.capacity_bytes();
  s.has_reader = pipe.has_reader();
  s.has_writer = pipe.has_writer();
  return s;
}

std::string Channel::describe(Direction d) const {
  return socket_ ? socket_->describe(reader_end(d)) : pipe_of(d).describe();
}

const char* Channel::name(Direction d) const {
  if (socket_) return "socket";
  return d == Direction::Task ? "task pipe" : "result pipe";
}

uint64_t Channel::ops() const {
  return socket_ ? socket_->ops() : task_pipe_->ops() + result_pipe_->ops();
}

uint64_t Channel::state_hash(uint64_t h) const {
  h = mix(mix(h, task_written_), result_written_);
  if (socket_) return socket_->state_hash(mix(h, 0x50C));
  for (const PipeModel* m : {&*task_pipe_, &*result_pipe_}) {
    h = mix(h, (uint64_t{m->slots_used()} << 48) ^ (uint64_t{m->has_reader()} << 47) ^
                   (uint64_t{m->has_writer()} << 46) ^ m->bytes());
    for (uint32_t i = 0; i < m->slots_used(); ++i) {
      const PipeModel::BufferView b = m->buffer(i);
      h = mix(h, (uint64_t{b.offset} << 32) ^ b.len);
    }
  }
  return h;
}

uint64_t Channel::fingerprint(uint64_t h) const {
  if (socket_) return socket_->fingerprint(mix(h, 0x50C));
  return result_pipe_->fingerprint(task_pipe_->fingerprint(h));
}

}  // namespace pipepool::sim
