"""Node slots (pre-started node) through a real server, real sandboxes and boto3.

The server keeps one node slot. The module's first node cold start is always a fresh
exec (no slot exists before a node function is seen); every later one waits until the
slot is ready (``/ember/statistics``), so that it is served by the pre-started node.
Which process served a start shows in ``/proc/self/environ``: a pre-started node's shows
the few variables it was started with, a fresh one's the whole environment.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import EmberServer, start_server
from tests.integration.esm_support import function_log
from tests.integration.functions import make_zip
from tests.integration.test_concurrency import statistics
from tests.integration.test_extensions import EXTERNAL_EXTENSION
from tests.integration.test_invoke import body, invoke, tail
from tests.integration.test_nodejs import INSTALLED, REQUIRE_STACK, check_trace, deploy
from tests.integration.test_rootless import skip_reason, start_as_user, user_dir

__all__ = ["user_dir"]  # a fixture of test_rootless, used here too
rootless_reason = skip_reason()

pytestmark = pytest.mark.skipif(
    "nodejs20.x" not in INSTALLED, reason="no node 20 on this machine (nodejs20.x not installed)"
)

PROBE = """
const fs = require('fs');
const loadedEnv = { ...process.env };
exports.handler = async (event, context) => ({
  prestarted: !fs.readFileSync('/proc/self/environ', 'latin1').includes('_HANDLER='),
  loadedEnv,
  env: { ...process.env },
  cwd: process.cwd(),
  argv: process.argv,
  execArgv: process.execArgv,
  uid: process.getuid(),
  noDeprecation: Boolean(process.noDeprecation),
  paths: require('module')._nodeModulePaths(process.cwd()).concat(require('module').globalPaths),
  cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8'),
  agentCgroup: fs.readFileSync('/proc/1/cgroup', 'utf8'),
  tz: new Date(0).toString(),
  hardening: fs.readFileSync('/proc/self/status', 'utf8').split('\\n')
    .filter((line) => /^(Uid|Gid|Groups|Cap...|NoNewPrivs|Seccomp|Sig(Blk|Ign)):/.test(line)),
  limits: fs.readFileSync('/proc/self/limits', 'utf8'),
  umask: process.umask(),
  leader: (() => {
    const fields = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
    return [Number(fields[2]) === process.pid, Number(fields[3]) === process.pid];
  })(),
  opt: fs.readdirSync('/opt'),
  taskLib: fs.existsSync('/var/task/lib'),
  functionName: context.functionName,
});
"""
ESM_PROBE = """
import fs from 'node:fs';
export const handler = async () => ({
  prestarted: !fs.readFileSync('/proc/self/environ', 'latin1').includes('_HANDLER='),
  kind: 'esm',
  handler: process.env._HANDLER,
});
"""
MEMORY_BOMB = """
exports.handler = async () => {
  const held = [];
  for (;;) held.push(Buffer.alloc(16 * 1024 * 1024, 1));
};
"""
# variables that differ between any two environments of one function
PER_ENVIRONMENT = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_LAMBDA_LOG_STREAM_NAME",
                   "_X_AMZN_TRACE_ID"}  # fmt: skip
SLOT_WAIT_S = 60.0  # a slot not ready by then is a failure (a guard, not a measurement)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    env = {"EMBER_SANDBOX_NODE_POOL_SIZE": "1"}
    running = start_server(tmp_path_factory.mktemp("ember-data"), env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def lambda_client(server: EmberServer) -> Any:
    return server.client()


@pytest.fixture(scope="module")
def fresh(lambda_client: Any) -> dict[str, Any]:
    """The module's first node start: a fresh exec, whose slot is made only now."""
    deploy(lambda_client, "fresh-probe", {"index.js": PROBE})
    seen: dict[str, Any] = body(invoke(lambda_client, "fresh-probe", {}))
    assert not seen["prestarted"]
    return seen


