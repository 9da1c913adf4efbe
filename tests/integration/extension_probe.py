"""A real external extension for the telemetry tests, and the function that questions it.

``PROBE`` is shipped in a layer as ``extensions/probe`` (run by the sandbox's
``/usr/bin/python3``). At init it registers for INVOKE and SHUTDOWN, starts an HTTP and a
TCP listener on the sandbox's loopback, and makes the subscription requests listed in the
function's ``PROBE_SUBSCRIPTIONS`` variable (a JSON list of ``[path, body]``; the strings
``HTTP_URI`` and ``TCP_URI`` in a body become its listeners' addresses), keeping each
answer. Everything its listeners receive is appended, one JSON item per line, to
``/tmp/probe-<function>.jsonl``, and kept in memory. It prints a line per event it gets
(``probe got INVOKE <id>``), which Lambda delivers as ``extension`` records.

``PROBE_INIT`` makes it fail its init: ``crash`` (exit 3 before registering) or
``init-error`` (register, then ``/extension/init/error``). ``PROBE_REFUSE`` = n makes its
HTTP listener answer 500 to the first n deliveries (their bodies are kept as refused).

The function (``HANDLER``) talks to the probe's control listener (its port is in
``/tmp/probe-<function>.port``) with the steps of its event, in order:
``{"print": [lines]}``, ``{"print_many": n}`` (``line 0`` … ``line n-1``), ``{"log": text}``
(the root logger, at INFO), and
``{"call": "<method> <path>"}`` whose answer is returned. Control paths:

* ``GET /wait?type=T[&requestId=R][&record=S]``: wait (at most 10 s) until an item of
  type T (and that request id, or that string record) was received; answer what the
  probe knows: ``items``, ``refused``, ``subscribe`` (status and body per request),
  ``events``, ``posts`` (method, path, content type), ``matched``.
* ``POST /hold``: the next delivery to the HTTP listener is held until ``POST /release``.
* ``POST /exit-error``: the probe calls ``/extension/exit/error``, answers its status and
  body, and exits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tests.integration.functions import ROLE, make_zip

PROBE = r"""#!/usr/bin/python3 -Iu
import http.client, http.server, json, os, socketserver, sys, threading, urllib.parse

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(__file__)
FUNCTION = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
STATE = {"items": [], "refused": [], "subscribe": [], "events": [], "posts": []}
CHANGED = threading.Condition()
HOLD = {"next": False, "released": threading.Event()}
REFUSE = [int(os.environ.get("PROBE_REFUSE", "0"))]
RECORDS = open("/tmp/probe-%s.jsonl" % FUNCTION, "a")


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def received(items):
    with CHANGED:
        for item in items:
            RECORDS.write(json.dumps(item) + "\n")
        RECORDS.flush()
        STATE["items"].extend(items)
        CHANGED.notify_all()


def matches(item, query):
    record = item.get("record")
    if item.get("type") != query.get("type"):
        return False
    if "requestId" in query and not (
            isinstance(record, dict) and record.get("requestId") == query["requestId"]):
        return False
    return "record" not in query or record == query["record"]


