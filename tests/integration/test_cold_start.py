"""Cold starts from pre-warmed zygotes, through a real server: path taken, fallback, parity.

Which path started a sandbox is read from inside it: a zygote's child (pid 1) and a
runtime forked from it carry the zygote's command line (``ember.sandbox.zygote``); the
exec path's pid 1 is the agent's own command (``--channel-fd``).
"""

from __future__ import annotations

import base64
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ember.runtimes.catalogue import PYTHON_RUNTIMES, RuntimeCatalogue
from tests.integration.conftest import EmberServer, start_server
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import body, invoke
from tests.integration.test_server_lifecycle import wait_for_exit

ZYGOTE_MARK = "ember.sandbox.zygote"
INIT_DURATION = re.compile(r"\tInit Duration: (\d+\.\d\d) ms")

PROBE = """
import os, random, sys


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().decode(errors="replace")


def handler(event, context):
    return {
        "pid1": cmdline(1),
        "self": cmdline("self"),
        "version": list(sys.version_info[:2]),
        "flags": [sys.flags.isolated, sys.flags.no_site],
        "random": random.random(),
        "urandom": os.urandom(16).hex(),
        "uid": os.getuid(),
        "environ": open("/proc/self/environ", "rb").read().decode(errors="replace"),
    }
"""


def zygote_pids(server: EmberServer) -> list[int]:
    """Host pids of the server's zygote processes (root reads every /proc entry)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == server.process.pid and ZYGOTE_MARK in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def zygote_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    running = start_server(tmp_path_factory.mktemp("ember-data"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(zygote_server: EmberServer) -> Iterator[Any]:
    made = zygote_server.client()
    yield made
    made.close()


def cold(client: Any, name: str, **config: Any) -> tuple[Any, str]:
    """Create ``name`` and invoke it once: its answer and its log tail."""
    create(client, name, PROBE, **config)
    response = invoke(client, name, {}, LogType="Tail")
    assert response["StatusCode"] == 200, response["Body"]
    return body(response), base64.b64decode(response["LogResult"]).decode()


def test_the_log_says_which_path_is_active(zygote_server: EmberServer) -> None:
    assert any("cold starts: pre-warmed zygote" in line for line in zygote_server.output)


@pytest.mark.parametrize("runtime", PYTHON_RUNTIMES)
def test_python_runtimes_are_forked_from_their_own_interpreter_s_zygote(
    client: Any, runtime: str
) -> None:
    if RuntimeCatalogue.discover({}).get(runtime) is None:
        pytest.skip(f"no {runtime} interpreter on this machine")
    seen, log_tail = cold(client, "forked-" + runtime.replace(".", "-"), Runtime=runtime)
    assert ZYGOTE_MARK in seen["pid1"], "the agent runs in a zygote's child"
    assert ZYGOTE_MARK in seen["self"], "the runtime was forked from the agent"
    assert seen["version"] == [3, int(runtime.split(".")[1])]
    assert seen["flags"] == [1, 1]
    assert seen["uid"] == 993
    assert "AWS_LAMBDA_FUNCTION_NAME=forked-" in seen["environ"]
    assert INIT_DURATION.search(log_tail), log_tail


def test_sandboxes_from_one_zygote_do_not_share_random_state(client: Any) -> None:
    first, _ = cold(client, "random-a")
    second, _ = cold(client, "random-b")
    assert ZYGOTE_MARK in first["self"]
    assert ZYGOTE_MARK in second["self"]
    assert first["random"] != second["random"]
    assert first["urandom"] != second["urandom"]


def test_a_dead_zygote_means_exec_for_that_start_then_a_new_zygote(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"EMBER_SANDBOX_POOL_SIZE": "0"})  # no spares
    client = server.client()
    try:
        before, _ = cold(client, "before")
        assert ZYGOTE_MARK in before["pid1"]
        (old,) = zygote_pids(server)
        os.kill(old, signal.SIGKILL)
        assert wait_for_exit(old)
        during, log_tail = cold(client, "during")
        assert "--channel-fd" in during["pid1"], "the exec path took over"
        assert INIT_DURATION.search(log_tail)
        after, _ = cold(client, "after")
        assert ZYGOTE_MARK in after["pid1"], "a new zygote serves the next start"
        assert zygote_pids(server) not in ([], [old])
        assert body(invoke(client, "before", {}))["pid1"] == before["pid1"]
    finally:
        client.close()
        server.stop()
    assert any("restarting the zygote" in line for line in server.output)


def test_zygotes_can_be_turned_off(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"EMBER_SANDBOX_ZYGOTE": "0"})
    client = server.client()
    try:
        seen, log_tail = cold(client, "exec-only")
        assert "--channel-fd" in seen["pid1"]
        assert ZYGOTE_MARK not in seen["self"]
        assert INIT_DURATION.search(log_tail)
        assert zygote_pids(server) == []
    finally:
        client.close()
        server.stop()
    assert any("cold starts: exec (pre-warmed zygotes off)" in line for line in server.output)
