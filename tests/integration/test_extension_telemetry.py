"""Issue 7 end to end: the Logs API and the Telemetry API as a real extension sees them.

Each test deploys a function with the probe extension (``extension_probe.py``) in a layer,
in a real ``ember serve``, and asks the probe (through the function) what it received.
Every item received is checked against the strict shapes of ``telemetry_shapes.py``.
Waiting is on observable events with bounded timeouts (the probe's ``/wait``), never sleeps.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tests.integration.extension_probe import deploy_probe
from tests.integration.telemetry_shapes import misfits
from tests.integration.test_invoke import body, invoke, tail

ALL_TYPES = ["platform", "function", "extension"]
FAST = {"timeoutMs": 25}
LOGS_ONLY_TYPES = {"platform.end", "platform.logsSubscription"}
TELEMETRY_ONLY_TYPES = {
    "platform.initStart",
    "platform.initRuntimeDone",
    "platform.initReport",
    "platform.telemetrySubscription",
}


def logs_subscription(protocol: str, schema: str) -> tuple[str, dict[str, Any]]:
    uri = "HTTP_URI" if protocol == "HTTP" else "TCP_URI"
    body = {
        "schemaVersion": schema,
        "types": ALL_TYPES,
        "buffering": FAST,
        "destination": {"protocol": protocol, "URI": uri},
    }
    return "/2020-08-15/logs", body


def telemetry_subscription(protocol: str, **buffering: int) -> tuple[str, dict[str, Any]]:
    uri = "HTTP_URI" if protocol == "HTTP" else "TCP_URI"
    body = {
        "schemaVersion": "2022-12-13",
        "types": ALL_TYPES,
        "buffering": {**FAST, **buffering},
        "destination": {"protocol": protocol, "URI": uri},
    }
    return "/2022-07-01/telemetry", body


def run(client: Any, name: str, *steps: dict[str, Any]) -> tuple[str, list[Any]]:
    """Invoke ``name`` with ``steps``; its request id and the probe's answers."""
    response = invoke(client, name, {"steps": list(steps)})
    assert "FunctionError" not in response, response["Body"]
    return response["ResponseMetadata"]["RequestId"], body(response)


def wait(item_type: str, request_id: str = "", record: str = "") -> dict[str, Any]:
    """A step: wait until the probe got an item of ``item_type`` (about ``request_id``,
    or whose record is the string ``record``); answers what the probe got."""
    query = {"type": item_type, "requestId": request_id, "record": record}
    return {"call": f"GET /wait?{urlencode({k: v for k, v in query.items() if v})}"}


def probe_state(client: Any, name: str, item_type: str, request_id: str = "") -> dict[str, Any]:
    """What the probe received, once an item of ``item_type`` (for ``request_id``) came."""
    _, answers = run(client, name, wait(item_type, request_id))
    state: dict[str, Any] = answers[0]
    assert state["matched"], f"no {item_type} {request_id} in {state['items']}"
    return state


def of_request(items: list[Any], request_id: str) -> list[str]:
    """The types of the platform items about ``request_id``, in order."""
    return [
        item["type"]
        for item in items
        if isinstance(item["record"], dict) and item["record"].get("requestId") == request_id
    ]


def records(items: list[Any], item_type: str) -> list[Any]:
    return [item["record"] for item in items if item["type"] == item_type]


