#!/usr/bin/env python3
"""ctest: `pipepool report --quick --json` has every part, the deadlock part found a cycle and
left no process, the simulator part names 65505, and no process of the run outlives it.
usage: report_test.py PIPEPOOL"""
import json
import os
import subprocess
import sys
import time

command = sys.argv[1]
run = subprocess.run([command, "report", "--quick", "--json", "--quiet"], capture_output=True,
                     text=True, timeout=150)
failures = []
if run.returncode != 0:
    failures.append(f"exit status {run.returncode}, wanted 0; stderr: {run.stderr[-2000:]}")
try:
    report = json.loads(run.stdout)
except ValueError as error:
    print(f"FAIL: not JSON ({error}):\n{run.stdout[:3000]}")
    sys.exit(1)
for part in ("deadlock", "simulator", "benchmark", "tiers"):
    status = report.get(part, {}).get("status")
    if status not in ("ok", "skipped", "error"):
        failures.append(f"part {part}: status {status!r}")
    if status == "skipped" and not report[part].get("reason"):
        failures.append(f"part {part}: skipped without a reason")
if not report.get("summary"):
    failures.append("no summary")
deadlock = report.get("deadlock", {})
if deadlock.get("verdict") != "deadlock" or len(deadlock.get("cycle", [])) < 2:
    failures.append(f"deadlock part: verdict {deadlock.get('verdict')!r}, cycle {deadlock.get('cycle')}")
if deadlock.get("processes_left") != []:
    failures.append(f"deadlock part: processes left {deadlock.get('processes_left')}")
if not deadlock.get("epoll", {}).get("completed"):
    failures.append("deadlock part: Epoll did not complete")
if "65505" not in json.dumps(report.get("simulator", {})):
    failures.append("simulator part does not name 65505")
# Every process the deadlock part saw is gone, and no child of this test is left.
time.sleep(0.2)
for process in deadlock.get("processes", []):
    if os.path.exists(f"/proc/{process['pid']}"):
        failures.append(f"process {process['pid']} ({process.get('role')}) still exists")
children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                          capture_output=True, text=True).stdout
if "pipepool" in children:
    failures.append(f"processes left: {children}")
if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"ok: report in {report.get('seconds', 0):.1f} s, cycle {deadlock['cycle']}, "
      f"tiers {report['tiers']['status']}")
