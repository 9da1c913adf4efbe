"""Stdlib Python extensions for the agent tests, written into a temporary /opt/extensions.

Each script is an executable file with a ``#!<this interpreter> -ISu`` line. What it does
is set by constants substituted at the top, so that one source covers registration, event
loops, init errors, post-invoke work and telemetry subscriptions.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXTENSION_SOURCE = r"""
import http.client, http.server, json, os, sys, threading

EVENTS = __EVENTS__
INIT_ERROR = __INIT_ERROR__
HOLD_FIFO = __HOLD_FIFO__      # on INVOKE: block reading this FIFO, then create DONE_FILE
DONE_FILE = __DONE_FILE__
SUBSCRIBE = __SUBSCRIBE__      # (api path, body) or None
NAME = os.path.basename(__file__)
API = os.environ["AWS_LAMBDA_RUNTIME_API"]


def say(*parts):  # one write per line: the listener thread prints too
    os.write(1, (" ".join(str(part) for part in parts) + "\n").encode())


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


class Listener(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        for event in json.loads(body):
            say("telemetry", json.dumps(event))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


response, data = call(
    "POST", "/2020-01-01/extension/register", json.dumps({"events": EVENTS}),
    {"Lambda-Extension-Name": NAME},
)
ident = response.getheader("Lambda-Extension-Identifier")
say("registered", response.status, data.decode().strip())
headers = {"Lambda-Extension-Identifier": ident}
if INIT_ERROR:
    response, data = call(
        "POST", "/2020-01-01/extension/init/error", b'{"errorMessage":"no"}',
        {**headers, "Lambda-Extension-Function-Error-Type": INIT_ERROR},
    )
    say("init error", response.status, data.decode().strip())
    sys.exit(1)
if SUBSCRIBE:
    server = http.server.HTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path, body = SUBSCRIBE
    body["destination"] = {
        "protocol": "HTTP", "URI": f"http://sandbox.localdomain:{server.server_port}/in"
    }
    response, data = call("PUT", path, json.dumps(body), headers)
    say("subscribed", response.status, data.decode().strip())
while True:
    response, data = call("GET", "/2020-01-01/extension/event/next", headers=headers)
    event = json.loads(data)
    say("event", json.dumps(event))
    if event["eventType"] == "SHUTDOWN":
        sys.exit(0)
    if HOLD_FIFO:
        with open(HOLD_FIFO) as fifo:
            fifo.read()
        open(DONE_FILE, "w").close()
"""


def write_extension(
    directory: Path,
    name: str,
    *,
    events: tuple[str, ...] = ("INVOKE", "SHUTDOWN"),
    init_error: str | None = None,
    hold_fifo: Path | None = None,
    done_file: Path | None = None,
    subscribe: tuple[str, dict[str, object]] | None = None,
) -> Path:
    """An executable extension ``directory/name``; returns its path."""
    source = (
        EXTENSION_SOURCE.replace("__EVENTS__", repr(list(events)))
        .replace("__INIT_ERROR__", repr(init_error))
        .replace("__HOLD_FIFO__", repr(str(hold_fifo) if hold_fifo else None))
        .replace("__DONE_FILE__", repr(str(done_file) if done_file else None))
        .replace("__SUBSCRIBE__", repr(subscribe))
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable} -ISu\n{source}")
    path.chmod(0o755)
    return path


def write_script(directory: Path, name: str, source: str) -> Path:
    """Any executable Python script (for crashing extensions, wrappers …)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable} -ISu\n{source}")
    path.chmod(0o755)
    return path