def check_logs_api_delivery(lambda_client: Any, name: str, protocol: str, schema: str) -> None:
    deploy_probe(lambda_client, name, [logs_subscription(protocol, schema)])
    request_id, _ = run(
        lambda_client, name, {"print": ["function says hello", "and a second line"]}
    )
    state = probe_state(lambda_client, name, "platform.report", request_id)
    items = state["items"]
    assert state["subscribe"] == [[200, "OK"]]
    assert misfits(items, "logs") == []
    types = {item["type"] for item in items}
    assert not types & TELEMETRY_ONLY_TYPES
    expected = ["platform.start", "platform.end", "platform.report"]
    if schema == "2021-03-18":  # the schema that added platform.runtimeDone
        expected = ["platform.start", "platform.runtimeDone", "platform.end", "platform.report"]
    assert of_request(items, request_id) == expected
    start = records(items, "platform.start").index({"requestId": request_id})
    assert records(items, "platform.start")[start] == {"requestId": request_id}
    assert records(items, "platform.logsSubscription") == [
        {"name": "probe", "state": "Subscribed", "types": ["extension", "function", "platform"]}
    ]
    assert records(items, "platform.extension") == [
        {"name": "probe", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}
    ]
    report = records(items, "platform.report")[-1]
    assert report["metrics"]["memorySizeMB"] == 128
    assert report["metrics"]["initDurationMs"] > 0
    # the function's lines, whole and in order, between its start and end
    functions = records(items, "function")
    assert functions.index("function says hello") + 1 == functions.index("and a second line")
    order = [
        item["record"] if item["type"] == "function" else item["type"]
        for item in items
        if item["type"] in ("function", "platform.start", "platform.end")
    ]
    assert order.index("platform.start") < order.index("function says hello")
    assert order.index("and a second line") < order.index("platform.end")
    # the extension's own lines come back as extension records
    extensions = records(items, "extension")
    assert "probe registered" in extensions
    assert f"probe got INVOKE {request_id}" in extensions
    if protocol == "HTTP":
        assert {tuple(post) for post in state["posts"]} == {("POST", "/in", "application/json")}
    else:
        assert state["posts"] == []


def test_a_logs_api_subscriber_gets_its_records_over_http(lambda_client: Any) -> None:
    check_logs_api_delivery(lambda_client, "logs-http", "HTTP", "2020-08-15")


def test_a_logs_api_subscriber_gets_its_records_over_tcp(lambda_client: Any) -> None:
    check_logs_api_delivery(lambda_client, "logs-tcp", "TCP", "2021-03-18")


def test_a_telemetry_subscriber_gets_every_type_with_strict_shapes(lambda_client: Any) -> None:
    name = "telemetry-tcp"
    deploy_probe(lambda_client, name, [telemetry_subscription("TCP")])
    request_id, _ = run(lambda_client, name, {"print": ["from the function"]})
    state = probe_state(lambda_client, name, "platform.report", request_id)
    items = state["items"]
    assert state["subscribe"] == [[200, "OK"]]
    assert misfits(items, "telemetry") == []
    assert not {item["type"] for item in items} & LOGS_ONLY_TYPES
    types = [item["type"] for item in items]
    assert types[0] == "platform.initStart"
    init = ["platform.initRuntimeDone", "platform.extension", "platform.initReport"]
    assert [t for t in types if t in init] == init
    assert types.index("platform.initReport") < types.index("platform.start")
    assert records(items, "platform.telemetrySubscription") == [
        {"name": "probe", "state": "Subscribed", "types": ["extension", "function", "platform"]}
    ]
    assert records(items, "platform.extension") == [
        {"name": "probe", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}
    ]
    assert of_request(items, request_id) == [
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    ]
    assert "from the function" in records(items, "function")
    extensions = records(items, "extension")
    assert extensions.index("probe registered") < extensions.index(f"probe got INVOKE {request_id}")
    assert state["posts"] == []  # all of it came over TCP


