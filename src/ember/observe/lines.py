"""The platform's log lines, exactly as Lambda writes them to CloudWatch (text format).

Sources: lambda-spec.md §4.6. Every line ends with a newline; REPORT fields are each
followed by a tab, in AWS's order (Duration, Billed Duration, Memory Size, Max Memory
Used, Init Duration, Status, Error Type).

Ember's extension of REPORT: one more field of the same ``Name: value<TAB>`` shape after
all of AWS's, ``Ember Start Kind: cold|prewarmed|warm|provisioned`` (how the environment
that served the invoke started). AWS's fields before it stay byte-identical; parsers that
match AWS's fields by name, or split the line on tabs, read past it. The ``Ember`` prefix
keeps it clear of any field AWS may add.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

START_KIND_FIELD = "Ember Start Kind"


def log_stream_name(version: str, wall: float) -> str:
    """``YYYY/MM/DD/[<version>]<32 hex>``: one stream per execution environment."""
    day = datetime.fromtimestamp(wall, UTC).strftime("%Y/%m/%d")
    return f"{day}/[{version}]{uuid.uuid4().hex}"


def init_start(runtime_version: str, runtime_version_arn: str) -> str:
    return (
        f"INIT_START Runtime Version: {runtime_version}"
        f"\tRuntime Version ARN: {runtime_version_arn}\n"
    )


def init_report(init_ms: float, phase: str, status: str, error_type: str | None) -> str:
    line = f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: {phase}\tStatus: {status}"
    if error_type:
        line += f"\tError Type: {error_type}"
    return line + "\n"


def start(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end(request_id: str) -> str:
    return f"END RequestId: {request_id}\n"


def billed_ms(duration_ms: float, init_ms: float | None) -> int:
    """Since 2025-08 the INIT phase is billed too: ceil(duration + init), at least 1 ms."""
    return max(1, math.ceil(duration_ms + (init_ms or 0.0)))


def report(
    request_id: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    init_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
    start_kind: str | None = None,
) -> str:
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms, init_ms)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_mb} MB",
    ]
    if init_ms is not None:
        fields.append(f"Init Duration: {init_ms:.2f} ms")
    if status:
        fields.append(f"Status: {status}")
    if error_type:
        fields.append(f"Error Type: {error_type}")
    if start_kind:
        fields.append(f"{START_KIND_FIELD}: {start_kind}")
    return "\t".join(fields) + "\t\n"


def timed_out(request_id: str, wall: float, timeout_s: float) -> str:
    """``<ISO-8601> <id> Task timed out after 3.00 seconds``."""
    stamp = datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} {request_id} Task timed out after {timeout_s:.2f} seconds\n"
