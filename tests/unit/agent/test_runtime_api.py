"""The Runtime API as a runtime sees it: exact statuses, bodies and state rules (§1.2-1.7).

Each test runs a scripted runtime: a small Python program that calls the API with a raw
HTTP client and prints what it observed as ``OBS <json>`` lines, which reach the test as
LOG frames. Tests wait only for frames.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ember.agent.protocol import Kind
from ember.agent.rendering import MAX_PAYLOAD_BYTES, normalise_error_type
from tests.unit.agent.agent_harness import (
    AgentSession,
    StartAgent,
    json_payload,
    lambda_env,
    scripted_runtime_argv,
)

PRELUDE = r'''
import http.client, json, os, socket, sys

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
ADDRESS = (API.rsplit(":", 1)[0], int(API.rsplit(":", 1)[1]))
NEXT = "/2018-06-01/runtime/invocation/next"
INIT_ERROR = "/2018-06-01/runtime/init/error"
CONN = http.client.HTTPConnection(API)

def call(method, path, body=None, headers=None, conn=None):
    conn = conn or CONN
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()

def post(invoke_id, action, body=b"", headers=None):
    return call("POST", f"/2018-06-01/runtime/invocation/{invoke_id}/{action}", body, headers)

def observe(name, result):
    status, headers, body = result
    print("OBS " + json.dumps({"name": name, "status": status, "body": body.decode(),
                               "content_type": headers.get("Content-Type")}), flush=True)

def raw(request):
    """Send raw bytes on a fresh connection; return the raw response text."""
    with socket.create_connection(ADDRESS) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b"")).decode()
'''

ACCEPTED = '{"status":"OK"}\n'
INVALID_REQUEST_ID = '{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}\n'


def forbidden(current: str, target: str) -> str:
    return (
        f'{{"errorMessage":"State transition from {current} to {target} failed for runtime. '
        'Error: State transition is not allowed","errorType":"InvalidStateTransition"}\n'
    )


async def run_script(
    start_agent: StartAgent, task_root: Path, source: str, invokes: int = 1
) -> AgentSession:
    """Start the scripted runtime, send ``invokes`` invokes one after the other."""
    argv = scripted_runtime_argv(task_root, PRELUDE + source)
    session = await start_agent(argv, task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE, Kind.INIT_ERROR, Kind.EXIT)
    for n in range(1, invokes + 1):
        session.invoke(f"req-{n}", b'{"n": %d}' % n)
        await session.expect(Kind.RESPONSE, Kind.ERROR)
    return session


async def observations(session: AgentSession) -> dict[str, dict[str, Any]]:
    await session.until_closed()
    seen = {}
    for line in session.output().decode().splitlines():
        if line.startswith("OBS "):
            record = json.loads(line[4:])
            seen[record.pop("name")] = record
    return seen


async def test_double_response_and_wrong_id(task_root: Path, start_agent: StartAgent) -> None:
    source = """
observe("before", post("req-unknown", "response", b"x"))
status, headers, event = call("GET", NEXT)
rid = headers["Lambda-Runtime-Aws-Request-Id"]
observe("first", post(rid, "response", b'"ok"', {"Content-Type": "text/plain"}))
observe("second", post(rid, "response", b'"again"'))
observe("second-error", post(rid, "error", b"{}"))
observe("wrong-id", post("someone-else", "response", b'"x"'))
"""
    session = await run_script(start_agent, task_root, source)
    response = session.frames_of(Kind.RESPONSE)[0]
    assert response.payload == b'"ok"'
    assert response.meta["content_type"] == "text/plain"
    seen = await observations(session)
    assert seen["before"] == {
        "status": 400,
        "body": INVALID_REQUEST_ID,
        "content_type": "application/json",
    }
    assert seen["first"] == {"status": 202, "body": ACCEPTED, "content_type": "application/json"}
    assert seen["second"]["status"] == 403
    assert seen["second"]["body"] == forbidden("RuntimeResponseSentState", "InvocationResponse")
    assert seen["second-error"]["status"] == 403
    assert seen["second-error"]["body"] == forbidden(
        "RuntimeResponseSentState", "InvocationErrorResponse"
    )
    assert seen["wrong-id"] == seen["before"]
    assert len(session.frames_of(Kind.RESPONSE)) == 1
    assert not session.frames_of(Kind.ERROR)


async def test_next_headers_and_rerender_while_running(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = """
first = call("GET", NEXT)
second = call("GET", NEXT)
for name, (status, headers, body) in (("first", first), ("second", second)):
    print("OBS " + json.dumps({"name": name, "status": status, "body": body.decode(),
                               "headers": headers}), flush=True)
