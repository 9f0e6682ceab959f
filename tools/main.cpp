// The `pipepool` command: one binary, one subcommand per job.
#include <cstdio>
#include <cstring>
#include <string>

namespace pipepool::tools {
int run_demo_command(int argc, char** argv);
int run_sim_pipe_command(int argc, char** argv);
int run_fuzz_command(int argc, char** argv);
#ifdef PIPEPOOL_HAVE_SIM_COMMAND
int run_sim_command(int argc, char** argv);
#endif
}  // namespace pipepool::tools

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: pipepool COMMAND [ARGS]\n"
               "  demo                 a tour of the pool and of the strategies' deadlocks\n"
               "  sim pipe OP...       play writes and reads against the Linux pipe model\n"
#ifdef PIPEPOOL_HAVE_SIM_COMMAND
               "  sim run|threshold    simulate a scenario on the pool's own protocol\n"
#endif
               "  fuzz                 search for deadlocking workloads and shrink them\n"
               "run `pipepool COMMAND --help` for a command's options\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string command = argv[1];
  if (command == "demo") return pipepool::tools::run_demo_command(argc - 2, argv + 2);
  if (command == "fuzz") return pipepool::tools::run_fuzz_command(argc - 2, argv + 2);
  if (command == "sim") {
    if (argc >= 3 && std::strcmp(argv[2], "pipe") == 0) {
      return pipepool::tools::run_sim_pipe_command(argc - 3, argv + 3);
    }
#ifdef PIPEPOOL_HAVE_SIM_COMMAND
    return pipepool::tools::run_sim_command(argc - 2, argv + 2);
#endif
  }
  return usage();
}
