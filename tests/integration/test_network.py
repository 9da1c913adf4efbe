"""Outbound network per function (tag ``ember:network=outbound``), on the namespace backend.

Nothing here leaves the machine: the "outside" a networked function reaches is a TCP
server this test runs on the host's own non-loopback address. The probe tries the
metadata address only once it has seen its ``unreachable`` route in the sandbox's table
(or when the sandbox has no route out at all), so no packet can go there even if the
block were missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import EmberServer, start_server
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import body, invoke
from tests.integration.test_server_lifecycle import wait_for_exit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace backend runs as root")

NETWORK = {"ember:network": "outbound"}
GREETING = "hello from the host network"

NET_PROBE = """
import errno, json, socket, subprocess, time

RTF_REJECT = 0x0200


def routes():
    lines = open("/proc/net/route").read().splitlines()[1:]
    return [line.split() for line in lines]


def metadata_blocked():
    # 169.254.0.0/16 as /proc/net/route prints it (little-endian hex), rejecting
    return any(r[1] == "0000FEA9" and r[7] == "0000FFFF" and int(r[3], 16) & RTF_REJECT
               for r in routes())


def attempt(host, port):
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            return sock.recv(64).decode() or "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))


def handler(event, context):
    if event.get("linger"):
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        time.sleep(60)
    seen = {f"{host}:{port}": attempt(host, port) for host, port in event["targets"]}
    has_route_out = any(r[1] == "00000000" for r in routes())
    if metadata_blocked() or not has_route_out:
        seen["metadata"] = attempt("169.254.169.254", 80)
    try:
        resolv = open("/etc/resolv.conf").read()
    except OSError:
        resolv = None
    return {"targets": seen, "interfaces": sorted(n for _, n in socket.if_nameindex()),
            "metadata_blocked": metadata_blocked(), "resolv": resolv,
            "environment": context.log_stream_name}
"""


def host_address() -> str | None:
    """The host's first global IPv4 address that is not loopback."""
    output = subprocess.run(
        ["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=False
    ).stdout
    for link in json.loads(output or "[]"):
        for address in link.get("addr_info", []):
            if address.get("scope") == "global" and not address["local"].startswith("127."):
                return str(address["local"])
    return None


@pytest.fixture(scope="module")
def outside() -> Iterator[tuple[str, int]]:
    with greeting_server() as address:
        yield address


@contextlib.contextmanager
def greeting_server() -> Iterator[tuple[str, int]]:
    """A TCP server on the host's non-loopback address that greets every connection."""
    address = host_address()
    if address is None:
        pytest.skip("the host has no non-loopback IPv4 address to test outbound traffic with")
    listener = socket.create_server((address, 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _ = listener.accept()
                with connection:
                    connection.sendall(GREETING.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield address, listener.getsockname()[1]
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(timeout=10)


def ember_port(server: EmberServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def look(client: Any, name: str, targets: list[tuple[str, int]], **extra: Any) -> Any:
    response = invoke(client, name, {"targets": targets, **extra})
    assert "FunctionError" not in response, response["Body"]
    return body(response)


def slirp_children(server: EmberServer) -> set[int]:
    """The slirp4netns processes the server started that still run."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text()
            command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.split(")")[-1]
            if command == "slirp4netns" and int(fields.split()[1]) == server.process.pid:
                found.add(int(proc.name))
    return found


def test_an_untagged_function_has_no_route_out_and_no_slirp(
    lambda_client: Any, server: EmberServer, outside: tuple[str, int]
) -> None:
    create(lambda_client, "offline", NET_PROBE)
    before = slirp_children(server)
    seen = look(lambda_client, "offline", [outside])
    assert seen["interfaces"] == ["lo"]
    assert seen["targets"][f"{outside[0]}:{outside[1]}"] == "ENETUNREACH"
    assert seen["targets"]["metadata"] == "ENETUNREACH"
    assert seen["resolv"] is None
    assert slirp_children(server) == before  # no process is started for a loopback-only one


def test_a_tagged_function_reaches_out_but_not_host_loopback_or_metadata(
    lambda_client: Any, server: EmberServer, outside: tuple[str, int]
) -> None:
    create(lambda_client, "online", NET_PROBE, Tags=NETWORK)
    port = ember_port(server)
    seen = look(lambda_client, "online", [outside, ("127.0.0.1", port), ("10.0.2.2", port)])
    assert seen["interfaces"] == ["lo", "tap0"]
    assert seen["targets"][f"{outside[0]}:{outside[1]}"] == GREETING
    assert seen["targets"][f"127.0.0.1:{port}"] == "ECONNREFUSED"  # its own loopback
    assert seen["targets"][f"10.0.2.2:{port}"] in ("ECONNREFUSED", "ENETUNREACH")  # host's
    assert seen["metadata_blocked"] is True
    assert seen["targets"]["metadata"] == "EHOSTUNREACH"
    assert seen["resolv"].splitlines()[0] == "nameserver 10.0.2.3"


def test_tagging_switches_the_network_of_new_environments(
    lambda_client: Any, server: EmberServer, outside: tuple[str, int]
) -> None:
    create(lambda_client, "switched", NET_PROBE)
    arn = lambda_client.get_function(FunctionName="switched")["Configuration"]["FunctionArn"]
    target = f"{outside[0]}:{outside[1]}"
    first = look(lambda_client, "switched", [outside])
    assert first["targets"][target] == "ENETUNREACH"
    lambda_client.tag_resource(Resource=arn, Tags=NETWORK)
    second = look(lambda_client, "switched", [outside])
    assert second["environment"] != first["environment"]  # the tag change retired it
    assert second["targets"][target] == GREETING
    lambda_client.untag_resource(Resource=arn, TagKeys=["ember:network"])
    third = look(lambda_client, "switched", [outside])
    assert third["environment"] != second["environment"]
    assert third["targets"][target] == "ENETUNREACH"


def test_the_slirp_process_ends_with_its_sandbox(
    lambda_client: Any, server: EmberServer, outside: tuple[str, int]
) -> None:
    create(lambda_client, "online-lingerer", NET_PROBE, Tags=NETWORK, Timeout=1)
    before = slirp_children(server)
    look(lambda_client, "online-lingerer", [outside])
    started = slirp_children(server) - before
    assert len(started) == 1
    response = invoke(lambda_client, "online-lingerer", {"targets": [], "linger": True})
    assert json.loads(response["Body"])["errorType"] == "Sandbox.Timedout"
    assert not started & slirp_children(server)  # killed with the timed-out sandbox


def test_slirp_processes_end_with_a_killed_server(tmp_path: Path, outside: tuple[str, int]) -> None:
    server = start_server(tmp_path, env={"EMBER_SANDBOX_ZYGOTE": "0"})  # the exec path
    try:
        client = server.client()
        create(client, "online", NET_PROBE, Tags=NETWORK)
        seen = look(client, "online", [outside])
        assert seen["targets"][f"{outside[0]}:{outside[1]}"] == GREETING
        assert seen["metadata_blocked"] is True
        started = slirp_children(server)
        assert len(started) == 1
    finally:
        server.stop(signal.SIGKILL)
    for pid in started:
        assert wait_for_exit(pid), f"slirp4netns {pid} outlived its server"
