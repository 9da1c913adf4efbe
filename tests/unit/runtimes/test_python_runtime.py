"""Ember's Python runtime client under the real agent: context, errors, logs, encoding."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from ember.agent.protocol import Kind
from ember.runtimes.python import BOOTSTRAP_PATH, runtime_argv
from tests.unit.agent.agent_harness import (
    FUNCTION_ARN,
    AgentSession,
    StartAgent,
    ember_python_argv,
    json_payload,
    lambda_env,
    write_task,
)

CONTEXT_HANDLER = """
    import os

    def handler(event, context):
        cc, identity = context.client_context, context.identity
        return {
            "event": event,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "tenant_id": context.tenant_id,
            "remaining_positive": 0 < context.get_remaining_time_in_millis() <= 60_000,
            "client_context": None if cc is None else {
                "custom": cc.custom,
                "env": cc.env,
                "client": None if cc.client is None else {
                    "installation_id": cc.client.installation_id,
                    "app_title": cc.client.app_title,
                    "app_version_name": cc.client.app_version_name,
                    "app_version_code": cc.client.app_version_code,
                    "app_package_name": cc.client.app_package_name,
                },
            },
            "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
            "trace_env": os.environ.get("_X_AMZN_TRACE_ID"),
        }
"""

CLIENT_CONTEXT = {
    "client": {
        "installation_id": "inst",
        "app_title": "title",
        "app_version_name": "1.0",
        "app_version_code": "100",
        "app_package_name": "com.example",
    },
    "custom": {"k": "v"},
    "env": {"platform": "linux"},
}
TRACE = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"


async def start_ready(
    start_agent: StartAgent, task_root: Path, files: dict[str, str], **env: str
) -> AgentSession:
    write_task(task_root, files)
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root, **env))
    await session.expect(Kind.INIT_DONE)
    return session


def test_runtime_argv_is_isolated_and_unbuffered() -> None:
    assert Path(BOOTSTRAP_PATH).is_file()
    assert runtime_argv("/usr/bin/python3.12") == [
        "/usr/bin/python3.12",
        "-I",
        "-S",
        "-u",
        BOOTSTRAP_PATH,
    ]


async def test_handler_sees_every_next_header_in_its_context(
    task_root: Path, start_agent: StartAgent
) -> None:
    session = await start_ready(start_agent, task_root, {"app.py": CONTEXT_HANDLER})
    session.invoke(
        "req-1",
        b'{"hello": "world"}',
        trace_id=TRACE,
        client_context=json.dumps(CLIENT_CONTEXT),
        identity='{"cognitoIdentityId": "cid", "cognitoIdentityPoolId": "pool"}',
        tenant_id="tenant-1",
    )
    seen = json_payload(await session.expect(Kind.RESPONSE))
    assert seen == {
        "event": {"hello": "world"},
        "aws_request_id": "req-1",
        "log_group_name": "/aws/lambda/fn",
        "log_stream_name": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "function_name": "fn",
        "memory_limit_in_mb": "128",
        "function_version": "$LATEST",
        "invoked_function_arn": FUNCTION_ARN,
        "tenant_id": "tenant-1",
        "remaining_positive": True,
        "client_context": CLIENT_CONTEXT,
        "identity": ["cid", "pool"],
        "trace_env": TRACE,
    }
    session.invoke("req-2", b"[]")
    bare = json_payload(await session.expect(Kind.RESPONSE))
    assert bare["client_context"] is None
    assert bare["identity"] == [None, None]
    assert bare["tenant_id"] is None
    assert bare["trace_env"] is None, "_X_AMZN_TRACE_ID is unset when the header is absent"


async def test_handler_exception_is_posted_and_logged_like_awslambdaric(
    task_root: Path, start_agent: StartAgent
) -> None:
    app = (
        write_task(
            task_root,
            {
                "app.py": """
        def handler(event, context):
            helper()

        def helper():
            raise ValueError("boom")
    """
            },
        )
        / "app.py"
    )
    session = await start_ready(start_agent, task_root, {})
    session.invoke("req-1")
    error = await session.expect(Kind.ERROR)
    assert error.meta["error_type"] == "Runtime.Unknown", "awslambdaric sends no type header"
    assert error.meta["content_type"] == "application/json"
    assert json_payload(error) == {
        "errorMessage": "boom",
        "errorType": "ValueError",
        "requestId": "req-1",
        "stackTrace": [
            f'  File "{app}", line 3, in handler\n    helper()\n',
            f'  File "{app}", line 6, in helper\n    raise ValueError("boom")\n',
        ],
    }
    assert (
        session.output()
        == (
            "[ERROR] ValueError: boom\rTraceback (most recent call last):\r"
            f'\u00a0\u00a0File "{app}", line 3, in handler\r\u00a0\u00a0\u00a0\u00a0helper()\r'
            f'\u00a0\u00a0File "{app}", line 6, in helper\r'
            '\u00a0\u00a0\u00a0\u00a0raise ValueError("boom")\n'
        ).encode()
    )
    session.invoke("req-2")
    assert (await session.expect(Kind.ERROR)).meta["id"] == "req-2", "the runtime carries on"


RESOLUTION_ERRORS = [
    ({}, "app.handler", "Runtime.ImportModuleError", "Unable to import module 'app': No module named 'app'"),  # noqa: E501
    ({"app.py": "x = 1\n"}, "app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),  # noqa: E501
    ({}, "nodot", "Runtime.MalformedHandlerName", "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"),  # noqa: E501
    ({}, "sys.handler", "Runtime.BuiltInModuleConflict", "Cannot use built-in module sys as a handler module"),  # noqa: E501
    ({"app.py": "import missing_dep\n"}, "app.handler", "Runtime.ImportModuleError", "Unable to import module 'app': No module named 'missing_dep'"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("files", "handler", "error_type", "message"), RESOLUTION_ERRORS)
async def test_handler_resolution_errors_are_init_errors(
    task_root: Path,
    start_agent: StartAgent,
    files: dict[str, str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    write_task(task_root, files)
    env = lambda_env(task_root, handler=handler)
    session = await start_agent(ember_python_argv(), task_root, env)
    failure = await session.expect(Kind.INIT_ERROR)
    assert failure.meta["error_type"] == error_type
    assert json_payload(failure) == {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": "",
        "stackTrace": [],
    }
    ended = await session.expect(Kind.EXIT)
    assert ended.meta == {"status": 1, "signal": None}
    output = session.output().decode()
    assert "\tLAMBDA_WARNING: Unhandled exception." in output
    assert output.endswith(f"[ERROR] {error_type}: {message}\rTraceback (most recent call last):\n")


async def test_syntax_error_is_reported_with_its_location(
    task_root: Path, start_agent: StartAgent
) -> None:
    app = write_task(task_root, {"app.py": "def handler(:\n    pass\n"}) / "app.py"
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    failure = await session.expect(Kind.INIT_ERROR)
    assert failure.meta["error_type"] == "Runtime.UserCodeSyntaxError"
    body = json_payload(failure)
    assert body["errorMessage"] == "Syntax error in module 'app': invalid syntax (app.py, line 1)"
    assert body["stackTrace"] == [f'  File "{app}" Line 1\n    def handler(:\n']


async def test_exception_at_import_keeps_its_type(task_root: Path, start_agent: StartAgent) -> None:
    write_task(task_root, {"app.py": "raise KeyError('config')\n"})
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root))
    failure = await session.expect(Kind.INIT_ERROR)
    assert failure.meta["error_type"] == "Runtime.Unknown", "RAPID normalises 'KeyError'"
    body = json_payload(failure)
    assert (body["errorType"], body["errorMessage"], body["requestId"]) == (
        "KeyError",
        "'config'",
        "",
    )
    app = task_root / "app.py"
    assert (
        body["stackTrace"][-1]
        == f"  File \"{app}\", line 1, in <module>\n    raise KeyError('config')\n"
    )


@pytest.mark.parametrize("handler", ["pkg/mod.run", "pkg.mod.run", "top.run"])
async def test_handler_module_forms(task_root: Path, start_agent: StartAgent, handler: str) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/mod.py": "def run(event, context):\n    return 'pkg'\n",
        "top.py": "def run(event, context):\n    return 'top'\n",
    }
    write_task(task_root, files)
    session = await start_agent(ember_python_argv(), task_root, lambda_env(task_root, handler))
    await session.expect(Kind.INIT_DONE)
    session.invoke("req-1")
    response = await session.expect(Kind.RESPONSE)
    assert json_payload(response) == handler.split(".", maxsplit=1)[0].split("/", maxsplit=1)[0]


async def test_result_encoding(task_root: Path, start_agent: StartAgent) -> None:
    session = await start_ready(
        start_agent,
        task_root,
        {
            "app.py": """
        import decimal

        def handler(event, context):
            kind = event["kind"]
            if kind == "bytes":
                return b"\\x00raw"
            if kind == "decimal":
                return {"price": decimal.Decimal("1.10"), "qty": decimal.Decimal("5")}
            if kind == "unicode":
                return {"text": "h\\u00e9"}
            return {1, 2}
    """
        },
    )
    results = {}
    for kind in ("bytes", "decimal", "unicode", "set"):
        session.invoke(f"req-{kind}", json.dumps({"kind": kind}).encode())
        results[kind] = await session.expect(Kind.RESPONSE, Kind.ERROR)
    assert results["bytes"].payload == b"\x00raw"
    assert results["bytes"].meta["content_type"] == "application/unknown"
    assert results["decimal"].payload == b'{"price": 1.10, "qty": 5}'
    assert results["unicode"].payload == b'{"text": "h\\u00e9"}'
    assert json_payload(results["set"]) == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "requestId": "req-set",
        "stackTrace": [],
    }


async def test_text_logging_format(task_root: Path, start_agent: StartAgent) -> None:
    session = await start_ready(
        start_agent,
        task_root,
        {
            "app.py": """
        import logging
        logger = logging.getLogger()

        def handler(event, context):
            logger.info("hidden at the default level")
            logger.warning("two\\nlines")
            context.log("via context\\n")
            return None
    """
        },
    )
    session.invoke("req-1")
    await session.expect(Kind.RESPONSE)
    pattern = (
        r"\[WARNING\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\treq-1\ttwo\nlines\nvia context\n"
    )
    assert re.fullmatch(pattern, session.output().decode())


async def test_json_logging_format_and_level(task_root: Path, start_agent: StartAgent) -> None:
    session = await start_ready(
        start_agent,
        task_root,
        {
            "app.py": """
            import logging

            def handler(event, context):
                logging.getLogger("app").debug("details", extra={"order": 7})
                return None
        """
        },
        AWS_LAMBDA_LOG_FORMAT="JSON",
        AWS_LAMBDA_LOG_LEVEL="TRACE",
    )
    session.invoke("req-1", tenant_id="t-1")
    await session.expect(Kind.RESPONSE)
    record = json.loads(session.output())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.pop("timestamp"))
    assert record == {
        "level": "DEBUG",
        "message": "details",
        "logger": "app",
        "requestId": "req-1",
        "tenantId": "t-1",
        "order": 7,
    }


async def test_stdout_reaches_the_host_while_the_handler_still_runs(
    task_root: Path, start_agent: StartAgent
) -> None:
    gate = task_root / "gate"
    os.mkfifo(gate)
    session = await start_ready(
        start_agent,
        task_root,
        {
            "app.py": f"""
        def handler(event, context):
            print("waiting for the gate")
            with open({str(gate)!r}) as fifo:
                return fifo.read()
    """
        },
    )
    session.invoke("req-1")
    while session.output() != b"waiting for the gate\n":
        frame = await session.next_frame()
        assert frame is not None
        assert frame.kind is Kind.LOG, "the line arrives before the handler returns"
    gate.write_text("opened")
    assert json_payload(await session.expect(Kind.RESPONSE)) == "opened"


async def test_layers_and_task_root_come_first_on_sys_path(
    task_root: Path, start_agent: StartAgent
) -> None:
    session = await start_ready(
        start_agent,
        task_root,
        {
            "app.py": """
        import sys

        def handler(event, context):
            return sys.path[:3]
    """
        },
    )
    session.invoke("req-1")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert json_payload(await session.expect(Kind.RESPONSE)) == [
        str(task_root),
        "/opt/python",
        f"/opt/python/lib/{version}/site-packages",
    ]
