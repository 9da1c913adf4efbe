"""Function packages the integration tests deploy: source text → zip bytes."""

from __future__ import annotations

import io
import textwrap
import zipfile

ROLE = "arn:aws:iam::000000000000:role/ember-test"


def make_zip(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.encode() if isinstance(content, str) else content
            archive.writestr(info, data)
    return buffer.getvalue()


def python_zip(source: str, module: str = "app") -> bytes:
    return make_zip({f"{module}.py": textwrap.dedent(source)})


HELLO = """
import os

COUNTER = {"inits": 0, "invokes": 0}
COUNTER["inits"] += 1
print("init ran")


def handler(event, context):
    COUNTER["invokes"] += 1
    print("hello from the handler")
    return {
        "hello": event.get("name", "world"),
        "pid": os.getpid(),
        "environment": context.log_stream_name,  # one stream per execution environment
        **COUNTER,
    }
"""

CONTEXT = """
import json, os


def handler(event, context):
    return {
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client_custom": context.client_context.custom if context.client_context else None,
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "env": {
            k: v for k, v in os.environ.items()
            if k.startswith(("AWS_", "LAMBDA_", "_HANDLER", "TZ", "MY_"))
        },
    }
"""

FAILING = """
def handler(event, context):
    raise ValueError("bad input: " + str(event.get("x")))
"""

SLEEPY = """
import os, time


def handler(event, context):
    time.sleep(event.get("seconds", 0))
    return {"pid": os.getpid(), "environment": context.log_stream_name}
"""

CRASHING = """
import os


def handler(event, context):
    print("about to crash")
    os._exit(event.get("code", 3))
"""

BIG_RESPONSE = """
def handler(event, context):
    return "x" * (7 * 1024 * 1024)
"""

IMPORT_ERROR = """
import module_that_does_not_exist


def handler(event, context):
    return 1
"""

SYNTAX_ERROR = """
def handler(event, context)
    return 1
"""

SHELL_BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS="$(mktemp)"
  EVENT="$(curl -sS -D "$HEADERS" "$API/next")"
  ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | tr -d '\\r' | cut -d' ' -f2)"
  echo "custom runtime got $EVENT"
  curl -sS -X POST "$API/$ID/response" -d "{\\"echo\\": $EVENT}" > /dev/null
done
"""
