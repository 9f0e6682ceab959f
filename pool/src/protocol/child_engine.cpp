#include "protocol/child_engine.hpp"

#include <memory>

#include "protocol/fingerprint.hpp"

namespace pipepool::protocol {

void ChildEngine::exit_with(int code, std::string reason) {
  if (exiting_) return;
  exiting_ = true;
  exit_code_ = code;
  exit_reason_ = std::move(reason);
}

ChildEngine::Action ChildEngine::next() {
  Action action;
  if (exiting_) {
    action.op = Op::Exit;
    action.exit_code = exit_code_;
    action.exit_reason = exit_reason_;
    return action;
  }
  if (!notices_.empty()) {
    action.op = Op::Write;
    notices_.gather(action.write, 1);
    return action;
  }
  const bool may_run = config_.mode == ChildMode::OneAtATime || batch_ready_;
  // Batched: results wait until the whole batch has run.
  const bool may_write = config_.mode == ChildMode::OneAtATime || run_queue_.empty();
  if (!results_.empty() && may_write) {
    action.op = Op::Write;
    results_.gather(action.write, 1, config_.splice_min_payload_bytes, action.splice);
    return action;
  }
  if (!run_queue_.empty() && may_run) {
    Frame& task = run_queue_.front();
    if (config_.send_started && !started_sent_) {
      started_sent_ = true;
      notices_.push(make_out_frame(config_.wire, Direction::ToParent, FrameKind::Started,
                                   task.header.task_id, nullptr, sequence_++));
      action.op = Op::Write;
      notices_.gather(action.write, 1);
      return action;
    }
    action.op = Op::Run;
    action.task = task.header.task_id;
    action.task_payload = &task.payload;
    return action;
  }
  if (run_queue_.empty()) batch_ready_ = false;
  if (config_.max_tasks != 0 && tasks_done_ >= config_.max_tasks) {
    exit_with(0, "completed its maximum number of tasks");
    return next();
  }
  if (shutdown_received_) {
    exit_with(0, "shut down by the parent");
    return next();
  }
  action.op = Op::Read;
  action.read_into = reader_.buffer();
  action.huge_page_advice = reader_.huge_page_advice();
  return action;
}

void ChildEngine::bytes_read(size_t n) {
  if (n == 0) {
    if (reader_.mid_frame()) {
      exit_with(kExitProtocolError, "the task pipe ended inside a frame");
    } else {
      exit_with(0, "the parent closed the task pipe");
    }
    return;
  }
  switch (reader_.commit(n)) {
    case FrameReader::Status::NeedMore:
      return;
    case FrameReader::Status::Malformed:
      exit_with(kExitProtocolError, "malformed frame from the parent: " + reader_.error());
      return;
    case FrameReader::Status::FrameReady:
      break;
  }
  while (reader_.has_frame() && !exiting_) {
    Frame frame = reader_.take();
    switch (frame.header.kind) {
      case FrameKind::Task:
        run_queue_.push_back(std::move(frame));
        break;
      case FrameKind::RunBatch:
        batch_ready_ = true;
        break;
      case FrameKind::Shutdown:
        shutdown_received_ = true;
        break;
      case FrameKind::Ack:
        acknowledged(frame.header.task_id);
        break;
      default:
        exit_with(kExitProtocolError, "unexpected frame kind from the parent");
        break;
    }
  }
}

void ChildEngine::task_finished(bool ok, std::string payload) {
  std::shared_ptr<std::string> kept;
  if (!payload.empty()) {
    kept = std::make_shared<std::string>(std::move(payload));
  } else if (payload.capacity() > spare_result_.capacity()) {
    spare_result_ = std::move(payload);
  }
  std::shared_ptr<const Payload> frame_payload;
  if (kept) {
    frame_payload = std::make_shared<const Payload>(
        std::vector<Payload::Segment>{
            {reinterpret_cast<const std::byte*>(kept->data()), kept->size()}},
        kept);
  }
  finish_task(ok, std::move(frame_payload), std::move(kept));
}

void ChildEngine::task_finished(bool ok, Payload payload) {
  std::shared_ptr<const Payload> frame_payload;
  if (!payload.empty()) frame_payload = std::make_shared<const Payload>(std::move(payload));
  finish_task(ok, std::move(frame_payload), nullptr);
}

void ChildEngine::finish_task(bool ok, std::shared_ptr<const Payload> payload,
                              std::shared_ptr<std::string> recyclable) {
  const TaskId id = run_queue_.front().header.task_id;
  // The task's payload buffer serves the next task that fits in it.
  reader_.recycle(std::move(run_queue_.front().payload));
  run_queue_.pop_front();
  started_sent_ = false;
  ++tasks_done_;
  results_.push(make_out_frame(config_.wire, Direction::ToParent,
                               ok ? FrameKind::Result : FrameKind::Error, id, payload,
                               sequence_++));
  result_payloads_.push_back({std::move(payload), std::move(recyclable)});
}

void ChildEngine::bytes_written(size_t n) {
  if (!notices_.empty()) {
    notices_.consume(n);
    return;
  }
  for (size_t done = results_.consume(n); done > 0; --done) {
    SentResult sent = std::move(result_payloads_.front());
    result_payloads_.pop_front();
    if (config_.splice_min_payload_bytes != 0 && sent.payload &&
        sent.payload->size() >= config_.splice_min_payload_bytes) {
      // Spliced: the pipe holds references to its pages until the parent reads them, so its
      // owner (and, in gather layout, the task's result objects) stays until the Ack.
      retained_.push_back(std::move(sent));
      ++spliced_written_;
      continue;
    }
    reuse_result_memory(std::move(sent));
  }
}

void ChildEngine::reuse_result_memory(SentResult sent) {
  // Written (and, if spliced, read). The frame's Payload is the string's other owner: once it is
  // gone, nobody else holds the bytes.
  sent.payload.reset();
  const std::shared_ptr<std::string>& string = sent.recyclable;
  if (string && string.use_count() == 1 && string->capacity() > spare_result_.capacity()) {
    spare_result_ = std::move(*string);
  }
}

void ChildEngine::acknowledged(uint64_t count) {
  if (count < spliced_acked_ || count > spliced_written_) {
    exit_with(kExitProtocolError, "the parent acknowledged " + std::to_string(count) +
                                      " spliced results, but this worker wrote " +
                                      std::to_string(spliced_written_) + " and had " +
                                      std::to_string(spliced_acked_) + " acknowledged");
    return;
  }
  for (; spliced_acked_ < count; ++spliced_acked_) {
    reuse_result_memory(std::move(retained_.front()));
    retained_.pop_front();
  }
}

void ChildEngine::write_failed(int /*error*/) {
  exit_with(kExitParentGone, "writing to the parent failed: nobody reads the result pipe");
}

uint64_t ChildEngine::fingerprint(uint64_t h) const {
  h = reader_.fingerprint(h);
  h = fingerprint_mix(h, run_queue_.size());
  for (const Frame& f : run_queue_) {
    h = fingerprint_mix(h, (static_cast<uint64_t>(f.header.kind) << 56) ^ f.header.payload_bytes);
    h = fingerprint_mix(h, f.header.task_id);
  }
  h = fingerprint_mix(h, (uint64_t{batch_ready_} << 63) ^ (uint64_t{started_sent_} << 62) ^
                             (uint64_t{shutdown_received_} << 61) ^ (uint64_t{exiting_} << 60) ^
                             (static_cast<uint64_t>(static_cast<uint32_t>(exit_code_)) << 24) ^
                             tasks_done_);
  h = notices_.fingerprint(h, false);
  h = results_.fingerprint(h, false);
  h = fingerprint_mix(h, (spliced_written_ << 32) ^ spliced_acked_);
  if (exiting_) h = fingerprint_text(h, exit_reason_);
  return h;
}

}  // namespace pipepool::protocol
