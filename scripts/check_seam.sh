#!/usr/bin/env bash
# The seam as a build fact (ARCHITECTURE.md): the protocol library and the simulator perform no
# system call, read no clock and draw no random number, and their sources include nothing from
# the os layer or the real driver. ctest runs this on the real archives and sources (seam_check),
# and on a planted violation that it must reject (seam_check_rejects_a_violation).
#
#   scripts/check_seam.sh [--archive LIB.a]... [--sources DIR]...
#
# Prints one line per violation and exits 1 if there is any, else prints a summary and exits 0.
set -euo pipefail

# Undefined symbols an archive must not reference: system calls (and their libc wrappers),
# clocks, randomness, sleeping, threads.
banned_symbols=(
  fork vfork clone clone3 execve _exit exit abort kill tgkill raise
  pipe pipe2 socket socketpair bind connect accept accept4 sendmsg recvmsg send recv sendto recvfrom
  read write readv writev pread pwrite preadv pwritev vmsplice splice tee open openat close dup dup2 dup3
  fcntl ioctl poll ppoll select pselect epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait
  waitpid waitid wait4 wait pidfd_open pidfd_send_signal eventfd
  mmap munmap madvise
  clock_gettime gettimeofday time clock nanosleep usleep sleep
  getrandom rand random srand srandom rand_r drand48
  sigaction signal sigprocmask pthread_sigmask setrlimit getrlimit prlimit
  pthread_create syscall getpid getppid
)
# Demangled symbol prefixes that mean the same (C++ clocks and entropy, the os layer, the driver).
banned_prefixes=(
  'std::chrono::_V2::steady_clock::now' 'std::chrono::_V2::system_clock::now'
  'std::chrono::_V2::high_resolution_clock::now' 'std::random_device'
  'std::this_thread::sleep' 'std::thread::'
  'pipepool::os::' 'pipepool::driver::'
)

archives=()
sources=()
while (($#)); do
  case $1 in
    --archive) archives+=("$2"); shift 2 ;;
    --sources) sources+=("$2"); shift 2 ;;
    *) echo "check_seam: unknown argument $1" >&2; exit 2 ;;
  esac
done
((${#archives[@]} + ${#sources[@]})) || { echo "check_seam: nothing to check" >&2; exit 2; }

violations=0
declare -A banned=()
for s in "${banned_symbols[@]}"; do banned[$s]=1; done

for archive in "${archives[@]}"; do
  [[ -f $archive ]] || { echo "check_seam: no such archive: $archive" >&2; exit 2; }
  while read -r symbol; do
    plain=${symbol%%@*}
    if [[ -n ${banned[$plain]:-} ]]; then
      echo "VIOLATION: $(basename "$archive") references $plain"
      violations=$((violations + 1))
      continue
    fi
    for prefix in "${banned_prefixes[@]}"; do
      if [[ $symbol == "$prefix"* ]]; then
        echo "VIOLATION: $(basename "$archive") references $symbol"
        violations=$((violations + 1))
        break
      fi
    done
  done < <(nm -C -u "$archive" | awk 'NF >= 2 && $1 == "U" { $1 = ""; sub(/^ /, ""); print }' | sort -u)
done

for dir in "${sources[@]}"; do
  [[ -d $dir ]] || { echo "check_seam: no such directory: $dir" >&2; exit 2; }
  # Library sources only: the tests (*_test.cpp, testing_*.hpp) may touch the kernel.
  while IFS= read -r hit; do
    echo "VIOLATION: $hit"
    violations=$((violations + 1))
  done < <(find "$dir" -maxdepth 1 \( -name '*.cpp' -o -name '*.hpp' \) ! -name '*_test.cpp' \
             ! -name 'testing_*' -print0 |
           xargs -0 -r grep -HnE '#include +[<"](os|driver)/|#include +<(unistd|fcntl|poll|signal|pthread|sys/[a-z_]+)\.h>|#include +<(random|thread|ctime)>' || true)
done

if ((violations)); then
  echo "check_seam: $violations violation(s)"
  exit 1
fi
echo "check_seam: no system call, clock, randomness, os/ or driver/ reference in ${#archives[@]} archive(s) and ${#sources[@]} source folder(s)"