post(first[1]["Lambda-Runtime-Aws-Request-Id"], "response", b"null")
"""
    argv = scripted_runtime_argv(task_root, PRELUDE + source)
    session = await start_agent(argv, task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)
    session.invoke(
        "req-1",
        b'{"k": "v"}',
        trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        client_context='{"custom": {"a": "b"}}',
        identity='{"cognitoIdentityId": "id", "cognitoIdentityPoolId": "pool"}',
        tenant_id="tenant-7",
        deadline_ms=1542409706888,
    )
    await session.expect(Kind.RESPONSE)
    seen = await observations(session)
    assert seen["first"] == seen["second"]
    assert seen["first"]["status"] == 200
    assert seen["first"]["body"] == '{"k": "v"}'
    headers = seen["first"]["headers"]
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert headers["Lambda-Runtime-Deadline-Ms"] == "1542409706888"
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:fn")
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-5bef4de7")
    assert headers["Lambda-Runtime-Client-Context"] == '{"custom": {"a": "b"}}'
    assert headers["Lambda-Runtime-Cognito-Identity"].startswith('{"cognitoIdentityId"')
    assert headers["Lambda-Runtime-Aws-Tenant-Id"] == "tenant-7"
    assert headers["Content-Type"] == "application/json"


async def test_optional_next_headers_are_absent_when_not_given(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = """
status, headers, body = call("GET", NEXT)
print("OBS " + json.dumps({"name": "next", "headers": sorted(headers)}), flush=True)
post(headers["Lambda-Runtime-Aws-Request-Id"], "response", b"1")
"""
    session = await run_script(start_agent, task_root, source)
    seen = await observations(session)
    optional = {
        "Lambda-Runtime-Trace-Id",
        "Lambda-Runtime-Client-Context",
        "Lambda-Runtime-Cognito-Identity",
        "Lambda-Runtime-Aws-Tenant-Id",
    }
    assert "Lambda-Runtime-Aws-Request-Id" in seen["next"]["headers"]
    assert not optional & set(seen["next"]["headers"])


async def test_init_error_is_only_allowed_before_the_first_next(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = """
print("loading user code")
body = b'{"errorMessage":"bad","errorType":"Runtime.ImportModuleError"}'
header = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
observe("init-error", call("POST", INIT_ERROR, body, header))
observe("init-error-again", call("POST", INIT_ERROR, body, header))
observe("next-after", call("GET", NEXT))
"""
    argv = scripted_runtime_argv(task_root, PRELUDE + source)
    session = await start_agent(argv, task_root, lambda_env(task_root))
    failure = await session.expect(Kind.INIT_ERROR)
    assert session.output() == b"loading user code\n", "output precedes INIT_ERROR"
    assert failure.meta["error_type"] == "Runtime.ImportModuleError"
    assert failure.meta["init_ms"] > 0
    assert json_payload(failure) == {
        "errorMessage": "bad",
        "errorType": "Runtime.ImportModuleError",
    }
    seen = await observations(session)
    assert seen["init-error"]["status"] == 202
    assert seen["init-error"]["body"] == ACCEPTED
    assert seen["init-error-again"]["body"] == forbidden("InitError", "InitError")
    assert seen["next-after"]["status"] == 403
    assert seen["next-after"]["body"] == forbidden("InitError", "Ready")
    assert len(session.frames_of(Kind.INIT_ERROR)) == 1
    assert session.frames[-1].kind is Kind.EXIT


async def test_init_error_while_running_is_refused(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = """
status, headers, body = call("GET", NEXT)
observe("init-error", call("POST", INIT_ERROR, b"{}"))
post(headers["Lambda-Runtime-Aws-Request-Id"], "response", b"1")
"""
    session = await run_script(start_agent, task_root, source)
    seen = await observations(session)
    assert seen["init-error"]["status"] == 403
    assert seen["init-error"]["body"] == forbidden("Running", "InitError")
    assert not session.frames_of(Kind.INIT_ERROR)


async def test_oversize_response_is_refused_and_reported(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = f"""
for size in ({MAX_PAYLOAD_BYTES}, {MAX_PAYLOAD_BYTES + 1}):
    status, headers, body = call("GET", NEXT)
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    observe(str(size), post(rid, "response", b"x" * size))
"""
    session = await run_script(start_agent, task_root, source, invokes=2)
    ok, too_large = session.frames_of(Kind.RESPONSE)[0], session.frames_of(Kind.ERROR)[0]
    assert len(ok.payload) == MAX_PAYLOAD_BYTES
    assert too_large.meta["error_type"] == "Function.ResponseSizeTooLarge"
    assert too_large.payload == (
        b'{"errorMessage":"Response payload size exceeded maximum allowed payload size '
        b'(6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}'
    )
    seen = await observations(session)
    assert seen[str(MAX_PAYLOAD_BYTES)]["status"] == 202
    assert seen[str(MAX_PAYLOAD_BYTES + 1)] == {
        "status": 413,
        "body": '{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).",'
        '"errorType":"RequestEntityTooLarge"}\n',
        "content_type": "application/json",
    }


async def test_chunked_response_with_trailers_and_expect_continue(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = r"""
status, headers, body = call("GET", NEXT)
rid = headers["Lambda-Runtime-Aws-Request-Id"]
reply = raw(
    f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\n".encode()
    + b"Host: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
    + b"Content-Type: text/plain\r\nTrailer: X-Checksum\r\n\r\n"
    + b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
)
print("OBS " + json.dumps({"name": "reply", "body": reply}), flush=True)
"""
    session = await run_script(start_agent, task_root, source)
    response = session.frames_of(Kind.RESPONSE)[0]
    assert response.payload == b"hello world"
    assert response.meta["content_type"] == "text/plain"
    reply = (await observations(session))["reply"]["body"]
    assert reply.startswith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\n")
    assert reply.endswith("\r\n\r\n" + ACCEPTED)


async def test_streaming_mode_is_buffered_and_error_trailers_become_errors(
    task_root: Path, start_agent: StartAgent
) -> None:
    error_body = base64.b64encode(b'{"errorType":"Runtime.StreamError","errorMessage":"x"}')
    source = rf"""
