"""Cold-start cost of outbound network (tag ``ember:network=outbound``: a slirp4netns per
sandbox) against a loopback-only start, interleaved so both see the same machine noise.

Run by hand (never in the test suite), as root (namespace backend):

    .venv/bin/python -m bench.network_cold_start [--cold 30] [--no-zygote]

It starts its own ``ember serve`` (helpers of ``invoke_latency.py``) and creates
``--cold`` functions of each kind, alternating; each one's first invoke is a cold start.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import tempfile
import time
from pathlib import Path

from bench.invoke_latency import (
    ROLE,
    hello_zip,
    request,
    start_server,
    summary,
)


def create(conn: http.client.HTTPConnection, name: str, networked: bool) -> None:
    spec = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(hello_zip()).decode()},
    }
    if networked:
        spec["Tags"] = {"ember:network": "outbound"}
    request(conn, "POST", "/2015-03-31/functions", json.dumps(spec).encode())
    path = f"/2015-03-31/functions/{name}"
    while json.loads(request(conn, "GET", path))["Configuration"]["State"] != "Active":
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=30)
    parser.add_argument("--no-zygote", action="store_true", help="the exec path (no pre-warm)")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"loopback only": [], "ember:network=outbound": []}
    with tempfile.TemporaryDirectory() as data_dir:
        process, host, port = start_server(Path(data_dir), "namespace", not args.no_zygote)
        try:
            conn = http.client.HTTPConnection(host, port)
            for index in range(args.cold):
                for kind, networked in (("loopback only", False), ("ember:network=outbound", True)):
                    name = f"{'net' if networked else 'lo'}-{index}"
                    create(conn, name, networked)
                    time.sleep(0.2)  # let the warm pool refill: each start finds one ready
                    start = time.perf_counter()
                    request(conn, "POST", f"/2015-03-31/functions/{name}/invocations", b"{}")
                    samples[kind].append(time.perf_counter() - start)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"{'cold start (first invoke)':<30}  {'median ms':>10}  {'p99 ms':>10}  {'n':>4}")
    for kind, values in samples.items():
        figures = summary(values)
        print(
            f"{kind:<30}  {figures['median_ms']:>10.3f}  {figures['p99_ms']:>10.3f}  "
            f"{int(figures['n']):>4}"
        )


if __name__ == "__main__":
    main()
