"""Where a warm invoke's microseconds go (issue 4): to guide the next optimisation.

    python -m bench.profile_warm [--quick] [--requests 3000] [--no-perf] [--no-strace]
        [--no-cprofile]

A warm python hello function invoked back to back at c = 1 (the raw keep-alive client of
``bench/common.py``), looked at three ways, each in its own phase:

1. CPU per invoke by process: on-CPU time and times scheduled in, from
   ``/proc/<pid>/task/*/schedstat``, of the server (and of its event-loop thread alone),
   the sandbox's agent (its pid 1), its runtime and the client, before and after the
   phase, divided by the invokes; next to the wall time per invoke;
2. ``perf record`` of those processes (if ``perf`` is installed): samples by process and
   shared object, then the hottest symbols (kernel ones by name; Python 3.11 code shows
   as the interpreter's own functions);
3. ``strace -c -f`` of the server, the agent and the runtime (a third of the invokes):
   system calls per invoke, by process and by call;
4. ``cProfile`` of the server process (a second server started under
   ``bench/cprofile_hook.py``, profiling the measured invokes only): the Python
   functions with the most own time, and Ember's functions by cumulative time, per
   invoke. cProfile slows Python code down by about 2x: read the shares, not the
   absolute figures.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.client import load
from bench.common import Server, ember_server, header, load_average, quick_or, summarize


def schedstat(pid: int, main_thread_only: bool = False) -> tuple[int, int]:
    """(on-CPU ns, times scheduled in) so far, over all threads of ``pid`` (or its main
    thread only), from ``/proc/<pid>/task/<tid>/schedstat``."""
    cpu = slices = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if main_thread_only and task.name != str(pid):
            continue
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        cpu, slices = cpu + int(fields[0]), slices + int(fields[2])
    return cpu, slices


def environment_pids(server: Server, name: str) -> dict[str, int]:
    """The agent (pid 1 in its namespace) and runtime of ``name``'s one environment."""
    marker = f"AWS_LAMBDA_FUNCTION_NAME={name}\0".encode()
    for cgroup in server.sandbox_cgroups():
        pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
        if any(marker in Path(f"/proc/{pid}/environ").read_bytes() for pid in pids):
            found = {}
            for pid in pids:
                nspid = next(
                    line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("NSpid:")
                )  # fmt: skip
                found["agent (sandbox pid 1)" if nspid.split()[-1] == "1" else "runtime"] = pid
            return found
    raise RuntimeError(f"no environment of {name} found")


def cpu_by_process(server: Server, requests: int) -> dict[str, int]:
    """Print CPU µs and times scheduled per invoke by process; return the pids looked at."""
    pids = {"ember serve": server.process.pid, **environment_pids(server, "hello")}
    pids["bench client"] = os.getpid()
    server_pid = server.process.pid

    def sample() -> dict[str, tuple[int, int]]:
        figures = {name: schedstat(pid) for name, pid in pids.items()}
        figures["ember serve: event loop thread"] = schedstat(server_pid, main_thread_only=True)
        return figures

    before = sample()
    result = load(server.host, server.port, server.invoke_request("hello"), per_caller=requests)
    after = sample()
    wall = summarize(result.latencies)
    per_invoke_us = result.elapsed_s / requests * 1e6
    print("### 1. CPU per invoke by process (schedstat)\n")
    print(f"{requests} invokes, wall per invoke {per_invoke_us:.0f} µs (p50 latency "
          f"{wall.median_ms * 1000:.0f} µs, p99 {wall.p99_ms * 1000:.0f} µs)\n")  # fmt: skip
    print("| process | CPU µs per invoke | share of wall | times scheduled in per invoke |")
    print("| --- | ---: | ---: | ---: |")
    total = 0.0
    order = ["ember serve", "ember serve: event loop thread", *list(pids)[1:]]
    for name in order:
        us = (after[name][0] - before[name][0]) / requests / 1000
        slices = (after[name][1] - before[name][1]) / requests
        total += us if name in pids else 0
        print(f"| {name} | {us:.0f} | {us / per_invoke_us:.0%} | {slices:.1f} |")
    print(f"| all four processes | {total:.0f} | {total / per_invoke_us:.0%} | |\n")
    return {k: v for k, v in pids.items() if k != "bench client"}


