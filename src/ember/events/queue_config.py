"""Queue attributes: defaults, ranges and the RedrivePolicy, validated as SQS does.

Pure data. A queue's settable attributes are kept as their wire strings (SQS returns them
as strings) and read through typed properties. FIFO queues are not supported: a
``.fifo`` name or ``FifoQueue`` attribute is refused with a clear UnsupportedOperation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ember.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    SqsInvalidParameterValue,
    SqsUnsupportedOperation,
)

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
MAX_MESSAGE_BYTES = 262144  # 256 KiB
# attribute => (default, minimum, maximum) for the integer-valued settable attributes
INTEGER_ATTRIBUTES: dict[str, tuple[int, int, int]] = {
    "DelaySeconds": (0, 0, 900),
    "MaximumMessageSize": (MAX_MESSAGE_BYTES, 1024, MAX_MESSAGE_BYTES),
    "MessageRetentionPeriod": (345600, 60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 0, 20),
    "VisibilityTimeout": (30, 0, 43200),
}
# stored as given, with light checks (Ember enforces no IAM policies or KMS)
PASS_THROUGH = {
    "Policy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
}
SETTABLE = set(INTEGER_ATTRIBUTES) | PASS_THROUGH | {"RedrivePolicy"}
COMPUTED = {
    "QueueArn",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
}
FIFO_ONLY = {"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}


@dataclass(frozen=True, slots=True)
class RedrivePolicy:
    dead_letter_arn: str
    max_receive_count: int

    @property
    def dead_letter_queue(self) -> str:
        return self.dead_letter_arn.rsplit(":", 1)[-1]


@dataclass(slots=True)
class QueueConfig:
    """One queue's identity and settable attributes (wire strings)."""

    name: str
    created_at: float
    modified_at: float
    attributes: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def integer(self, name: str) -> int:
        return int(self.attributes.get(name, INTEGER_ATTRIBUTES[name][0]))

    @property
    def visibility_timeout(self) -> int:
        return self.integer("VisibilityTimeout")

    @property
    def delay_seconds(self) -> int:
        return self.integer("DelaySeconds")

    @property
    def retention_s(self) -> int:
        return self.integer("MessageRetentionPeriod")

    @property
    def max_message_bytes(self) -> int:
        return self.integer("MaximumMessageSize")

    @property
    def receive_wait_s(self) -> int:
        return self.integer("ReceiveMessageWaitTimeSeconds")

    @property
    def redrive(self) -> RedrivePolicy | None:
        text = self.attributes.get("RedrivePolicy")
        if not text:
            return None
        data = json.loads(text)
        return RedrivePolicy(data["deadLetterTargetArn"], int(data["maxReceiveCount"]))


def check_queue_name(name: Any) -> str:
    if isinstance(name, str) and name.endswith(".fifo"):
        raise SqsUnsupportedOperation(
            "FIFO queues are not supported by Ember: its built-in queue service offers "
            "standard queues only. Create the queue without the .fifo suffix."
        )
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise SqsInvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    return name


def check_tags(raw: Any) -> dict[str, str]:
    """Queue tags: at most 50, keys 1-128 and values 0-256 characters, all strings."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 50:
        raise SqsInvalidParameterValue("Tags must be a map of at most 50 tags.")
    for key, value in raw.items():
        if not isinstance(value, str) or not 1 <= len(key) <= 128 or len(value) > 256:
            raise SqsInvalidParameterValue(f"Tag {key} is invalid.")
    return dict(raw)


def check_attributes(raw: Any) -> dict[str, str]:
    """Validate settable attributes; returns them normalised to wire strings."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SqsInvalidParameterValue("Attributes must be a map.")
    checked: dict[str, str] = {}
    for name, value in raw.items():
        if name in FIFO_ONLY:
            raise SqsUnsupportedOperation(
                f"FIFO queues are not supported by Ember (attribute {name})."
            )
        if name not in SETTABLE:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        checked[name] = _check_value(name, value)
    return checked


def _check_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidAttributeValue(f"Invalid value for the parameter {name}.")
    if name in INTEGER_ATTRIBUTES:
        _, low, high = INTEGER_ATTRIBUTES[name]
        if not re.fullmatch(r"-?\d+", value) or not low <= int(value) <= high:
            raise InvalidAttributeValue(
                f"Invalid value for the parameter {name}. Reason: must be an integer "
                f"between {low} and {high}."
            )
        return str(int(value))
    if name == "RedrivePolicy":
        return _check_redrive(value)
    return value


def _check_redrive(value: str) -> str:
    if value == "":
        return ""
    try:
        data = json.loads(value)
        arn = data["deadLetterTargetArn"]
        count = int(data["maxReceiveCount"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidAttributeValue(
            "Value for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a "
            "valid JSON map with deadLetterTargetArn and maxReceiveCount."
        ) from exc
    if not isinstance(arn, str) or not arn.startswith("arn:aws:sqs:") or not 1 <= count <= 1000:
        raise InvalidAttributeValue(
            "Value for parameter RedrivePolicy is invalid. Reason: deadLetterTargetArn must "
            "be a queue ARN and maxReceiveCount between 1 and 1000."
        )
    return json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": count})