def slot_ready(server: EmberServer) -> int:
    """Wait until the node slot is ready; how many slots were handed out so far."""
    deadline = time.monotonic() + SLOT_WAIT_S
    while (node := statistics(server)["pools"]["node"])["ready"] < 1:
        assert time.monotonic() < deadline, f"no node slot became ready: {node}"
        time.sleep(0.01)
    handed_out: int = node["handed_out"]
    return handed_out


def handed_out(server: EmberServer) -> int:
    count: int = statistics(server)["pools"]["node"]["handed_out"]
    return count


def comparable(seen: dict[str, Any]) -> dict[str, Any]:
    """A probe's answer without what differs between functions and environments."""
    drop = {*PER_ENVIRONMENT, "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_LOG_GROUP_NAME"}
    per_start = ("functionName", "prestarted", "cgroup", "agentCgroup")
    shown = {key: value for key, value in seen.items() if key not in per_start}
    for key in ("env", "loadedEnv"):
        shown[key] = {name: value for name, value in seen[key].items() if name not in drop}
    return shown


def test_a_cold_start_is_served_by_the_prestarted_node_as_a_fresh_one_would_be(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    deploy(lambda_client, "slot-probe", {"index.js": PROBE})
    before = slot_ready(server)
    response = invoke(lambda_client, "slot-probe", {}, LogType="Tail")
    seen = body(response)
    assert seen["prestarted"]
    assert handed_out(server) == before + 1
    assert seen["functionName"] == "slot-probe"
    assert comparable(seen) == comparable(fresh)  # env at load and at invoke, cwd, argv...
    assert seen["cwd"] == "/var/task"
    assert seen["uid"] == 993
    assert {"NoNewPrivs:\t1", "Seccomp:\t2", "CapEff:\t0000000000000000"} <= set(seen["hardening"])
    assert (seen["opt"], seen["taskLib"]) == ([], False)  # the loader's directories: gone
    assert seen["leader"] == [True, True]  # its own process group and session
    assert seen["cgroup"] == seen["agentCgroup"]  # in the sandbox's cgroup: its limits
    assert "_EMBER_PRESTART_FD" not in seen["env"]
    assert seen["loadedEnv"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    report = tail(response).splitlines()[-1]
    assert "\tInit Duration: " in report
    assert "\tEmber Start Kind: prewarmed\t" in report
    assert body(invoke(lambda_client, "slot-probe", {}))["prestarted"]  # warm: same process


def test_an_es_module_handler_from_a_slot(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    deploy(lambda_client, "slot-esm", {"app.mjs": ESM_PROBE}, handler="app.handler")
    slot_ready(server)
    seen = body(invoke(lambda_client, "slot-esm", {}))
    assert seen == {"prestarted": True, "kind": "esm", "handler": "app.handler"}


def test_node_options_start_fresh_and_take_effect(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    environment = {"Variables": {"NODE_OPTIONS": "--no-deprecation"}}
    deploy(lambda_client, "slot-node-options", {"index.js": PROBE}, Environment=environment)
    before = slot_ready(server)
    seen = body(invoke(lambda_client, "slot-node-options", {}))
    assert not seen["prestarted"]
    assert seen["noDeprecation"]
    assert handed_out(server) == before  # the slot is still there for others
    assert statistics(server)["pools"]["node"]["ready"] == 1


def test_another_memory_size_starts_fresh_and_rekeys_the_slot(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    deploy(lambda_client, "slot-256", {"index.js": PROBE}, MemorySize=256)
    slot_ready(server)
    first = body(invoke(lambda_client, "slot-256", {}))
    assert not first["prestarted"]
    assert "--max-old-space-size=231" in first["execArgv"]
    deploy(lambda_client, "slot-256-again", {"index.js": PROBE}, MemorySize=256)
    slot_ready(server)  # now pre-started with 256 MB's heap flags
    again = body(invoke(lambda_client, "slot-256-again", {}))
    assert again["prestarted"]
    assert again["execArgv"] == first["execArgv"]
    deploy(lambda_client, "slot-128-back", {"index.js": PROBE})  # back to 128 for the rest
    assert not body(invoke(lambda_client, "slot-128-back", {}))["prestarted"]


def test_an_init_error_from_a_prestarted_node(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    deploy(lambda_client, "slot-no-module", {"index.js": PROBE}, handler="missing.handler")
    before = slot_ready(server)
    response = invoke(lambda_client, "slot-no-module", {}, LogType="Tail")
    assert handed_out(server) == before + 1
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    message = "Error: Cannot find module 'missing'" + REQUIRE_STACK
    assert (error["errorType"], error["errorMessage"]) == ("Runtime.ImportModuleError", message)
    check_trace(error, f"Runtime.ImportModuleError: {message}")
    logs = tail(response)
    assert (
        '\tundefined\tERROR\tUncaught Exception \t{"errorType":"Runtime.ImportModuleError"' in logs
    )
    assert "Status: error\tError Type: Runtime.ImportModuleError" in logs


def test_a_prestarted_node_is_held_to_the_memory_limit(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    deploy(lambda_client, "slot-memory-bomb", {"index.js": MEMORY_BOMB})
    before = slot_ready(server)
    response = invoke(lambda_client, "slot-memory-bomb", {}, LogType="Tail")
    assert handed_out(server) == before + 1
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Body"])["errorType"] == "Runtime.OutOfMemory"


LOADED = """
const fs = require('node:fs');
console.log('handler module loaded; extension started: ' + fs.existsSync('/tmp/extension-started'));
exports.handler = async () => 'ok';
"""
# the extension marks that it runs before it registers: the runtime gets its function only
# once every extension has registered (their printed lines may interleave with its own)
REGISTER = 'response, _ = call("POST", "/2020-01-01/extension/register"'
MARKING_EXTENSION = EXTERNAL_EXTENSION.replace(
    REGISTER, 'open("/tmp/extension-started", "w").close()\n' + REGISTER
)


def test_an_external_extension_starts_before_the_prestarted_node_gets_its_function(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    assert MARKING_EXTENSION != EXTERNAL_EXTENSION
    files: dict[str, str | bytes] = {"extensions/logger": MARKING_EXTENSION}
    layer = lambda_client.publish_layer_version(
        LayerName="slot-ext", Content={"ZipFile": make_zip(files, {"extensions/logger": 0o755})}
    )
    layers = [layer["LayerVersionArn"]]
    deploy(lambda_client, "slot-extension", {"index.js": LOADED}, Layers=layers)
    before = slot_ready(server)
    first = invoke(lambda_client, "slot-extension", {}, LogType="Tail")
    assert handed_out(server) == before + 1
    assert body(first) == "ok"
    assert "\tInit Duration: " in tail(first)
    messages = function_log(server, "slot-extension")
    loaded = next(i for i, m in enumerate(messages) if "handler module loaded" in m)
    init_start = next(i for i, m in enumerate(messages) if m.startswith("INIT_START"))
    assert init_start < loaded
    assert messages[loaded].endswith("extension started: true\n")  # extensions first
    assert any("extension registered" in m for m in messages)
    second = invoke(lambda_client, "slot-extension", {}, LogType="Tail")
    assert f"extension got INVOKE {second['ResponseMetadata']['RequestId']}" in tail(second)


@pytest.mark.skipif(bool(rootless_reason), reason=rootless_reason or "")
def test_a_node_slot_without_root(user_dir: Path) -> None:
    server = start_as_user(user_dir / "data", user_dir)
    try:
        client = server.client()
        deploy(client, "rootless-fresh", {"index.js": PROBE})
        fresh_seen = body(invoke(client, "rootless-fresh", {}))
        assert not fresh_seen["prestarted"]
        deploy(client, "rootless-slot", {"index.js": PROBE})
        slot_ready(server)
        seen = body(invoke(client, "rootless-slot", {}))
        assert seen["prestarted"]
        assert comparable(seen) == comparable(fresh_seen)
        assert {"NoNewPrivs:\t1", "Seccomp:\t2", "CapEff:\t0000000000000000"} <= set(
            seen["hardening"]
        )
    finally:
        server.stop()


DNS_PROBE = """
const fs = require('fs');
exports.handler = async () => ({
  prestarted: !fs.readFileSync('/proc/self/environ', 'latin1').includes('_HANDLER='),
  servers: require('dns').getServers(),
  resolv: fs.readFileSync('/etc/resolv.conf', 'utf8'),
});
"""


def test_a_networked_function_from_a_slot_gets_the_sandbox_dns(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    tags = {"ember:network": "outbound"}
    deploy(lambda_client, "slot-online", {"index.js": DNS_PROBE}, Tags=tags)
    slot_ready(server)
    seen = body(invoke(lambda_client, "slot-online", {}))
    assert seen["prestarted"]
    assert seen["resolv"].splitlines()[0] == "nameserver 10.0.2.3"
    assert seen["servers"] == ["10.0.2.3"]  # node read resolv.conf after specialisation


def waiting_slot_node(server: EmberServer) -> int:
    """The pid of this server's waiting slot node: of its nodes started by a slot (server
    → zygote → sandbox → node; the exec-time environment names the hand-off fd), the
    latest started (the others were handed out before it was started)."""
    found: list[tuple[int, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            parent = parent_of(int(entry.name))
            grandparent = parent_of(parent_of(parent))
        except (OSError, ValueError):
            continue
        if b"_EMBER_PRESTART_FD=" in environ and grandparent == server.process.pid:
            found.append((start_time(int(entry.name)), int(entry.name)))
    return max(found)[1]


def exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (not yet reaped by its sandbox's pid 1)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` from its third field (state) on."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int:
    return int(stat_fields(pid)[1])


def start_time(pid: int) -> int:
    return int(stat_fields(pid)[19])


def test_a_slot_whose_node_died_starts_fresh(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    deploy(lambda_client, "slot-dead-node", {"index.js": PROBE})
    before = slot_ready(server)
    node = waiting_slot_node(server)
    os.kill(node, signal.SIGKILL)
    while exited(node) is False:  # its end of the hand-off socket is closed once it exited
        time.sleep(0.001)
    seen = body(invoke(lambda_client, "slot-dead-node", {}))
    assert handed_out(server) == before + 1  # the slot was taken ...
    assert not seen["prestarted"]  # ... and the runtime exec'ed, as its node was gone
    assert comparable(seen) == comparable(fresh)


DLOPEN_PROBE = """
const fs = require('fs');
exports.handler = async () => {
  let loaded;
  try {
    process.dlopen({ exports: {} }, 'libemberprobe.so');  // found through LD_LIBRARY_PATH
  } catch (err) {
    loaded = err.message;
  }
  return {
    prestarted: !fs.readFileSync('/proc/self/environ', 'latin1').includes('_HANDLER='),
    loaded,
  };
};
"""
LIBZ = Path("/lib/x86_64-linux-gnu/libz.so.1")


@pytest.mark.skipif(not LIBZ.exists(), reason=f"no {LIBZ} to serve as a layer's library")
def test_a_layer_library_on_ld_library_path_loads_in_a_prestarted_node(
    server: EmberServer, lambda_client: Any, fresh: dict[str, Any]
) -> None:
    files: dict[str, str | bytes] = {"lib/libemberprobe.so": LIBZ.read_bytes()}
    layer = lambda_client.publish_layer_version(
        LayerName="slot-lib", Content={"ZipFile": make_zip(files)}
    )
    layers = [layer["LayerVersionArn"]]
    deploy(lambda_client, "slot-dlopen", {"index.js": DLOPEN_PROBE}, Layers=layers)
    slot_ready(server)
    seen = body(invoke(lambda_client, "slot-dlopen", {}))
    assert seen["prestarted"]
    # found in /opt/lib (and then refused as no node addon), as by a fresh node
    assert seen["loaded"] == "Module did not self-register: 'libemberprobe.so'."
