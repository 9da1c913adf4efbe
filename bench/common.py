"""What every benchmark script shares: a real ``ember serve``, signing, clients, floors.

Scope: run by hand only (``python -m bench.<script>``), never by the test suite. Every
server and floor process is started here on loopback (port 0), with a temporary data dir
and fixed dummy credentials, and stopped on the way out. Importing this module sets
``AWS_EC2_METADATA_DISABLED`` before anything can import boto3 (the network rule: boto3
never looks beyond loopback).

Invariants:
- figures are client-observed wall times (``time.perf_counter``) in seconds; the reports
  show milliseconds: median and p99 (nearest rank), always next to a floor of the same run;
- requests to Ember are SigV4-signed with ``ember.sigv4.sign_headers`` (boto3 is used only
  where a case says "boto3"); a signed request stays valid for the server's 5 min skew,
  so each measured phase signs its request afresh;
- the raw client is ``bench/client.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.sigv4 import AMZ_DATE_FORMAT, sign_headers

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # before any import of boto3

KEY, SECRET, REGION = "AKIAEMBERBENCH000000", "ember-bench-secret-key", "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/bench"
READY = re.compile(r"Ember listening on http://([\d.]+):(\d+)")
HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
NOOP = "def handler(event, context):\n    return None\n"
SLEEP_1S = "import time\n\ndef handler(event, context):\n    time.sleep(1)\n    return None\n"
CGROUP_V2 = Path("/sys/fs/cgroup/ember")
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory/ember")
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
# Settings a benchmark server always gets: environments live for the whole run, and a
# memory budget (when the server has that setting) never evicts one mid-measurement.
SERVER_ENV = {"EMBER_KEEP_ALIVE_SECONDS": "3600", "EMBER_MEMORY_BUDGET_MB": "1000000"}


# ---------------------------------------------------------------- figures


@dataclass(frozen=True)
class Summary:
    """Median and p99 of a set of samples, in milliseconds."""

    n: int
    median_ms: float
    p99_ms: float
    max_ms: float

    def row(self, case: str, floor: Summary | None = None) -> str:
        """A markdown table row: case | median | p99 | n | median ÷ floor median."""
        ratio = f"{self.median_ms / floor.median_ms:.2f}x" if floor else ""
        return f"| {case} | {self.median_ms:.3f} | {self.p99_ms:.3f} | {self.n} | {ratio} |"


TABLE_HEAD = (
    "| case | median ms | p99 ms | n | median / floor |\n| --- | ---: | ---: | ---: | ---: |"
)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (``q`` in 0..1)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples_s: list[float]) -> Summary:
    if not samples_s:
        raise ValueError("no samples")
    ms = sorted(s * 1000 for s in samples_s)
    return Summary(len(ms), percentile(ms, 0.5), percentile(ms, 0.99), ms[-1])


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def header(title: str) -> None:
    """Print what the figures below depend on: when, where, how busy the machine was."""
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(f"## {title}\n\n{now}, {os.cpu_count()} CPUs, load average {load_average()}\n")


# ---------------------------------------------------------------- floors


def python_spawn_floor(repeat: int) -> list[float]:
    """``/usr/bin/python3 -c pass``: a fresh interpreter, start to exit."""
    return timed(lambda: subprocess.run(["/usr/bin/python3", "-c", "pass"], check=True), repeat)


def fork_floor(repeat: int) -> list[float]:
    """``os.fork`` of this running interpreter, the child exits at once, reaped."""

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    return timed(fork, repeat)


def floor_request(host: str, port: int) -> bytes:
    """What the clients send to the floor server: a small POST, as to an invoke."""
    return f"POST /invoke HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 2\r\n\r\n{{}}".encode()


@contextlib.contextmanager
def floor_server(delay_ms: int = 0) -> Iterator[tuple[str, int]]:
    """A trivial keep-alive HTTP server (``bench/floor_server.py``) in its own process."""
    argv = [sys.executable, "-m", "bench.floor_server", "--delay-ms", str(delay_ms)]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[-1])
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---------------------------------------------------------------- the server


def function_zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16  # readable by the sandbox's uid 993
        archive.writestr(info, source)
    return buffer.getvalue()


@dataclass
class Server:
    """One running ``ember serve`` and what the scripts need to talk to it."""

    process: subprocess.Popen[str]
    host: str
    port: int
    data_dir: Path
    clients: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cgroup_prefix(self) -> str:
        """The mark in this server's sandbox cgroup names (see ``namespace.py``)."""
        scratch = str(self.data_dir.resolve() / "sandboxes")
        return hashlib.sha256(scratch.encode()).hexdigest()[:8] + "-"

    def sandbox_cgroups(self) -> list[Path]:
        """This server's sandbox cgroups now (memory controller; pooled ones included)."""
        parent = CGROUP_V2 if CGROUP_V2.is_dir() else CGROUP_V1_MEMORY
        if not parent.is_dir():
            return []
        return [d for d in parent.iterdir() if d.name.startswith(self.cgroup_prefix)]

    def wait_for_sandboxes(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until this server has ``count`` sandbox cgroups, each holding two processes
        (pid 1 and the runtime, or a pre-started sandbox's runtime template): a refilled
        warm pool."""
        deadline = time.monotonic() + timeout_s
        while not self._sandboxes_up(count):
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} sandboxes up after {timeout_s} s")
            time.sleep(0.005)

    def _sandboxes_up(self, count: int) -> bool:
        cgroups = self.sandbox_cgroups()
        try:
            procs = [len((c / "cgroup.procs").read_text().split()) for c in cgroups]
        except OSError:  # one went away meanwhile
            return False
        return len(cgroups) >= count and all(n >= 2 for n in procs)

    def timed_invoke(self, conn: http.client.HTTPConnection, name: str) -> float:
        """One signed invoke on a kept-alive connection; seconds from send to full body."""
        path = INVOKE_PATH.format(name=name)
        headers = self.signed("POST", path, b"{}")
        start = time.perf_counter()
        conn.request("POST", path, body=b"{}", headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200 or response.getheader("X-Amz-Function-Error"):
            raise RuntimeError(f"invoke {name}: {response.status} {data[:300]!r}")
        return elapsed

    def signed(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        """Headers for one request, signed now as botocore would sign it."""
        headers = {"Host": f"{self.host}:{self.port}", "Content-Type": "application/json"}
        amz_date = time.strftime(AMZ_DATE_FORMAT, time.gmtime())
        return sign_headers(
            method, path, "", headers, body, KEY, SECRET, REGION, "lambda", amz_date
        )

    def raw_request(self, method: str, path: str, body: bytes = b"") -> bytes:
        """The bytes of one signed HTTP/1.1 keep-alive request, for ``load``."""
        headers = {**self.signed(method, path, body), "Content-Length": str(len(body))}
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def invoke_request(self, name: str, payload: bytes = b"{}") -> bytes:
        """A signed invoke of ``name``, as raw request bytes."""
        return self.raw_request("POST", INVOKE_PATH.format(name=name), payload)

    def call(self, method: str, path: str, body: bytes = b"") -> Any:
        """One signed control-plane request on a fresh connection; the decoded JSON."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=self.signed(method, path, body))
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 300 or response.getheader("X-Amz-Function-Error"):
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data) if data else None

    def create_function(self, name: str, source: str = HELLO, memory_mb: int = 128) -> None:
        """CreateFunction (python3.11, ``app.handler``), then wait until it is Active."""
        code = base64.b64encode(function_zip(source)).decode()
        body = {
            "FunctionName": name,
            "Runtime": "python3.11",
            "Role": ROLE,
            "Timeout": 30,
            "Handler": "app.handler",
            "MemorySize": memory_mb,
            "Code": {"ZipFile": code},
        }
        self.call("POST", "/2015-03-31/functions", json.dumps(body).encode())
        deadline = time.monotonic() + 60
        while self.call("GET", f"/2015-03-31/functions/{name}/configuration")["State"] != "Active":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become Active")
            time.sleep(0.002)
        self.wait_for_pools(deadline)

    def wait_for_pools(self, deadline: float) -> None:
        """Until every warm pool holds what it aims for (a new runtime's pool fills in the
        background after its calibration start: measurements start from a full pool)."""
        while time.monotonic() < deadline:
            pools = self.call("GET", "/ember/statistics")["pools"].values()
            if all(p["ready"] >= p.get("target", 0) and not p["refilling"] for p in pools):
                return
            time.sleep(0.05)

    def boto3(self, service: str = "lambda") -> Any:
        client = boto3_client(self.url, service)
        self.clients.append(client)
        return client


def boto3_client(url: str, service: str = "lambda") -> Any:
    """A boto3 client for ``url`` (loopback) with the bench's dummy credentials, no retries."""
    import boto3  # noqa: PLC0415 - after AWS_EC2_METADATA_DISABLED is set above
    from botocore.config import Config  # noqa: PLC0415 - same

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=50, read_timeout=60),
    )