class Listener(http.server.BaseHTTPRequestHandler):
    def deliver(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        with CHANGED:
            STATE["posts"].append([self.command, self.path, self.headers["Content-Type"]])
            hold, HOLD["next"] = HOLD["next"], False
            refuse = REFUSE[0] > 0
            REFUSE[0] -= refuse
        if hold:
            HOLD["released"].wait(30)
        if refuse:
            with CHANGED:
                STATE["refused"].append(json.loads(data))
                CHANGED.notify_all()
            self.send_response(500)
        else:
            received(json.loads(data))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = deliver

    def log_message(self, *args):
        pass


class TcpListener(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            received([json.loads(line)])


class Control(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with CHANGED:
            matched = CHANGED.wait_for(
                lambda: any(matches(i, query) for i in STATE["items"]), timeout=10)
            self.answer({**STATE, "matched": matched})

    def do_POST(self):
        if self.path == "/hold":
            HOLD["next"] = True
            HOLD["released"].clear()
            self.answer("held")
        elif self.path == "/release":
            HOLD["released"].set()
            self.answer("released")
        elif self.path == "/exit-error":
            headers = dict(IDENT, **{"Lambda-Extension-Function-Error-Type": "Probe.Broken"})
            response, data = call("POST", "/2020-01-01/extension/exit/error",
                                  json.dumps({"errorMessage": "broken", "errorType": "Probe"}),
                                  headers)
            self.answer([response.status, json.loads(data)])
            self.wfile.flush()
            print("probe exits after exit/error", flush=True)
            os._exit(0)  # as Lambda's docs ask: exit after the exit/error answer

    def answer(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class ThreadedTcp(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True


mode = os.environ.get("PROBE_INIT", "")
if mode == "crash":
    print("probe crashing", flush=True)
    sys.exit(3)
response, answer = call("POST", "/2020-01-01/extension/register",
                        json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
                        {"Lambda-Extension-Name": NAME})
IDENT = {"Lambda-Extension-Identifier": response.getheader("Lambda-Extension-Identifier")}
print("probe registered", flush=True)
if mode == "init-error":
    headers = dict(IDENT, **{"Lambda-Extension-Function-Error-Type": "Probe.ConfigInvalid"})
    response, answer = call("POST", "/2020-01-01/extension/init/error",
                            json.dumps({"errorMessage": "bad config", "errorType": "Probe"}),
                            headers)
    print("probe init error", response.status, answer.decode(), flush=True)
    sys.exit(0)
http_port = serve(Threaded(("127.0.0.1", 0), Listener))
tcp_port = serve(ThreadedTcp(("127.0.0.1", 0), TcpListener))
control_port = serve(Threaded(("127.0.0.1", 0), Control))
with open("/tmp/probe-%s.port" % FUNCTION, "w") as out:
    out.write(str(control_port))
for path, body in json.loads(os.environ.get("PROBE_SUBSCRIPTIONS", "[]")):
    text = json.dumps(body).replace("HTTP_URI", "http://sandbox.localdomain:%d/in" % http_port)
    text = text.replace("TCP_URI", "tcp://sandbox.localdomain:%d" % tcp_port)
    response, answer = call("PUT", path, text, dict(IDENT, **{"Content-Type": "application/json"}))
    STATE["subscribe"].append([response.status, json.loads(answer)])
while True:
    _, data = call("GET", "/2020-01-01/extension/event/next", headers=IDENT)
    event = json.loads(data)
    with CHANGED:
        STATE["events"].append(event)
    print("probe got", event["eventType"], event.get("requestId", event.get("shutdownReason")),
          flush=True)
    if event["eventType"] == "SHUTDOWN":
        sys.exit(0)
"""

HANDLER = """
import json, logging, os, urllib.request

PORT_FILE = "/tmp/probe-%s.port" % os.environ["AWS_LAMBDA_FUNCTION_NAME"]


def handler(event, context):
    answers = []
    for step in event.get("steps", []):
        if "log" in step:
            logging.getLogger().info(step["log"])
        elif "print" in step:
            for line in step["print"]:
                print(line)
        elif "print_many" in step:
            print("\\n".join("line %d" % i for i in range(step["print_many"])))
        else:
            method, path = step["call"].split(" ", 1)
            with open(PORT_FILE) as source:
                port = source.read()
            request = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path),
                                             method=method, data=b"" if method == "POST" else None)
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(json.loads(response.read()))
    return answers
"""


def deploy_probe(
    client: Any,
    name: str,
    subscriptions: Sequence[tuple[str, dict[str, Any]]] = (),
    log_format: str = "Text",
    **settings: str,
) -> None:
    """A function named ``name`` with the probe's layer; ``settings`` become its
    ``PROBE_*`` variables (``init=`` → ``PROBE_INIT``)."""
    layer = client.publish_layer_version(
        LayerName=f"{name}-probe",
        Content={"ZipFile": make_zip({"extensions/probe": PROBE}, {"extensions/probe": 0o755})},
    )
    variables = {f"PROBE_{key.upper()}": value for key, value in settings.items()}
    variables["PROBE_SUBSCRIPTIONS"] = json.dumps([list(s) for s in subscriptions])
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Layers=[layer["LayerVersionArn"]],
        Timeout=30,
        Environment={"Variables": variables},
        LoggingConfig={"LogFormat": log_format},
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