for trailer in (b"", b"Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
                     b"Lambda-Runtime-Function-Error-Body: {error_body.decode()}\r\n"):
    status, headers, body = call("GET", NEXT)
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    raw(
        f"POST /2018-06-01/runtime/invocation/{{rid}}/response HTTP/1.1\r\n".encode()
        + b"Host: x\r\nTransfer-Encoding: chunked\r\n"
        + b"Lambda-Runtime-Function-Response-Mode: streaming\r\n\r\n"
        + b"4\r\npart\r\n0\r\n" + trailer + b"\r\n"
    )
"""
    session = await run_script(start_agent, task_root, source, invokes=2)
    streamed, failed = session.frames_of(Kind.RESPONSE)[0], session.frames_of(Kind.ERROR)[0]
    assert streamed.payload == b"part"
    assert failed.meta["error_type"] == "Runtime.StreamError"
    assert failed.payload == base64.b64decode(error_body)


async def test_invalid_response_mode_fails_the_invoke(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = """
status, headers, body = call("GET", NEXT)
rid = headers["Lambda-Runtime-Aws-Request-Id"]
observe("post", post(rid, "response", b"1", {"Lambda-Runtime-Function-Response-Mode": "bulk"}))
"""
    session = await run_script(start_agent, task_root, source)
    failed = session.frames_of(Kind.ERROR)[0]
    assert failed.meta["error_type"] == "Runtime.InvalidResponseModeHeader"
    assert json_payload(failed)["errorType"] == "Runtime.InvalidResponseModeHeader"
    seen = await observations(session)
    assert seen["post"]["status"] == 400
    assert seen["post"]["body"] == (
        '{"errorMessage":"Invalid function response mode",'
        '"errorType":"InvalidFunctionResponseMode"}\n'
    )


async def test_error_posts_are_forwarded_verbatim_with_a_normalised_type(
    task_root: Path, start_agent: StartAgent
) -> None:
    cause = json.dumps(
        {
            "errorMessage": "m <b>",
            "errorType": "T",
            "stackTrace": ["a"],
            "errorCause": {"paths": []},
        }
    )
    source = f"""
cases = [
    ({{}}, b'{{"opaque": true}}'),
    ({{"Lambda-Runtime-Function-Error-Type": "Function.MyError"}}, b"plain"),
    ({{"Lambda-Runtime-Function-Error-Type": "unhandled"}}, b"x"),
    ({{"Lambda-Runtime-Function-Error-Type": "Function.x"}}, b"x"),
    ({{"Content-Type": "application/vnd.aws.lambda.error.cause+json"}}, {cause!r}.encode()),
    ({{"Content-Type": "application/vnd.aws.lambda.error.cause+json"}}, b"not json"),
]
for headers, body in cases:
    status, next_headers, event = call("GET", NEXT)
    observe("post", post(next_headers["Lambda-Runtime-Aws-Request-Id"], "error", body, headers))
