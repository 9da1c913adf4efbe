"""Cold start: the first invoke of a newly created python hello function (issues 3 and 4).

    python -m bench.cold_start [--quick] [--hit 100] [--miss 40] [--exec 15] [--gap-ms 100]

Client-observed over HTTP: one signed invoke on a kept-alive connection, from sending the
request to the last byte of the response, for a function created just before (Active, no
environment yet). Full namespace sandbox, three server configurations in turn:

- pool hit (the default settings): before each start the script waits until the warm
  pool is back to ``EMBER_SANDBOX_POOL_SIZE`` (3) pre-started sandboxes (it counts the
  server's sandbox cgroups), then ``--gap-ms`` more (the pool is made at a server's first
  start, so one uncounted start comes first);
- pool miss: ``EMBER_SANDBOX_POOL_SIZE=0``: a sandbox is forked from the zygote on demand;
- exec path: ``EMBER_SANDBOX_ZYGOTE=0``: launcher, agent and runtime are fresh interpreters.

Floors of the same run: ``/usr/bin/python3 -c pass`` (spawn of a fresh interpreter) and a
fork of this running interpreter (child exits at once, reaped). Target (issue 3): pool hit
p50 <= 10 ms, p99 <= 25 ms.
"""

from __future__ import annotations

import argparse
import http.client
import time

from bench.common import (
    TABLE_HEAD,
    Server,
    Summary,
    ember_server,
    fork_floor,
    header,
    load_average,
    python_spawn_floor,
    quick_or,
    summarize,
)

POOL_SIZE = 3  # the server's default EMBER_SANDBOX_POOL_SIZE
TARGET_P50_MS, TARGET_P99_MS = 10.0, 25.0


def cold_starts(server: Server, count: int, gap_s: float, pooled: bool) -> list[float]:
    """``count`` functions created one at a time, each invoked once on the same connection."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    samples = []
    try:
        if pooled:  # the pool is made (and filled) at a server's first start: not counted
            server.create_function("prime")
            server.timed_invoke(conn, "prime")
        for index in range(count):
            name = f"cold-{index}"
            server.create_function(name)
            if pooled:  # every earlier start holds one sandbox; the pool holds the rest
                server.wait_for_sandboxes(1 + index + POOL_SIZE)
            time.sleep(gap_s)
            samples.append(server.timed_invoke(conn, name))
    finally:
        conn.close()
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument("--hit", type=int, help="cold starts from a full warm pool (100)")
    parser.add_argument("--miss", type=int, help="cold starts with no pool (40)")
    parser.add_argument("--exec", type=int, help="cold starts on the exec path (15)")
    parser.add_argument("--gap-ms", type=int, default=100, help="quiet time before each start")
    args = parser.parse_args(argv)
    hit = args.hit if args.hit is not None else quick_or(args, 100, 15)
    miss = args.miss if args.miss is not None else quick_or(args, 40, 8)
    exec_ = args.exec if args.exec is not None else quick_or(args, 15, 4)

    header("Cold start (bench/cold_start.py)")
    spawn = summarize(python_spawn_floor(quick_or(args, 30, 10)))
    fork = summarize(fork_floor(quick_or(args, 300, 50)))
    rows = [
        ("floor: `/usr/bin/python3 -c pass`", spawn),
        ("floor: fork of a running interpreter", fork),
    ]
    configurations = [
        ("pool hit (defaults: pool of 3)", {}, hit, True),
        ("pool miss (`EMBER_SANDBOX_POOL_SIZE=0`)", {"EMBER_SANDBOX_POOL_SIZE": "0"}, miss, False),
        ("exec path (`EMBER_SANDBOX_ZYGOTE=0`)", {"EMBER_SANDBOX_ZYGOTE": "0"}, exec_, False),
    ]
    measured: dict[str, Summary] = {}
    for case, env, count, pooled in configurations:
        if count > 0:
            with ember_server(env) as server:
                measured[case] = summarize(cold_starts(server, count, args.gap_ms / 1000, pooled))
                rows.append((case, measured[case]))
    print(TABLE_HEAD)
    for case, figures in rows:
        print(figures.row(case, spawn))
    print(f"\nload average after the run: {load_average()}")
    if (hit_figures := measured.get(configurations[0][0])) is not None:
        met = hit_figures.median_ms <= TARGET_P50_MS and hit_figures.p99_ms <= TARGET_P99_MS
        print(
            f"target (pool hit p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms): "
            f"{'met' if met else 'NOT met'} (p50 {hit_figures.median_ms:.1f} ms = "
            f"{hit_figures.median_ms / fork.median_ms:.1f}x the fork floor, "
            f"p99 {hit_figures.p99_ms:.1f} ms)"
        )


if __name__ == "__main__":
    main()
