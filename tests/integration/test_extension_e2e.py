"""Issue 7 end to end: a real external extension from a layer, in a real ``ember serve``.

The extension (``extensions/recorder``, a Python script run by the sandbox's
``/usr/bin/python3``) registers for INVOKE and SHUTDOWN, subscribes to the Telemetry API
(platform and function records) with an HTTP listener on the sandbox's loopback, and
forwards everything it receives as one ``RECORDER <kind> <json>`` line per item on its
stdout, which Ember stores in the function's log. The test invokes the function a few
times, changes its configuration (which retires the idle environment: Lambda's shutdown
phase with reason ``spindown``), then reads the log through Ember's log API and checks
what the extension saw and in what order. No sleeps: the log is polled with a deadline.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import EmberServer
from tests.integration.esm_support import function_log, wait_for
from tests.integration.functions import ROLE, make_zip
from tests.integration.telemetry_shapes import misfits
from tests.integration.test_invoke import body, invoke

FUNCTION = "recorded"
MARK = "RECORDER "
INVOKES = 3

RECORDER = """#!/usr/bin/python3 -Iu
import http.client, http.server, json, os, sys, threading

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(__file__)
WRITING = threading.Lock()


def record(kind, item):
    line = ("RECORDER " + kind + " " + json.dumps(item, separators=(",", ":")) + "\\n").encode()
    with WRITING:
        while line:
            line = line[os.write(1, line):]


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


class Listener(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for item in batch:
            record("telemetry", item)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


response, answer = call("POST", "/2020-01-01/extension/register",
                        json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
                        {"Lambda-Extension-Name": NAME})
record("register", [response.status, json.loads(answer)])
ident = {"Lambda-Extension-Identifier": response.getheader("Lambda-Extension-Identifier")}
listener = http.server.HTTPServer(("127.0.0.1", 0), Listener)
threading.Thread(target=listener.serve_forever, daemon=True).start()
subscription = {
    "schemaVersion": "2022-07-01",
    "types": ["platform", "function"],
    "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
    "destination": {"protocol": "HTTP",
                    "URI": "http://sandbox.localdomain:%d" % listener.server_port},
}
response, answer = call("PUT", "/2022-07-01/telemetry", json.dumps(subscription), ident)
record("subscribe", [response.status, json.loads(answer)])
while True:
    _, data = call("GET", "/2020-01-01/extension/event/next", headers=ident)
    event = json.loads(data)
    record("event", event)
    if event["eventType"] == "SHUTDOWN":
        sys.exit(0)
"""

HANDLER = """
def handler(event, context):
    print("handler saw", context.aws_request_id)
    return context.aws_request_id
"""


def recorded(lines: list[str], kind: str) -> list[Any]:
    """The items the recorder logged as ``kind``, in order."""
    prefix = f"{MARK}{kind} "
    return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


def shut_down(server: EmberServer) -> bool:
    return any(e["eventType"] == "SHUTDOWN" for e in recorded(log_lines(server), "event"))


def log_lines(server: EmberServer) -> list[str]:
    return [message.rstrip("\n") for message in function_log(server, FUNCTION)]


def deploy_with_recorder(client: Any) -> None:
    layer = client.publish_layer_version(
        LayerName="recorder",
        Content={
            "ZipFile": make_zip({"extensions/recorder": RECORDER}, {"extensions/recorder": 0o755})
        },
    )
    client.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Layers=[layer["LayerVersionArn"]],
        Timeout=10,
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    client.get_waiter("function_active_v2").wait(FunctionName=FUNCTION)


def test_an_external_extension_records_invokes_telemetry_and_shutdown(
    lambda_client: Any, server: EmberServer
) -> None:
    deploy_with_recorder(lambda_client)
    ids: list[str] = []
    for _ in range(INVOKES):
        response = invoke(lambda_client, FUNCTION, {})
        assert "FunctionError" not in response, response["Body"]
        ids.append(response["ResponseMetadata"]["RequestId"])
        assert body(response) == ids[-1]
    # a configuration change retires the idle environment: its shutdown phase runs
    lambda_client.update_function_configuration(FunctionName=FUNCTION, Description="retire it")
    wait_for(lambda: shut_down(server), 15, "the recorder's SHUTDOWN event in the log")
    lines = log_lines(server)

    # one environment, registered (and subscribed) before the first invoke started
    assert recorded(lines, "register") == [
        [200, {"functionName": FUNCTION, "functionVersion": "$LATEST", "handler": "app.handler"}]
    ]
    assert recorded(lines, "subscribe") == [[200, "OK"]]
    register_at = next(i for i, line in enumerate(lines) if line.startswith(f"{MARK}register "))
    ready = "EXTENSION\tName: recorder\tState: Ready\tEvents: [INVOKE, SHUTDOWN]"
    first_start = lines.index(f"START RequestId: {ids[0]} Version: $LATEST")
    assert register_at < lines.index(ready) < first_start

    # the events: one INVOKE per invoke, in order, then SHUTDOWN (spindown)
    events = recorded(lines, "event")
    assert [e["eventType"] for e in events] == ["INVOKE"] * INVOKES + ["SHUTDOWN"]
    assert [e["requestId"] for e in events[:INVOKES]] == ids
    for event in events[:INVOKES]:
        assert event["invokedFunctionArn"].endswith(f":function:{FUNCTION}")
        assert isinstance(event["deadlineMs"], int)
    shutdown = events[-1]
    assert shutdown["shutdownReason"] == "spindown"
    assert isinstance(shutdown["deadlineMs"], int)

    # telemetry: the init, each invoke's platform records, the handler's output
    telemetry = recorded(lines, "telemetry")
    assert misfits(telemetry, "telemetry") == []  # what a strict client takes, item by item
    types = [item["type"] for item in telemetry]
    assert types[0] == "platform.initStart"
    assert all(t.startswith("platform.") or t == "function" for t in types)
    extension = next(i for i in telemetry if i["type"] == "platform.extension")
    assert extension["record"] == {
        "name": "recorder",
        "state": "Ready",
        "events": ["INVOKE", "SHUTDOWN"],
    }
    outputs = [item["record"] for item in telemetry if item["type"] == "function"]
    for request_id in ids:
        mine = [
            item["type"]
            for item in telemetry
            if isinstance(item["record"], dict) and item["record"].get("requestId") == request_id
        ]
        assert mine == ["platform.start", "platform.runtimeDone", "platform.report"]
        assert f"handler saw {request_id}" in outputs
    assert telemetry.index(extension) < types.index("platform.start")
