"""Strict shapes of Telemetry API 2022-07-01 and Logs API 2020-08-15 items (lambda-spec §3).

Strict clients (the Rust ``lambda-extension``) reject a whole batch when one item does not
fit their closed types, so the tests check every item a subscriber receives: exactly the
keys ``time``, ``type``, ``record``; ``time`` as ``2022-10-12T00:00:15.064Z``; a known
``type`` for the API; the record's required keys present, no key outside the documented
ones, and every value of the documented JSON type (and enumeration).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
STATUSES = ("success", "failure", "error", "timeout")
INITIALIZATION_TYPES = ("on-demand", "provisioned-concurrency", "snap-start")
PHASES = ("init", "invoke")

Check = Callable[[Any], bool]


def string(value: Any) -> bool:
    return isinstance(value, str)


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def one_of(*allowed: str) -> Check:
    return lambda value: value in allowed


def strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def time_text(value: Any) -> bool:
    return isinstance(value, str) and TIME.fullmatch(value) is not None


def obj(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """A JSON object with all of ``required``, maybe some of ``optional``, nothing else."""
    allowed = {**required, **(optional or {})}

    def check(value: Any) -> bool:
        if not isinstance(value, dict) or not set(required) <= set(value) <= set(allowed):
            return False
        return all(allowed[key](item) for key, item in value.items())

    return check


def array_of(check: Check) -> Check:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


TRACING = obj({"type": one_of("X-Amzn-Trace-Id"), "value": string}, {"spanId": string})
SPANS = array_of(obj({"name": string, "start": time_text, "durationMs": number}))
TRACED = {"spans": SPANS, "tracing": TRACING}
INIT = {"initializationType": one_of(*INITIALIZATION_TYPES), "phase": one_of(*PHASES)}
REPORT_METRICS = obj(
    {
        "durationMs": number,
        "billedDurationMs": integer,
        "memorySizeMB": integer,
        "maxMemoryUsedMB": integer,
    },
    {"initDurationMs": number, "restoreDurationMs": number},
)
EXTENSION = obj({"name": string, "state": string, "events": strings}, {"errorType": string})
SUBSCRIPTION = obj({"name": string, "state": one_of("Subscribed"), "types": strings})
DROPPED = obj({"droppedBytes": integer, "droppedRecords": integer, "reason": string})
STATUS = {"status": one_of(*STATUSES)}

TELEMETRY_RECORDS: dict[str, Check] = {
    "platform.initStart": obj(
        INIT,
        {
            "runtimeVersion": string,
            "runtimeVersionArn": string,
            "functionName": string,
            "functionVersion": string,
            "instanceId": string,
            "instanceMaxMemory": integer,
            "tracing": TRACING,
        },
    ),
    "platform.initRuntimeDone": obj({**INIT, **STATUS}, {"errorType": string, **TRACED}),
    "platform.initReport": obj(
        {**INIT, "metrics": obj({"durationMs": number})},
        {**STATUS, "errorType": string, **TRACED},
    ),
    "platform.start": obj(
        {"requestId": string}, {"version": string, "tracing": TRACING, "tenantId": string}
    ),
    "platform.runtimeDone": obj(
        {"requestId": string, **STATUS},
        {
            "errorType": string,
            "metrics": obj({"durationMs": number}, {"producedBytes": integer}),
            "tenantId": string,
            **TRACED,
        },
    ),
    "platform.report": obj(
        {"requestId": string, **STATUS, "metrics": REPORT_METRICS},
        {"errorType": string, "tenantId": string, **TRACED},
    ),
    "platform.extension": EXTENSION,
    "platform.telemetrySubscription": SUBSCRIPTION,
    "platform.logsDropped": DROPPED,
    # a line, or the object of a JSON-format line (LoggingConfig.LogFormat JSON)
    "function": lambda value: isinstance(value, str | dict),
    "extension": string,
}

LOGS_RECORDS: dict[str, Check] = {
    "platform.start": obj({"requestId": string}),
    "platform.end": obj({"requestId": string}),
    "platform.report": obj({"requestId": string, "metrics": REPORT_METRICS}),
    "platform.fault": string,
    "platform.extension": EXTENSION,
    "platform.logsSubscription": SUBSCRIPTION,
    "platform.logsDropped": DROPPED,
    "platform.runtimeDone": obj({"requestId": string, **STATUS}),
    "function": string,
    "extension": string,
}


def misfits(items: list[Any], api: str) -> list[Any]:
    """The items of ``items`` that a strict ``api`` (``telemetry``/``logs``) client refuses."""
    records = TELEMETRY_RECORDS if api == "telemetry" else LOGS_RECORDS
    bad = []
    for item in items:
        fits = (
            isinstance(item, dict)
            and set(item) == {"time", "type", "record"}
            and time_text(item["time"])
            and item["type"] in records
            and records[item["type"]](item["record"])
        )
        if not fits:
            bad.append(item)
    return bad
