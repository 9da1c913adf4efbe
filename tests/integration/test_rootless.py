"""Rootless mode: ``ember serve`` run by an unprivileged user, on the namespace backend.

The test (root) runs the server as ``nobody`` through ``setpriv``, with a data directory
that user owns. The server runs on ``/usr/bin/python3`` with this checkout's packages on
``PYTHONPATH``: the test's own interpreter may live where ``nobody`` cannot read (pyenv
under ``/root``, mode 0700). Skipped, with the reason, where that cannot work: not root
(cannot switch user), user namespaces disabled, or ``/usr/bin/python3`` unable to import
Ember's dependencies as ``nobody`` (another minor version than the venv's).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import ember
from tests.integration.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    EmberServer,
    wait_until_listening,
)
from tests.integration.test_functions_api import create
from tests.integration.test_invoke import body, invoke
from tests.integration.test_isolation import PROBES
from tests.integration.test_network import GREETING, NET_PROBE, greeting_server

USER, GROUP = "nobody", "nogroup"
PYTHON = "/usr/bin/python3"
AS_USER = ["setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--clear-groups"]
SRC = str(Path(ember.__file__).resolve().parent.parent)
SITE = next((p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)), "")
USERNS_SYSCTLS = (
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces",
)

CONFORMANCE = """
import asyncio, sys
from pathlib import Path
from ember.sandbox.conformance import CHECKS
from ember.sandbox.registry import create_backend
from ember.settings import Settings

async def main(data, zygote):
    settings = Settings(sandbox_backend="namespace", agent_python=sys.executable,
                        data_dir=Path(data), sandbox_zygote=zygote, sandbox_pool_size=1)
    backend = create_backend(settings)
    try:
        for check in CHECKS:
            workdir = Path(data) / check.__name__
            workdir.mkdir()
            await check(backend, workdir)
            print("passed", check.__name__, flush=True)
    finally:
        await backend.close()

asyncio.run(main(sys.argv[1], sys.argv[2] == "zygote"))
"""


def user_environment(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": f"{SITE}:{SRC}"}


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "switching to an unprivileged user needs root"
    for path in USERNS_SYSCTLS:
        if Path(path).exists() and Path(path).read_text().strip() == "0":
            return f"unprivileged user namespaces are disabled ({path} is 0)"
    if not Path(PYTHON).exists() or shutil.which("setpriv") is None:
        return f"needs {PYTHON} and setpriv"
    if not SITE:
        return "the test's interpreter has no site-packages directory to lend the server"
    probe = subprocess.run(
        [*AS_USER, PYTHON, "-c", "import ember.app, uvloop, httptools, pyseccomp"],
        env=user_environment("/"), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"{USER} cannot run Ember on {PYTHON}: {probe.stderr.strip()[-300:]}"
    return None


pytestmark = pytest.mark.skipif(bool(reason := skip_reason()), reason=reason or "")


@pytest.fixture(scope="module")
def user_dir() -> Iterator[Path]:
    """A directory ``nobody`` owns (pytest's tmp dirs are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ember-rootless-"))
    path.chmod(0o755)
    shutil.chown(path, USER, GROUP)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_as_user(data_dir: Path, home: Path, open_tun: bool = False) -> EmberServer:
    environment = {
        **user_environment(str(home)),
        "EMBER_ACCESS_KEY_ID": ACCESS_KEY,
        "EMBER_SECRET_ACCESS_KEY": SECRET_KEY,
        "EMBER_KEEP_ALIVE_SECONDS": "600",
        "EMBER_SANDBOX_POOL_SIZE": "3",  # as conftest's servers
    }
    command = [*AS_USER, PYTHON, "-m", "ember.cli.main", "serve", "--port", "0"]
    if open_tun:  # in a private mount namespace: the host's device is left as it is
        node = home / "tun"
        script = f'mknod -m 666 {node} c 10 200 && mount --bind {node} /dev/net/tun && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                   "sh", *command]  # fmt: skip
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)], env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return wait_until_listening(process, data_dir)


@pytest.fixture(scope="module")
def rootless_server(user_dir: Path) -> Iterator[EmberServer]:
    server = start_as_user(user_dir / "data", user_dir)
    yield server
    server.stop()


def test_the_server_says_what_it_cannot_apply(rootless_server: EmberServer) -> None:
    log = "".join(rootless_server.output)
    assert "isolation: namespace backend: rootless: user/pid/mount/net/ipc/uts namespaces" in log
    uid = pwd.getpwnam(USER).pw_uid
    assert (
        f"isolation: NOT applied: uid 993/gid 990 inside a sandbox is the server's own uid {uid}"
    ) in log
    cgroups_writable = subprocess.run(
        [*AS_USER, "test", "-w", "/sys/fs/cgroup/memory"], check=False
    ).returncode == 0  # fmt: skip
    if not cgroups_writable:
        assert "isolation: NOT applied: no memory or CPU limits" in log
        assert "NO cgroup limits" in log


