"""SQS messages as data: the stored message, its attributes, and SQS's MD5 digests.

Pure functions and values only (no I/O, no clock). The digests follow SQS exactly:
``MD5OfMessageBody`` is the MD5 of the UTF-8 body; ``MD5OfMessageAttributes`` is the MD5
of the attributes sorted by name, each encoded as length-prefixed (4-byte big-endian)
name, data type, then a transport byte (1 string/number, 2 binary) and the
length-prefixed value (list values are not supported by SQS today and are rejected).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from ember.errors import InvalidMessageContents, SqsInvalidParameterValue

MAX_ATTRIBUTES = 10
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,256}$")
DATA_TYPE = re.compile(r"^(String|Number|Binary)(\.[A-Za-z0-9_\-.]{1,250})?$")
# XML 1.0 characters: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF
INVALID_BODY_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class MessageAttribute:
    """One message attribute: ``value`` is text for String/Number, bytes for Binary."""

    data_type: str
    value: str | bytes

    @property
    def is_binary(self) -> bool:
        return self.data_type.startswith("Binary")

    def size(self) -> int:
        raw = self.value if isinstance(self.value, bytes) else self.value.encode()
        return len(self.data_type.encode()) + len(raw)

    def to_wire(self) -> dict[str, Any]:
        """The SQS API shape (``BinaryValue`` base64, as the JSON protocol carries blobs)."""
        if isinstance(self.value, bytes):
            return {
                "DataType": self.data_type,
                "BinaryValue": base64.b64encode(self.value).decode(),
            }
        return {"DataType": self.data_type, "StringValue": self.value}

    def to_event(self) -> dict[str, Any]:
        """The Lambda SQS event shape (lower-camel keys, empty list members)."""
        shape: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": self.data_type,
        }
        if isinstance(self.value, bytes):
            shape["binaryValue"] = base64.b64encode(self.value).decode()
        else:
            shape["stringValue"] = self.value
        return shape


@dataclass(slots=True)
class Message:
    """A stored message. ``visible_at`` and timestamps are wall-clock epoch seconds.

    Invariant: ``receipt_nonce`` changes on every receive, so only the latest receipt
    handle can change the message's visibility.
    """

    message_id: str
    queue: str
    body: str
    attributes: dict[str, MessageAttribute]
    system_attributes: dict[str, MessageAttribute]
    sent_at: float
    visible_at: float
    receive_count: int = 0
    first_received_at: float | None = None
    receipt_nonce: str = ""
    md5_of_body: str = field(default="")

    def __post_init__(self) -> None:
        if not self.md5_of_body:
            self.md5_of_body = md5_of_body(self.body)

    def size(self) -> int:
        return message_size(self.body, self.attributes)


def system_attributes(message: Message, sender_id: str) -> dict[str, str]:
    """A received message's system attributes, as SQS names and formats them."""
    values = {
        "SenderId": sender_id,
        "SentTimestamp": str(int(message.sent_at * 1000)),
        "ApproximateReceiveCount": str(message.receive_count),
        "ApproximateFirstReceiveTimestamp": str(int((message.first_received_at or 0) * 1000)),
    }
    trace = message.system_attributes.get("AWSTraceHeader")
    if trace is not None and isinstance(trace.value, str):
        values["AWSTraceHeader"] = trace.value
    return values


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: dict[str, MessageAttribute]) -> str | None:
    """SQS's digest of message (or system) attributes; None when there are none."""
    if not attributes:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        attribute = attributes[name]
        _put(digest, name.encode())
        _put(digest, attribute.data_type.encode())
        if isinstance(attribute.value, bytes):
            digest.update(b"\x02")
            _put(digest, attribute.value)
        else:
            digest.update(b"\x01")
            _put(digest, attribute.value.encode())
    return digest.hexdigest()


def _put(digest: Any, data: bytes) -> None:
    digest.update(struct.pack(">I", len(data)))
    digest.update(data)


def message_size(body: str, attributes: dict[str, MessageAttribute]) -> int:
    """What counts against MaximumMessageSize: body plus every attribute's parts."""
    return len(body.encode()) + sum(len(n.encode()) + a.size() for n, a in attributes.items())


def check_body(body: Any) -> str:
    if not isinstance(body, str) or body == "":
        raise SqsInvalidParameterValue(
            "The request must contain the parameter MessageBody."
            if not body
            else "Value for parameter MessageBody is invalid. Reason: must be a string."
        )
    if INVALID_BODY_CHARS.search(body):
        raise InvalidMessageContents(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | "
            "#x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
        )
    return body


def parse_attributes(raw: Any, what: str = "MessageAttribute") -> dict[str, MessageAttribute]:
    """Validate a ``MessageAttributes`` map from the wire into ``MessageAttribute``s."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SqsInvalidParameterValue(f"{what}s must be a map.")
    if len(raw) > MAX_ATTRIBUTES:
        raise SqsInvalidParameterValue(
            f"Number of message attributes [{len(raw)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    return {_attribute_name(name, what): _attribute(name, value) for name, value in raw.items()}


def _attribute_name(name: Any, what: str) -> str:
    if (
        not isinstance(name, str)
        or not ATTRIBUTE_NAME.match(name)
        or name.startswith((".", "AWS.", "Amazon."))
        or name.endswith(".")
        or ".." in name
    ):
        raise SqsInvalidParameterValue(f"{what} name '{name}' is invalid.")
    return name


def _attribute(name: str, raw: Any) -> MessageAttribute:
    if not isinstance(raw, dict) or not isinstance(raw.get("DataType"), str):
        raise SqsInvalidParameterValue(
            f"The message attribute '{name}' must contain non-empty message attribute type."
        )
    data_type = raw["DataType"]
    if not DATA_TYPE.match(data_type):
        raise SqsInvalidParameterValue(
            f"The type of message attribute '{name}' is invalid. You must use only the "
            "following supported type prefixes: Binary, Number, String."
        )
    if raw.get("StringListValues") or raw.get("BinaryListValues"):
        raise SqsInvalidParameterValue(
            f"Message attribute list values in '{name}' are not supported."
        )
    if data_type.startswith("Binary"):
        return MessageAttribute(data_type, _binary_value(name, raw.get("BinaryValue")))
    value = raw.get("StringValue")
    if not isinstance(value, str) or value == "":
        raise SqsInvalidParameterValue(
            f"The message attribute '{name}' must contain non-empty message attribute "
            "value for message attribute type 'String'."
            if not data_type.startswith("Number")
            else f"The message attribute '{name}' must contain non-empty message attribute "
            "value for message attribute type 'Number'."
        )
    if data_type.startswith("Number"):
        _check_number(name, value)
    return MessageAttribute(data_type, value)


def _binary_value(name: str, value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise SqsInvalidParameterValue(
            f"The message attribute '{name}' must contain non-empty message attribute "
            "value for message attribute type 'Binary'."
        )
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise SqsInvalidParameterValue(
            f"The message attribute '{name}' has an invalid binary value."
        ) from exc


def _check_number(name: str, value: str) -> None:
    try:
        float(value)
    except ValueError as exc:
        raise SqsInvalidParameterValue(
            f"Can't cast the value of message (user) attribute '{name}' to a number."
        ) from exc
