"""Cold-start and warm-invoke latency of a Node.js hello next to a Python hello.

Run by hand (never in the test suite):

    .venv/bin/python -m bench.node_latency [--cold 15] [--warm 300] [--sandbox namespace]
        [--no-zygote] [--node-runtime nodejs20.x]

One ``ember serve`` (``--no-auth``, temporary data dir, free loopback port); every figure
is client-observed over raw HTTP/1.1 keep-alive, medians and p99s, with floors from the
same run (the machine is shared and noisy: compare ratios):

- ``node -e 0`` and ``/usr/bin/python3 -I -S -c pass``: a fresh process of each;
- ``node`` importing the runtime client's modules (no Runtime API): what the runtime's
  own start costs before any handler;
- cold start: the first invoke of a new function (sandbox, runtime start, init, invoke),
  each taken once the warm pools are refilled (``/ember/statistics``): for node, both
  ``pre-started`` (served by a node slot: node already running in the pooled sandbox)
  and ``fresh`` (node exec'ed at START: the function sets ``LANG`` to its default value,
  a startup variable, so no slot may serve it; otherwise the same function);
- warm invoke: the same function again (environment reused).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from bench.common import timed
from bench.invoke_latency import print_table, request, start_server, summary

from ember.runtimes import nodejs

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

ROLE = "arn:aws:iam::000000000000:role/bench"
PYTHON_HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
NODE_HELLO = "exports.handler = async () => ({ hello: 'world' });\n"
FRESH_ONLY = {"LANG": "en_US.UTF-8"}  # Lambda's default; set by the function: no node slot
POOL_WAIT_S = 60.0
FUNCTIONS = {
    "python3.11": ("app.py", "app.handler", PYTHON_HELLO),
    "node": ("index.js", "index.handler", NODE_HELLO),
}
CLIENT_IMPORT = (
    "import('{dir}/client.mjs').then(() => import('{dir}/loader.mjs'))"
    ".then(() => import('{dir}/runtime.mjs'))"
)


def code_zip(filename: str, source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(filename, date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16  # readable by the sandbox's uid 993
        archive.writestr(info, source)
    return buffer.getvalue()


def create(
    conn: http.client.HTTPConnection, name: str, runtime: str, env: dict[str, str] | None = None
) -> None:
    filename, handler, source = FUNCTIONS["node" if runtime.startswith("nodejs") else runtime]
    body = {"FunctionName": name, "Runtime": runtime, "Role": ROLE, "Handler": handler,
            "Code": {"ZipFile": base64.b64encode(code_zip(filename, source)).decode()},
            "Environment": {"Variables": env or {}}}  # fmt: skip
    request(conn, "POST", "/2015-03-31/functions", json.dumps(body).encode())
    path = f"/2015-03-31/functions/{name}"
    while json.loads(request(conn, "GET", path))["Configuration"]["State"] != "Active":
        time.sleep(0.001)


def invoke_path(name: str) -> str:
    return f"/2015-03-31/functions/{name}/invocations"


def pools_settled(conn: http.client.HTTPConnection) -> dict[str, dict[str, int]]:
    """Wait until no warm pool refills and each that exists has one ready; the pools."""
    deadline = time.monotonic() + POOL_WAIT_S
    while True:
        pools: dict[str, dict[str, int]] = json.loads(request(conn, "GET", "/ember/statistics"))[
            "pools"
        ]
        busy = [
            name
            for name, pool in pools.items()
            if pool["refilling"] or pool["ready"] < min(1, pool.get("target", 0))
        ]
        if not busy or time.monotonic() > deadline:
            return pools
        time.sleep(0.005)


def cold_starts(
    conn: http.client.HTTPConnection, runtime: str, label: str, n: int,
    env: dict[str, str] | None = None,
) -> tuple[list[float], int]:  # fmt: skip
    """``n`` cold starts of new functions; and how many a node slot served."""
    cold: list[float] = []
    before = pools_settled(conn).get("node", {}).get("handed_out", 0)
    for index in range(n):
        name = f"{runtime.replace('.', '-')}-{label}-{index}"
        create(conn, name, runtime, env)
        pools_settled(conn)
        cold += timed(lambda n=name: request(conn, "POST", invoke_path(n), b"{}"), 1)  # type: ignore[misc]
    after = pools_settled(conn).get("node", {}).get("handed_out", 0)
    return cold, after - before


def measure_runtime(
    conn: http.client.HTTPConnection, runtime: str, cold_n: int, warm_n: int
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    if runtime.startswith("nodejs"):
        cold, served = cold_starts(conn, runtime, "fresh", cold_n, FRESH_ONLY)
        results[f"{runtime}: cold start, fresh node (slots used: {served})"] = summary(cold)
        cold_starts(conn, runtime, "prime", 1)  # keys the node slot to this configuration
        cold, served = cold_starts(conn, runtime, "slot", cold_n)
        results[f"{runtime}: cold start, pre-started node (slots used: {served})"] = summary(cold)
    else:
        results[f"{runtime}: cold start"] = summary(cold_starts(conn, runtime, "cold", cold_n)[0])
    warm_path = invoke_path(
        f"{runtime.replace('.', '-')}-{'slot' if runtime.startswith('nodejs') else 'cold'}-0"
    )
    timed(lambda: request(conn, "POST", warm_path, b"{}"), 30)
    warm = timed(lambda: request(conn, "POST", warm_path, b"{}"), warm_n)
    results[f"{runtime}: warm invoke"] = summary(warm)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=15)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--sandbox", default="namespace")
    parser.add_argument("--no-zygote", action="store_true")
    parser.add_argument("--node-runtime", default="nodejs20.x")
    parser.add_argument("--node", default="/usr/bin/node")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    run = subprocess.run
    results["floor: node -e 0"] = summary(
        timed(lambda: run([args.node, "-e", "0"], check=True), 20)
    )
    imports = CLIENT_IMPORT.format(dir=nodejs.RUNTIME_DIR)
    results["floor: node + runtime client imports"] = summary(
        timed(lambda: run([args.node, "-e", imports], check=True), 20)
    )
    results["floor: python3 -I -S -c pass"] = summary(
        timed(lambda: run(["/usr/bin/python3", "-I", "-S", "-c", "pass"], check=True), 20)
    )
    with tempfile.TemporaryDirectory() as data_dir:
        process, host, port = start_server(Path(data_dir), args.sandbox, not args.no_zygote)
        try:
            conn = http.client.HTTPConnection(host, port)
            results["floor: GET /health (keep-alive)"] = summary(
                timed(lambda: request(conn, "GET", "/health"), args.warm)
            )
            for runtime in ("python3.11", args.node_runtime):
                results.update(measure_runtime(conn, runtime, args.cold, args.warm))
        finally:
            process.terminate()
            process.wait(timeout=30)

    print_table(results)


if __name__ == "__main__":
    main()