def perf_profile(server: Server, pids: dict[str, int], requests: int) -> None:
    perf = shutil.which("perf")
    if perf is None:
        print("### 2. perf: not installed, skipped\n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "perf.data")
        pid_list = ",".join(str(p) for p in [*pids.values(), os.getpid()])
        recorder = subprocess.Popen(
            [perf, "record", "-q", "-F", "2999", "-p", pid_list, "-o", data],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # perf attaches
        load(server.host, server.port, server.invoke_request("hello"), per_caller=requests)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        print("### 2. perf record (samples of server, agent, runtime and client)\n")
        names = {
            task.name: name if task.name == str(pid) else f"{name} (thread)"
            for name, pid in [*pids.items(), ("bench client", os.getpid())]
            for task in Path(f"/proc/{pid}/task").iterdir()
        }
        print("pids: " + ", ".join(f"{pid} = {name}" for pid, name in names.items()) + "\n")
        for sort, top in (("pid,dso", 16), ("pid,sym", 40)):
            report = subprocess.run(
                [perf, "report", "-i", data, "--stdio", "--sort", sort, "--percent-limit", "0.7"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            lines = [line for line in report.stdout.splitlines() if line and line[0] != "#"]
            print("```\n" + "\n".join(lines[:top]) + "\n```\n")


def strace_counts(pids: dict[str, int], run: Callable[[], object], requests: int) -> None:
    """Print system calls per invoke of each process (``strace -c -f``) during ``run``."""
    strace = shutil.which("strace")
    if strace is None:
        print("### 3. strace: not installed, skipped\n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tracers = {
            name: subprocess.Popen(
                [strace, "-c", "-f", "-q", "-o", str(Path(tmp) / str(pid)), "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        }
        time.sleep(0.5)  # strace attaches
        run()
        for tracer in tracers.values():
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=60)
        print(f"### 3. System calls per invoke (`strace -c -f`, {requests} invokes; strace "
              "slows every call down, so only the counts mean something)\n")  # fmt: skip
        print("| process | syscalls per invoke | the most frequent (per invoke) |")
        print("| --- | ---: | --- |")
        for name, pid in pids.items():
            counts = _strace_summary(Path(tmp) / str(pid))
            total = counts.pop("total", 0)
            top = sorted(counts.items(), key=lambda item: -item[1])[:7]
            listed = ", ".join(f"{call} {n / requests:.1f}" for call, n in top)
            print(f"| {name} | {total / requests:.1f} | {listed} |")
        print()


def _strace_summary(path: Path) -> dict[str, int]:
    """``{syscall: calls}`` and ``total`` from a ``strace -c`` summary table."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1].isidentifier() and fields[3].isdigit():
            counts[fields[-1]] = int(fields[3])
    return counts


def cprofile_server(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "server.prof"
        prefix = [sys.executable, "-m", "bench.cprofile_hook", str(out), "-m"]
        with ember_server(argv_prefix=prefix) as server:
            server.create_function("hello")
            request = server.invoke_request("hello")
            load(server.host, server.port, request, per_caller=200)
            server.process.send_signal(signal.SIGUSR1)  # profile from here...
            time.sleep(0.2)
            started = time.perf_counter()
            load(server.host, server.port, request, per_caller=requests)
            elapsed = time.perf_counter() - started
            server.process.send_signal(signal.SIGUSR2)  # ...to here
            deadline = time.monotonic() + 30
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        stats = pstats.Stats(str(out))
    print("### 4. cProfile of the `ember serve` process (main thread, measured invokes only)\n")
    print(f"wall per invoke under cProfile: {elapsed / requests * 1e6:.0f} µs\n")
    entries = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table here
    rows = [
        (f"{Path(file).name}:{line}({func})", calls, tottime, cumtime)
        for (file, line, func), (_, calls, tottime, cumtime, _) in entries.items()
    ]
    print("Most own time:\n\n| function | calls per invoke | own µs per invoke | cum µs per "
          "invoke |\n| --- | ---: | ---: | ---: |")  # fmt: skip
    for name, calls, tottime, cumtime in sorted(rows, key=lambda r: -r[2])[:25]:
        print(f"| `{name}` | {calls / requests:.1f} | {tottime / requests * 1e6:.1f} | "
              f"{cumtime / requests * 1e6:.1f} |")  # fmt: skip
    ember_rows = [
        (k, calls, cumtime)
        for (file, line, func), (_, calls, _, cumtime, _) in entries.items()
        if "/ember/" in file and (k := f"{Path(file).parent.name}/{Path(file).name}:{func}")
    ]
    print("\nEmber's functions by cumulative time (awaits included: a coroutine's cumulative "
          "time counts only its own steps):\n\n| function | calls per invoke | cum µs per "
          "invoke |\n| --- | ---: | ---: |")  # fmt: skip
    for name, calls, cumtime in sorted(ember_rows, key=lambda r: -r[2])[:25]:
        print(f"| `{name}` | {calls / requests:.1f} | {cumtime / requests * 1e6:.1f} |")
    print()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few invokes: a smoke run")
    parser.add_argument("--requests", type=int, help="invokes per phase (3000)")
    parser.add_argument("--no-perf", action="store_true", help="skip the perf phase")
    parser.add_argument("--no-strace", action="store_true", help="skip the strace phase")
    parser.add_argument("--no-cprofile", action="store_true", help="skip the cProfile phase")
    args = parser.parse_args(argv)
    requests = args.requests or quick_or(args, 3000, 300)

    header("Profile of the warm path (bench/profile_warm.py)")
    with ember_server() as server:
        server.create_function("hello")
        load(server.host, server.port, server.invoke_request("hello"), per_caller=200)
        pids = cpu_by_process(server, requests)
        if not args.no_perf:
            perf_profile(server, pids, requests)
        if not args.no_strace:
            request = server.invoke_request("hello")
            traced = max(1, requests // 3)
            strace_counts(
                pids, lambda: load(server.host, server.port, request, per_caller=traced), traced
            )
    if not args.no_cprofile:
        cprofile_server(requests)
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    main()
