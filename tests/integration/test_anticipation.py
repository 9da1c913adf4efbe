"""A function's runtime is made ready before its first invoke: on CreateFunction, and at
a server's start for the functions it stored, a calibration start (a no-op handler under
that runtime, ``sandbox/calibration.py``) records the zygote's working set and the warm
pool fills with pre-faulted sandboxes. Nothing of it is an environment, a log stream or a
metric. Through a real server with real sandboxes."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.integration.conftest import EmberServer, start_server
from tests.integration.esm_support import wait_for
from tests.integration.test_concurrency import statistics
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import invoke

POOL = 4
RECORDED = "recorded from a calibration start"
ENV = {"EMBER_SANDBOX_POOL_SIZE": str(POOL)}


def calibrated(server: EmberServer) -> int:
    return sum(RECORDED in line for line in server.output)


def python_pool(server: EmberServer) -> dict[str, int]:
    (found,) = [p for name, p in statistics(server)["pools"].items() if name != "node"]
    counts: dict[str, int] = found
    return counts


def wait_until_ready(server: EmberServer) -> None:
    wait_for(lambda: calibrated(server) == 1, 60, "the calibration start")
    wait_for(
        lambda: python_pool(server)["ready"] == POOL and not python_pool(server)["refilling"],
        60,
        "the warm pool to fill",
    )


def test_a_new_function_finds_its_runtime_ready(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env=ENV)
    try:
        client = server.client()
        create(client, "ahead")
        wait_until_ready(server)
        placement = statistics(server)["placement"]
        assert (placement["started"], placement["idle"], placement["busy"]) == (0, 0, 0)
        invoke(client, "ahead", {})  # the first invoke: from the pool, pre-faulted
        assert statistics(server)["placement"]["starts"]["prewarmed"] == 1
        with urllib.request.urlopen(f"{server.url}/metrics") as response:
            metrics = response.read().decode()
        assert 'function="ahead"' in metrics
        assert "ember-calibration" not in metrics
        logs = subprocess.run(
            [sys.executable, "-m", "ember.cli.main", "logs", "ember-calibration",
             "--endpoint", server.url], capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "START" not in logs.stdout  # no log stream of its own
        create(client, "same-runtime")  # the runtime is ready already: no second calibration
        invoke(client, "same-runtime", {})
        assert calibrated(server) == 1
    finally:
        server.stop()


def test_a_restarted_server_gets_its_stored_functions_runtimes_ready(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data", env=ENV)
    try:
        create(first.client(), "kept")
        wait_until_ready(first)
    finally:
        first.stop()
    again = start_server(tmp_path / "data", env=ENV)
    try:
        wait_until_ready(again)  # before any request
        invoke(again.client(), "kept", {})
        assert statistics(again)["placement"]["starts"]["prewarmed"] == 1
    finally:
        again.stop()


def test_stopping_the_server_while_it_gets_a_runtime_ready_leaves_nothing(
    tmp_path: Path,
) -> None:
    """SIGTERM right after CreateFunction: the calibration start or the pool's fill in
    flight is cut short, and no sandbox cgroup of this server stays behind."""
    data = tmp_path / "data"
    server = start_server(data, env={"EMBER_SANDBOX_POOL_SIZE": "40"})
    try:
        create(server.client(), "interrupted")
    finally:
        assert server.stop(signal.SIGTERM) == 0
    mark = hashlib.sha256(str((data / "sandboxes").resolve()).encode()).hexdigest()[:8]
    left = [
        d.name
        for controller in ("memory", "pids", "cpu")
        if (parent := Path("/sys/fs/cgroup") / controller / "ember").is_dir()
        for d in parent.iterdir()
        if d.name.startswith(mark)
    ]
    assert left == []
    assert not list(data.glob("calibration-*"))
