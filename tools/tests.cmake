# ctest tests of the `pipepool` command: it runs, its answers are the model's, and every usage
# error is one line naming the argument and what it accepts, with exit status 2.
set(PIPEPOOL_EXPECT ${CMAKE_CURRENT_SOURCE_DIR}/cli_expect.sh)

# pipepool_cli_test(NAME STATUS STREAM LINES REGEX ARGS...): `pipepool ARGS...` exits STATUS and
# STREAM (stdout/stderr) has LINES lines ("any": not checked) and matches REGEX.
function(pipepool_cli_test name status stream lines regex)
  add_test(NAME tools_cli_${name}
           COMMAND ${PIPEPOOL_EXPECT} ${status} ${stream} ${lines} ${regex} --
                   $<TARGET_FILE:pipepool_command> ${ARGN})
  set_tests_properties(tools_cli_${name} PROPERTIES TIMEOUT 60 LABELS cli)
endfunction()

add_test(NAME tools_sim_pipe_fill COMMAND pipepool_command sim pipe fill:4097)
set_tests_properties(tools_sim_pipe_fill PROPERTIES
  PASS_REGULAR_EXPRESSION "fill:4097 +-> 10 whole writes fit; the next returns 4096" TIMEOUT 30)
add_test(NAME tools_demo COMMAND pipepool_command demo)
set_tests_properties(tools_demo PROPERTIES
  PASS_REGULAR_EXPRESSION "epoll +completed.*unbatched +DEADLOCK.*epoll +holds over 100 scenarios.*batched +DEADLOCK.*unbatched +DEADLOCK.*--replay" TIMEOUT 180)

# --help on stdout with exit 0, for the program and every subcommand; --version.
pipepool_cli_test(help 0 stdout any "demo.*\n?.*" --help)
pipepool_cli_test(help_lists_commands 0 stdout any "tiers" --help)
pipepool_cli_test(version 0 stdout 1 "^pipepool [0-9]+\\.[0-9]+\\.[0-9]+$" --version)
foreach(sub "demo" "report" "sim" "sim;pipe" "sim;run" "sim;threshold" "tiers")
  string(REPLACE ";" "_" id "${sub}")
  pipepool_cli_test(help_${id} 0 stdout any "Usage:" ${sub} --help)
endforeach()

# Usage errors: one line, naming the argument and the valid range, exit 2.
pipepool_cli_test(no_command 2 stderr 1 "^pipepool: .*subcommand.*--help" )
pipepool_cli_test(unknown_command 2 stderr 1 "^pipepool: .*frobnicate" frobnicate)
pipepool_cli_test(sim_pipe_pages_not_power_of_two 2 stderr 1
                  "^pipepool sim pipe: --pages: 3 is not a power of two" sim pipe --pages 3 fill:1)
pipepool_cli_test(sim_pipe_negative_size 2 stderr 1
                  "^pipepool sim pipe: 'write:-5': write takes a byte count in 0\\.\\.4294967296"
                  sim pipe write:-5)
pipepool_cli_test(sim_pipe_unknown_op 2 stderr 1 "^pipepool sim pipe: unknown operation 'poke:1'"
                  sim pipe poke:1)
pipepool_cli_test(sim_pipe_no_ops 2 stderr 1 "^pipepool sim pipe: .*ops.*required" sim pipe)
pipepool_cli_test(sim_run_preemptions_negative 2 stderr 1
                  "^pipepool sim run: --preemptions: '-1' is not in 0\\.\\.1000 or 'none'"
                  sim run --task 1:1:0 --preemptions -1)
pipepool_cli_test(sim_run_workers_range 2 stderr 1
                  "^pipepool sim run: --workers: 0 is not in 1\\.\\.62" sim run --task 1:1:0
                  --workers 0)
pipepool_cli_test(sim_run_negative_seed 2 stderr 1
                  "^pipepool sim run: --seed: -3 is not in 0\\.\\.18446744073709551615" sim run
                  --task 1:1:0 --seed -3)
