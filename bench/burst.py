"""Burst: N concurrent invokes of a function that sleeps 1 s, from zero environments (issue 4).

    python -m bench.burst [--quick] [--invokes 100] [--runs 3]

Each run creates a new function (so it has no environment), opens N connections at once
and sends one signed invoke on each. Each latency runs from the start of the burst (the
connects included) to that invoke's response; the run's wall time is until the last one.
Every environment must be created for the burst: N cold starts in parallel, then 1 s of
sleep each.

Floor of the same run: the same burst against ``bench/floor_server.py --delay-ms 1000``
(every answer after 1 s: the client's and the loopback's share of a burst). Target
(issue 4): all 100 complete within 1.5 s.
"""

from __future__ import annotations

import argparse
import time

from bench.client import load
from bench.common import (
    SLEEP_1S,
    TABLE_HEAD,
    ember_server,
    floor_request,
    floor_server,
    header,
    load_average,
    quick_or,
    summarize,
)

TARGET_S = 1.5


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
    walls = []
    with ember_server() as server:
        for run in range(runs):
            name = f"sleepy-{run}"
            server.create_function(name, SLEEP_1S)
            time.sleep(1.0)  # let the previous burst's tail (pool refill, logs) settle
            result = load(
                server.host, server.port, server.invoke_request(name), n, per_caller=1, burst=True
            )
            walls.append(result.elapsed_s)
            figures = summarize(result.latencies)
            print(figures.row(f"run {run + 1}: {n} at once -> Ember, new function", floor))
    print(f"\nload average after the run: {load_average()}")
    print(f"wall time of the whole burst (last response): floor {floor_result.elapsed_s:.3f} s; "
          f"Ember {', '.join(f'{w:.3f}' for w in walls)} s")  # fmt: skip
    met = "met" if max(walls) <= TARGET_S else "NOT met"
    print(f"target (all {n} within {TARGET_S} s, every run): {met}")


if __name__ == "__main__":
    main()
