// Python's framing: the arithmetic, checked against CPython's own Connection (when python3 is
// installed), and Python-framed messages played on a real socketpair and on the socket model.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "socket_model.hpp"
#include "socket_python_framing.hpp"
#include "testing_real_pipe.hpp"
#include "testing_real_socket.hpp"

namespace pipepool::sim {
namespace {

namespace rp = pipepool::sim::testing;

std::vector<uint64_t> as_vector(const PythonWrites& w) {
  return std::vector<uint64_t>(w.bytes.begin(), w.bytes.begin() + w.count);
}

TEST(SocketPythonFraming, WriteSizes) {
  using V = std::vector<uint64_t>;
  EXPECT_EQ(as_vector(python_send_writes(0)), V{4});
  EXPECT_EQ(as_vector(python_send_writes(100)), V{104});
  EXPECT_EQ(as_vector(python_send_writes(16384)), V{16388});
  EXPECT_EQ(as_vector(python_send_writes(16385)), (V{4, 16385}));
  EXPECT_EQ(as_vector(python_send_writes(0x7fffffff)), (V{4, 0x7fffffff}));
  EXPECT_EQ(as_vector(python_send_writes(0x80000000)), (V{4, 8, 0x80000000}));
  EXPECT_EQ(as_vector(python_recv_reads(0)), V{4});
  EXPECT_EQ(as_vector(python_recv_reads(100)), (V{4, 100}));
  EXPECT_EQ(as_vector(python_recv_reads(0x80000000)), (V{4, 8, 0x80000000}));
  EXPECT_EQ(python_wire_bytes(100), 104u);
  EXPECT_EQ(python_wire_bytes(0x80000000), 0x80000000u + 12);
}

// CPython's Connection._send_bytes with _send replaced by a recorder: the lengths of its _send
// calls for each payload size, one line per payload.
TEST(SocketPythonFraming, AgreesWithCPython) {
  const std::vector<uint64_t> payloads = {0, 1, 100, 16383, 16384, 16385, 100000};
  std::string list;
  for (uint64_t p : payloads) list += std::to_string(p) + ",";
  const std::string cmd =
      "python3 -c '\n"
      "import multiprocessing\n"
      "a, b = multiprocessing.Pipe()\n"
      "for n in [" +
      list +
      "]:\n"
      "    sizes = []\n"
      "    a._send = lambda buf: sizes.append(len(buf))\n"
      "    a.send_bytes(bytes(n))\n"
      "    print(\" \".join(map(str, sizes)))\n"
      "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) GTEST_SKIP() << "cannot run python3";
  std::vector<std::string> lines;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p) != nullptr) {
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    lines.push_back(line);
  }
  const int status = pclose(p);
  if (status != 0 || lines.size() != payloads.size()) GTEST_SKIP() << "python3 not usable here";
  for (size_t i = 0; i < payloads.size(); ++i) {
    std::string expected;
    for (uint64_t s : as_vector(python_send_writes(payloads[i]))) {
      expected += (expected.empty() ? "" : " ") + std::to_string(s);
    }
    EXPECT_EQ(lines[i], expected) << "payload " << payloads[i];
  }
}

// Messages of one payload size, Python-framed, written non-blocking until a write would not
// complete: on the kernel and on the model, the same count and the same memory after each one.
struct FillResult {
  int messages = 0;
  int64_t data_bytes = 0;
  int64_t charged = 0;
};

TEST(SocketPythonFraming, MessagesFillTheBufferLikeTheKernel) {
  rp::ScopedBlockSigpipe block;
  const uint32_t wmem_default = rp::net_core_sysctl("wmem_default", 212992);
  const uint32_t wmem_max = rp::net_core_sysctl("wmem_max", 212992);
  const int sndbuf_values[] = {0, 32768};  // 0: the default
  const uint64_t payloads[] = {0, 1, 100, 1000, 4000, 16380, 16384, 16385, 20000, 65536, 100000};
  for (int value : sndbuf_values) {
    for (uint64_t payload : payloads) {
      rp::RealSocketPair real;
      SocketPairModel model(SocketConfig{.sndbuf_bytes = wmem_default, .wmem_max_bytes = wmem_max});
      if (value != 0) {
        ASSERT_EQ(real.set_sndbuf(0, value), 0);
        model.set_sndbuf(0, value);
      }
      const auto writes = python_send_writes(payload);
      std::vector<std::byte> data(payload + 12, std::byte{'p'});
      FillResult r;
      bool full = false;
      while (!full && r.messages < 100000) {
        for (uint32_t i = 0; i < writes.count && !full; ++i) {
          const std::span<const std::byte> part(data.data(), writes.bytes[i]);
          const int64_t k = real.send_nowait(0, part);
          const int64_t m = model.write(0, part, true).result;
          ASSERT_EQ(k, m) << "payload " << payload << ", message " << r.messages;
          if (k > 0) r.data_bytes += k;
          full = k != static_cast<int64_t>(writes.bytes[i]);
        }
        ASSERT_EQ(real.outq(0), static_cast<int64_t>(model.outq_bytes(0)));
        ASSERT_EQ(real.inq(1), static_cast<int64_t>(model.inq_bytes(1)));
        if (!full) ++r.messages;
      }
      r.charged = real.outq(0);
      std::printf(
          "sndbuf %7lld, payload %6llu: %4d whole messages fit, %7lld bytes queued, %7lld "
          "charged\n",
          static_cast<long long>(real.sndbuf(0)), static_cast<unsigned long long>(payload),
          r.messages, static_cast<long long>(r.data_bytes), static_cast<long long>(r.charged));
    }
  }
}

}  // namespace
}  // namespace pipepool::sim
