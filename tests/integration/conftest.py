"""A real ``ember serve`` per test module, driven with boto3 over loopback."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from ember.sigv4 import sign_headers

ACCESS_KEY = "AKIAEMBERTESTADMIN01"
SECRET_KEY = "ember-test-secret-key-0123456789abcdefgh"
READY = re.compile(r"Ember listening on (http://\S+)")


@dataclass
class EmberServer:
    """One running server process and where it keeps its data."""

    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    clients: list[Any] = field(default_factory=list)  # closed by stop()

    def client(self, service: str = "lambda", **config: Any) -> Any:
        """A boto3 client for this server; ``stop()`` closes it (and its pooled sockets)."""
        client = boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 1},  # never retry quietly
                read_timeout=120,
                **config,
            ),
        )
        self.clients.append(client)
        return client

    def stop(self, sig: int = signal.SIGTERM) -> int:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        status = self.process.wait(timeout=30)
        if self.reader is not None:
            self.reader.join(timeout=30)  # closes the stderr pipe at its end
        return status


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> EmberServer:
    """Start ``ember serve`` on a free port and wait for its readiness line."""
    environment = {
        **os.environ,
        "EMBER_ACCESS_KEY_ID": ACCESS_KEY,
        "EMBER_SECRET_ACCESS_KEY": SECRET_KEY,
        "EMBER_KEEP_ALIVE_SECONDS": "600",
        # not the machine-sized default: every test server would pre-start a hundred
        "EMBER_SANDBOX_POOL_SIZE": "3",
        **(env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ember.cli.main",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return wait_until_listening(process, data_dir)


def wait_until_listening(process: subprocess.Popen[str], data_dir: Path) -> EmberServer:
    """Read a started ``ember serve``'s log (kept, on a thread) until it says it listens."""
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                output.append(line)
                lines.put(line)
        lines.put("")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while True:
        line = lines.get(timeout=60)
        if not line:
            raise RuntimeError("ember serve exited early:\n" + "".join(output))
        if match := READY.search(line):
            return EmberServer(process, match.group(1), data_dir, output, reader)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    running = start_server(tmp_path_factory.mktemp("ember-data"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lambda_client(server: EmberServer) -> Any:
    return server.client()


def signed_headers(
    server: EmberServer,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    *,
    age_s: float = 0.0,
) -> dict[str, str]:
    """SigV4 headers for a raw request to ``server`` with the admin keys (``age_s`` back-dates)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - age_s))
    host = {"Host": server.url.removeprefix("http://")}
    return sign_headers(method, path, query, host, body, ACCESS_KEY, SECRET_KEY,
                        "us-east-1", "lambda", stamp)  # fmt: skip
