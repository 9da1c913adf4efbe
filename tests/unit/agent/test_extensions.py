"""External and internal extensions through a real agent (lambda-spec §1.9, §2)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ember.agent.protocol import Kind
from tests.unit.agent.agent_harness import (
    FUNCTION_ARN,
    AgentSession,
    StartAgent,
    ember_python_argv,
    json_payload,
    lambda_env,
    scripted_runtime_argv,
    write_task,
)
from tests.unit.agent.extension_scripts import write_extension, write_script
from tests.unit.agent.test_agent_lifecycle import wait_gone

APP = """
    import os
    print("init sees registered:", os.path.exists(os.environ["REGISTERED_MARK"]))

    def handler(event, context):
        print("handling", event.get("n"))
        return {"ok": event.get("n")}
"""


def events_in(output: bytes, kind: str = "event") -> list[dict[str, Any]]:
    """The JSON objects an extension printed as ``<kind> {...}`` lines."""
    prefix = f"{kind} ".encode()
    lines = output.splitlines()
    return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


@pytest.fixture
def opt(tmp_path: Path) -> Path:
    return tmp_path / "opt"


async def start_with_extensions(
    start_agent: StartAgent, task_root: Path, opt: Path, **env: str
) -> AgentSession:
    write_task(task_root, {"app.py": APP})
    mark = task_root.parent / "registered-mark"
    full_env = lambda_env(task_root, REGISTERED_MARK=str(mark), **env)
    return await start_agent(
        ember_python_argv(), task_root, full_env, extensions_dir=str(opt / "extensions")
    )


async def test_external_extensions_register_before_the_runtime_starts(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    mark = task_root.parent / "registered-mark"
    # the extension leaves a mark once registered, which the function's init code looks for
    write_script(
        opt / "extensions",
        "marker",
        f"""
import http.client, json, os
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
conn.request("POST", "/2020-01-01/extension/register", json.dumps({{"events": []}}),
             {{"Lambda-Extension-Name": "marker"}})
response = conn.getresponse()
ident = response.getheader("Lambda-Extension-Identifier")
print("register", response.status, response.read().decode().strip(), flush=True)
open({str(mark)!r}, "w").close()
conn.request("GET", "/2020-01-01/extension/event/next",
             headers={{"Lambda-Extension-Identifier": ident}})
