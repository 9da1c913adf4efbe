"""Platform log lines, letter for letter (lambda-spec.md §4.6)."""

from __future__ import annotations

import re

from ember.observe import lines


def test_report_cold_and_warm() -> None:
    cold = lines.report("id", duration_ms=3.014, memory_mb=128, max_memory_mb=36, init_ms=110.1)
    assert cold == (
        "REPORT RequestId: id\tDuration: 3.01 ms\tBilled Duration: 114 ms\tMemory Size: 128 MB"
        "\tMax Memory Used: 36 MB\tInit Duration: 110.10 ms\t\n"
    )
    warm = lines.report("id", duration_ms=0.5, memory_mb=128, max_memory_mb=36)
    assert warm.endswith("Billed Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 36 MB\t\n")


def test_report_with_status() -> None:
    line = lines.report(
        "id",
        duration_ms=3000,
        memory_mb=1024,
        max_memory_mb=64,
        status="error",
        error_type="Runtime.OutOfMemory",
    )
    assert line.endswith(
        "\tMax Memory Used: 64 MB\tStatus: error\tError Type: Runtime.OutOfMemory\t\n"
    )


def test_start_end_init_lines() -> None:
    assert lines.start("id", "$LATEST") == "START RequestId: id Version: $LATEST\n"
    assert lines.end("id") == "END RequestId: id\n"
    assert lines.init_report(150.789, "init", "error", "Runtime.UserCodeSyntaxError") == (
        "INIT_REPORT Init Duration: 150.79 ms\tPhase: init\tStatus: error"
        "\tError Type: Runtime.UserCodeSyntaxError\n"
    )
    assert lines.init_start("python:3.13.v1", "arn:x") == (
        "INIT_START Runtime Version: python:3.13.v1\tRuntime Version ARN: arn:x\n"
    )


def test_timeout_line_and_stream_name() -> None:
    assert lines.timed_out("id", 1_700_000_000.25, 3) == (
        "2023-11-14T22:13:20.250Z id Task timed out after 3.00 seconds\n"
    )
    assert re.fullmatch(
        r"2023/11/14/\[\$LATEST\][0-9a-f]{32}", lines.log_stream_name("$LATEST", 1_700_000_000)
    )


def test_the_start_kind_follows_every_aws_field() -> None:
    line = lines.report(
        "id",
        duration_ms=3000,
        memory_mb=128,
        max_memory_mb=64,
        init_ms=110.1,
        status="timeout",
        start_kind="prewarmed",
    )
    standard = lines.report(
        "id", duration_ms=3000, memory_mb=128, max_memory_mb=64, init_ms=110.1, status="timeout"
    )
    assert line == standard[:-1] + "Ember Start Kind: prewarmed\t\n"  # AWS's part unchanged