def test_subscribe_requests_get_lambdas_answers(lambda_client: Any) -> None:
    name = "subscribe-errors"
    path, good = telemetry_subscription("HTTP")

    def bad(**buffering: int) -> tuple[str, dict[str, Any]]:
        return path, {**good, "buffering": buffering}

    subscriptions = [
        bad(maxItems=999),
        bad(maxItems=10001),
        bad(maxBytes=262143),
        bad(maxBytes=1048577),
        bad(timeoutMs=24),
        bad(timeoutMs=30001),
        (path, {**good, "types": ["platform", "logs"]}),
        (path, {k: v for k, v in good.items() if k != "schemaVersion"}),
        (path, good),
        (path, good),  # again: idempotent
        logs_subscription("HTTP", "2020-08-15"),  # the other API from the same extension
    ]
    deploy_probe(lambda_client, name, subscriptions)
    _, answers = run(lambda_client, name, wait("platform.telemetrySubscription"))

    def validation(message: str) -> list[Any]:
        return [400, {"errorMessage": message, "errorType": "ValidationError"}]

    assert answers[0]["subscribe"] == [
        validation("buffering.maxItems: Must be greater than or equal to 1000"),
        validation("buffering.maxItems: Must be less than or equal to 10000"),
        validation("buffering.maxBytes: Must be greater than or equal to 262144"),
        validation("buffering.maxBytes: Must be less than or equal to 1048576"),
        validation("buffering.timeoutMs: Must be greater than or equal to 25"),
        validation("buffering.timeoutMs: Must be less than or equal to 30000"),
        validation('types.1: must be one of the following: "platform", "function", "extension"'),
        validation("(root): schemaVersion is required"),
        [200, "OK"],
        [200, "OK"],
        [
            400,
            {
                "errorMessage": (
                    "An extension cannot subscribe to both the Logs API and the Telemetry API"
                ),
                "errorType": "Logs.ValidationError",
            },
        ],
    ]
    items = answers[0]["items"]
    assert misfits(items, "telemetry") == []
    assert len(records(items, "platform.telemetrySubscription")) == 1


def test_a_batch_the_subscriber_refuses_is_counted_as_dropped(lambda_client: Any) -> None:
    name = "refusing"
    deploy_probe(lambda_client, name, [telemetry_subscription("HTTP")], refuse="4")
    _, answers = run(lambda_client, name, wait("platform.logsDropped"))
    state = answers[0]
    refused = state["refused"]
    assert len(refused) == 4  # the first delivery and its three retries, all of one batch
    assert refused[1:] == refused[:1] * 3
    lost = refused[0]
    assert misfits(lost + state["items"], "telemetry") == []
    assert lost[0]["type"] == "platform.initStart"
    first = state["items"][0]  # the next batch starts with the account of the lost one
    assert first["type"] == "platform.logsDropped"
    assert first["record"] == {
        "droppedBytes": sum(len(json.dumps(item, separators=(",", ":"))) for item in lost),
        "droppedRecords": len(lost),
        "reason": "could not send events: status 500",
    }
    assert not [item for item in state["items"] if item in lost]


def test_a_subscriber_slower_than_the_output_loses_full_batches(lambda_client: Any) -> None:
    name = "slow-subscriber"
    path, subscription = telemetry_subscription("HTTP", maxItems=1000)
    deploy_probe(lambda_client, name, [(path, {**subscription, "types": ["platform", "function"]})])
    lines = 3000
    # the probe holds the next delivery while the function prints; the pending batch fills
    # up (1000 items) while that delivery is in flight, so Lambda drops it
    first_id, _ = run(lambda_client, name, {"call": "POST /hold"}, {"print_many": lines})
    second_id, answers = run(
        lambda_client, name, {"call": "POST /release"}, wait("platform.logsDropped")
    )
    assert answers[0] == "released"
    assert answers[1]["matched"]
    items = answers[1]["items"]
    assert misfits(items, "telemetry") == []
    dropped = records(items, "platform.logsDropped")
    assert len(dropped) == 1  # sent once, at the head of the batch after the slow delivery
    assert dropped[0]["reason"] == (
        "Some logs were dropped because the downstream consumer is slower than the logs "
        "production rate"
    )
    assert dropped[0]["droppedRecords"] in (1000, 2000, 3000)  # whole batches of maxItems
    assert dropped[0]["droppedBytes"] > 0
    assert "platform.start" in of_request(items, first_id)  # sent before the hold
    # everything emitted from the first line to the release is delivered or counted
    delivered = [line for line in records(items, "function") if line.startswith("line ")]
    assert delivered == sorted(delivered, key=lambda line: int(line.split()[1]))
    window = [
        (first_id, "platform.runtimeDone"),
        (first_id, "platform.report"),
        (second_id, "platform.start"),
    ]
    platform = [pair for pair in window if pair[1] in of_request(items, pair[0])]
    assert len(delivered) + len(platform) + dropped[0]["droppedRecords"] == lines + len(window)
    # and delivery goes on as before
    run(lambda_client, name, {"print": ["after the drop"]})
    _, answers = run(lambda_client, name, wait("function", record="after the drop"))
    assert answers[0]["matched"]