"""
    session = await run_script(start_agent, task_root, source, invokes=6)
    errors = session.frames_of(Kind.ERROR)
    assert [e.meta["error_type"] for e in errors] == [
        "Runtime.Unknown",
        "Function.MyError",
        "Runtime.Unknown",
        "Function.Unknown",
        "Runtime.Unknown",
        "Runtime.Unknown",
    ]
    assert [e.meta["id"] for e in errors] == [f"req-{n}" for n in range(1, 7)]
    assert errors[0].payload == b'{"opaque": true}'
    assert errors[1].payload == b"plain"
    assert errors[4].payload == (
        b'{"errorMessage":"m \\u003cb\\u003e","errorType":"T","stackTrace":["a"]}'
    )
    assert errors[4].meta["content_type"] == "application/json"
    assert errors[5].payload == b'"Invalid error body"'
    assert errors[5].meta["content_type"] == "application/octet-stream"
    assert (await observations(session))["post"]["body"] == ACCEPTED


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
        ("Function.ResponseSizeTooLarge", "Function.ResponseSizeTooLarge"),
        ("xRuntime.Embedded", "xRuntime.Embedded"),
        ("Runtime.lowercase", "Runtime.Unknown"),
        ("Function.", "Function.Unknown"),
        ("", "Runtime.Unknown"),
        ("ValueError", "Runtime.Unknown"),
    ],
)
def test_error_type_normalisation_matches_rapid(header: str, expected: str) -> None:
    assert normalise_error_type(header) == expected


async def test_unknown_paths_wrong_methods_and_ping(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = """
observe("unknown", call("GET", "/2018-06-01/runtime/whatever"))
observe("wrong-method", call("GET", "/2018-06-01/runtime/invocation/x/response"))
observe("ping", call("GET", "/ping"))
"""
    session = await run_script(start_agent, task_root, source, invokes=0)
    seen = await observations(session)
    assert seen["unknown"] == {
        "status": 404,
        "body": '{"errorMessage":"Not Found","errorType":"NotFound"}\n',
        "content_type": "application/json",
    }
    assert seen["wrong-method"]["status"] == 405
    assert seen["ping"]["status"] == 200
    assert seen["ping"]["body"] == "pong"


async def test_runtime_closing_connections_loses_nothing(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = r"""
def abandon(sock):
    # Half-close, then wait until the agent has closed its end too.
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(1) == b""
    sock.close()

# A /next whose client goes away must not swallow the event.
abandoned = socket.create_connection(ADDRESS)
abandoned.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
abandon(abandoned)
print("abandoned", flush=True)  # only now may the harness send the first invoke
for n in (1, 2):
    fresh = http.client.HTTPConnection(API)  # a new connection for every request
    status, headers, body = call("GET", NEXT, headers={"Connection": "close"}, conn=fresh)
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    if n == 1:
        # A body cut short by a dropped connection fails the invoke.
        cut = socket.create_connection(ADDRESS)
        cut.sendall(f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\n"
                    "Host: x\r\nContent-Length: 100\r\n\r\n0123456789".encode())
        abandon(cut)
    else:
        post(rid, "response", body, {"Connection": "close"})
"""
    argv = scripted_runtime_argv(task_root, PRELUDE + source)
    session = await start_agent(argv, task_root, lambda_env(task_root))
    await session.expect(Kind.INIT_DONE)  # answered to the /next about to be abandoned
    await session.until_output(b"abandoned\n")  # an invoke sent earlier could reach it
    for n in (1, 2):
        session.invoke(f"req-{n}", b'{"n": %d}' % n)
        await session.expect(Kind.RESPONSE, Kind.ERROR)
    truncated, echoed = session.frames_of(Kind.ERROR)[0], session.frames_of(Kind.RESPONSE)[0]
    assert truncated.meta["error_type"] == "Runtime.TruncatedResponse"
    assert json_payload(truncated) == {
        "errorType": "Runtime.TruncatedResponse",
        "errorMessage": "RequestId: req-1 Error: HTTP request detected as truncated",
    }
    assert echoed.payload == b'{"n": 2}'


async def test_malformed_http_gets_400_and_a_closed_connection(
    task_root: Path, start_agent: StartAgent
) -> None:
    source = r"""
reply = raw(b"NONSENSE\r\n\r\n")
print("OBS " + json.dumps({"name": "reply", "body": reply}), flush=True)
"""
    session = await run_script(start_agent, task_root, source, invokes=0)
    reply = (await observations(session))["reply"]["body"]
    assert reply.startswith("HTTP/1.1 400 Bad Request\r\n")
    assert "Connection: close\r\n" in reply
