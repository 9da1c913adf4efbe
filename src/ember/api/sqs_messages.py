"""SQS message operations at the edge: parse and validate, call the queue service, shape.

Send, SendMessageBatch, ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility
(Batch). Limits as SQS: 10 entries a batch, 256 KiB a message and a batch, ids of at most
80 ``[A-Za-z0-9_-]``; per-entry problems go to ``Failed`` with ``SenderFault``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from ember.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmberError,
    EmptyBatchRequest,
    InvalidBatchEntryId,
    QueueDoesNotExist,
    SqsError,
    SqsInvalidParameterValue,
    SqsMissingParameter,
    TooManyEntriesInBatchRequest,
)
from ember.events.messages import (
    Message,
    MessageAttribute,
    check_body,
    md5_of_attributes,
    message_size,
    parse_attributes,
    system_attributes,
)
from ember.events.queue_config import MAX_MESSAGE_BYTES
from ember.events.queues import OutgoingMessage, QueueService

MAX_BATCH = 10
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
SYSTEM_ATTRIBUTES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount")
Operation = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]


def queue_name(params: dict[str, Any]) -> str:
    url = params.get("QueueUrl")
    if not isinstance(url, str) or not url:
        raise SqsMissingParameter("The request must contain the parameter QueueUrl.")
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise QueueDoesNotExist("The specified queue does not exist.")
    return name


def string_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SqsInvalidParameterValue(f"Value for parameter {name} must be a list of strings.")
    return value


def int_param(params: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SqsInvalidParameterValue(
            f"Value {value} for parameter {name} is invalid. Reason: Must be between "
            f"{low} and {high}, if provided."
        )
    return value


class MessageOperations:
    """Scope: one per server; stateless over the ``QueueService``."""

    def __init__(self, queues: QueueService) -> None:
        self._queues = queues

    def table(self) -> dict[str, Operation]:
        return {
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
            "ReceiveMessage": self.receive_message,
            "DeleteMessage": self.delete_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
        }

    def _outgoing(self, params: dict[str, Any], max_bytes: int) -> OutgoingMessage:
        body = check_body(params.get("MessageBody"))
        attributes = parse_attributes(params.get("MessageAttributes"))
        system = parse_attributes(params.get("MessageSystemAttributes"), "MessageSystemAttribute")
        if set(system) - {"AWSTraceHeader"}:
            raise SqsInvalidParameterValue("Message system attribute name is invalid.")
        if message_size(body, attributes) > max_bytes:
            raise SqsInvalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than "
                f"{max_bytes} bytes."
            )
        return OutgoingMessage(body, attributes, system, int_param(params, "DelaySeconds", 0, 900))

    async def send_message(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        name = queue_name(params)
        outgoing = self._outgoing(params, self._queues.max_message_bytes(name))
        (message,) = await self._queues.send(name, [outgoing])
        return _sent(message)

    async def send_message_batch(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        name = queue_name(params)
        max_bytes = self._queues.max_message_bytes(name)
        entries = _entries(params, "SendMessageBatchRequestEntry")
        total = sum(
            message_size(str(e.get("MessageBody", "")), _sizable(e.get("MessageAttributes")))
            for e in entries
        )
        if total > MAX_MESSAGE_BYTES:
            raise BatchRequestTooLong(
                f"Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. You have "
                f"sent {total} bytes."
            )
        accepted: list[tuple[str, OutgoingMessage]] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            try:
                accepted.append((entry["Id"], self._outgoing(entry, max_bytes)))
            except SqsError as error:
                failed.append(_failure(entry["Id"], error))
        sent = await self._queues.send(name, [o for _, o in accepted]) if accepted else []
        successful = [
            {"Id": entry_id, **_sent(m)} for (entry_id, _), m in zip(accepted, sent, strict=True)
        ]
        return {"Successful": successful, "Failed": failed}

    async def receive_message(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        name = queue_name(params)
        self._queues.get(name)
        limit = int_param(params, "MaxNumberOfMessages", 1, MAX_BATCH) or 1
        visibility = int_param(params, "VisibilityTimeout", 0, 43200)
        wait = int_param(params, "WaitTimeSeconds", 0, 20)
        messages = await self._queues.receive(name, limit, visibility, wait)
        system_names = set(string_list(params, "AttributeNames"))
        system_names |= set(string_list(params, "MessageSystemAttributeNames"))
        user_names = string_list(params, "MessageAttributeNames")
        shaped = [self._shape(m, system_names, user_names) for m in messages]
        return {"Messages": shaped} if shaped else {}

    def _shape(self, message: Message, system: set[str], user: list[str]) -> dict[str, Any]:
        shaped: dict[str, Any] = {
            "MessageId": message.message_id,
            "ReceiptHandle": self._queues.receipt_handle(message),
            "MD5OfBody": message.md5_of_body,
            "Body": message.body,
        }
        everything = system_attributes(message, self._queues.account)
        attributes = {k: v for k, v in everything.items() if "All" in system or k in system}
        if attributes:
            shaped["Attributes"] = attributes
        picked = _select(message.attributes, user)
        if picked:
            shaped["MD5OfMessageAttributes"] = md5_of_attributes(picked)
            shaped["MessageAttributes"] = {n: a.to_wire() for n, a in picked.items()}
        return shaped

    async def delete_message(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        await self._queues.delete_message(queue_name(params), _handle(params))
        return {}

    async def delete_message_batch(
        self, _request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = queue_name(params)
        entries = _entries(params, "DeleteMessageBatchRequestEntry")
        outcomes = await self._queues.delete_messages(name, [_handle(e) for e in entries])
        successful, failed = [], []
        for entry, error in zip(entries, outcomes, strict=True):
            if error is None:
                successful.append({"Id": entry["Id"]})
            else:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    async def change_message_visibility(
        self, _request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        timeout = params.get("VisibilityTimeout")
        if not isinstance(timeout, int):
            raise SqsMissingParameter("The request must contain the parameter VisibilityTimeout.")
        await self._queues.change_visibility(queue_name(params), _handle(params), timeout)
        return {}

    async def change_message_visibility_batch(
        self, request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = queue_name(params)
        successful, failed = [], []
        for entry in _entries(params, "ChangeMessageVisibilityBatchRequestEntry"):
            try:
                await self.change_message_visibility(request, {**entry, "QueueUrl": name})
                successful.append({"Id": entry["Id"]})
            except SqsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}


def _select(
    attributes: dict[str, MessageAttribute], wanted: list[str]
) -> dict[str, MessageAttribute]:
    if "All" in wanted or ".*" in wanted:
        return dict(attributes)
    prefixes = tuple(w[:-2] for w in wanted if w.endswith(".*"))
    return {
        n: a for n, a in attributes.items() if n in wanted or (prefixes and n.startswith(prefixes))
    }


def _sent(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = {
        "MessageId": message.message_id,
        "MD5OfMessageBody": message.md5_of_body,
    }
    if message.attributes:
        result["MD5OfMessageAttributes"] = md5_of_attributes(message.attributes)
    if message.system_attributes:
        result["MD5OfMessageSystemAttributes"] = md5_of_attributes(message.system_attributes)
    return result


def _sizable(raw: Any) -> dict[str, MessageAttribute]:
    try:
        return parse_attributes(raw)
    except SqsError:
        return {}


def _handle(params: dict[str, Any]) -> str:
    handle = params.get("ReceiptHandle")
    if not isinstance(handle, str) or not handle:
        raise SqsMissingParameter("The request must contain the parameter ReceiptHandle.")
    return handle


def _entries(params: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    entries = params.get("Entries") or []
    if not isinstance(entries, list) or not entries:
        raise EmptyBatchRequest(f"There should be at least one {kind} in the request.")
    if len(entries) > MAX_BATCH:
        raise TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}."
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id") if isinstance(entry, dict) else None
        if not isinstance(entry_id, str) or not BATCH_ID.match(entry_id):
            raise InvalidBatchEntryId(
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long."
            )
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def _failure(entry_id: str, error: EmberError) -> dict[str, Any]:
    code = getattr(error, "query_code", error.code)
    return {"Id": entry_id, "SenderFault": True, "Code": code, "Message": error.message}
