"""Extensions, the Telemetry API and the exec wrapper in real sandboxes, driven with boto3."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ember.agent.protocol import Kind, encode, read_frame
from ember.sandbox.base import SandboxSpec
from ember.sandbox.conformance import PROBE, PROBE_PYTHON
from tests.conformance.test_sandbox_backends import PROBE_AVAILABLE, make_backend
from tests.integration.conftest import ACCESS_KEY, SECRET_KEY, EmberServer, start_server
from tests.integration.functions import ROLE, make_zip
from tests.integration.test_invoke import body, invoke, tail

# An internal extension (a thread of the runtime process, registered during init) that
# also subscribes to the Telemetry API; the handler returns what both have seen so far.
INTERNAL_EXTENSION_APP = """
import http.client, http.server, json, os, threading

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
SEEN = {"events": [], "telemetry": []}
ARRIVED = threading.Condition()


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


class Listener(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with ARRIVED:
            SEEN["telemetry"].extend(batch)
            ARRIVED.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


response, register = call("POST", "/2020-01-01/extension/register",
                          json.dumps({"events": ["INVOKE"]}), {"Lambda-Extension-Name": "inside"})
IDENT = {"Lambda-Extension-Identifier": response.getheader("Lambda-Extension-Identifier")}
SEEN["register"] = json.loads(register)
server = http.server.HTTPServer(("127.0.0.1", 0), Listener)
threading.Thread(target=server.serve_forever, daemon=True).start()
subscription = {
    "schemaVersion": "2022-07-01",
    "types": ["platform", "function"],
    "buffering": {"timeoutMs": 25},
    "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{server.server_port}"},
}
response, answer = call("PUT", "/2022-07-01/telemetry", json.dumps(subscription), IDENT)
SEEN["subscribe"] = [response.status, json.loads(answer)]


def extension_loop():
    while True:
        _, data = call("GET", "/2020-01-01/extension/event/next", headers=IDENT)
        SEEN["events"].append(json.loads(data))


threading.Thread(target=extension_loop, daemon=True).start()
print("init done")


def handler(event, context):
    print("handling", context.aws_request_id)
    wanted = set(event.get("wait_for", ()))  # telemetry types to wait for (at most 5 s)
    with ARRIVED:
        ARRIVED.wait_for(lambda: wanted <= {e["type"] for e in SEEN["telemetry"]}, timeout=5)
    return SEEN
