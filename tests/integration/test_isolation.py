"""Hostile functions against the namespace sandbox: each names its attack and its refusal.

Every function here runs in the default (namespace) backend of a real server and reports
what it observed; the test asserts the attack was contained.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import EmberServer
from tests.integration.functions import HELLO
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import body, invoke, tail
from tests.integration.test_network import slirp_children
from tests.integration.test_server_lifecycle import host_pids_of

PROBES = """
import ctypes, errno, json, os, signal, socket, subprocess, time

libc = ctypes.CDLL(None, use_errno=True)


def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def syscall_errno(result):
    return "allowed" if result == 0 else errno.errorcode[ctypes.get_errno()]


def write(path):
    with open(path, "w") as handle:
        handle.write("x")


def connect(host, port):
    with socket.create_connection((host, port), timeout=2):
        pass


def fill_tmp():
    written = 0
    with open("/tmp/fill", "wb") as handle:
        try:
            while True:
                handle.write(b"\\0" * (1 << 20))
                handle.flush()
                written += 1
        except OSError as exc:
            return {"errno": errno.errorcode[exc.errno], "mb": written}
        finally:
            os.unlink("/tmp/fill")


def fork_bomb():
    read_end, write_end = os.pipe()
    children, refusal = [], None
    for _ in range(3000):
        try:
            pid = os.fork()
        except OSError as exc:
            refusal = errno.errorcode[exc.errno]
            break
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        children.append(pid)
    os.close(write_end)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "refusal": refusal}


