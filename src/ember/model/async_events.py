"""Asynchronous invocation as data: queued events, event invoke configs, invocation records.

Pure: no I/O, no clock. ``AsyncEvent`` is one accepted ``InvocationType: Event`` request
as the async queue keeps it; ``EventInvokeConfig`` is what Put/UpdateFunctionEventInvoke
Config set for a function, version or alias; ``invocation_record`` builds the record a
destination receives, with the exact keys of lambda-spec.md §6.1.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_RETRY_ATTEMPTS = 2
DEFAULT_MAX_EVENT_AGE_S = 21600  # six hours
DLQ_MESSAGE_LIMIT = 1024  # ErrorMessage carries the first 1 KB


class Condition(enum.StrEnum):
    """``requestContext.condition`` of an invocation record."""

    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    ZERO_RESERVED_CONCURRENCY = "ZeroReservedConcurrency"


@dataclass(frozen=True, slots=True)
class LastResponse:
    """What the function answered the last time it ran this event."""

    status_code: int
    executed_version: str
    function_error: str | None
    payload: bytes


@dataclass(slots=True)
class AsyncEvent:
    """One accepted event.

    ``attempts_failed`` counts function errors (what MaximumRetryAttempts bounds);
    ``invoke_count`` counts every time the function ran it (approximateInvokeCount);
    ``due_at`` is the wall instant it may run next (persisted, so it survives restarts).
    """

    request_id: str
    function: str
    qualifier: str | None
    payload: bytes
    accepted_at: float
    due_at: float
    attempts_failed: int = 0
    invoke_count: int = 0
    last_response: LastResponse | None = None


@dataclass(frozen=True, slots=True)
class EventInvokeConfig:
    """A function's (or version's, or alias's) async settings; None = not set."""

    function: str
    qualifier: str  # "$LATEST" for the unqualified function
    last_modified: float
    max_retry_attempts: int | None = None
    max_event_age_s: int | None = None
    on_success: str | None = None
    on_failure: str | None = None

    @property
    def retry_attempts(self) -> int:
        if self.max_retry_attempts is None:
            return DEFAULT_MAX_RETRY_ATTEMPTS
        return self.max_retry_attempts

    @property
    def event_age_s(self) -> int:
        return DEFAULT_MAX_EVENT_AGE_S if self.max_event_age_s is None else self.max_event_age_s


def default_config(function: str, qualifier: str) -> EventInvokeConfig:
    """What applies when no config was put: two retries, six hours, no destinations."""
    return EventInvokeConfig(function, qualifier, 0.0)


def iso_millis(wall: float) -> str:
    """``2019-11-14T18:16:05.568Z``: the record's timestamp format."""
    whole = int(wall)
    millis = round((wall - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def _json_or_text(payload: bytes) -> Any:
    """A payload as JSON if it parses, else as text (as Lambda embeds non-JSON output)."""
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace")


def invocation_record(
    event: AsyncEvent, function_arn: str, condition: Condition, wall: float
) -> dict[str, Any]:
    """The destination record (lambda-spec.md §6.1); ``function_arn`` already qualified."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_millis(wall),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": function_arn,
            "condition": str(condition),
            "approximateInvokeCount": event.invoke_count,
        },
        "requestPayload": _json_or_text(event.payload),
    }
    response = event.last_response
    if response is not None:
        context: dict[str, Any] = {
            "statusCode": response.status_code,
            "executedVersion": response.executed_version,
        }
        if response.function_error:
            context["functionError"] = response.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(response.payload)
    return record


def dead_letter_error(event: AsyncEvent, condition: Condition) -> tuple[int, str]:
    """(ErrorCode, ErrorMessage) of a dead-letter message for ``event``."""
    response = event.last_response
    if response is None:
        if condition is Condition.ZERO_RESERVED_CONCURRENCY:
            return 429, "Function has reserved concurrency of zero"
        return 429, "Rate Exceeded."
    message = ""
    detail = _json_or_text(response.payload)
    if isinstance(detail, dict) and isinstance(detail.get("errorMessage"), str):
        message = detail["errorMessage"]
    elif isinstance(detail, str):
        message = detail
    else:
        message = json.dumps(detail)
    raw = message.encode("utf-8")[:DLQ_MESSAGE_LIMIT]
    return response.status_code, raw.decode("utf-8", "ignore")