"""


def ember_logs(server: EmberServer, function: str) -> str:
    """The function's log as ``ember logs`` prints it."""
    result = subprocess.run(
        [sys.executable, "-m", "ember.cli.main", "logs", function, "--endpoint", server.url],
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
    return result.stdout


def test_an_internal_extension_gets_invoke_events_and_telemetry(
    lambda_client: Any, server: EmberServer
) -> None:
    lambda_client.create_function(
        FunctionName="internal-ext",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": textwrap.dedent(INTERNAL_EXTENSION_APP)})},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="internal-ext")
    first = invoke(lambda_client, "internal-ext", {}, LogType="Tail")
    first_id = first["ResponseMetadata"]["RequestId"]
    seen = body(first)
    assert seen["register"] == {
        "functionName": "internal-ext",
        "functionVersion": "$LATEST",
        "handler": "app.handler",
    }
    assert seen["subscribe"] == [200, "OK"]
    assert re.search(rf"REPORT RequestId: {first_id}\tDuration: ", tail(first))
    # the environment is reused only after the extension took its INVOKE event, so the
    # second invoke sees the first one's event and telemetry
    second = body(invoke(lambda_client, "internal-ext", {"wait_for": ["platform.report"]}))
    invoke_event = next(e for e in second["events"] if e["requestId"] == first_id)
    assert set(invoke_event) == {
        "eventType",
        "deadlineMs",
        "requestId",
        "invokedFunctionArn",
        "tracing",
    }
    assert invoke_event["invokedFunctionArn"].endswith(":function:internal-ext")
    types = [event["type"] for event in second["telemetry"]]
    assert types[0] == "platform.initStart"
    assert {"platform.initRuntimeDone", "platform.start", "platform.runtimeDone"} <= set(types)
    report = next(e for e in second["telemetry"] if e["type"] == "platform.report")
    assert report["record"]["requestId"] == first_id
    assert report["record"]["metrics"]["initDurationMs"] > 0
    assert {"record": "init done", "type": "function"} in [
        {"record": e["record"], "type": e["type"]} for e in second["telemetry"]
    ]
    log = ember_logs(server, "internal-ext")
    extension_line = "EXTENSION\tName: inside\tState: Ready\tEvents: [INVOKE]\n"
    telemetry_line = "TELEMETRY\tName: inside\tState: Subscribed\tTypes: [Platform, Function]\n"
    assert log.index("INIT_START") < log.index(extension_line) < log.index("START RequestId")
    assert telemetry_line in log


SIGTERM_APP = """
import http.client, json, os, signal, sys, threading

conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
conn.request("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE"]}),
             {"Lambda-Extension-Name": "inside"})
response = conn.getresponse()
IDENT = {"Lambda-Extension-Identifier": response.getheader("Lambda-Extension-Identifier")}
response.read()


def extension_loop():
    client = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
    while True:
        client.request("GET", "/2020-01-01/extension/event/next", headers=IDENT)
        client.getresponse().read()


def on_sigterm(*args):
    print("runtime got SIGTERM", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
threading.Thread(target=extension_loop, daemon=True).start()


def handler(event, context):
    return "ok"
"""


def test_stopping_the_server_runs_the_shutdown_phase(tmp_path: Path) -> None:
    """With an extension, the runtime gets SIGTERM (and time to use it) when Ember stops."""
    data_dir = tmp_path / "data"
    running = start_server(data_dir)
    try:
        client = running.client()
        client.create_function(
            FunctionName="graceful",
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": textwrap.dedent(SIGTERM_APP)})},
        )
        client.get_waiter("function_active_v2").wait(FunctionName="graceful")
        assert body(invoke(client, "graceful", {})) == "ok"
    finally:
        assert running.stop() == 0
    restarted = start_server(data_dir)
    try:
        assert "runtime got SIGTERM\n" in ember_logs(restarted, "graceful")
    finally:
        restarted.stop()


WRAPPER = """#!/bin/sh
export WRAPPED_BY=wrapper.sh
echo "wrapper got: $*"
exec "$@"
"""

WRAPPED_APP = """
import os


def handler(event, context):
    keys = ("WRAPPED_BY", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "AWS_LAMBDA_EXEC_WRAPPER")
    return {key: os.environ.get(key) for key in keys}
"""


def test_the_runtime_starts_through_the_exec_wrapper(lambda_client: Any) -> None:
    variables = {
        "AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrapper.sh",
        "NODE_OPTIONS": "--max-old-space-size=100",
        "JAVA_TOOL_OPTIONS": "-XX:+TieredCompilation -XX:TieredStopAtLevel=1",
    }
    lambda_client.create_function(
        FunctionName="wrapped",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Environment={"Variables": variables},
        Code={
            "ZipFile": make_zip(
                {"app.py": textwrap.dedent(WRAPPED_APP), "wrapper.sh": WRAPPER},
                {"wrapper.sh": 0o755},
            )
        },
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="wrapped")
    response = invoke(lambda_client, "wrapped", {})
    assert body(response) == {"WRAPPED_BY": "wrapper.sh", **variables}


EXTERNAL_EXTENSION = """#!/usr/bin/python3 -Iu
import http.client, json, os, sys

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(__file__)


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


response, _ = call("POST", "/2020-01-01/extension/register",
                   json.dumps({"events": ["INVOKE", "SHUTDOWN"]}), {"Lambda-Extension-Name": NAME})
ident = {"Lambda-Extension-Identifier": response.getheader("Lambda-Extension-Identifier")}
print("extension registered", flush=True)
while True:
    _, data = call("GET", "/2020-01-01/extension/event/next", headers=ident)
    event = json.loads(data)
    print("extension got", event["eventType"], event.get("requestId", ""), flush=True)
    if event["eventType"] == "SHUTDOWN":
        sys.exit(0)
"""


def test_an_external_extension_from_a_layer(lambda_client: Any) -> None:
    layer = lambda_client.publish_layer_version(
        LayerName="ext-layer",
        Content={
            "ZipFile": make_zip(
                {"extensions/logger": EXTERNAL_EXTENSION}, {"extensions/logger": 0o755}
            )
        },
    )
    lambda_client.create_function(
        FunctionName="with-extension",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Layers=[layer["LayerVersionArn"]],
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 'ok'\n"})},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="with-extension")
    first = invoke(lambda_client, "with-extension", {}, LogType="Tail")
    assert body(first) == "ok"
    request_id = first["ResponseMetadata"]["RequestId"]
    second = invoke(lambda_client, "with-extension", {}, LogType="Tail")
    assert f"extension got INVOKE {second['ResponseMetadata']['RequestId']}" in tail(second)
    assert f"REPORT RequestId: {request_id}" not in tail(second)


async def next_of(sandbox: Any, kind: Kind, output: list[bytes]) -> Any:
    """The next ``kind`` frame from the agent, keeping the LOG payloads in ``output``."""
    while (frame := await asyncio.wait_for(read_frame(sandbox.reader), 30)) is not None:
        if frame.kind is Kind.LOG:
            output.append(frame.payload)
        elif frame.kind is kind:
            return frame
    return None


@pytest.mark.parametrize("backend_name", ["namespace", "namespace-exec"])
async def test_an_external_extension_in_a_namespace_sandbox(
    tmp_path: Path, backend_name: str
) -> None:
    """Until layers reach /opt through the API: a sandbox whose /opt holds the extension,
    driven over its channel as the invoker drives it."""
    if not PROBE_AVAILABLE:
        pytest.skip(f"the probe runtime needs {PROBE_PYTHON}")
    backend = make_backend(backend_name, tmp_path / "data")
    code, extensions = tmp_path / "code", tmp_path / "opt" / "extensions"
    code.mkdir()
    extensions.mkdir(parents=True)
    (code / "probe.py").write_text(PROBE)
    (extensions / "logger").write_text(EXTERNAL_EXTENSION)
    (extensions / "logger").chmod(0o755)
    sandbox = await backend.start(SandboxSpec(code, tmp_path / "opt", memory_mb=128, tmp_mb=512))
    output: list[bytes] = []
    try:
        start: dict[str, Any] = {
            "argv": [PROBE_PYTHON, "-I", "-S", f"{sandbox.task_root}/probe.py"],
            "cwd": sandbox.task_root,
            "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "AWS_LAMBDA_FUNCTION_NAME": "f"},
            "runtime_api": sandbox.runtime_api_bind,
            "extensions_dir": f"{sandbox.opt_root}/extensions",
        }
        sandbox.writer.writelines(encode(Kind.START, start))
        init = await next_of(sandbox, Kind.INIT_DONE, output)
        assert init.meta["extensions"] == [
            {"name": "logger", "events": ["INVOKE", "SHUTDOWN"], "external": True}
        ]
        meta = {"id": "req-1", "deadline_ms": 4102444800000, "arn": "arn:aws:lambda:x"}
        sandbox.writer.writelines(encode(Kind.INVOKE, meta, b'{"a": 1}'))
        response = await next_of(sandbox, Kind.RESPONSE, output)
        assert json.loads(response.payload)["echo"] == {"a": 1}
        await next_of(sandbox, Kind.NEXT, output)
        sandbox.writer.writelines(encode(Kind.SHUTDOWN, {"reason": "spindown", "budget_ms": 2000}))
        assert await next_of(sandbox, Kind.EXIT, output) is None  # runs until the channel ends
        logged = b"".join(output)
        assert b"extension registered\n" in logged
        assert b"extension got INVOKE req-1\n" in logged
        assert b"extension got SHUTDOWN \n" in logged
    finally:
        await sandbox.kill()
        await backend.close()


def test_sandbox_localdomain_is_the_sandbox_itself(lambda_client: Any) -> None:
    """Extensions bind their telemetry listener by the name Lambda's docs use."""
    source = (
        "import socket\n\n"
        "def handler(e, c):\n"
        "    return socket.gethostbyname('sandbox.localdomain')\n"
    )
    lambda_client.create_function(
        FunctionName="localdomain",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": source})},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName="localdomain")
    assert body(invoke(lambda_client, "localdomain", {})) == "127.0.0.1"
