"""Helpers for async invocation tests: a server with short async timings, record reading."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from tests.integration.conftest import EmberServer, signed_headers, start_server

# Lambda's timings, compressed: retries after 0.3 s and 0.6 s; throttle back-off from 0.1 s
# to 0.5 s; one MaximumEventAgeInSeconds second lasts 10 ms (60 s => 0.6 s).
FAST_ASYNC = {
    "EMBER_ASYNC_RETRY_DELAYS": "0.3,0.6",
    "EMBER_ASYNC_BACKOFF_INITIAL_SECONDS": "0.1",
    "EMBER_ASYNC_BACKOFF_MAX_SECONDS": "0.5",
    "EMBER_ASYNC_EVENT_AGE_SCALE": "0.01",
}

RECORD_KEYS = {"version", "timestamp", "requestContext", "requestPayload"}
RESPONSE_KEYS = RECORD_KEYS | {"responseContext", "responsePayload"}

FAILING = """
def handler(event, context):
    raise ValueError("nope: " + context.aws_request_id)
"""

ECHO_ID = """
def handler(event, context):
    return {"request_id": context.aws_request_id, "event": event}
"""

SLOW = """
import time


def handler(event, context):
    time.sleep(2)
    return "slow done"
"""


def start_async_server(data_dir: Any, **env: str) -> EmberServer:
    return start_server(data_dir, env={**FAST_ASYNC, **env})


def make_queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def receive(sqs: Any, url: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Exactly ``count`` messages (received and deleted), failing after ``timeout_s``."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} messages arrived"
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=2,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        got.extend(messages)
    return got


def records(sqs: Any, url: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in receive(sqs, url, count, timeout_s)]


def invoke_event(client: Any, name: str, payload: Any, **extra: Any) -> str:
    """Invoke asynchronously; the request id the 202 gave."""
    response = client.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(payload), **extra
    )
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    request_id: str = response["ResponseMetadata"]["RequestId"]
    return request_id


def request_ids_until(
    sqs: Any, url: str, expected: set[str], timeout_s: float = 60
) -> dict[str, int]:
    """Receive records until every id of ``expected`` was seen: id => times seen."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while not expected <= seen.keys():
        missing = len(expected - seen.keys())
        assert time.monotonic() < deadline, f"{missing} of {len(expected)} request ids missing"
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get(
            "Messages", []
        )
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            request_id = json.loads(message["Body"])["requestContext"]["requestId"]
            seen[request_id] = seen.get(request_id, 0) + 1
    return seen


class EventSender:
    """Event invokes over one raw keep-alive HTTP connection (SigV4-signed), closed at
    the end however it ends: a killed server leaves no half-open socket behind."""

    def __init__(self, server: EmberServer, function: str) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self._server = server
        self._path = f"/2015-03-31/functions/{function}/invocations"
        self._connection = http.client.HTTPConnection(host, int(port), timeout=60)

    def send(self, payload: bytes) -> str | None:
        """The request id of a 202, or None if the server refused or went away."""
        headers = signed_headers(self._server, "POST", self._path, "", payload)
        headers["X-Amz-Invocation-Type"] = "Event"
        try:
            self._connection.request("POST", self._path, payload, headers)
            response = self._connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            return None
        return response.getheader("x-amzn-RequestId") if response.status == 202 else None

    def close(self) -> None:
        self._connection.close()
