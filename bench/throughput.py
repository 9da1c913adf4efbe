"""Throughput of a no-op function at concurrency 1, 4, 8 and 32 (issue 4).

    python -m bench.throughput [--quick] [--seconds 5] [--concurrency 1 4 8 32]

For each concurrency c: c keep-alive connections from one asyncio (uvloop) client, each
sending signed invokes back to back for ``--seconds``, after a warm-up of the same shape
(which also starts the c environments: one environment runs one invoke at a time).
Reported: invokes/s, and each invoke's latency (median, p99).

Also measured: ``GET /health`` on Ember at c = 8, its HTTP edge with no invoke (the
ceiling of anything routed through it). Floor of the same run: the same client, same
concurrency, against ``bench/floor_server.py`` (a trivial keep-alive server): the client's
own ceiling on this machine, with the floor server taking a CPU share as Ember would.
Target (issue 4): >= 3,000 invokes/s at c = 8.
"""

from __future__ import annotations

import argparse

from bench.client import load
from bench.common import ember_server, floor_request, floor_server, header, load_average, summarize

TARGET_C, TARGET_RATE = 8, 3000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s per level: a smoke run")
    parser.add_argument("--seconds", type=float, help="measured time per level (5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 32])
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    warmup = min(1.0, seconds)

    header("Throughput (bench/throughput.py)")
    floors = {}
    with floor_server() as (host, port):
        request = floor_request(host, port)
        for c in args.concurrency:
            load(host, port, request, c, seconds=warmup)
            floors[c] = load(host, port, request, c, seconds=seconds)
    print("| c | client ceiling (trivial server) req/s | Ember invokes/s | Ember / ceiling "
          "| Ember p50 ms | Ember p99 ms | n |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rates = {}
    with ember_server() as server:
        server.create_function("noop", "def handler(event, context):\n    return None\n")
        for c in args.concurrency:
            load(server.host, server.port, server.invoke_request("noop"), c, seconds=warmup)
            result = load(
                server.host, server.port, server.invoke_request("noop"), c, seconds=seconds
            )
            rates[c] = result.rate
            figures = summarize(result.latencies)
            print(
                f"| {c} | {floors[c].rate:,.0f} | {result.rate:,.0f} | "
                f"{result.rate / floors[c].rate:.2f} | {figures.median_ms:.3f} | "
                f"{figures.p99_ms:.3f} | {figures.n} |"
            )
        edge = load(server.host, server.port, server.raw_request("GET", "/health"), TARGET_C,
                    seconds=seconds)  # fmt: skip
    print(f"\nEmber's HTTP edge alone (`GET /health`, c = {TARGET_C}): {edge.rate:,.0f} req/s")
    print(f"load average after the run: {load_average()}")
    if TARGET_C in rates:
        met = "met" if rates[TARGET_C] >= TARGET_RATE else "NOT met"
        print(f"target (>= {TARGET_RATE:,.0f} invokes/s at c = {TARGET_C}): {met} "
              f"({rates[TARGET_C]:,.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