def handler(event, context):
    probe = event["probe"]
    if probe == "identity":
        lines = open("/proc/self/status").read().splitlines()
        status = dict(line.split(":\\t", 1) for line in lines if ":\\t" in line)
        return {"uid": os.getuid(), "gid": os.getgid(), "cap_eff": status["CapEff"].strip(),
                "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
                "hostname": socket.gethostname()}
    if probe == "write":
        paths = ("/var/task/x", "/opt/x", "/x", "/usr/x", "/tmp/x")
        return {path: attempt(lambda p=path: write(p)) for path in paths}
    if probe == "read":
        return {path: attempt(lambda p=path: os.listdir(p)) for path in event["paths"]}
    if probe == "processes":
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        commands = [open(f"/proc/{p}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
                    for p in pids]
        return {"pids": sorted(pids), "commands": commands}
    if probe == "network":
        return {f"{host}:{port}": attempt(lambda h=host, p=port: connect(h, p))
                for host, port in event["targets"]}
    if probe == "syscalls":
        return {
            "mount": syscall_errno(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
            "unshare_user": syscall_errno(libc.unshare(0x10000000)),
            "unshare_net": syscall_errno(libc.unshare(0x40000000)),
            "ptrace_traceme": syscall_errno(libc.ptrace(0, 0, None, None)),
            "bpf": syscall_errno(libc.syscall(321, 0, None, 0)),
            "keyctl": syscall_errno(libc.syscall(250, 0, 0, 0, 0, 0)),
            "chroot": syscall_errno(libc.chroot(b"/tmp")),
        }
    if probe == "signals":
        return {"agent": attempt(lambda: os.kill(1, signal.SIGKILL)),
                "host": attempt(lambda: os.kill(event["host_pid"], signal.SIGKILL))}
    if probe == "fork_bomb":
        return fork_bomb()
    if probe == "memory_bomb":
        hog = []
        while True:
            hog.append(bytearray(16 << 20))
    if probe == "fill_tmp":
        return fill_tmp()
    if probe == "whoami":
        return {"environment": context.log_stream_name}
    if probe == "linger":
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        time.sleep(60)
    raise ValueError(probe)
"""


@pytest.fixture(scope="module")
def hostile(lambda_client: Any) -> str:
    create(lambda_client, "hostile", PROBES, Timeout=30)
    return "hostile"


def probe(client: Any, name: str, what: str, **extra: Any) -> Any:
    response = invoke(client, name, {"probe": what, **extra})
    assert "FunctionError" not in response, response["Body"]
    return body(response)


def test_runs_unprivileged_with_no_capabilities_and_seccomp(
    lambda_client: Any, hostile: str
) -> None:
    seen = probe(lambda_client, hostile, "identity")
    assert (seen["uid"], seen["gid"]) == (993, 990)
    assert int(seen["cap_eff"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["seccomp"] == "2"
    assert seen["hostname"] == "ember-sandbox"


def test_write_outside_tmp_is_refused_read_only(lambda_client: Any, hostile: str) -> None:
    seen = probe(lambda_client, hostile, "write")
    assert seen == {
        "/var/task/x": "EROFS",
        "/opt/x": "EROFS",
        "/x": "EROFS",
        "/usr/x": "EROFS",
        "/tmp/x": "allowed",
    }


def test_another_functions_code_and_the_data_dir_are_invisible(
    lambda_client: Any, hostile: str, server: EmberServer
) -> None:
    create(lambda_client, "victim", HELLO)
    trees = server.data_dir / "blobs" / "trees"
    victim_tree = next(p for p in trees.iterdir() if (p / "app.py").exists())
    seen = probe(
        lambda_client,
        hostile,
        "read",
        paths=[str(victim_tree), str(server.data_dir), "/root", "/home", "/var/task"],
    )
    assert seen[str(victim_tree)] == "ENOENT"
    assert seen[str(server.data_dir)] == "ENOENT"
    assert seen["/root"] == "ENOENT"
    assert seen["/home"] == "ENOENT"
    assert seen["/var/task"] == "allowed"  # its own code only


def test_host_processes_are_invisible(lambda_client: Any, hostile: str) -> None:
    seen = probe(lambda_client, hostile, "processes")
    assert max(seen["pids"]) < 100, seen
    assert not any("pytest" in c or "ember.cli.main" in c for c in seen["commands"]), seen


def test_control_plane_and_metadata_are_unreachable(
    lambda_client: Any, hostile: str, server: EmberServer
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    seen = probe(
        lambda_client,
        hostile,
        "network",
        targets=[["127.0.0.1", port], ["169.254.169.254", 80], ["10.0.2.2", port]],
    )
    assert seen[f"127.0.0.1:{port}"] == "ECONNREFUSED"  # its own loopback: no Ember there
    assert seen["169.254.169.254:80"] == "ENETUNREACH"
    assert seen[f"10.0.2.2:{port}"] == "ENETUNREACH"


def test_mount_unshare_ptrace_and_kernel_interfaces_are_denied(
    lambda_client: Any, hostile: str
) -> None:
    seen = probe(lambda_client, hostile, "syscalls")
    assert seen == {
        "mount": "EPERM",
        "unshare_user": "EPERM",
        "unshare_net": "EPERM",
        "ptrace_traceme": "EPERM",
        "bpf": "EPERM",
        "keyctl": "EPERM",
        "chroot": "EPERM",
    }


def test_signals_cannot_reach_the_agent_or_the_host(
    lambda_client: Any, hostile: str, server: EmberServer
) -> None:
    seen = probe(lambda_client, hostile, "signals", host_pid=server.process.pid)
    assert seen["host"] == "ESRCH"  # the server's pid does not exist in the sandbox
    assert seen["agent"] == "allowed"  # delivered, and ignored: pid 1 has no handler for it
    assert probe(lambda_client, hostile, "identity")["uid"] == 993  # the agent still serves


def test_fork_bomb_is_stopped_by_the_pids_limit(lambda_client: Any) -> None:
    # enough memory that the pids limit, not the memory limit, is what stops it
    create(lambda_client, "fork-bomb", PROBES, MemorySize=4096, Timeout=60)
    seen = probe(lambda_client, "fork-bomb", "fork_bomb")
    assert seen["refusal"] == "EAGAIN"
    assert seen["forked"] < 1024
    create(lambda_client, "bystander-1", HELLO)
    assert body(invoke(lambda_client, "bystander-1", {}))["hello"] == "world"


def test_memory_bomb_is_an_out_of_memory_error(lambda_client: Any) -> None:
    create(lambda_client, "memory-bomb", PROBES, MemorySize=128)
    response = invoke(lambda_client, "memory-bomb", {"probe": "memory_bomb"}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Body"])
    assert error["errorType"] == "Runtime.OutOfMemory"
    assert error["errorMessage"] == (
        f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    )
    report = tail(response).splitlines()[-1]
    assert "\tStatus: error\tError Type: Runtime.OutOfMemory\tEmber Start Kind: " in report
    assert "Max Memory Used: 12" in report  # the 128 MB cgroup's peak, just under the limit
    create(lambda_client, "bystander-2", HELLO)
    assert body(invoke(lambda_client, "bystander-2", {}))["hello"] == "world"


def test_filling_tmp_stops_at_its_size(lambda_client: Any) -> None:
    create(lambda_client, "tmp-filler", PROBES, MemorySize=1024, EphemeralStorage={"Size": 512})
    seen = probe(lambda_client, "tmp-filler", "fill_tmp")
    assert seen["errno"] == "ENOSPC"
    assert 500 <= seen["mb"] <= 512


def test_a_timed_out_environment_leaves_nothing_behind(lambda_client: Any) -> None:
    create(lambda_client, "lingerer", PROBES, Timeout=1)
    environment = probe(lambda_client, "lingerer", "whoami")["environment"]
    assert host_pids_of(environment)
    response = invoke(lambda_client, "lingerer", {"probe": "linger"})
    assert json.loads(response["Body"])["errorType"] == "Sandbox.Timedout"
    assert host_pids_of(environment) == []  # the runtime and its detached child are gone


def test_a_networked_timed_out_environment_leaves_no_slirp_behind(
    lambda_client: Any, server: EmberServer
) -> None:
    create(lambda_client, "net-lingerer", PROBES, Timeout=1, Tags={"ember:network": "outbound"})
    before = slirp_children(server)
    environment = probe(lambda_client, "net-lingerer", "whoami")["environment"]
    started = slirp_children(server) - before
    assert host_pids_of(environment)
    assert len(started) == 1
    response = invoke(lambda_client, "net-lingerer", {"probe": "linger"})
    assert json.loads(response["Body"])["errorType"] == "Sandbox.Timedout"
    assert host_pids_of(environment) == []
    assert not started & slirp_children(server)  # its user-mode network stack went with it
