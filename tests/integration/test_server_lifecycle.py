"""The server as a process: graceful and abrupt shutdown, logs read back with ``ember logs``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    EmberServer,
    signed_headers,
    start_server,
)
from tests.integration.functions import HELLO
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import body, invoke


def host_pids_of(environment: str) -> list[int]:
    """Host pids of the processes whose environment names this log stream (root reads all)."""
    marker = f"AWS_LAMBDA_LOG_STREAM_NAME={environment}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def wait_for_exit(pid: int, timeout_s: float = 30) -> bool:
    """True once process ``pid`` has ended (event-driven through a pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout_s)
        return bool(readable)
    finally:
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_server_leaves_no_function_process(tmp_path: Path, sig: int) -> None:
    server = start_server(tmp_path)
    try:
        client = server.client()
        create(client, "lingering", HELLO)
        environment = body(invoke(client, "lingering", {}))["environment"]
        pids = host_pids_of(environment)
        assert pids, "the runtime process should be visible on the host"
    finally:
        status = server.stop(sig)
    assert status == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    for pid in pids:
        assert wait_for_exit(pid), f"runtime {pid} outlived the server ({signal.Signals(sig).name})"
    if sig != signal.SIGKILL:
        assert any("stopped" in line for line in server.output)


def test_ember_logs_prints_the_function_log(server: EmberServer) -> None:
    client = server.client()
    create(client, "logged", HELLO)
    response = invoke(client, "logged", {"name": "reader"})
    request_id = response["ResponseMetadata"]["RequestId"]
    result = subprocess.run(
        [sys.executable, "-m", "ember.cli.main", "logs", "logged", "--endpoint", server.url],
        env={
            **os.environ,
            "EMBER_ACCESS_KEY_ID": ACCESS_KEY,
            "EMBER_SECRET_ACCESS_KEY": SECRET_KEY,
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = result.stdout
    assert "INIT_START Runtime Version: python:3.11.v1" in out
    assert "init ran\n" in out
    assert f"START RequestId: {request_id} Version: $LATEST\n" in out
    assert "hello from the handler\n" in out
    assert f"END RequestId: {request_id}\n" in out
    assert f"REPORT RequestId: {request_id}\tDuration: " in out
    assert out.index("START RequestId") < out.index("hello from the handler") < out.index("END")


def test_an_expired_signature_is_refused(server: EmberServer) -> None:
    headers = signed_headers(server, "GET", "/2015-03-31/functions/", age_s=3600)
    request = urllib.request.Request(f"{server.url}/2015-03-31/functions/", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request)
    with excinfo.value as error:
        assert error.code == 403
        assert error.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
        assert "Signature expired" in json.load(error)["Message"]
