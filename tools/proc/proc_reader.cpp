#include "proc_reader.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pipepool::proc {
namespace {

std::string task_dir(pid_t pid, pid_t tid) {
  return "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
}

Access access_of(int error) {
  return error == EACCES || error == EPERM ? Access::Denied : Access::Gone;
}

// The whole of a small /proc file, or the errno of the failure.
struct FileText {
  int error = 0;
  std::string text;
};
FileText read_small_file(const std::string& path) {
  FileText out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    out.error = errno;
    return out;
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      out.text.append(buffer, static_cast<size_t>(n));
      if (out.text.size() > (1u << 20)) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) out.error = errno;
    break;
  }
  ::close(fd);
  return out;
}

std::vector<pid_t> numeric_entries(const std::string& dir_path) {
  std::vector<pid_t> out;
  DIR* dir = ::opendir(dir_path.c_str());
  if (dir == nullptr) return out;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long id = std::strtol(entry->d_name, &end, 10);
    if (end != entry->d_name && *end == '\0' && id > 0) out.push_back(static_cast<pid_t>(id));
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

template <typename T>
bool parse_number(std::string_view text, T& out, int base = 10) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return error == std::errc() && end == text.data() + text.size();
}

int read_fd_flags(pid_t pid, int fd) {
  const FileText info =
      read_small_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
  if (info.error != 0) return -1;
  std::istringstream lines(info.text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("flags:", 0) != 0) continue;
    std::string_view value(line);
    value.remove_prefix(6);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    int flags = 0;
    return parse_number(value, flags, 8) ? flags : -1;
  }
  return -1;
}