def test_a_function_runs_isolated_without_root(rootless_server: EmberServer) -> None:
    client = rootless_server.client()
    create(client, "rootless", PROBES)
    identity = body(invoke(client, "rootless", {"probe": "identity"}))
    assert (identity["uid"], identity["gid"]) == (993, 990)
    assert int(identity["cap_eff"], 16) == 0
    assert identity["no_new_privs"] == "1"
    assert identity["seccomp"] == "2"
    writes = body(invoke(client, "rootless", {"probe": "write"}))
    assert writes["/usr/x"] == "EROFS"
    assert writes["/var/task/x"] == "EROFS"
    assert writes["/tmp/x"] == "allowed"
    syscalls = body(invoke(client, "rootless", {"probe": "syscalls"}))
    assert set(syscalls.values()) == {"EPERM"}
    processes = body(invoke(client, "rootless", {"probe": "processes"}))
    assert max(processes["pids"]) < 100
    port = int(rootless_server.url.rsplit(":", 1)[1])
    network = body(
        invoke(client, "rootless", {"probe": "network", "targets": [["127.0.0.1", port]]})
    )
    assert network == {f"127.0.0.1:{port}": "ECONNREFUSED"}  # its own loopback only


FORKER = """
import errno, os


def handler(event, context):
    children, refusal = [], None
    for _ in range(1500):
        try:
            pid = os.fork()
        except OSError as exc:
            refusal = errno.errorcode[exc.errno]
            break
        if pid == 0:
            os.execv("/usr/bin/sleep", ["sleep", "60"])
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(children), "refusal": refusal}
"""


def test_processes_are_capped_per_sandbox_without_a_pids_cgroup(
    rootless_server: EmberServer,
) -> None:
    client = rootless_server.client()
    create(client, "rootless-forker", FORKER, Timeout=60)
    seen = body(invoke(client, "rootless-forker", {}))
    assert seen["refusal"] == "EAGAIN"
    assert 1000 < seen["forked"] < 1024  # RLIMIT_NPROC 1,024, the agent and runtime included
    create(client, "rootless-bystander", PROBES)  # the server's user can still start more
    assert body(invoke(client, "rootless-bystander", {"probe": "identity"}))["uid"] == 993


@pytest.mark.parametrize("start", ["zygote", "exec"])
def test_the_conformance_kit_passes_without_root(user_dir: Path, start: str) -> None:
    data = user_dir / f"conformance-{start}"
    data.mkdir()
    shutil.chown(data, USER, GROUP)
    result = subprocess.run(
        [*AS_USER, PYTHON, "-c", CONFORMANCE, str(data), start],
        env=user_environment(str(user_dir)), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from ember.sandbox.conformance import CHECKS  # noqa: PLC0415

    passed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("passed")]
    assert passed == [check.__name__ for check in CHECKS]


def test_a_networked_function_fails_clearly_when_the_tun_device_is_closed(
    rootless_server: EmberServer,
) -> None:
    tun_open = subprocess.run([*AS_USER, "test", "-w", "/dev/net/tun"], check=False)
    if tun_open.returncode == 0:
        pytest.skip("/dev/net/tun is open to users here: rootless outbound network works")
    assert "outbound network (tag ember:network=outbound): /dev/net/tun is not readable" in (
        "".join(rootless_server.output)
    )
    client = rootless_server.client()
    create(client, "rootless-online", PROBES, Tags={"ember:network": "outbound"})
    with pytest.raises(ClientError) as excinfo:
        invoke(client, "rootless-online", {"probe": "identity"})
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ServiceException"
    assert "outbound network is unavailable on this server: /dev/net/tun" in error["Message"]


def test_a_networked_function_reaches_out_without_root(user_dir: Path) -> None:
    """Where users may open /dev/net/tun (most distributions; here a 0666 node is bound
    over it in the server's own mount namespace), slirp4netns runs as the user too."""
    home = user_dir / "with-tun"
    home.mkdir()
    shutil.chown(home, USER, GROUP)
    try:
        server = start_as_user(home / "data", home, open_tun=True)
    except RuntimeError as exc:
        pytest.skip(f"could not give the server an open tun device: {exc}")
    try:
        assert "outbound network unavailable" not in "".join(server.output)
        client = server.client()
        create(client, "rootless-online", NET_PROBE, Tags={"ember:network": "outbound"})
        with greeting_server() as outside:
            seen = body(invoke(client, "rootless-online", {"targets": [outside]}))
        assert seen["targets"][f"{outside[0]}:{outside[1]}"] == GREETING
        assert seen["metadata_blocked"] is True
        assert seen["targets"]["metadata"] == "EHOSTUNREACH"
        assert seen["interfaces"] == ["lo", "tap0"]
    finally:
        server.stop()