pipepool_cli_test(sim_run_octal_is_not_a_number 2 stderr 1
                  "^pipepool sim run: --workers: '0x10' is not a decimal number" sim run
                  --task 1:1:0 --workers 0x10)
pipepool_cli_test(sim_run_bad_strategy 2 stderr 1
                  "^pipepool sim run: --strategy: 'fast' is not epoll, batched, unbatched or zerocopy" sim
                  run --task 1:1:0 --strategy fast)
pipepool_cli_test(sim_run_no_calls 2 stderr 1
                  "^pipepool sim run: no calls: give --task, --call or --scenario" sim run)
pipepool_cli_test(sim_run_bad_task 2 stderr 1 "^pipepool sim run: --task 'x:1:0'" sim run --task
                  x:1:0)
pipepool_cli_test(sim_run_unknown_option 2 stderr 1 "^pipepool sim run: .*--frobnicate" sim run
                  --task 1:1:0 --frobnicate)
pipepool_cli_test(sim_threshold_needs_strategy 2 stderr 1
                  "^pipepool sim threshold: --strategy is required" sim threshold)
pipepool_cli_test(sim_threshold_negative_size 2 stderr 1
                  "^pipepool sim threshold: --max-bytes: -5 is not in 1\\.\\.4294967296 bytes" sim
                  threshold --strategy unbatched --max-bytes -5)
pipepool_cli_test(report_rejects_arguments 2 stderr 1 "^pipepool report: .*extra" report extra)
pipepool_cli_test(report_unknown_option 2 stderr 1 "^pipepool report: .*--frobnicate" report
                  --frobnicate)
pipepool_cli_test(demo_rejects_arguments 2 stderr 1 "^pipepool demo: .*extra" demo extra)
pipepool_cli_test(demo_payload_range 2 stderr 1 "^pipepool demo: --payload: 1K is not in" demo
                  --payload 1K)
# sim run answers: a deadlock is exit 1, nothing found exit 0.
pipepool_cli_test(sim_run_finds_deadlock 1 stdout any "VERDICT: DEADLOCK" sim run --quiet
                  --strategy unbatched --scheduler shortest-backlog
                  --task 70000:70000:0 --task 70000:70000:0)
# The channel options: bad values are one line and exit 2; a socketpair deadlock says its charge.
pipepool_cli_test(sim_run_bad_transport 2 stderr 1
                  "^pipepool sim run: --transport: 'tcp' is not pipes or socketpair" sim run
                  --task 1:1:0 --transport tcp)
pipepool_cli_test(sim_run_sndbuf_range 2 stderr 1
                  "^pipepool sim run: --sndbuf: 10 is not in 4608\\.\\.2147483647" sim run
                  --task 1:1:0 --sndbuf 10)
pipepool_cli_test(sim_run_bad_framing 2 stderr 1
                  "^pipepool sim run: --framing: 'json' is not pipepool or python" sim run
                  --task 1:1:0 --framing json)
pipepool_cli_test(sim_run_negative_overhead 2 stderr 1
                  "^pipepool sim run: --task-overhead: -1 is not in 0\\.\\." sim run
                  --task 1:1:0 --task-overhead -1)
pipepool_cli_test(sim_run_sndbuf_with_pipes 2 stderr 1
                  "^pipepool sim run: --sndbuf needs --transport socketpair" sim run --task 1:1:0
                  --sndbuf 100000)
pipepool_cli_test(sim_run_python_overhead_too_small 2 stderr 1
                  "^pipepool sim run: .*python_task_overhead_bytes of at least 32" sim run
                  --task 1:1:0 --transport socketpair --framing python --task-overhead 10
                  --result-overhead 60)
pipepool_cli_test(sim_threshold_python_socketpair 0 stdout any
                  "smallest that deadlocks: 219165 bytes \\(frame 219269 bytes = fill \\+ 5\\)"
                  sim threshold --quiet --strategy unbatched --transport socketpair
                  --framing python --task-overhead 100 --result-overhead 60
                  --min-bytes 215000 --max-bytes 222000 --grid 64)
pipepool_cli_test(sim_threshold_bad_transport 2 stderr 1
                  "^pipepool sim threshold: --transport: 'udp' is not pipes or socketpair" sim
                  threshold --strategy unbatched --transport udp)
