"""Helpers for event source mapping tests: queues, functions, log reading, waiting."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import EmberServer, signed_headers
from tests.integration.functions import ROLE, python_zip


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Check ``condition`` every 50 ms until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def queue_empty(sqs: Any, url: str) -> Callable[[], bool]:
    def check() -> bool:
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return bool(
            counts["ApproximateNumberOfMessages"] == "0"
            and counts["ApproximateNumberOfMessagesNotVisible"] == "0"
        )

    return check


def send_bodies(sqs: Any, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": f"e{i}", "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def deploy(lambda_client: Any, name: str, source: str, timeout_s: int = 10) -> str:
    created = lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": python_zip(source)},
        Timeout=timeout_s,
    )
    arn: str = created["FunctionArn"]
    return arn


def function_log(server: EmberServer, function: str) -> list[str]:
    """Every stored log message of ``function`` (Ember's log API flushes before reading)."""
    messages: list[str] = []
    after = 0
    while True:
        events = _log_page(server, function, after)
        if not events:
            return messages
        messages.extend(e["message"] for e in events)
        after = events[-1]["seq"]


def _log_page(server: EmberServer, function: str, after: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"after": str(after), "group": f"/aws/lambda/{function}", "limit": "10000"},
        quote_via=urllib.parse.quote,
    )
    headers = signed_headers(server, "GET", "/ember/logs", query)
    request = urllib.request.Request(f"{server.url}/ember/logs?{query}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        events: list[dict[str, Any]] = json.loads(response.read())["events"]
    return events


def marked(lines: list[str], marker: str) -> list[str]:
    """The rest of each log line that starts with ``marker`` (one token per line)."""
    return [line.split(marker, 1)[1].strip() for line in lines if line.startswith(marker)]
