"""Warm invoke latency at concurrency 1, over raw HTTP and over boto3 (issue 4).

    python -m bench.warm_latency [--quick] [--requests 3000]

A python hello function, already warm, invoked back to back on one keep-alive connection:
- raw HTTP: the bench's asyncio HTTP/1.1 client sending one signed request (signed once
  per phase, as a signature holds for minutes), timed from write to the last body byte;
- boto3: ``invoke`` + reading the payload (signing, botocore's parsing and urllib3 count).

Floors of the same run: the same two clients against ``bench/floor_server.py`` (a trivial
keep-alive server answering ``{}``), and ``GET /health`` on Ember (its HTTP edge and
routing, no invoke). Ember's overhead = Ember's median - the same client's floor median.
Target (issue 4): overhead <= 0.5 ms at the median over raw HTTP.
"""

from __future__ import annotations

import argparse

from bench.client import load
from bench.common import (
    TABLE_HEAD,
    boto3_client,
    ember_server,
    floor_request,
    floor_server,
    header,
    load_average,
    quick_or,
    summarize,
    timed,
)

TARGET_OVERHEAD_MS = 0.5


def boto3_samples(url: str, repeat: int) -> list[float]:
    client = boto3_client(url)
    try:

        def invoke() -> None:
            response = client.invoke(FunctionName="hello", Payload=b"{}")
            response["Payload"].read()
            assert "FunctionError" not in response

        timed(invoke, 20)  # warm-up: connection, botocore's caches
        return timed(invoke, repeat)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument("--requests", type=int, help="samples per case (3000; boto3: a third)")
    args = parser.parse_args(argv)
    raw_n = args.requests or quick_or(args, 3000, 300)
    boto_n = max(1, raw_n // 3)

    header("Warm invoke latency (bench/warm_latency.py)")
    with floor_server() as (host, port):
        request = floor_request(host, port)
        load(host, port, request, per_caller=200)  # warm-up
        raw_floor = summarize(load(host, port, request, per_caller=raw_n).latencies)
        boto_floor = summarize(boto3_samples(f"http://{host}:{port}", boto_n))
    with ember_server() as server:
        server.create_function("hello")
        health = server.raw_request("GET", "/health")
        load(server.host, server.port, health, per_caller=200)
        edge = summarize(load(server.host, server.port, health, per_caller=raw_n).latencies)
        invoke = server.invoke_request("hello")
        load(server.host, server.port, invoke, per_caller=200)  # cold start + warm-up
        raw = summarize(load(server.host, server.port, invoke, per_caller=raw_n).latencies)
        boto = summarize(boto3_samples(server.url, boto_n))

    print(TABLE_HEAD)
    print(raw_floor.row("floor: raw HTTP client -> trivial server", raw_floor))
    print(edge.row("floor: raw HTTP client -> Ember `GET /health`", raw_floor))
    print(raw.row("**warm invoke, raw HTTP (signed, keep-alive)**", raw_floor))
    print(boto_floor.row("floor: boto3 `invoke` -> trivial server", boto_floor))
    print(boto.row("**warm invoke, boto3**", boto_floor))
    overhead = raw.median_ms - raw_floor.median_ms
    print(f"\nload average after the run: {load_average()}")
    print(
        f"Ember overhead at the median: raw HTTP {overhead:.3f} ms "
        f"(p99 {raw.p99_ms - raw_floor.p99_ms:.3f} ms), boto3 "
        f"{boto.median_ms - boto_floor.median_ms:.3f} ms; of which the HTTP edge "
        f"(`/health`) {edge.median_ms - raw_floor.median_ms:.3f} ms"
    )
    met = "met" if overhead <= TARGET_OVERHEAD_MS else "NOT met"
    print(f"target (raw HTTP overhead p50 <= {TARGET_OVERHEAD_MS} ms at c = 1): {met}")


if __name__ == "__main__":
    main()