@contextlib.contextmanager
def ember_server(
    env: dict[str, str] | None = None,
    argv_prefix: list[str] | None = None,
    sandbox: str = "namespace",
) -> Iterator[Server]:
    """``ember serve`` on a free loopback port, temporary data dir, namespace backend.

    ``argv_prefix`` replaces ``[python, -m]`` before ``ember.cli.main`` (a profiler).
    """
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as data_dir:
        environment = {**os.environ, **SERVER_ENV, **(env or {})}
        environment |= {"EMBER_ACCESS_KEY_ID": KEY, "EMBER_SECRET_ACCESS_KEY": SECRET}
        argv = [*(argv_prefix or [sys.executable, "-m"]), "ember.cli.main", "serve"]
        argv += ["--port", "0", "--data-dir", data_dir, "--sandbox", sandbox]
        process = subprocess.Popen(
            argv, env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        server = _wait_ready(process, Path(data_dir))
        try:
            yield server
        finally:
            for client in server.clients:
                client.close()
            process.terminate()
            process.wait(timeout=60)


def _wait_ready(process: subprocess.Popen[str], data_dir: Path) -> Server:
    assert process.stderr is not None
    for line in process.stderr:
        if match := READY.search(line):
            threading.Thread(target=process.stderr.read, daemon=True).start()  # drain it
            return Server(process, match.group(1), int(match.group(2)), data_dir)
    raise RuntimeError(f"ember serve did not start (exit {process.wait()})")


def quick_or(args: Any, full: int, quick: int) -> int:
    return quick if getattr(args, "quick", False) else full
