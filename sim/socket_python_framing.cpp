// Python's multiprocessing.connection framing (see the header): pure arithmetic.
#include "socket_python_framing.hpp"

namespace pipepool::sim {

PythonWrites python_send_writes(uint64_t payload_bytes) {
  if (payload_bytes > kPythonLongHeaderAboveBytes) return {{4, 8, payload_bytes}, 3};
  if (payload_bytes > kPythonConcatLimitBytes) return {{4, payload_bytes, 0}, 2};
  return {{4 + payload_bytes, 0, 0}, 1};
}

PythonWrites python_recv_reads(uint64_t payload_bytes) {
  if (payload_bytes > kPythonLongHeaderAboveBytes) return {{4, 8, payload_bytes}, 3};
  if (payload_bytes == 0) return {{4, 0, 0}, 1};  // _recv(0) reads nothing
  return {{4, payload_bytes, 0}, 2};
}

uint64_t python_wire_bytes(uint64_t payload_bytes) {
  return payload_bytes + (payload_bytes > kPythonLongHeaderAboveBytes ? 12 : 4);
}

}  // namespace pipepool::sim
