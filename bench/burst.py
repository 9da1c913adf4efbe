"""Burst: N concurrent invokes of a function that sleeps 1 s, from zero environments (issue 4).

    python -m bench.burst [--quick] [--invokes 100] [--runs 3]

Each run creates a new function (so it has no environment), opens N connections at once
and sends one signed invoke on each. Each latency runs from the start of the burst (the
connects included) to that invoke's response; the run's wall time is until the last one.
Every environment must be created for the burst: N cold starts in parallel, then 1 s of
sleep each.

Between runs: each run's function is deleted after its burst (its environments are
stopped), and the next run starts only once the server holds no environment any more
(``/ember/statistics``: none idle or busy, no sandbox cgroup but the warm pool's), its
warm pool is done refilling, and the machine is quiet (the kernel's teardown of the
stopped sandboxes, memory cgroups and network namespaces, is done: less than a quarter
of the CPUs busy over 0.25 s, or 20 s passed; the wait is printed). Without it a run pays
for the previous run's 100 environments: their teardown keeps the kernel busy during the
next burst. Nothing is pre-created for the measured function: every run starts from zero
environments of it. The warm pool holds generic pre-started sandboxes (no function's
code): its default size (``EMBER_SANDBOX_POOL_SIZE``: 4 % of the machine's memory, 107 on
a 24 GiB machine), filled once the first function of the runtime was created (its
calibration start, ``sandbox/calibration.py``); each run waits for the pool to be full;
after a burst it grows to the burst's size for a minute (``EMBER_SANDBOX_POOL_MAX``,
``sandbox/pool_demand.py``). The pool's size at each burst is printed. Run 1 is a
server's first burst; ``EMBER_SANDBOX_POOL_SIZE=3 python -m bench.burst`` shows a burst
served mostly by sandboxes pre-started on demand.

Floor of the same run: the same burst against ``bench/floor_server.py --delay-ms 1000``
(every answer after 1 s: the client's and the loopback's share of a burst). Target
(issue 4): all 100 complete within 1.5 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.client import load
from bench.common import (
    SLEEP_1S,
    TABLE_HEAD,
    Server,
    ember_server,
    floor_request,
    floor_server,
    header,
    load_average,
    quick_or,
    summarize,
)

TARGET_S = 1.5
QUIET_WINDOW_S = 0.25
QUIET_BUSY = 0.25  # share of all CPUs busy in a window, below which the machine is quiet
SETTLE_TIMEOUT_S = 20.0


def cpu_busy_share(window_s: float) -> float:
    """The share of all CPUs busy (not idle, not waiting for I/O) over ``window_s``."""

    def counters() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total_0, idle_0 = counters()
    time.sleep(window_s)
    total_1, idle_1 = counters()
    return 1 - (idle_1 - idle_0) / max(1, total_1 - total_0)


def server_busy(server: Server) -> bool:
    """Whether the server still holds an environment, a sandbox cgroup beyond the warm
    pool's pre-started sandboxes (one being torn down), or a warm pool short of its target
    (refilling, or growing after the burst: ``sandbox/pool_demand.py``)."""
    stats = server.call("GET", "/ember/statistics")
    placement, pools = stats["placement"], stats["pools"].values()
    pooled = sum(pool["ready"] + pool["refilling"] for pool in pools)
    filling = any(pool["refilling"] or pool["ready"] < pool.get("target", 0) for pool in pools)
    return (
        placement["idle"] + placement["busy"] > 0
        or len(server.sandbox_cgroups()) > pooled
        or filling
    )


def pooled_sandboxes(server: Server) -> int:
    """The warm pools' pre-started sandboxes now (``/ember/statistics``)."""
    pools = server.call("GET", "/ember/statistics")["pools"].values()
    return sum(pool["ready"] for pool in pools)


def settle(server: Server, name: str) -> float:
    """Delete ``name``, wait until its environments are gone and the machine is quiet
    (at most ``SETTLE_TIMEOUT_S``); returns the seconds waited."""
    started = time.monotonic()
    server.call("DELETE", f"/2015-03-31/functions/{name}")
    deadline = started + SETTLE_TIMEOUT_S
    while server_busy(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    while cpu_busy_share(QUIET_WINDOW_S) > QUIET_BUSY and time.monotonic() < deadline:
        pass
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run: a smoke run")
    parser.add_argument("--invokes", type=int, default=100, help="concurrent invokes (100)")
    parser.add_argument("--runs", type=int, help="bursts, each on a new function (3)")
    args = parser.parse_args(argv)
    runs = args.runs or quick_or(args, 3, 1)
    n = args.invokes

    header(f"Burst of {n} (bench/burst.py)")
    with floor_server(delay_ms=1000) as (host, port):
        request = floor_request(host, port)
        floor_result = load(host, port, request, n, per_caller=1, burst=True)
    floor = summarize(floor_result.latencies)
    print(TABLE_HEAD)
    print(floor.row(f"floor: {n} at once -> trivial server answering after 1 s", floor))
    walls: list[float] = []
    settled: list[float] = []
    pooled: list[int] = []
    with ember_server() as server:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        for run in range(runs):
            name = f"sleepy-{run}"
            server.create_function(name, SLEEP_1S)
            while server_busy(server) and time.monotonic() < deadline:
                time.sleep(0.05)  # the function's creation filled the warm pool
            while cpu_busy_share(QUIET_WINDOW_S) > QUIET_BUSY and time.monotonic() < deadline:
                pass  # the server's start (zygote) and the function's creation are done
            pooled.append(pooled_sandboxes(server))
            result = load(
                server.host, server.port, server.invoke_request(name), n, per_caller=1, burst=True
            )
            walls.append(result.elapsed_s)
            figures = summarize(result.latencies)
            print(figures.row(f"run {run + 1}: {n} at once -> Ember, new function", floor))
            settled.append(settle(server, name))
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
    print(f"\nload average after the run: {load_average()}")
    print(f"pre-started sandboxes in the warm pool when each burst began: "
          f"{', '.join(str(p) for p in pooled)}")  # fmt: skip
    print(f"after each run: function deleted, waited {', '.join(f'{w:.1f}' for w in settled)} s "
          "for its environments to go and the machine to be quiet")  # fmt: skip
    print(f"wall time of the whole burst (last response): floor {floor_result.elapsed_s:.3f} s; "
          f"Ember {', '.join(f'{w:.3f}' for w in walls)} s")  # fmt: skip
    met = "met" if max(walls) <= TARGET_S else "NOT met"
    print(f"target (all {n} within {TARGET_S} s, every run): {met}")


if __name__ == "__main__":
    main()