conn.getresponse().read()
""",
    )
    write_extension(opt / "extensions", "second.py")
    session = await start_with_extensions(start_agent, task_root, opt)
    init = await session.expect(Kind.INIT_DONE)
    assert init.meta["extensions"] == [
        {"name": "marker", "events": [], "external": True},
        {"name": "second.py", "events": ["INVOKE", "SHUTDOWN"], "external": True},
    ]
    assert b"init sees registered: True\n" in session.output()
    registered = (
        b'register 200 {"functionName":"fn","functionVersion":"$LATEST","handler":"app.handler"}\n'
    )
    await session.until_output(registered, "extension")
    platform = session.output("platform")
    assert b"EXTENSION\tName: marker\tState: Ready\tEvents: []\n" in platform
    assert b"EXTENSION\tName: second.py\tState: Ready\tEvents: [INVOKE, SHUTDOWN]\n" in platform


async def test_invoke_and_shutdown_events_have_lambdas_shapes(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_extension(opt / "extensions", "ext")
    session = await start_with_extensions(start_agent, task_root, opt)
    await session.expect(Kind.INIT_DONE)
    trace = "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"
    session.invoke("req-1", b'{"n": 1}', trace_id=trace, deadline_ms=1700000000000)
    response = await session.expect(Kind.RESPONSE)
    assert json_payload(response) == {"ok": 1}
    done = await session.expect(Kind.NEXT)
    assert done.meta["extensions_ms"] >= 0
    await session.until_output(b'"eventType": "INVOKE"', "extension")
    assert events_in(session.output("extension")) == [
        {
            "eventType": "INVOKE",
            "deadlineMs": 1700000000000,
            "requestId": "req-1",
            "invokedFunctionArn": FUNCTION_ARN,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": trace},
        }
    ]
    before = int(time.time() * 1000)
    session.send(Kind.SHUTDOWN, {"reason": "spindown", "budget_ms": 2000})
    await session.until_closed()
    shutdown = events_in(session.output("extension"))[-1]
    assert shutdown["eventType"] == "SHUTDOWN"
    assert shutdown["shutdownReason"] == "spindown"
    assert before < shutdown["deadlineMs"] <= int(time.time() * 1000) + 2000
    assert await session.wait_exit() == 0


async def test_the_environment_is_reused_only_after_extensions_finish_the_invoke(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    hold, done_file = task_root.parent / "hold", task_root.parent / "done"
    os.mkfifo(hold)
    write_extension(opt / "extensions", "slow", hold_fifo=hold, done_file=done_file)
    session = await start_with_extensions(start_agent, task_root, opt)
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1", b'{"n": 1}')
    await session.expect(Kind.RESPONSE)  # the caller's answer does not wait for the extension
    assert not done_file.exists()
    with hold.open("w") as fifo:  # release the extension
        fifo.write("go")
    await session.expect(Kind.NEXT)
    assert done_file.exists()  # NEXT came only after the extension's /event/next
    session.invoke("req-2", b'{"n": 2}')
    assert json_payload(await session.expect(Kind.RESPONSE)) == {"ok": 2}


async def test_an_extension_init_error_fails_the_init(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_extension(opt / "extensions", "broken", init_error="Extension.ConfigInvalid")
    session = await start_with_extensions(start_agent, task_root, opt)
    failed = await session.expect(Kind.INIT_ERROR)
    assert failed.meta["error_type"] == "Extension.InitError"
    assert json_payload(failed) == {
        "errorType": "Extension.InitError",
        "errorMessage": "Error: broken: Extension.ConfigInvalid",
    }
    await session.until_output(b"init error 202", "extension")
    assert b'init error 202 {"status":"OK"}' in session.output("extension")


async def test_an_extension_that_exits_before_registering_is_a_crash(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_script(opt / "extensions", "crasher", "raise SystemExit(3)\n")
    session = await start_with_extensions(start_agent, task_root, opt)
    failed = await session.expect(Kind.INIT_ERROR)
    assert failed.meta["error_type"] == "Extension.Crash"
    assert json_payload(failed)["errorMessage"] == "Error: crasher: exit status 3"


async def test_an_extension_that_cannot_be_executed_is_a_launch_error(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    (opt / "extensions").mkdir(parents=True)
    (opt / "extensions" / "not-executable").write_text("#!/bin/sh\n")
    session = await start_with_extensions(start_agent, task_root, opt)
    failed = await session.expect(Kind.INIT_ERROR)
    assert failed.meta["error_type"] == "Extension.LaunchError"
    assert "permission denied" in json_payload(failed)["errorMessage"]
    await session.expect(Kind.EXIT)


async def test_extensions_get_the_extension_environment(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_script(
        opt / "extensions",
        "envdump",
        """
import json, os, sys
print("env", json.dumps(sorted(os.environ)), flush=True)
sys.exit(0)
""",
    )
    session = await start_with_extensions(start_agent, task_root, opt, CUSTOM="yes")
    await session.expect(Kind.INIT_ERROR)
    names = events_in(session.output("extension"), "env")
    assert names, session.output("extension")
    seen = set(names[0])
    assert {"AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "CUSTOM"} <= seen
    hidden = {"_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_STREAM_NAME"}
    assert not hidden & seen


INTERNAL_RUNTIME = """
import http.client, json, os, threading
API = os.environ["AWS_LAMBDA_RUNTIME_API"]

def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()

def say(line):  # one write per line: two threads print
    os.write(1, (line + "\\n").encode())

response, data = call("POST", "/2020-01-01/extension/register",
                      json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
                      {"Lambda-Extension-Name": "in-process"})
say(f"shutdown refused {response.status} {data.decode().strip()}")
response, _ = call("POST", "/2020-01-01/extension/register", json.dumps({"events": ["INVOKE"]}),
                   {"Lambda-Extension-Name": "in-process"})
ident = response.getheader("Lambda-Extension-Identifier")

def extension_loop():
    while True:
        _, data = call("GET", "/2020-01-01/extension/event/next",
                       headers={"Lambda-Extension-Identifier": ident})
        say(f"internal got {json.loads(data)['requestId']}")

threading.Thread(target=extension_loop, daemon=True).start()
while True:
    response, data = call("GET", "/2018-06-01/runtime/invocation/next")
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    late, body = call("POST", "/2020-01-01/extension/register", b"{}",
                      {"Lambda-Extension-Name": "late"})
    say(f"late {late.status} {body.decode().strip()}")
    call("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", b'"done"')