pipepool_cli_test(sim_run_socketpair_deadlock 1 stdout any
                  "212,992 bytes of send buffer charged" sim run --quiet --strategy unbatched
                  --scheduler shortest-backlog --transport socketpair
                  --task 300000:300000:0 --task 300000:300000:0)
pipepool_cli_test(sim_threshold_socketpair 0 stdout any
                  "smallest that deadlocks: 219233 bytes \\(frame 219265 bytes = fill \\+ 1\\)"
                  sim threshold --quiet --strategy unbatched --transport socketpair
                  --min-bytes 215000 --max-bytes 222000 --grid 64)
pipepool_cli_test(sim_pipe_json 0 stdout any "\"op\": \"fill:4097\"" sim pipe --json fill:4097)

# pipepool tiers: argument checks, the emulation against the published Lambda figures, cleanup.
pipepool_cli_test(tiers_tier_range 2 stderr 1 "^pipepool tiers: --tiers: 64 is not in 128\\.\\.10240"
                  tiers --tiers 64)
pipepool_cli_test(tiers_negative_size 2 stderr 1 "^pipepool tiers: --sizes: -5 is not in" tiers
                  --sizes 4K,-5)
pipepool_cli_test(tiers_bad_workload 2 stderr 1 "^pipepool tiers: --workload: .*" tiers
                  --workload dance)
pipepool_cli_test(tiers_seconds_range 2 stderr 1 "^pipepool tiers: --seconds: 0 is not in 0\\.2\\.\\.600"
                  tiers --seconds 0)
pipepool_cli_test(tiers_workload_and_command 2 stderr 1
                  "^pipepool tiers: give either --workload or -- COMMAND, not both" tiers
                  --workload spin -- true)
find_program(PIPEPOOL_PYTHON3 python3)
if(PIPEPOOL_PYTHON3)
  # pipepool report --quick --json: every part, the doctor's cycle, 65505, no process left.
  add_test(NAME tools_report_quick
           COMMAND ${PIPEPOOL_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/report_test.py
                   $<TARGET_FILE:pipepool_command>)
  set_tests_properties(tools_report_quick PROPERTIES TIMEOUT 120 RUN_SERIAL TRUE LABELS cli)
  add_test(NAME tools_tiers_spin_matches_lambda
           COMMAND ${PIPEPOOL_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/tiers_spin_test.py
                   $<TARGET_FILE:pipepool_command> 1.5)
  set_tests_properties(tools_tiers_spin_matches_lambda PROPERTIES
    TIMEOUT 90 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE LABELS tiers)
endif()
foreach(signal INT TERM)
  add_test(NAME tools_tiers_interrupt_${signal}_leaves_no_cgroup
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tiers_interrupt_test.sh
                   $<TARGET_FILE:pipepool_command> ${signal})
  set_tests_properties(tools_tiers_interrupt_${signal}_leaves_no_cgroup PROPERTIES
    TIMEOUT 60 SKIP_RETURN_CODE 77 LABELS tiers)
endforeach()
# Without the right to create cgroups: one line naming the file and the errno, exit 3.
find_program(PIPEPOOL_SETPRIV setpriv)
if(PIPEPOOL_SETPRIV)
  add_test(NAME tools_cli_tiers_without_cgroup_access
           COMMAND sh -c "[ $(id -u) = 0 ] || { echo 'SKIP: needs root to drop it'; exit 77; }; exec \"$@\""
                   sh ${PIPEPOOL_EXPECT} 3 stderr 1
                   "^pipepool tiers: cannot set up the cgroup of the 128 MB tier: mkdir .*: Permission denied"
                   -- ${PIPEPOOL_SETPRIV} --reuid=65534 --regid=65534 --clear-groups
                   $<TARGET_FILE:pipepool_command> tiers --workload spin --tiers 128 --quiet)
  set_tests_properties(tools_cli_tiers_without_cgroup_access PROPERTIES
    TIMEOUT 60 LABELS cli SKIP_RETURN_CODE 77)
endif()