bool mode_reads(int flags) {
  return flags < 0 || (flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR;
}
bool mode_writes(int flags) {
  return flags < 0 || (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR;
}

bool parse_unix_diag(const nlmsghdr* header, std::map<uint64_t, UnixSocket>& out) {
  if (header->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) return false;
  const auto* message = static_cast<const unix_diag_msg*>(NLMSG_DATA(header));
  UnixSocket socket;
  socket.inode = message->udiag_ino;
  socket.type = message->udiag_type;
  socket.state = message->udiag_state;
  int length = static_cast<int>(header->nlmsg_len - NLMSG_LENGTH(sizeof *message));
  // The attributes follow the message, each aligned (RTA_* walk them).
  auto* attribute = reinterpret_cast<rtattr*>(
      const_cast<char*>(reinterpret_cast<const char*>(message) + NLMSG_ALIGN(sizeof *message)));
  for (; RTA_OK(attribute, length); attribute = RTA_NEXT(attribute, length)) {
    const void* data = RTA_DATA(attribute);
    const size_t size = RTA_PAYLOAD(attribute);
    if (attribute->rta_type == UNIX_DIAG_PEER && size >= sizeof(uint32_t)) {
      uint32_t peer = 0;
      std::memcpy(&peer, data, sizeof peer);
      socket.peer_inode = peer;
    } else if (attribute->rta_type == UNIX_DIAG_RQLEN && size >= sizeof(unix_diag_rqlen)) {
      unix_diag_rqlen queues{};
      std::memcpy(&queues, data, sizeof queues);
      socket.receive_queue_bytes = queues.udiag_rqueue;
      socket.send_queue_bytes = queues.udiag_wqueue;
    } else if (attribute->rta_type == UNIX_DIAG_MEMINFO &&
               size >= sizeof(uint32_t) * SK_MEMINFO_VARS) {
      uint32_t memory[SK_MEMINFO_VARS];
      std::memcpy(memory, data, sizeof memory);
      socket.have_meminfo = true;
      socket.send_buffer_bytes = memory[SK_MEMINFO_SNDBUF];
      socket.receive_buffer_bytes = memory[SK_MEMINFO_RCVBUF];
      socket.write_alloc_bytes = memory[SK_MEMINFO_WMEM_ALLOC];
    }
  }
  out[socket.inode] = socket;
  return true;
}

}  // namespace

std::string_view to_string(Access access) {
  switch (access) {
    case Access::Ok:
      return "ok";
    case Access::Denied:
      return "denied";
    case Access::Gone:
      return "gone";
  }
  return "?";
}

std::optional<TaskStat> parse_stat(std::string_view line) {
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  TaskStat stat;
  if (!parse_number(line.substr(0, open > 0 ? open - 1 : 0), stat.id)) return std::nullopt;
  stat.comm = std::string(line.substr(open + 1, close - open - 1));
  std::istringstream rest{std::string(line.substr(close + 1))};
  std::vector<std::string> fields;
  for (std::string field; rest >> field && fields.size() < 13;) fields.push_back(field);
  // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  if (fields.size() < 13 || fields[0].empty()) return std::nullopt;
  stat.state = fields[0][0];
  if (!parse_number(fields[1], stat.ppid) || !parse_number(fields[2], stat.pgrp) ||
      !parse_number(fields[11], stat.utime_ticks) || !parse_number(fields[12], stat.stime_ticks)) {
    return std::nullopt;
  }
  return stat;
}

std::optional<TaskStat> read_process_stat(pid_t pid) {
  const FileText file = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  if (file.error != 0) return std::nullopt;
  return parse_stat(file.text);
}

std::optional<TaskStat> read_thread_stat(pid_t pid, pid_t tid) {
  const FileText file = read_small_file(task_dir(pid, tid) + "/stat");
  if (file.error != 0) return std::nullopt;
  return parse_stat(file.text);
}

std::vector<pid_t> list_processes() {
  return numeric_entries("/proc");
}

std::vector<pid_t> list_threads(pid_t pid) {
  return numeric_entries("/proc/" + std::to_string(pid) + "/task");
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  for (pid_t tid : list_threads(pid)) {
    std::istringstream in(read_small_file(task_dir(pid, tid) + "/children").text);
    for (pid_t child; in >> child;) out.push_back(child);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<pid_t> process_tree(pid_t root, size_t limit) {
  std::vector<pid_t> out;
  if (!read_process_stat(root)) return out;
  out.push_back(root);
  for (size_t i = 0; i < out.size() && out.size() < limit; ++i) {
    for (pid_t child : children_of(out[i])) {
      if (out.size() >= limit) break;
      if (std::find(out.begin(), out.end(), child) == out.end()) out.push_back(child);
    }
  }
  return out;
}

SyscallState read_syscall(pid_t pid, pid_t tid) {
  SyscallState state;
  const FileText file = read_small_file(task_dir(pid, tid) + "/syscall");
  if (file.error != 0) {
    state.access = access_of(file.error);
    return state;
  }
  state.access = Access::Ok;
  std::istringstream in(file.text);
  std::string first;
  in >> first;
  if (first == "running") {
    state.kind = SyscallState::Kind::Running;
    return state;
  }
  long number = -1;
  if (!parse_number(std::string_view(first), number) || number < 0) {
    state.kind = SyscallState::Kind::NotInSyscall;
    return state;
  }
  state.kind = SyscallState::Kind::InSyscall;
  state.number = number;
  for (uint64_t& arg : state.args) {
    std::string word;
    if (!(in >> word)) break;
    std::string_view hex(word);
    if (hex.rfind("0x", 0) == 0) hex.remove_prefix(2);
    (void)parse_number(hex, arg, 16);
  }
  return state;
}

std::string syscall_name(long number) {
  struct Name {
    long number;
    const char* name;
  };
  static constexpr Name kNames[] = {
      {SYS_read, "read"},
      {SYS_write, "write"},
      {SYS_readv, "readv"},
      {SYS_writev, "writev"},
      {SYS_pread64, "pread64"},
      {SYS_pwrite64, "pwrite64"},
      {SYS_sendto, "sendto"},
      {SYS_recvfrom, "recvfrom"},
      {SYS_sendmsg, "sendmsg"},
      {SYS_recvmsg, "recvmsg"},
      {SYS_futex, "futex"},
      {SYS_wait4, "wait4"},
      {SYS_waitid, "waitid"},
      {SYS_ppoll, "ppoll"},
      {SYS_pselect6, "pselect6"},
      {SYS_epoll_pwait, "epoll_pwait"},
      {SYS_clock_nanosleep, "clock_nanosleep"},
      {SYS_nanosleep, "nanosleep"},
      {SYS_accept4, "accept4"},
      {SYS_connect, "connect"},
      {SYS_splice, "splice"},
      {SYS_preadv2, "preadv2"},
      {SYS_pwritev2, "pwritev2"},
#ifdef SYS_poll
      {SYS_poll, "poll"},
#endif
#ifdef SYS_select
      {SYS_select, "select"},
#endif
#ifdef SYS_epoll_wait
      {SYS_epoll_wait, "epoll_wait"},
#endif
#ifdef SYS_pause
      {SYS_pause, "pause"},
#endif
#ifdef SYS_accept
      {SYS_accept, "accept"},
#endif
      {SYS_rt_sigsuspend, "rt_sigsuspend"},
      {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
  };
  for (const Name& name : kNames) {
    if (name.number == number) return name.name;
  }
  return "syscall " + std::to_string(number);
}

Wchan read_wchan(pid_t pid, pid_t tid) {
  Wchan out;
  const FileText file = read_small_file(task_dir(pid, tid) + "/wchan");
  if (file.error != 0) {
    out.access = access_of(file.error);
    out.hidden = out.access == Access::Denied;
    return out;
  }
  out.access = Access::Ok;
  out.symbol = file.text.substr(0, file.text.find('\n'));
  if (out.symbol == "0") {
    out.symbol.clear();
    // The kernel prints "0" instead of refusing: the syscall file (which refuses) tells which.
    const int fd = ::open((task_dir(pid, tid) + "/syscall").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char byte;
      if (::read(fd, &byte, 1) < 0 && (errno == EACCES || errno == EPERM)) out.hidden = true;
      ::close(fd);
    } else if (errno == EACCES || errno == EPERM) {
      out.hidden = true;
    }
  }
  return out;
}

bool FdEntry::readable() const {
  return mode_reads(flags);
}
bool FdEntry::writable() const {
  return mode_writes(flags);
}
bool Holder::readable() const {
  return mode_reads(flags);
}
bool Holder::writable() const {
  return mode_writes(flags);
}

void classify_target(FdEntry& entry) {
  const auto bracketed = [&](std::string_view prefix) -> bool {
    std::string_view target(entry.target);
    if (target.rfind(prefix, 0) != 0 || target.back() != ']') return false;
    target.remove_prefix(prefix.size());
    target.remove_suffix(1);
    return parse_number(target, entry.inode);
  };
  if (bracketed("pipe:[")) {
    entry.kind = FdKind::Pipe;
  } else if (bracketed("socket:[")) {
    entry.kind = FdKind::Socket;
  } else if (entry.target.rfind("anon_inode:", 0) == 0) {
    entry.kind = FdKind::AnonInode;
  } else if (!entry.target.empty() && entry.target[0] == '/') {
    entry.kind = FdKind::File;
  } else {
    entry.kind = FdKind::Other;
  }
}

std::optional<FdEntry> read_fd(pid_t pid, int fd) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  char target[512];
  const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
  if (n < 0) return std::nullopt;
  FdEntry entry;
  entry.fd = fd;
  entry.target.assign(target, static_cast<size_t>(n));
  classify_target(entry);
  entry.flags = read_fd_flags(pid, fd);
  return entry;
}

FdList read_fds(pid_t pid) {
  FdList out;
  const std::string path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    out.access = access_of(errno);
    return out;
  }
  std::vector<int> numbers;
  while (const dirent* entry = ::readdir(dir)) {
    int fd = -1;
    if (parse_number(std::string_view(entry->d_name), fd)) numbers.push_back(fd);
  }
  ::closedir(dir);
  std::sort(numbers.begin(), numbers.end());
  out.access = Access::Ok;
  for (int fd : numbers) {
    if (auto entry = read_fd(pid, fd)) out.fds.push_back(std::move(*entry));
  }
  return out;
}

std::optional<PipeFill> pipe_fill(pid_t pid, int fd) {
  const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  const int reader = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (reader < 0) return std::nullopt;
  std::optional<PipeFill> out;
  int queued = 0;
  const int capacity = ::fcntl(reader, F_GETPIPE_SZ);
  if (capacity >= 0 && ::ioctl(reader, FIONREAD, &queued) == 0) {
    out = PipeFill{static_cast<uint64_t>(queued), static_cast<uint64_t>(capacity)};
  }
  ::close(reader);
  return out;
}

std::optional<std::map<uint64_t, UnixSocket>> unix_sockets() {
  const int netlink = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (netlink < 0) return std::nullopt;
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.request.sdiag_family = AF_UNIX;
  message.request.udiag_states = ~0u;
  message.request.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_MEMINFO;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(netlink, &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) != static_cast<ssize_t>(sizeof message)) {
    ::close(netlink);
    return std::nullopt;
  }
  std::map<uint64_t, UnixSocket> out;
  alignas(nlmsghdr) char buffer[32768];
  bool done = false;
  bool failed = false;
  while (!done && !failed) {
    ssize_t n = ::recv(netlink, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      failed = true;
      break;
    }
    int length = static_cast<int>(n);
    for (auto* header = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(header, length);
         header = NLMSG_NEXT(header, length)) {
      if (header->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (header->nlmsg_type == NLMSG_ERROR) {
        failed = true;
        break;
      }
      if (header->nlmsg_type == SOCK_DIAG_BY_FAMILY) (void)parse_unix_diag(header, out);
    }
  }
  ::close(netlink);
  if (failed) return std::nullopt;
  return out;
}

HolderIndex index_holders(const std::vector<pid_t>& pids) {
  HolderIndex index;
  const std::vector<pid_t> scope = pids.empty() ? list_processes() : pids;
  for (pid_t pid : scope) {
    const FdList list = read_fds(pid);
    if (list.access == Access::Denied) index.denied.push_back(pid);
    for (const FdEntry& entry : list.fds) {
      if (entry.kind != FdKind::Pipe && entry.kind != FdKind::Socket) continue;
      index.by_inode[entry.inode].push_back({pid, entry.fd, entry.flags});
    }
  }
  return index;
}

std::optional<uint64_t> iovec_bytes(pid_t pid, uint64_t iov_address, uint64_t iov_count) {
  if (iov_count > 1024) return std::nullopt;  // IOV_MAX: the call itself would fail
  std::vector<iovec> remote_iov(iov_count);
  if (iov_count == 0) return 0;
  iovec local{remote_iov.data(), iov_count * sizeof(iovec)};
  iovec remote{reinterpret_cast<void*>(iov_address), iov_count * sizeof(iovec)};
  if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) !=
      static_cast<ssize_t>(iov_count * sizeof(iovec))) {
    return std::nullopt;
  }
  uint64_t total = 0;
  for (const iovec& piece : remote_iov) total += piece.iov_len;
  return total;
}

std::optional<uint64_t> msghdr_bytes(pid_t pid, uint64_t msghdr_address) {
  msghdr header{};
  iovec local{&header, sizeof header};
  iovec remote{reinterpret_cast<void*>(msghdr_address), sizeof header};
  if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(sizeof header)) {
    return std::nullopt;
  }
  return iovec_bytes(pid, reinterpret_cast<uint64_t>(header.msg_iov), header.msg_iovlen);
}

}  // namespace pipepool::proc