"""


async def test_internal_extensions_register_from_the_runtime_process(
    task_root: Path, start_agent: StartAgent
) -> None:
    argv = scripted_runtime_argv(task_root, INTERNAL_RUNTIME)
    session = await start_agent(argv, task_root, lambda_env(task_root))
    init = await session.expect(Kind.INIT_DONE)
    assert init.meta["extensions"] == [
        {"name": "in-process", "events": ["INVOKE"], "external": False}
    ]
    refused = (
        b'shutdown refused 403 {"errorMessage":"SHUTDOWN: '
        b'ShutdownEventNotSupportedForInternalExtension",'
        b'"errorType":"Extension.InvalidEventType"}'
    )
    assert refused in session.output()
    session.invoke("req-1")
    assert (await session.expect(Kind.RESPONSE)).payload == b'"done"'
    await session.expect(Kind.NEXT)
    assert b"internal got req-1\n" in session.output()
    closed = (
        b'late 403 {"errorMessage":"Extension registration closed already",'
        b'"errorType":"Extension.RegistrationClosed"}'
    )
    assert closed in session.output()


async def test_without_extensions_shutdown_kills_the_runtime_at_once(
    task_root: Path, start_agent: StartAgent
) -> None:
    write_task(
        task_root,
        {
            "app.py": """
                import signal
                signal.signal(signal.SIGTERM, lambda *a: print("got SIGTERM", flush=True))

                def handler(event, context):
                    return 1
            """
        },
    )
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    init = await session.expect(Kind.INIT_DONE)
    assert init.meta["extensions"] == []
    session.send(Kind.SHUTDOWN, {"reason": "spindown", "budget_ms": 0})
    await session.until_closed()
    assert b"got SIGTERM" not in session.output()
    assert await session.wait_exit() == 0


async def test_with_extensions_the_runtime_gets_sigterm_first(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_extension(opt / "extensions", "ext", events=("SHUTDOWN",))
    write_task(
        task_root,
        {
            "app.py": """
                import signal, sys

                def on_term(*args):
                    print("runtime got SIGTERM", flush=True)
                    sys.exit(0)

                signal.signal(signal.SIGTERM, on_term)

                def handler(event, context):
                    return 1
            """
        },
    )
    env = lambda_env(task_root)
    session = await start_agent(
        ember_python_argv(), task_root, env, extensions_dir=str(opt / "extensions")
    )
    await session.expect(Kind.INIT_DONE)
    session.send(Kind.SHUTDOWN, {"reason": "timeout", "budget_ms": 2000})
    await session.until_closed()
    assert b"runtime got SIGTERM\n" in session.output()
    shutdown = events_in(session.output("extension"))[-1]
    assert shutdown["shutdownReason"] == "timeout"


async def test_closing_the_channel_kills_extensions(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_script(
        opt / "extensions",
        "stubborn",
        """
import http.client, json, os, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
conn.request("POST", "/2020-01-01/extension/register", json.dumps({"events": []}),
             {"Lambda-Extension-Name": "stubborn"})
response = conn.getresponse()
ident = response.getheader("Lambda-Extension-Identifier")
response.read()
print("pid", os.getpid(), flush=True)
conn.request("GET", "/2020-01-01/extension/event/next",
             headers={"Lambda-Extension-Identifier": ident})
conn.getresponse().read()
""",
    )
    session = await start_with_extensions(start_agent, task_root, opt)
    await session.expect(Kind.INIT_DONE)
    await session.until_output(b"pid ", "extension")
    pid = int(session.output("extension").split(b"pid ")[1].split()[0])
    pidfd = os.pidfd_open(pid)
    await session.close()
    await wait_gone(pidfd)  # SIGTERM alone would not have ended it


async def test_an_extension_still_running_at_the_shutdown_deadline_is_killed(
    task_root: Path, start_agent: StartAgent, opt: Path
) -> None:
    write_script(
        opt / "extensions",
        "lingering",
        """
import http.client, json, os, signal, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
conn.request("POST", "/2020-01-01/extension/register", json.dumps({"events": ["SHUTDOWN"]}),
             {"Lambda-Extension-Name": "lingering"})
response = conn.getresponse()
ident = response.getheader("Lambda-Extension-Identifier")
response.read()
print("pid", os.getpid(), flush=True)
conn.request("GET", "/2020-01-01/extension/event/next",
             headers={"Lambda-Extension-Identifier": ident})
print("got", conn.getresponse().read().decode(), flush=True)
threading.Event().wait()  # never exits by itself
""",
    )
    session = await start_with_extensions(start_agent, task_root, opt)
    await session.expect(Kind.INIT_DONE)
    await session.until_output(b"pid ", "extension")
    pid = int(session.output("extension").split(b"pid ")[1].split()[0])
    pidfd = os.pidfd_open(pid)
    session.send(Kind.SHUTDOWN, {"reason": "spindown", "budget_ms": 300})
    await session.until_closed()
    assert b'"eventType":"SHUTDOWN"' in session.output("extension")
    await wait_gone(pidfd)
