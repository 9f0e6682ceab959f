// Writes the committed seed corpus (fuzz/corpus/): valid frame streams and valid encodings of the
// codec target's types, so that the fuzzers start from inputs that get past the first check.
//   make_corpus DIR   (writes DIR/frame_reader/* and DIR/codec/*)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "pipepool/codec.hpp"
#include "protocol/frame.hpp"

namespace {

void write(const std::filesystem::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary) << bytes;
}

std::string frame(pipepool::protocol::FrameKind kind, uint64_t id, const std::string& payload) {
  const auto header = pipepool::protocol::encode_header(kind, id, payload.size());
  return std::string(reinterpret_cast<const char*>(header.data()), header.size()) + payload;
}

// The codec target's selector byte, then the encoding.
template <class T>
std::string typed(uint8_t type, const T& value) {
  return std::string(1, static_cast<char>(type)) + pipepool::encode_to_string(value);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  using pipepool::protocol::FrameKind;
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir / "frame_reader");
  std::filesystem::create_directories(dir / "codec");
  // Frame reader: byte 0 = piece size and direction (0x80 to a worker, 0x40 read-ahead).
  const std::string results = frame(FrameKind::Result, 1, "forty-two") +
                              frame(FrameKind::Started, 2, "") +
                              frame(FrameKind::Error, 2, std::string(300, 'e'));
  const std::string tasks = frame(FrameKind::Task, 1, std::string(100, 't')) +
                            frame(FrameKind::RunBatch, 0, "") + frame(FrameKind::Shutdown, 0, "");
  write(dir / "frame_reader" / "results_exact", std::string(1, '\x07') + results);
  write(dir / "frame_reader" / "results_read_ahead", std::string(1, '\x41') + results);
  write(dir / "frame_reader" / "tasks_exact", std::string(1, '\x83') + tasks);
  write(dir / "frame_reader" / "tasks_read_ahead", std::string(1, '\xc0') + tasks);
  write(dir / "frame_reader" / "truncated", std::string(1, '\x10') + results.substr(0, 40));
  // Codec: the selector is the index in codec_fuzzer.cpp's kTypes.
  using Nested = std::vector<std::vector<std::variant<int64_t, std::string>>>;
  write(dir / "codec" / "int32", typed<int32_t>(0, -7));
  write(dir / "codec" / "bool", typed(1, true));
  write(dir / "codec" / "string", typed(3, std::string("hello")));
  write(dir / "codec" / "vector_int", typed(4, std::vector<int32_t>{1, 2, 3}));
  write(dir / "codec" / "vector_bool", typed(5, std::vector<bool>{true, false, true}));
  write(dir / "codec" / "vector_string", typed(6, std::vector<std::string>{"a", "", "bc"}));
  write(dir / "codec" / "tuple", typed(10, std::tuple<int32_t, std::string, double>{1, "x", 2.5}));
  write(dir / "codec" / "optional", typed(12, std::optional<std::string>("o")));
  write(dir / "codec" / "variant",
        typed(13, std::variant<int32_t, std::string, std::vector<double>>(std::string("v"))));
  write(dir / "codec" / "map", typed(14, std::map<std::string, int32_t>{{"a", 1}, {"b", 2}}));
  write(dir / "codec" / "nested", typed(16, Nested{{int64_t{1}, std::string("two")}, {}}));
  write(dir / "codec" / "units", typed(19, std::vector<pipepool::Unit>(5)));
  return 0;
}