def test_json_format_log_lines_reach_the_telemetry_api_as_objects(lambda_client: Any) -> None:
    name = "json-logs"
    deploy_probe(lambda_client, name, [telemetry_subscription("HTTP")], log_format="JSON")
    request_id, _ = run(lambda_client, name, {"log": "structured"}, {"print": ["plain"]})
    state = probe_state(lambda_client, name, "platform.report", request_id)
    items = state["items"]
    assert misfits(items, "telemetry") == []
    functions = records(items, "function")
    assert "plain" in functions
    logged = next(r for r in functions if isinstance(r, dict) and r["message"] == "structured")
    assert logged["level"] == "INFO"
    assert logged["requestId"] == request_id


def failed_invoke(client: Any, name: str, payload: Any) -> tuple[str, Any, str]:
    """Invoke expecting Lambda's unhandled error: its request id, error body, log tail."""
    response = invoke(client, name, payload, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    return response["ResponseMetadata"]["RequestId"], body(response), tail(response)


def test_an_extension_that_crashes_fails_the_init(lambda_client: Any) -> None:
    deploy_probe(lambda_client, "crashing", init="crash")
    request_id, error, log = failed_invoke(lambda_client, "crashing", {})
    assert error == {
        "errorType": "Extension.Crash",
        "errorMessage": f"RequestId: {request_id} Error: probe: exit status 3",
    }
    assert "probe crashing\n" in log
    assert "\tPhase: init\tStatus: error\tError Type: Extension.Crash\n" in log
    report = next(line for line in log.splitlines() if line.startswith("REPORT RequestId: "))
    assert report.startswith(f"REPORT RequestId: {request_id}\t")
    assert "\tStatus: error\tError Type: Extension.Crash" in report


def test_an_extension_init_error_fails_the_init(lambda_client: Any) -> None:
    deploy_probe(lambda_client, "init-error", init="init-error")
    request_id, error, log = failed_invoke(lambda_client, "init-error", {})
    assert error == {
        "errorType": "Extension.InitError",
        "errorMessage": f"RequestId: {request_id} Error: probe: Probe.ConfigInvalid",
    }
    assert "probe registered\n" in log
    assert "\tPhase: init\tStatus: error\tError Type: Extension.InitError\n" in log


def test_an_extension_exit_error_ends_the_environment(lambda_client: Any) -> None:
    name = "exit-error"
    deploy_probe(lambda_client, name)
    request_id, error, log = failed_invoke(
        lambda_client, name, {"steps": [{"call": "POST /exit-error"}]}
    )
    assert error == {
        "errorType": "Extension.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: probe: Probe.Broken",
    }
    report = next(line for line in log.splitlines() if line.startswith("REPORT RequestId: "))
    assert "\tStatus: error\tError Type: Extension.ExitError" in report
    # the next invoke gets a new environment (an init of its own), with its probe
    response = invoke(lambda_client, name, {}, LogType="Tail")
    assert "FunctionError" not in response
    assert body(response) == []
    assert f"probe got INVOKE {response['ResponseMetadata']['RequestId']}\n" in tail(response)
    assert "\tInit Duration: " in tail(response)
