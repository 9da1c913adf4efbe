"""Asynchronous invocation: accepted Event invokes per second (durable), and dispatch rate.

Run by hand (never in the test suite):

    .venv/bin/python bench/async_throughput.py [--events 10000] [--clients 32]
        [--sandbox namespace]

It starts its own ``ember serve`` (loopback, temporary data dir, dummy credentials) and
measures, with floors from the same run:

1. accept: ``--clients`` threads, each on one raw HTTP/1.1 keep-alive connection, send
   ``--events`` signed ``InvocationType: Event`` invokes of a no-op function. Each 202
   means the event was committed with fsync (``synchronous=FULL``, group commit). The
   server runs with ``EMBER_ASYNC_WORKERS=0`` here, so nothing is dispatched while
   accepting: the figure is the accept path alone. Floors: the same clients sending
   ``DryRun`` invokes (the same parsing, signing and checks, no commit) and ``GET
   /health`` (Ember's HTTP edge, nothing else). Requests are signed once per client and
   the signature reused (SigV4 allows it within its 5-minute window), so the client's own
   signing cost does not count against the server.
2. dispatch: the server is restarted with normal settings; it loads the stored events and
   runs them (no destination). The clock runs from the restart's readiness line to an
   empty async queue (``/ember/statistics``). Floor: synchronous invokes of the same
   function from 16 concurrent raw clients (16 = the dispatcher's per-function limit).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ember.sigv4 import sign_headers

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

NOOP = "def handler(event, context):\n    return None\n"
READY = re.compile(r"Ember listening on http://([\d.]+):(\d+)")
ROLE = "arn:aws:iam::000000000000:role/bench"
KEY, SECRET = "AKIABENCHASYNC000000", "bench-secret"
PATH = "/2015-03-31/functions/noop/invocations"


class Server:
    def __init__(self, data_dir: Path, sandbox: str, **env: str) -> None:
        environment = {**os.environ, "EMBER_ACCESS_KEY_ID": KEY, "EMBER_SECRET_ACCESS_KEY": SECRET}
        argv = [sys.executable, "-m", "ember.cli.main", "serve", "--port", "0"]
        argv += ["--data-dir", str(data_dir), "--sandbox", sandbox]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            argv, env={**environment, **env}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if match := READY.search(line):
                self.ready = time.perf_counter()
                self.host, self.port = match.group(1), int(match.group(2))
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                return
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def signed(self, method: str, path: str, body: bytes, **headers: str) -> dict[str, str]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        base = {"Host": f"{self.host}:{self.port}", **headers}
        return sign_headers(method, path, "", base, body, KEY, SECRET, "us-east-1", "lambda",
                            stamp)  # fmt: skip

    def call(self, method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body, self.signed(method, path, body, **headers))
            response = connection.getresponse()
            data = response.read()
            assert response.status < 300, (response.status, data)
            return data
        finally:
            connection.close()


def noop_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16  # readable by the sandbox's uid 993
        archive.writestr(info, NOOP)
    return buffer.getvalue()


def deploy(server: Server) -> None:
    import base64  # noqa: PLC0415 - only here

    body = {
        "FunctionName": "noop", "Runtime": "python3.11", "Role": ROLE, "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(noop_zip()).decode()},
    }  # fmt: skip
    server.call("POST", "/2015-03-31/functions", json.dumps(body).encode())
    while b'"State": "Active"' not in server.call("GET", "/2015-03-31/functions/noop"):
        time.sleep(0.05)


Request = Callable[[http.client.HTTPConnection], int]


def blast(
    server: Server, clients: int, total: int, make: Callable[[], Request]
) -> dict[str, float]:
    """``total`` requests from ``clients`` keep-alive connections: rate and latency."""
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []

    def run() -> None:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        request = make()
        mine: list[float] = []
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        break
                started = time.perf_counter()
                request(connection)
                mine.append(time.perf_counter() - started)
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(run) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    ms = sorted(s * 1000 for s in latencies)
    return {
        "per_s": total / elapsed,
        "median_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))],
    }


def invoke_request(server: Server, invocation_type: str, expect: int) -> Callable[[], Request]:
    def make() -> Request:
        body = b'{"bench": true}'
        headers = server.signed("POST", PATH, body, **{"X-Amz-Invocation-Type": invocation_type})

        def request(connection: http.client.HTTPConnection) -> int:
            connection.request("POST", PATH, body, headers)
            response = connection.getresponse()
            response.read()
            assert response.status == expect, response.status
            return response.status

        return request

    return make


def health_request() -> Request:
    def request(connection: http.client.HTTPConnection) -> int:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        return response.status

    return request


def queued(server: Server) -> int:
    stats = json.loads(server.call("GET", "/ember/statistics"))
    return int(stats["async"]["queued"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sandbox", default="namespace")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}

    def record(name: str, figures: dict[str, float]) -> None:
        results[name] = figures
        shown = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
        print(f"{name}: {shown}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(Path(data_dir), args.sandbox, EMBER_ASYNC_WORKERS="0")
        try:
            deploy(server)
            n, c = args.events, args.clients
            record("floor: GET /health", blast(server, c, n, health_request))
            dry_run = invoke_request(server, "DryRun", 204)
            record("floor: DryRun invokes", blast(server, c, n, dry_run))
            event = invoke_request(server, "Event", 202)
            record("Event invokes accepted (fsync)", blast(server, c, n, event))
            commits = json.loads(server.call("GET", "/ember/statistics"))["async"]["store_commits"]
            record("group commit", {"events per fsync'd commit": n / max(commits, 1)})
        finally:
            server.stop()
        server = Server(Path(data_dir), args.sandbox)
        try:
            while queued(server) > 0:
                time.sleep(0.01)
            elapsed = time.perf_counter() - server.ready
            # every event above was accepted (the blast asserts each 202)
            record("dispatch: stored events run after a restart", {"per_s": n / elapsed})
            sync = invoke_request(server, "RequestResponse", 200)
            record("floor: sync invokes, 16 clients", blast(server, 16, min(n, 5000), sync))
        finally:
            server.stop()
    print(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
