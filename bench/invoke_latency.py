"""Cold-start and warm-invoke latency of a Python hello function, against floors.

Run by hand (never in the test suite):

    .venv/bin/python bench/invoke_latency.py [--cold 20] [--warm 500] [--sandbox process]
        [--no-zygote]

It starts its own ``ember serve`` on a free loopback port with a temporary data dir and
prints medians and p99s, with floors measured in the same run so that figures from a
noisy, shared machine can be compared as ratios:

- ``python3 -c pass``: a fresh interpreter (what any exec-per-environment design pays);
- ``os.fork`` of a running interpreter, child exits at once, parent reaps it (what any
  fork-per-environment design pays at the least);
- an in-process Python call of the same handler (what a warm invoke costs at the least);
- ``GET /health`` over the same keep-alive connection (Ember's HTTP edge with no invoke).

Warm latency is measured over raw HTTP/1.1 keep-alive (``--no-auth`` server) and over
boto3 (signed), both client-observed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from bench.common import timed

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
READY = re.compile(r"Ember listening on http://([\d.]+):(\d+)")
ROLE = "arn:aws:iam::000000000000:role/bench"


def hello_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16  # readable by the sandbox's uid 993
        archive.writestr(info, HELLO)
    return buffer.getvalue()


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"median_ms": statistics.median(ms), "p99_ms": p99, "n": len(ms)}


def bare_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def start_server(
    data_dir: Path, sandbox: str, zygote: bool
) -> tuple[subprocess.Popen[str], str, int]:
    env = {**os.environ, "EMBER_ACCESS_KEY_ID": "AKIABENCH", "EMBER_SECRET_ACCESS_KEY": "bench"}
    env["EMBER_SANDBOX_ZYGOTE"] = "1" if zygote else "0"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ember.cli.main",
            "serve",
            "--port",
            "0",
            "--no-auth",
            "--data-dir",
            str(data_dir),
            "--sandbox",
            sandbox,
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if match := READY.search(line):
            return process, match.group(1), int(match.group(2))
    raise RuntimeError("server did not start")


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> bytes:
    conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300 or response.getheader("X-Amz-Function-Error"):
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return data


def create(conn: http.client.HTTPConnection, name: str) -> None:
    body = json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.11",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(hello_zip()).decode()},
        }
    ).encode()
    request(conn, "POST", "/2015-03-31/functions", body)
    while (
        json.loads(request(conn, "GET", f"/2015-03-31/functions/{name}"))["Configuration"]["State"]
        != "Active"
    ):
        time.sleep(0.001)


def print_table(results: dict[str, dict[str, float]]) -> None:
    """One line per case: median, p99 and n, aligned."""
    width = max(len(k) for k in results)
    print(f"{'case':<{width}}  {'median ms':>10}  {'p99 ms':>10}  {'n':>6}")
    for case, figures in results.items():
        print(
            f"{case:<{width}}  {figures['median_ms']:>10.3f}  {figures['p99_ms']:>10.3f}  "
            f"{int(figures['n']):>6}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--sandbox", default="process")
    parser.add_argument(
        "--no-zygote", action="store_true", help="namespace backend: exec path (no pre-warm)"
    )
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    results["floor: /usr/bin/python3 -c pass"] = summary(
        timed(lambda: subprocess.run(["/usr/bin/python3", "-c", "pass"], check=True), 30)
    )
    results["floor: os.fork + exit + reap"] = summary(timed(bare_fork, 100))
    namespace: dict[str, Callable[[object, object], object]] = {}
    exec(HELLO, namespace)
    handler = namespace["handler"]
    results["floor: in-process handler call"] = summary(timed(lambda: handler({}, None), 10000))

    with tempfile.TemporaryDirectory() as data_dir:
        process, host, port = start_server(Path(data_dir), args.sandbox, not args.no_zygote)
        try:
            conn = http.client.HTTPConnection(host, port)
            results["floor: GET /health (keep-alive)"] = summary(
                timed(lambda: request(conn, "GET", "/health"), args.warm)
            )
            cold: list[float] = []
            for index in range(args.cold):
                name = f"cold-{index}"
                create(conn, name)
                cold += timed(
                    lambda n=name: request(  # type: ignore[misc]
                        conn, "POST", f"/2015-03-31/functions/{n}/invocations", b"{}"
                    ),
                    1,
                )
            results["cold start (new function, first invoke)"] = summary(cold)
            path = "/2015-03-31/functions/cold-0/invocations"
            timed(lambda: request(conn, "POST", path, b"{}"), 50)
            results["warm invoke, raw HTTP keep-alive"] = summary(
                timed(lambda: request(conn, "POST", path, b"{}"), args.warm)
            )
            results["warm invoke, boto3"] = boto3_warm(host, port, args.warm)
        finally:
            process.terminate()
            process.wait(timeout=30)

    print_table(results)
    warm = results["warm invoke, raw HTTP keep-alive"]["median_ms"]
    health = results["floor: GET /health (keep-alive)"]["median_ms"]
    print(
        f"\nwarm invoke overhead over the HTTP floor: {warm - health:.3f} ms "
        f"(ratio {warm / health:.2f}x)"
    )


def boto3_warm(host: str, port: int, repeat: int) -> dict[str, float]:
    import boto3  # noqa: PLC0415 - after AWS_EC2_METADATA_DISABLED is set above
    from botocore.config import Config  # noqa: PLC0415 - same

    client = boto3.client(
        "lambda",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="AKIABENCH",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}),
    )

    def call() -> bytes:
        data: bytes = client.invoke(FunctionName="cold-0", Payload=b"{}")["Payload"].read()
        return data

    timed(call, 20)
    return summary(timed(call, repeat))


if __name__ == "__main__":
    main()
