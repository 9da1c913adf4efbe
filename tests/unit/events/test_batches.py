"""The SQS event shape and the ReportBatchItemFailures rules (lambda-spec.md §6.2)."""

from __future__ import annotations

import json

import pytest

from ember.events.batches import ALL, failed_items, sqs_event
from ember.events.messages import Message, MessageAttribute

IDS = {"a", "b", "c"}


@pytest.mark.parametrize(
    ("payload", "kept"),
    [
        (b"", set()),
        (b"null", set()),
        (b"{}", set()),
        (b'{"batchItemFailures": null}', set()),
        (b'{"batchItemFailures": []}', set()),
        (b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', {"b"}),
        (b'{"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "c"}]}', {"a", "c"}),
        (b"not json", ALL),
        (b'"a string"', ALL),
        (b'{"batchItemFailures": "a"}', ALL),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', ALL),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', ALL),
        (b'{"batchItemFailures": [{"itemId": "a"}]}', ALL),
        (b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', ALL),
        (b'{"batchItemFailures": ["a"]}', ALL),
    ],
)
def test_failed_items(payload: bytes, kept: set[str] | str) -> None:
    assert failed_items(payload, IDS) == kept


def test_event_shape() -> None:
    message = Message(
        message_id="id-1",
        queue="q",
        body="hello",
        attributes={"colour": MessageAttribute("String", "blue")},
        system_attributes={},
        sent_at=1700000000.5,
        visible_at=1700000030.0,
        receive_count=1,
        first_received_at=1700000001.0,
    )
    bare = Message("id-2", "q", "x", {}, {}, 1700000000.0, 1700000000.0, 1, 1700000000.0)
    event = sqs_event(
        [message, bare], lambda m: "rh-" + m.message_id, "arn:aws:sqs:r:1:q", "r", "1"
    )
    first, second = event["Records"]
    assert first == {
        "messageId": "id-1",
        "receiptHandle": "rh-id-1",
        "body": "hello",
        "attributes": {
            "SenderId": "1",
            "SentTimestamp": "1700000000500",
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": "1700000001000",
        },
        "messageAttributes": {
            "colour": {
                "stringValue": "blue",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "md5OfMessageAttributes": first["md5OfMessageAttributes"],
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:r:1:q",
        "awsRegion": "r",
    }
    assert len(first["md5OfMessageAttributes"]) == 32
    assert "md5OfMessageAttributes" not in second
    assert second["messageAttributes"] == {}
    json.dumps(event)
