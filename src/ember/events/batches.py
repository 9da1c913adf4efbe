"""SQS batches for Lambda: the event a function receives, and what its answer means.

Pure functions. The event is Lambda's SQS event (lambda-spec.md §6.2): ``Records[]`` with
messageId, receiptHandle, body, attributes, messageAttributes, md5OfBody,
md5OfMessageAttributes (only when there are attributes), eventSource ``aws:sqs``,
eventSourceARN and awsRegion.

``failed_items`` applies the ReportBatchItemFailures rules: an empty or null response, or
an empty or null ``batchItemFailures``, is full success; invalid JSON, a non-object
response, a non-list ``batchItemFailures``, an entry that is not an object, has a key other
than ``itemIdentifier``, or an empty, null or unknown ``itemIdentifier`` fails the whole
batch (``ALL``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from ember.events.messages import Message, md5_of_attributes, system_attributes

ALL: Final = "ALL"  # the whole batch failed


def sqs_event(
    messages: Sequence[Message],
    receipt_handle: Callable[[Message], str],
    queue_arn: str,
    region: str,
    sender_id: str,
) -> dict[str, Any]:
    return {
        "Records": [_record(m, receipt_handle(m), queue_arn, region, sender_id) for m in messages]
    }


def _record(
    message: Message, handle: str, queue_arn: str, region: str, sender_id: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messageId": message.message_id,
        "receiptHandle": handle,
        "body": message.body,
        "attributes": system_attributes(message, sender_id),
        "messageAttributes": {n: a.to_event() for n, a in message.attributes.items()},
        "md5OfBody": message.md5_of_body,
    }
    digest = md5_of_attributes(message.attributes)
    if digest is not None:
        record["md5OfMessageAttributes"] = digest
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


def event_size(event: dict[str, Any]) -> int:
    return len(json.dumps(event).encode())


def failed_items(payload: bytes, batch_ids: set[str]) -> set[str] | str:
    """The message ids to keep, or ``ALL`` (see the module docstring for the rules)."""
    try:
        response = json.loads(payload) if payload.strip() else None
    except ValueError:
        return ALL
    if response is None:
        return set()
    if not isinstance(response, dict):
        return ALL
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return ALL
    return _reported_ids(failures, batch_ids)


def _reported_ids(failures: list[Any], batch_ids: set[str]) -> set[str] | str:
    kept: set[str] = set()
    for entry in failures:
        if not isinstance(entry, dict) or set(entry) != {"itemIdentifier"}:
            return ALL
        identifier = entry["itemIdentifier"]
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return ALL
        kept.add(identifier)
    return kept
