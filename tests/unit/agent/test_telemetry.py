"""Telemetry API and Logs API: subscriptions, validation, and delivery to a subscriber."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ember.agent.extensions_api import ExtensionsApi, FunctionInfo
from ember.agent.http_server import Request
from ember.agent.protocol import Kind
from ember.agent.telemetry import Event, TelemetryBus, translate
from ember.agent.telemetry_api import InvalidSubscription, TelemetryApi, parse_subscription
from tests.unit.agent.agent_harness import (
    AgentSession,
    StartAgent,
    ember_python_argv,
    lambda_env,
    scripted_runtime_argv,
    write_task,
)
from tests.unit.agent.extension_scripts import write_extension
from tests.unit.agent.test_extensions import events_in

APP = """
    print("init line")

    def handler(event, context):
        print("hello from the handler")
        return "ok"
"""


async def subscribed_session(
    start_agent: StartAgent, task_root: Path, tmp_path: Path, path: str, body: dict[str, Any]
) -> AgentSession:
    opt = tmp_path / "opt"
    write_extension(opt / "extensions", "listener", events=("INVOKE",), subscribe=(path, body))
    write_task(task_root, {"app.py": APP})
    return await start_agent(
        ember_python_argv(),
        task_root,
        lambda_env(task_root),
        extensions_dir=str(opt / "extensions"),
    )


async def wait_for_types(session: AgentSession, *types: str) -> list[dict[str, Any]]:
    """Telemetry events the listener printed, once all of ``types`` arrived."""
    while True:
        events = events_in(session.output("extension"), "telemetry")
        if set(types) <= {event["type"] for event in events}:
            return events
        if await session.next_frame() is None:
            raise AssertionError(f"channel closed; got {events}")


async def test_a_telemetry_subscriber_receives_platform_and_function_events(
    task_root: Path, start_agent: StartAgent, tmp_path: Path
) -> None:
    body = {
        "schemaVersion": "2022-07-01",
        "types": ["platform", "function"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
    }
    session = await subscribed_session(
        start_agent, task_root, tmp_path, "/2022-07-01/telemetry", body
    )
    await session.expect(Kind.INIT_DONE)
    assert b'subscribed 200 "OK"' in session.output("extension")
    trace = "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"
    session.invoke("req-1", trace_id=trace)
    await session.expect(Kind.RESPONSE)
    await session.expect(Kind.NEXT)
    events = await wait_for_types(session, "platform.report")
    by_type = {event["type"]: event for event in events}
    tracing = {"type": "X-Amzn-Trace-Id", "value": trace}
    assert by_type["platform.initStart"]["record"] == {
        "initializationType": "on-demand",
        "phase": "init",
        "functionName": "fn",
        "functionVersion": "$LATEST",
    }
    assert by_type["platform.telemetrySubscription"]["record"] == {
        "name": "listener",
        "state": "Subscribed",
        "types": ["function", "platform"],
    }
    assert by_type["platform.initRuntimeDone"]["record"] == {
        "initializationType": "on-demand",
        "phase": "init",
        "status": "success",
    }
    assert by_type["platform.extension"]["record"] == {
        "name": "listener",
        "state": "Ready",
        "events": ["INVOKE"],
    }
    assert by_type["platform.initReport"]["record"]["metrics"]["durationMs"] > 0
    assert by_type["platform.start"]["record"] == {
        "requestId": "req-1",
        "version": "$LATEST",
        "tracing": tracing,
    }
    done = by_type["platform.runtimeDone"]["record"]
    order = [e["type"] for e in events]  # runtimeDone once the runtime is back on /next
    assert order.index("platform.start") < order.index("platform.runtimeDone")
    assert order.index("platform.runtimeDone") < order.index("platform.report")
    assert done["requestId"] == "req-1"
    assert done["status"] == "success"
    assert done["metrics"]["producedBytes"] == len(b'"ok"')
    report = by_type["platform.report"]["record"]
    assert report["requestId"] == "req-1"
    assert report["status"] == "success"
    assert report["tracing"] == tracing
    metrics = report["metrics"]
    assert metrics["memorySizeMB"] == 128
    assert metrics["billedDurationMs"] >= metrics["durationMs"]
    assert metrics["maxMemoryUsedMB"] > 1
    assert metrics["initDurationMs"] > 0
    functions = [e["record"] for e in events if e["type"] == "function"]
    assert "init line" in functions  # init output, from before the subscription
    assert any("hello from the handler" in line for line in functions)
    assert all(e["time"].endswith("Z") and len(e["time"]) == 24 for e in events)
    assert not [e for e in events if e["type"] == "extension"]  # not subscribed
    assert b"TELEMETRY\tName: listener\tState: Subscribed\tTypes: [Platform, Function]\n" in (
        session.output("platform")
    )


async def test_a_logs_api_subscriber_gets_the_legacy_shapes(
    task_root: Path, start_agent: StartAgent, tmp_path: Path
) -> None:
    body = {
        "schemaVersion": "2021-03-18",
        "types": ["platform", "function"],
        "buffering": {"timeoutMs": 25},
    }
    session = await subscribed_session(start_agent, task_root, tmp_path, "/2020-08-15/logs", body)
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    await session.expect(Kind.RESPONSE)
    await session.expect(Kind.NEXT)
    events = await wait_for_types(session, "platform.report")
    by_type = {event["type"]: event for event in events}
    assert by_type["platform.start"]["record"] == {"requestId": "req-1"}
    assert by_type["platform.end"]["record"] == {"requestId": "req-1"}
    assert by_type["platform.runtimeDone"]["record"] == {"requestId": "req-1", "status": "success"}
    assert set(by_type["platform.report"]["record"]) == {"requestId", "metrics"}
    assert by_type["platform.logsSubscription"]["record"]["state"] == "Subscribed"
    assert "platform.initStart" not in by_type
    assert b"LOGS\tName: listener\tState: Subscribed\tTypes: [Platform, Function]\n" in (
        session.output("platform")
    )


VALID: dict[str, Any] = {
    "schemaVersion": "2022-07-01",
    "types": ["platform"],
    "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:8080/logs"},
}


def with_changes(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def test_a_valid_subscription_gets_lambdas_defaults() -> None:
    subscriber = parse_subscription("telemetry", "ext", with_changes())
    assert subscriber.types == frozenset({"platform"})
    assert (subscriber.buffering.max_items, subscriber.buffering.max_bytes) == (1000, 262144)
    assert subscriber.buffering.timeout_ms == 1000
    assert (subscriber.destination.host, subscriber.destination.port) == ("127.0.0.1", 8080)
    assert subscriber.destination.path == "/logs"
    legacy = parse_subscription(
        "logs", "ext", json.dumps({k: VALID[k] for k in ("types", "destination")}).encode()
    )
    assert (legacy.schema, legacy.buffering.max_items) == ("2020-08-15", 10000)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"buffering": {"maxItems": 999}},
            "buffering.maxItems: Must be greater than or equal to 1000",
        ),
        (
            {"buffering": {"maxItems": 10001}},
            "buffering.maxItems: Must be less than or equal to 10000",
        ),
        (
            {"buffering": {"maxBytes": 262143}},
            "buffering.maxBytes: Must be greater than or equal to 262144",
        ),
        (
            {"buffering": {"maxBytes": 1048577}},
            "buffering.maxBytes: Must be less than or equal to 1048576",
        ),
        (
            {"buffering": {"timeoutMs": 24}},
            "buffering.timeoutMs: Must be greater than or equal to 25",
        ),
        (
            {"buffering": {"timeoutMs": 30001}},
            "buffering.timeoutMs: Must be less than or equal to 30000",
        ),
        ({"types": []}, "types: Array must have at least 1 items"),
        (
            {"types": ["platform", "logs"]},
            'types.1: must be one of the following: "platform", "function", "extension"',
        ),
        ({"schemaVersion": "2020-08-15"}, "schemaVersion: must be one of the following"),
        (
            {"destination": {"protocol": "HTTP", "URI": "http://example.com:80/"}},
            "destination.URI: must be http://sandbox.localdomain:<port>",
        ),
        (
            {"destination": {"protocol": "HTTPS", "URI": "https://sandbox:80"}},
            "destination.protocol",
        ),
    ],
)
def test_invalid_subscriptions_are_refused_with_the_rule_broken(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSubscription) as caught:
        parse_subscription("telemetry", "ext", with_changes(**changes))
    assert str(caught.value).startswith(message)


async def test_subscribe_errors_have_lambdas_types_and_statuses() -> None:
    extensions = ExtensionsApi(FunctionInfo("fn", "$LATEST", "app.handler"), lambda: None)
    bus = TelemetryBus(asyncio.get_running_loop())
    api = TelemetryApi(extensions, bus)
    register = Request("POST", "/2020-01-01/extension/register", {"lambda-extension-name": "x"})
    register.body = b'{"events":[]}'
    ident = dict(extensions.handle(register).headers)["Lambda-Extension-Identifier"]  # type: ignore[union-attr]

    def put(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        request = Request("PUT", path, headers)
        request.body = body
        response = api.handle(request)
        return response.status, json.loads(response.body)

    known = {"lambda-extension-identifier": ident}
    status, body = put("/2022-07-01/telemetry", with_changes(types=["bad"]), known)
    assert (status, body["errorType"]) == (400, "ValidationError")
    status, body = put(
        "/2020-08-15/logs", with_changes(types=["bad"], schemaVersion="2020-08-15"), known
    )
    assert (status, body["errorType"]) == (400, "Logs.ValidationError")
    unknown = {"lambda-extension-identifier": "6f7f0961-f834-4211-8a7a-f6fe80b88d56"}
    status, body = put("/2022-07-01/telemetry", with_changes(), unknown)
    assert (status, body["errorType"]) == (403, "Extension.UnknownExtensionIdentifier")
    assert put("/2022-07-01/telemetry", with_changes(), known) == (200, "OK")
    bus.close_subscriptions()
    assert put("/2022-07-01/telemetry", with_changes(), known) == (
        403,
        {
            "errorMessage": "Telemetry API subscription is closed",
            "errorType": "Telemetry.SubscriptionClosed",
        },
    )
    bus.close()


async def test_a_tcp_destination_gets_newline_delimited_json_on_one_connection() -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    connections: list[object] = []

    finished = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            while line := await reader.readline():
                await received.put(line)
        finally:
            writer.close()
            await writer.wait_closed()
            finished.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = {
        "schemaVersion": "2022-12-13",
        "types": ["platform", "function"],
        "buffering": {"timeoutMs": 25},
        "destination": {"protocol": "TCP", "URI": f"tcp://sandbox.localdomain:{port}"},
    }
    bus = TelemetryBus(asyncio.get_running_loop())
    try:
        bus.emit("platform.initStart", {"initializationType": "on-demand", "phase": "init"})
        bus.subscribe(parse_subscription("telemetry", "ext", json.dumps(body).encode()))
        bus.close_subscriptions()
        bus.log_lines("function", b"one\ntwo\n")
        await bus.flush(5.0)
        bus.log_lines("function", b"three\n")
        await bus.flush(5.0)
        events = [json.loads(await received.get()) for _ in range(5)]
    finally:
        bus.close()  # closes the connection: the server side sees its end
        await asyncio.wait_for(finished.wait(), 30)
        server.close()
        await server.wait_closed()
    assert [e["type"] for e in events] == [
        "platform.initStart",
        "platform.telemetrySubscription",
        "function",
        "function",
        "function",
    ]
    assert [e["record"] for e in events[2:]] == ["one", "two", "three"]
    assert len(connections) == 1


def subscription(port: int, **buffering: int) -> bytes:
    body = {
        "schemaVersion": "2022-07-01",
        "types": ["platform", "function"],
        "buffering": {"timeoutMs": 25, **buffering},
        "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{port}/"},
    }
    return json.dumps(body).encode()


async def test_a_repeated_subscription_changes_nothing_but_its_settings() -> None:
    bus = TelemetryBus(asyncio.get_running_loop())
    try:
        bus.emit("platform.initStart", {"initializationType": "on-demand", "phase": "init"})
        bus.subscribe(parse_subscription("telemetry", "ext", subscription(9)))
        first = bus.subscribers[0]
        held = list(first.queue)
        bus.subscribe(parse_subscription("telemetry", "ext", subscription(10)))
        assert bus.subscribers == [first]
        assert first.queue == held  # no second replay, no second platform.telemetrySubscription
        assert first.destination.port == 10
    finally:
        bus.close()


async def test_a_full_batch_while_the_last_is_in_delivery_is_dropped_and_counted() -> None:
    bodies: list[bytes] = []
    release = asyncio.Event()
    second = asyncio.Event()

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
        length = int(fields[b"Content-Length"])
        bodies.append(await reader.readexactly(length))
        if len(bodies) == 1:
            await release.wait()  # a slow subscriber
        else:
            second.set()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = TelemetryBus(asyncio.get_running_loop())
    try:
        bus.subscribe(parse_subscription("telemetry", "ext", subscription(port, maxItems=1000)))
        bus.close_subscriptions()
        lines = [f"line {i}".encode() for i in range(2005)]
        bus.log_lines("function", b"\n".join(lines[:999]) + b"\n")  # + the subscription: full
        bus.log_lines("function", b"\n".join(lines[999:1999]) + b"\n")  # full again: dropped
        bus.log_lines("function", b"\n".join(lines[1999:]) + b"\n")
        release.set()
        await asyncio.wait_for(second.wait(), 30)
    finally:
        bus.close()
        server.close()
        await server.wait_closed()
    first_batch, second_batch = (json.loads(body) for body in bodies)
    assert len(first_batch) == 1000
    dropped = second_batch[0]
    assert dropped["type"] == "platform.logsDropped"
    assert dropped["record"]["droppedRecords"] == 1000
    assert dropped["record"]["droppedBytes"] > 0
    assert dropped["record"]["reason"] == (
        "Some logs were dropped because the downstream consumer is slower than the logs "
        "production rate"
    )
    # the batch after the dropped one: what came after it
    assert [e["record"] for e in second_batch[1:]] == [f"line {i}" for i in range(1999, 2005)]


def test_json_log_lines_are_objects_for_the_telemetry_api_and_lines_for_the_logs_api() -> None:
    line = '{"level":"INFO","message":"hi"}'
    event = Event("2024-01-01T00:00:00.000Z", "function", json.loads(line), line)
    assert translate("telemetry", "2022-07-01", event) == [event]
    assert [e.record for e in translate("logs", "2020-08-15", event)] == [line]
    plain = Event("2024-01-01T00:00:00.000Z", "function", "plain")
    assert translate("logs", "2020-08-15", plain) == [plain]


ANSWER_THEN_EXIT = r"""
import http.client, os
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(API)
conn.request("GET", "/2018-06-01/runtime/invocation/next")
response = conn.getresponse()
request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
response.read()
conn.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body=b'"bye"')
conn.getresponse().read()
os._exit(3)  # answered, never back on /next
"""


async def answered_session(
    start_agent: StartAgent, task_root: Path, tmp_path: Path, runtime: str
) -> AgentSession:
    """A telemetry listener, and a scripted runtime that answered ``req-1``."""
    body: dict[str, object] = {
        "schemaVersion": "2022-07-01",
        "types": ["platform"],
        "buffering": {"timeoutMs": 25},
    }
    opt = tmp_path / "opt"
    write_extension(opt / "extensions", "listener", subscribe=("/2022-07-01/telemetry", body))
    session = await start_agent(
        scripted_runtime_argv(task_root, runtime),
        task_root,
        lambda_env(task_root),
        extensions_dir=str(opt / "extensions"),
    )
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    await session.expect(Kind.RESPONSE)
    return session


async def test_runtime_done_still_goes_out_when_the_runtime_exits_after_answering(
    task_root: Path, start_agent: StartAgent, tmp_path: Path
) -> None:
    session = await answered_session(start_agent, task_root, tmp_path, ANSWER_THEN_EXIT)
    events = await wait_for_types(session, "platform.runtimeDone")
    done = next(e["record"] for e in events if e["type"] == "platform.runtimeDone")
    assert (done["requestId"], done["status"]) == ("req-1", "success")


async def test_runtime_done_still_goes_out_when_the_environment_is_shut_down_first(
    task_root: Path, start_agent: StartAgent, tmp_path: Path
) -> None:
    hangs = ANSWER_THEN_EXIT.replace("os._exit(3)", "import time; time.sleep(3600)")
    session = await answered_session(start_agent, task_root, tmp_path, hangs)
    session.send(Kind.SHUTDOWN, {"reason": "timeout", "budget_ms": 2000})
    events = await wait_for_types(session, "platform.runtimeDone")
    done = next(e["record"] for e in events if e["type"] == "platform.runtimeDone")
    assert (done["requestId"], done["status"]) == ("req-1", "success")


async def test_flush_also_delivers_a_batch_queued_behind_the_one_in_flight() -> None:
    bodies: list[bytes] = []
    release, arrived = asyncio.Event(), asyncio.Event()

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
        bodies.append(await reader.readexactly(int(fields[b"Content-Length"])))
        if len(bodies) == 1:
            arrived.set()
            await release.wait()  # the first delivery is still in flight at the flush
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = TelemetryBus(asyncio.get_running_loop())
    try:
        bus.subscribe(parse_subscription("telemetry", "ext", subscription(port)))
        bus.close_subscriptions()
        first = asyncio.ensure_future(bus.flush(30))  # the subscription record goes out...
        await asyncio.wait_for(arrived.wait(), 30)  # ...and its delivery waits on `release`
        bus.log_lines("function", b"queued behind\n")
        flushing = asyncio.ensure_future(bus.flush(30))
        release.set()
        await asyncio.wait_for(asyncio.gather(first, flushing), 30)
    finally:
        bus.close()
        server.close()
        await server.wait_closed()
    assert [e["record"] for e in json.loads(bodies[-1])] == ["queued behind"]
