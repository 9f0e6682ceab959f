// Python's framing over a socketpair or pipe: what multiprocessing.connection.Connection does on
// Linux for each message (CPython 3.8+, Lib/multiprocessing/connection.py, _send_bytes and
// _recv_bytes), as pure arithmetic, so the simulator can play a Python pool's writes over the
// socket model.
//
//   send_bytes(buf), n = len(buf) (for send(obj), n is the pickled size of obj):
//     n <= 16384:           one _send of the 4-byte big-endian length followed by the payload
//     16384 < n < 2^31:     _send(4-byte length), then _send(payload)
//     n >= 2^31:            _send(4-byte -1), _send(8-byte length), _send(payload)
//   recv_bytes(): _recv(4) [, _recv(8)], then _recv(n).
//
// Each _send is a loop of os.write(2) calls until the buffer is written (a short write goes on
// with the rest); each _recv a loop of os.read(2) of the bytes still missing. On a blocking socket
// one write(2) of any size returns only when all of it is queued (the kernel sleeps between
// skbs), so each _send is one write(2) call there.
//
// Example:
//   auto w = pipepool::sim::python_send_writes(20000);   // w.count == 2, w.bytes = {4, 20000}
#pragma once

#include <array>
#include <cstdint>

namespace pipepool::sim {

// Payloads up to this size are sent with their header in one write ("Issue #20540").
inline constexpr uint64_t kPythonConcatLimitBytes = 16384;
// Payloads above this use the 4 + 8 byte header (struct "!i" -1, then "!Q" n).
inline constexpr uint64_t kPythonLongHeaderAboveBytes = 0x7fffffff;

// The _send() calls of one message, in order: count of them and each one's length in bytes.
struct PythonWrites {
  std::array<uint64_t, 3> bytes{};
  uint32_t count = 0;
};

// The writes Connection.send_bytes makes for a payload of `payload_bytes`.
PythonWrites python_send_writes(uint64_t payload_bytes);
// The _recv() calls Connection.recv_bytes makes for it: 4 [, 8], payload (none for 0 bytes).
PythonWrites python_recv_reads(uint64_t payload_bytes);
// Bytes the message puts on the wire: payload plus 4 (or 12) header bytes.
uint64_t python_wire_bytes(uint64_t payload_bytes);

}  // namespace pipepool::sim
