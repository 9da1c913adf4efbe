"""Invocation records and dead-letter attributes, as Lambda shapes them."""

from __future__ import annotations

import json

from ember.model.async_events import (
    AsyncEvent,
    Condition,
    LastResponse,
    dead_letter_error,
    invocation_record,
    iso_millis,
)

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn:$LATEST"


def test_timestamps_have_milliseconds_and_a_z() -> None:
    assert iso_millis(1573755365.568) == "2019-11-14T18:16:05.568Z"
    assert iso_millis(1573755365.9999) == "2019-11-14T18:16:06.000Z"


def test_a_failure_record_has_every_key_lambda_sends() -> None:
    event = AsyncEvent("rid", "fn", None, b'{"a": 1}', 0.0, 0.0, 2, 3)
    event.last_response = LastResponse(
        200, "$LATEST", "Unhandled", b'{"errorMessage": "boom", "errorType": "E"}'
    )
    record = invocation_record(event, ARN, Condition.RETRIES_EXHAUSTED, 1573755365.568)
    assert record == {
        "version": "1.0",
        "timestamp": "2019-11-14T18:16:05.568Z",
        "requestContext": {
            "requestId": "rid",
            "functionArn": ARN,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"a": 1},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "boom", "errorType": "E"},
    }


def test_a_success_record_has_no_function_error_and_keeps_text_payloads() -> None:
    event = AsyncEvent("rid", "fn", None, b"not json", 0.0, 0.0, 0, 1)
    event.last_response = LastResponse(200, "$LATEST", None, b"plain text")
    record = invocation_record(event, ARN, Condition.SUCCESS, 0.0)
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert (record["requestPayload"], record["responsePayload"]) == ("not json", "plain text")


def test_dead_letter_error_message_is_the_first_kilobyte() -> None:
    event = AsyncEvent("rid", "fn", None, b"{}", 0.0, 0.0)
    assert dead_letter_error(event, Condition.EVENT_AGE_EXCEEDED) == (429, "Rate Exceeded.")
    long_message = "é" * 1000
    payload = json.dumps({"errorMessage": long_message}, ensure_ascii=False).encode()
    event.last_response = LastResponse(200, "$LATEST", "Unhandled", payload)
    code, message = dead_letter_error(event, Condition.RETRIES_EXHAUSTED)
    assert code == 200
    assert message == "é" * 512
